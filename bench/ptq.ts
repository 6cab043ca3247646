/**
 * The post-training quantization table: for each model in ../shared/models, float top-1 and
 * top-1 of every built-in profile with min-max and MSE calibration (optionally with bias
 * correction), calibrated on imagenet-sample-1k (ResNet-8: the first images of
 * cifar10-test, class-balanced by taking every 10th) and evaluated on imagenet-val-650
 * (ResNet-8: cifar10-test). Accuracy comes from the fake-quant simulation.
 *
 *   npm run bench:ptq -- [--calib-limit N] [--models a,b] [--profiles p,q] [--methods minmax,mse] [--bias-correction]
 *
 * Prints a Markdown table row per run and writes the rows to bench-ptq.json.
 */
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { loadDataset, type Dataset } from '../src/data/dataset.js';
import type { PresetName } from '../src/data/preprocess.js';
import { evaluate } from '../src/eval/evaluate.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { builtinProfiles, loadProfile } from '../src/quantization/profile.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import type { RangeMethod } from '../src/quantization/calibration.js';
import { sharedPath } from '../test/shared.js';

const MODELS: { file: string; calib: string; val: string; preset?: PresetName }[] = [
  { file: 'mobilenet_v2_1.0_224_int8.tflite', calib: 'imagenet-sample-1k', val: 'imagenet-val-650' },
  { file: 'mobilenet_v2_1.0_224_uint8.tflite', calib: 'imagenet-sample-1k', val: 'imagenet-val-650' },
  { file: 'mobilenet_v1_0.25_224_float.tflite', calib: 'imagenet-sample-1k', val: 'imagenet-val-650' },
  { file: 'mobilenet_v3_small_1.0_224_uint8.tflite', calib: 'imagenet-sample-1k', val: 'imagenet-val-650' },
  { file: 'resnet8_cifar10_float.tflite', calib: 'cifar10-test', val: 'cifar10-test', preset: 'raw' },
];

const { values: args } = parseArgs({
  options: {
    'calib-limit': { type: 'string', default: '1000' },
    models: { type: 'string' },
    profiles: { type: 'string' },
    methods: { type: 'string', default: 'minmax,mse' },
    'bias-correction': { type: 'boolean', default: false },
  },
});
const calibLimit = Number(args['calib-limit']);
const models = MODELS.filter((m) => !args.models || args.models.split(',').some((s) => m.file.includes(s)));
const profiles = args.profiles ? args.profiles.split(',') : builtinProfiles();
const methods = args.methods!.split(',') as RangeMethod[];

/** Every 10th image: a class-balanced calibration subset of a set sorted by class. */
function spread(d: Dataset): Dataset {
  return { ...d, items: d.items.filter((_, i) => i % 10 === 0) };
}

const rows: Record<string, unknown>[] = [];
console.log('| model | profile | calibration | top-1 | top-5 | quantize s |');
console.log('|---|---|---|---|---|---|');
for (const m of models) {
  const file = sharedPath('models', m.file);
  if (file.skip) {
    console.log(`skipped ${m.file}: ${file.skip}`);
    continue;
  }
  const model = await prepareModel(loadModel(file.path));
  const val = await loadDataset(sharedPath('data', m.val).path);
  let calib = await loadDataset(sharedPath('data', m.calib).path);
  if (m.calib === m.val) calib = spread(calib);
  const float = await evaluate(model, val, { preprocess: { preset: m.preset } });
  console.log(`| ${m.file} | float | – | ${(100 * float.top1).toFixed(1)}% | ${(100 * float.top5).toFixed(1)}% | – |`);
  rows.push({ model: m.file, profile: 'float', top1: float.top1, top5: float.top5 });
  for (const profile of profiles)
    for (const method of methods) {
      const t0 = performance.now();
      const q = await quantizeModel(model, calib, {
        profile: loadProfile(profile),
        calibration: method,
        calibLimit,
        preprocess: { preset: m.preset },
        biasCorrection: args['bias-correction'],
      });
      const seconds = (performance.now() - t0) / 1000;
      const r = await evaluate(q.model, val, { preprocess: q.preprocess.spec });
      console.log(
        `| ${m.file} | ${profile} | ${method}${args['bias-correction'] ? ' + bias corr.' : ''} | ${(100 * r.top1).toFixed(1)}% | ${(100 * r.top5).toFixed(1)}% | ${seconds.toFixed(0)} |`,
      );
      rows.push({
        model: m.file,
        profile,
        method,
        biasCorrection: args['bias-correction'],
        calibLimit,
        top1: r.top1,
        top5: r.top5,
        quantizeSeconds: seconds,
      });
    }
}
writeFileSync('bench-ptq.json', JSON.stringify(rows, null, 2));
