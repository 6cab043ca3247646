import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import { parseOnnx, readOnnxFile } from '../src/onnx/read.js';
import { serializeModel, writeOnnxFile } from '../src/onnx/write.js';
import { runModel } from '../src/runtime/session.js';
import { QuantflowError } from '../src/util/errors.js';
import { maxAbsDiff, randomTensor, tinyCnn } from './fixtures.js';

test('ONNX round trip keeps structure, weights and outputs', async () => {
  const model = tinyCnn();
  model.metadata.note = 'kept';
  const back = parseOnnx(serializeModel(model));
  assert.equal(back.opset, 17);
  assert.equal(back.metadata.note, 'kept');
  assert.deepEqual(
    back.graph.nodes.map((n) => n.opType),
    model.graph.nodes.map((n) => n.opType),
  );
  assert.deepEqual(back.graph.inputs, model.graph.inputs);
  assert.deepEqual([...back.graph.initializers.get('w')!.data], [...model.graph.initializers.get('w')!.data]);
  assert.deepEqual(back.graph.initializers.get('shape')!.data, model.graph.initializers.get('shape')!.data);
  const x = randomTensor([2, 3, 5, 5], 9);
  const a = await runModel(model, { x });
  const b = await runModel(back, { x });
  assert.deepEqual(a.y!.dims, [2, 3]);
  assert.equal(maxAbsDiff(a.y!.data as Float32Array, b.y!.data as Float32Array), 0);
});

test('int4 initializers are packed on write and unpacked on read', () => {
  const model = tinyCnn();
  model.opset = 21;
  model.graph.initializers.set('q4', { dataType: 'int4', dims: [5], data: Int8Array.from([-8, -1, 0, 7, 3]) });
  model.graph.initializers.set('u4', { dataType: 'uint4', dims: [3], data: Uint8Array.from([15, 0, 9]) });
  const back = parseOnnx(serializeModel(model));
  assert.deepEqual([...back.graph.initializers.get('q4')!.data], [-8, -1, 0, 7, 3]);
  assert.deepEqual([...back.graph.initializers.get('u4')!.data], [15, 0, 9]);
});

test('Constant nodes and typed data fields become initializers', () => {
  const proto = create(ModelProtoSchema, {
    irVersion: 7n,
    opsetImport: [{ domain: '', version: 13n }],
    graph: {
      name: 'g',
      node: [
        {
          opType: 'Constant',
          output: ['c'],
          attribute: [{ name: 'value', type: 4, t: { dims: [2n], dataType: 1, floatData: [1.5, -2] } }],
        },
        { opType: 'Constant', output: ['k'], attribute: [{ name: 'value_ints', type: 7, ints: [3n, 4n] }] },
        { opType: 'Add', input: ['x', 'c'], output: ['y'] },
      ],
      input: [
        {
          name: 'x',
          type: {
            value: {
              case: 'tensorType',
              value: {
                elemType: 1,
                shape: { dim: [{ value: { case: 'dimParam', value: 'n' } }, { value: { case: 'dimValue', value: 2n } }] },
              },
            },
          },
        },
      ],
      output: [{ name: 'y', type: { value: { case: 'tensorType', value: { elemType: 1 } } } }],
    },
  });
  const model = parseOnnx(toBinary(ModelProtoSchema, proto));
  assert.equal(model.graph.nodes.length, 1);
  assert.deepEqual([...model.graph.initializers.get('c')!.data], [1.5, -2]);
  assert.deepEqual([...model.graph.initializers.get('k')!.data], [3n, 4n]);
  assert.deepEqual(model.graph.inputs[0]!.shape, ['n', 2]);
});

test('external data is read relative to the model file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qf-ext-'));
  try {
    const weights = Float32Array.from([1, 2, 3, 4]);
    writeFileSync(join(dir, 'w.bin'), Buffer.concat([Buffer.alloc(8), Buffer.from(weights.buffer)]));
    const proto = create(ModelProtoSchema, {
      irVersion: 8n,
      opsetImport: [{ domain: '', version: 17n }],
      graph: {
        name: 'g',
        initializer: [
          {
            name: 'w',
            dims: [4n],
            dataType: 1,
            dataLocation: 1,
            externalData: [
              { key: 'location', value: 'w.bin' },
              { key: 'offset', value: '8' },
              { key: 'length', value: '16' },
            ],
          },
        ],
        node: [{ opType: 'Add', input: ['x', 'w'], output: ['y'] }],
        input: [{ name: 'x', type: { value: { case: 'tensorType', value: { elemType: 1 } } } }],
        output: [{ name: 'y', type: { value: { case: 'tensorType', value: { elemType: 1 } } } }],
      },
    });
    writeFileSync(join(dir, 'm.onnx'), toBinary(ModelProtoSchema, proto));
    const model = readOnnxFile(join(dir, 'm.onnx'));
    assert.deepEqual([...model.graph.initializers.get('w')!.data], [1, 2, 3, 4]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('truncated, corrupt and unreadable models give one-line QuantflowErrors', () => {
  const bytes = serializeModel(tinyCnn());
  for (const cut of [1, 10, bytes.length >> 1, bytes.length - 3]) {
    assert.throws(
      () => parseOnnx(bytes.subarray(0, cut), { source: 'cut.onnx' }),
      (e: unknown) => {
        assert.ok(e instanceof QuantflowError, String(e));
        assert.match(e.message, /^cut\.onnx: /);
        assert.ok(!e.message.includes('\n'));
        return true;
      },
    );
  }
  assert.throws(() => readOnnxFile('/nonexistent/model.onnx'), /\/nonexistent\/model\.onnx: cannot read model file \(ENOENT\)/);
  const oldOpset = tinyCnn();
  oldOpset.opset = 6;
  assert.throws(() => parseOnnx(serializeModel(oldOpset), { source: 'old.onnx' }), /old\.onnx: opset 6 is not supported/);
});

test('writeOnnxFile replaces the file atomically and leaves no temporary file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qf-write-'));
  try {
    const path = join(dir, 'out.onnx');
    writeOnnxFile(tinyCnn(), path);
    assert.ok(existsSync(path));
    assert.deepEqual(readdirSync(dir), ['out.onnx']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
