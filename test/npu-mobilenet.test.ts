import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { imageBatches, imageInputGeometry } from '../src/data/batches.js';
import { loadDataset } from '../src/data/dataset.js';
import type { Model } from '../src/graph/types.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { buildNpuPackage } from '../src/npu/package.js';
import type { NpuPackage } from '../src/npu/types.js';
import { verifyPackage, type TensorAgreement } from '../src/npu/verify.js';
import { loadProfile } from '../src/quantization/profile.js';
import { quantizeModel, type QuantizeResult } from '../src/quantization/quantize.js';
import { tileSqueezeExcite } from '../src/tse/rewrite.js';
import { sharedPath } from './shared.js';

const exact = (list: TensorAgreement[]) => list.reduce((n, a) => n + a.exact, 0) / list.reduce((n, a) => n + a.elements, 0);

/**
 * PTQ of `modelName` (as `prepare` turns it; by default w8a8-shift, min-max ranges from 4
 * images of imagenet-sample-1k), its NPU package, and `verify` on 2 images of
 * imagenet-val-650: the integer ONNX model equals the executor, the QDQ simulation is within
 * 1 LSB per layer. Returns the PTQ result.
 */
async function checkPackage(
  t: TestContext,
  modelName: string,
  prepare: (m: Model) => Model,
  check: (pkg: NpuPackage) => void,
  ptq: { profile: string; calibration: 'minmax' | 'mse'; calibLimit: number } = {
    profile: 'w8a8-shift',
    calibration: 'minmax',
    calibLimit: 4,
  },
): Promise<QuantizeResult | undefined> {
  const modelFile = sharedPath('models', modelName);
  const calibDir = sharedPath('data', 'imagenet-sample-1k');
  const dataDir = sharedPath('data', 'imagenet-val-650');
  const skip = modelFile.skip || calibDir.skip || dataDir.skip;
  if (skip) return void t.skip(skip);
  const model = prepare(await prepareModel(loadModel(modelFile.path)));
  const data = await loadDataset(dataDir.path);
  const profile = loadProfile(ptq.profile);
  const result = await quantizeModel(model, await loadDataset(calibDir.path), { ...ptq, profile, batch: 4 });
  const pkg = await buildNpuPackage(result.model, profile, { preset: result.preprocess.label });
  check(pkg);
  const geometry = imageInputGeometry(model);
  async function* batches() {
    for await (const b of imageBatches(data.items.slice(100, 102), { ...geometry, preprocess: result.preprocess.spec, batch: 2 }))
      yield { data: b.data, count: b.items.length };
  }
  const report = await verifyPackage(pkg, result.model, batches(), { integerModel: true });
  assert.equal(report.images, 2);
  assert.equal(exact(report.integerModel!), 1);
  assert.ok(Math.max(...report.isolated.map((a) => a.maxDiff)) <= 1);
  // TFLite rounds twice (high multiply, then shift): where the first rounding lands on a tie
  // of the second, the result is 1 LSB off the exact product, for about 2^−(r+1) of the
  // values with a final right shift r (5..10 here), so fewer elements match the simulation.
  const floor = profile.requantization.rounding === 'tflite' ? 0.99 : 0.999;
  assert.ok(exact(report.isolated) > floor, `per layer ${exact(report.isolated)}`);
  // 8-bit MobileNet sums stay far below 2^24, where float32 sums are exact; 16-bit ones go
  // beyond it, so the integer ONNX model's byte split is what keeps it exact.
  const peak = Math.max(...Object.values(report.peaks));
  assert.ok(profile.activations.bits === 8 ? peak < 2 ** 24 : peak >= 2 ** 24, `peak ${peak}`);
  t.diagnostic(
    `QDQ simulation vs executor: outputs ${(100 * exact(report.outputs)).toFixed(1)}% exact, max ${report.outputs[0]!.maxDiff} LSB; per layer ${(100 * exact(report.isolated)).toFixed(3)}%`,
  );
  return result;
}

test('MobileNetV2 w8a8-shift on 2 images: integer ONNX model = executor; QDQ simulation within 1 LSB per layer', async (t) => {
  await checkPackage(
    t,
    'mobilenet_v2_1.0_224_int8.tflite',
    (m) => m,
    (pkg) => assert.equal(pkg.layers.filter((l) => l.op === 'conv').length, 53),
  );
});

test('MobileNetV2 tflite-int8: TFLite arithmetic (per-channel Q0.31 multipliers, ADD, MEAN) verifies within 1 LSB per layer', async (t) => {
  await checkPackage(
    t,
    'mobilenet_v2_1.0_224_int8.tflite',
    (m) => m,
    (pkg) => {
      assert.equal(pkg.layers.filter((l) => l.op === 'tflite-add').length, 10);
      assert.equal(pkg.layers.filter((l) => l.op === 'tflite-mean').length, 1);
      for (const l of pkg.layers) {
        if (l.op !== 'conv') continue;
        assert.equal(l.requant.multiplier.data.length, l.weights.shape[0]);
        assert.ok(
          l.requant.multiplier.data.every((m) => m >= 2 ** 30 && m < 2 ** 31),
          l.name,
        );
      }
    },
    { profile: 'tflite-int8', calibration: 'minmax', calibLimit: 4 },
  );
});

test('MobileNetV3-Small with 7-row TSE tiles, w8a8-shift: the tiled gates lower (nearest Resize) and verify like the rest', async (t) => {
  await checkPackage(
    t,
    'mobilenet_v3_small_1.0_224_uint8.tflite',
    (m) => tileSqueezeExcite(m, { tileRows: 7 }),
    (pkg) => {
      const selects = pkg.layers.filter((l) => l.op === 'select');
      // 6 of the 9 SE blocks have maps taller than 7 rows (56, 28, 14: no crop needed): one upsampling Resize each.
      assert.equal(selects.length, 6);
      for (const l of selects) assert.deepEqual(pkg.tensors[l.output]!.grid, pkg.tensors[l.inputs[0]!]!.grid);
    },
  );
});

test('MobileNetV2 w8a16-channel (16 calibration images, MSE ranges): package verifies like w8a8; output SQNR far above w8a8-channel', async (t) => {
  const ptq = { calibration: 'mse' as const, calibLimit: 16 };
  const a16 = await checkPackage(
    t,
    'mobilenet_v2_1.0_224_int8.tflite',
    (m) => m,
    (pkg) => {
      const widths = new Set(Object.values(pkg.tensors).map((info) => info.grid.qmax));
      assert.deepEqual(widths, new Set([65535]), 'every tensor on a 16-bit grid');
    },
    { ...ptq, profile: 'w8a16-channel' },
  );
  if (!a16) return;
  const model = await prepareModel(loadModel(sharedPath('models', 'mobilenet_v2_1.0_224_int8.tflite').path));
  const calib = await loadDataset(sharedPath('data', 'imagenet-sample-1k').path);
  const a8 = await quantizeModel(model, calib, { ...ptq, profile: loadProfile('w8a8-channel'), batch: 4 });
  const [db16, db8] = [a16.outputs[0]!.sqnrDb!, a8.outputs[0]!.sqnrDb!];
  t.diagnostic(`output SQNR on the first calibration batch: w8a8-channel ${db8.toFixed(1)} dB, w8a16-channel ${db16.toFixed(1)} dB`);
  assert.ok(db16 > db8 + 6, `w8a8 ${db8} dB, w8a16 ${db16} dB`);
});
