import { test } from 'node:test';
import assert from 'node:assert/strict';
import { imageBatches, imageInputGeometry } from '../src/data/batches.js';
import { loadDataset } from '../src/data/dataset.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { buildNpuPackage } from '../src/npu/package.js';
import { verifyPackage, type TensorAgreement } from '../src/npu/verify.js';
import { loadProfile } from '../src/quantization/profile.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import { sharedPath } from './shared.js';

const exact = (list: TensorAgreement[]) => list.reduce((n, a) => n + a.exact, 0) / list.reduce((n, a) => n + a.elements, 0);

test('MobileNetV2 w8a8-shift on 2 images: integer ONNX model = executor; QDQ simulation within 1 LSB per layer', async (t) => {
  const modelFile = sharedPath('models', 'mobilenet_v2_1.0_224_int8.tflite');
  const dataDir = sharedPath('data', 'imagenet-val-650');
  const skip = modelFile.skip || dataDir.skip;
  if (skip) return t.skip(skip);
  const model = await prepareModel(loadModel(modelFile.path));
  const data = await loadDataset(dataDir.path);
  const profile = loadProfile('w8a8-shift');
  const result = await quantizeModel(model, data, { profile, calibration: 'minmax', calibLimit: 4, batch: 4 });
  const pkg = await buildNpuPackage(result.model, profile, { preset: result.preset });
  assert.equal(pkg.layers.filter((l) => l.op === 'conv').length, 53);
  const geometry = imageInputGeometry(model);
  async function* batches() {
    for await (const b of imageBatches(data.items.slice(100, 102), { ...geometry, preset: result.preset, batch: 2 })) yield { data: b.data, count: b.items.length };
  }
  const report = await verifyPackage(pkg, result.model, batches(), { integerModel: true });
  assert.equal(report.images, 2);
  assert.equal(exact(report.integerModel!), 1);
  assert.ok(Math.max(...report.isolated.map((a) => a.maxDiff)) <= 1);
  assert.ok(exact(report.isolated) > 0.999, `per layer ${exact(report.isolated)}`);
  // Float32 MobileNetV2 sums stay far below 2^24, where the integer ONNX model stays exact.
  assert.ok(Math.max(...Object.values(report.peaks)) < 2 ** 24);
  t.diagnostic(`QDQ simulation vs executor: outputs ${(100 * exact(report.outputs)).toFixed(1)}% exact, max ${report.outputs[0]!.maxDiff} LSB; per layer ${(100 * exact(report.isolated)).toFixed(3)}%`);
});
