/**
 * The weight-sensitivity pass and the allocation it drives, on one model and profile: wall
 * time and peak memory of the sensitivity pass (target on MobileNetV2: ≤ 60 s on 2 cores),
 * then, at equal budget, the output error of the greedy allocation against every layer at the
 * lowest width, the hand rule (the expanding 1x1 convolutions at 8 bits) and random
 * allocations. The error is measured on calibration images neither calibration nor the
 * sensitivity pass saw.
 *
 *   npm run bench:sensitivity -- [--model F] [--profile P] [--calib-limit N] [--budget B] [--random N] [--eval-images N]
 *
 * The profile's weights may take 4 or 8 bits (its `@first`/`@last` overrides stay fixed).
 */
import { parseArgs } from 'node:util';
import { loadDataset } from '../src/data/dataset.js';
import { decodeImages } from '../src/data/images.js';
import { OutputErrorMeter } from '../src/eval/output-error.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { allocateGreedy, bitsPerElement, budgetBits, parseBudget, type AllocationLayer } from '../src/quantization/allocation.js';
import { loadProfile } from '../src/quantization/profile.js';
import { calibrateModel, qdqOfLayers } from '../src/quantization/quantize.js';
import { weightSensitivity } from '../src/quantization/sensitivity.js';
import { sharedPath } from '../test/shared.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'mobilenet_v2_1.0_224_int8.tflite' },
    profile: { type: 'string', default: 'w4a8-channel' },
    'calib-limit': { type: 'string', default: '32' },
    budget: { type: 'string', default: '4.5' },
    random: { type: 'string', default: '5' },
    'eval-images': { type: 'string', default: '64' },
    'hand-rule': { type: 'string', default: '/expand/' },
  },
});

const HELD_OUT = 32;
const batch = 16;
const calibLimit = Number(args['calib-limit']);
const base = loadProfile(args.profile!);
const profile = { ...base, weights: { ...base.weights, bits: 8 as const, allowed: [4, 8] as (4 | 8)[] } };
const model = await prepareModel(loadModel(sharedPath('models', args.model!).path));
const calib = await loadDataset(sharedPath('data', 'imagenet-sample-1k').path);
const cal = await calibrateModel(model, calib, { profile, calibLimit, batch });
const decode = (items: typeof calib.items) =>
  decodeImages(cal.model, { ...calib, items }, { limit: items.length, preprocess: cal.preprocess.spec, batch });

const held = await decodeImages(
  cal.model,
  { ...calib, items: calib.items.slice(-HELD_OUT) },
  { limit: HELD_OUT, preprocess: cal.preprocess.spec, batch },
);
const t0 = performance.now();
const meter = await OutputErrorMeter.create(cal.model, held, { batch });
const sens = await weightSensitivity(cal, meter, {});
const seconds = (performance.now() - t0) / 1000;
const peak = process.resourceUsage().maxRSS / 1024;
console.log(
  `sensitivity of ${sens.layers.filter((l) => l.widths.length > 1).length} layers of ${args.model} (${args.profile} weights at 4 or 8 bits) ` +
    `on ${held.count} held-out images: ${seconds.toFixed(1)} s wall, peak RSS ${peak.toFixed(0)} MiB`,
);
const ranked = sens.layers.filter((l) => l.widths.length > 1).sort((a, b) => b.errorGrowth[0]! - a.errorGrowth[0]!);
console.log('most sensitive layers (output error growth at 4 bits, weights):');
for (const l of ranked.slice(0, 12)) console.log(`  ${l.errorGrowth[0]!.toExponential(2)}  ${String(l.size).padStart(8)}  ${l.name}`);

// Measured on images after the calibration ones and before the sensitivity ones.
const evalSet = await decode(calib.items.slice(calibLimit, calibLimit + Number(args['eval-images'])));
const evalMeter = await OutputErrorMeter.create(cal.model, evalSet, { batch });
const measure = (widths: number[]) =>
  evalMeter.measure(
    qdqOfLayers(
      cal,
      widths.map((bits, i) => sens.quantized[i]!.get(bits)!),
    ),
  );
const layers: AllocationLayer[] = sens.layers;
const lowest = layers.map((l) => l.widths[0]!);
const handPattern = new RegExp(args['hand-rule']!);
const hand = layers.map((l) => (l.widths.length > 1 && handPattern.test(l.name) ? l.widths.at(-1)! : l.widths[0]!));
const rows: [string, number[]][] = [['every free layer at 4 bits', lowest]];
for (const [label, budget] of [
  [`greedy at ${args.budget}`, args.budget!],
  [`greedy at the hand rule's ${bitsPerElement(layers, hand).toFixed(3)}`, String(bitsPerElement(layers, hand))],
]) {
  rows.push([label!, allocateGreedy(layers, budgetBits(parseBudget(budget!, 'budget'), layers, 'budget'), sens.baseError).widths]);
}
rows.push([`hand rule (${args['hand-rule']} at 8 bits)`, hand]);
const budget = budgetBits(parseBudget(args.budget!, 'budget'), layers, 'budget');
let seed = 1;
const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
for (let r = 0; r < Number(args.random); r++) {
  // Raise free layers in a random order while they fit.
  const widths = [...lowest];
  let used = layers.reduce((s, l, i) => s + l.size * widths[i]!, 0);
  const order = layers.map((_, i) => i).sort(() => random() - 0.5);
  for (const i of order) {
    const l = layers[i]!;
    const cost = l.size * (l.widths.at(-1)! - l.widths[0]!);
    if (l.widths.length > 1 && used + cost <= budget) [widths[i], used] = [l.widths.at(-1)!, used + cost];
  }
  rows.push([`random ${r + 1} at ${args.budget}`, widths]);
}
rows.push(['every layer at 8 bits', layers.map((l) => l.widths.at(-1)!)]);
console.log(`output error on ${evalSet.count} images neither calibration nor sensitivity saw:`);
for (const [label, widths] of rows) {
  const error = await measure(widths);
  console.log(`  ${label.padEnd(44)} ${bitsPerElement(layers, widths).toFixed(3)} bits/weight  error ${error.toExponential(3)}`);
}
