import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { serializeModel } from '../src/onnx/write.js';
import { loadModel, measureBuffers, QuantflowError } from '../src/index.js';
import { tinyCnn } from './fixtures.js';

test('loadModel: the same prepared model from a file and from its bytes, cut or not', async () => {
  const bytes = serializeModel(tinyCnn());
  const dir = mkdtempSync(join(tmpdir(), 'quantflow-api-'));
  const file = join(dir, 'tiny.onnx');
  writeFileSync(file, bytes);
  try {
    for (const options of [{}, { cutBefore: 'Relu' }]) {
      const fromFile = await loadModel(file, options);
      const fromBytes = await loadModel(bytes, options);
      assert.deepEqual(serializeModel(fromBytes), serializeModel(fromFile));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(
    (await loadModel(bytes, { cutBefore: 'Relu' })).graph.outputs.map((o) => o.name),
    ['bn'],
  );
  assert.deepEqual((await loadModel(bytes, { inputSize: [7, 9] })).graph.inputs[0]!.shape, ['batch', 3, 7, 9]);
});

test('loadModel: empty or malformed bytes are a QuantflowError naming them', async () => {
  await assert.rejects(
    loadModel(new Uint8Array(0), { name: 'upload.onnx' }),
    (e) => e instanceof QuantflowError && /^upload\.onnx: the model is empty$/.test(e.message),
  );
  await assert.rejects(
    loadModel(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])),
    (e) => e instanceof QuantflowError && e.message.startsWith('<bytes>: not a valid ONNX model'),
  );
});

test('measureBuffers: a model without SE blocks buffers nothing; two tile sizes are a QuantflowError', async () => {
  const model = await loadModel(serializeModel(tinyCnn()));
  const { buffers, nearMisses } = measureBuffers(model, { tileRows: 2 });
  assert.deepEqual([buffers.blocks.length, buffers.se, buffers.tse, nearMisses.length], [0, 0, 0, 0]);
  assert.throws(() => measureBuffers(model, { tileRows: 2, tileCols: 2 }), QuantflowError);
});
