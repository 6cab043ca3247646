/** Tiled squeeze-and-excite end to end on MobileNetV3-Small (TFLite, uint8) from ../shared. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import type { Model } from '../src/graph/types.js';
import { runModel } from '../src/runtime/session.js';
import { detectSqueezeExcite } from '../src/tse/detect.js';
import { tileSqueezeExcite } from '../src/tse/rewrite.js';
import { bufferReport } from '../src/tse/buffers.js';
import { withInputSize } from '../src/tse/input-size.js';
import { randomTensor } from './fixtures.js';
import { sharedPath } from './shared.js';

const file = sharedPath('models', 'mobilenet_v3_small_1.0_224_uint8.tflite');
let cached: Promise<Model> | undefined;
const mobilenet = () => (cached ??= prepareModel(loadModel(file.path)));

/** The block inputs of MobileNetV3-Small at 224x224: C, H, W of its 9 SE blocks. */
const SE_MAPS = [
  [16, 56, 56],
  [96, 14, 14],
  [240, 14, 14],
  [240, 14, 14],
  [120, 14, 14],
  [144, 14, 14],
  [288, 7, 7],
  [576, 7, 7],
  [576, 7, 7],
];

test('MobileNetV3-Small: all 9 SE blocks found (TFLite AveragePool squeeze, hard-sigmoid in arithmetic)', { skip: file.skip }, async () => {
  const { blocks, nearMisses } = detectSqueezeExcite(await mobilenet());
  assert.deepEqual(nearMisses, []);
  assert.deepEqual(
    blocks.map((b) => [b.channels, b.height, b.width]),
    SE_MAPS,
  );
  for (const b of blocks) {
    assert.equal(b.squeeze.opType, 'AveragePool');
    assert.equal(b.gate.kind, 'hard-sigmoid-arithmetic');
    assert.deepEqual(b.excitation.filter((n) => n.opType === 'Conv').length, 2);
  }
});

test('MobileNetV3-Small: the tiled model runs; tiles covering every map give SE exactly', { skip: file.skip }, async () => {
  const model = await mobilenet();
  const input = { input: randomTensor([1, 3, 224, 224], 3) };
  const [se] = Object.values(await runModel(model, input));
  const [same] = Object.values(await runModel(tileSqueezeExcite(model, { tileRows: 56 }), input));
  assert.deepEqual(same!.data, se!.data);
  const tiled = tileSqueezeExcite(model, { tile: [7, 7] });
  assert.equal(tiled.graph.nodes.filter((n) => n.opType === 'Resize').length, 6, 'the three 7x7 maps stay SE');
  const [out] = Object.values(await runModel(tiled, input));
  assert.deepEqual(out!.dims, [1, 1001]);
  const probabilities = out!.data as Float32Array;
  assert.ok(probabilities.every(Number.isFinite));
  assert.ok(Math.abs(probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-4);
});

test(
  'MobileNetV3-Small buffers: 285k elements under SE, 159k with 7-row tiles; 1.49M vs 364k at 512x512',
  { skip: file.skip },
  async () => {
    const model = await mobilenet();
    const at224 = bufferReport(detectSqueezeExcite(model).blocks, { tileRows: 7 });
    assert.equal(
      at224.se,
      SE_MAPS.reduce((s, [c, h, w]) => s + c! * h! * w!, 0),
    );
    assert.equal(at224.se, 285376);
    assert.equal(at224.tse, 159152);
    const at512 = bufferReport(detectSqueezeExcite(withInputSize(model, 512, 512)).blocks, { tileRows: 7 });
    assert.deepEqual([at512.blocks.length, at512.se, at512.tse], [9, 1490944, 363776]);
  },
);
