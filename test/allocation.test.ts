import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadDataset, type Dataset } from '../src/data/dataset.js';
import { decodeImages } from '../src/data/images.js';
import { OutputErrorMeter } from '../src/eval/output-error.js';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor, toFloat32 } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { writeOnnxFile } from '../src/onnx/write.js';
import { runQuantize } from '../src/pipeline/quantize-run.js';
import { allocateGreedy, budgetBits, parseActivationBudget, parseBudget, type AllocationLayer } from '../src/quantization/allocation.js';
import { parseProfile } from '../src/quantization/profile.js';
import { calibrateModel, qdqOfLayers, quantizeLayer, type Calibration } from '../src/quantization/quantize.js';
import { activationSensitivity, weightSensitivity } from '../src/quantization/sensitivity.js';
import { QuantflowError } from '../src/util/errors.js';
import { randomFloats, tinyCnn } from './fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'quantflow-allocation-'));
const data = join(root, 'data');
after(() => rmSync(root, { recursive: true, force: true }));

before(async () => {
  mkdirSync(data);
  // 44 images: 12 to calibrate on and the last 32 held out for the sensitivity pass.
  for (let i = 0; i < 44; i++) {
    await sharp({ create: { width: 9, height: 7, channels: 3, background: { r: (i * 70) % 256, g: (i * 130) % 256, b: (i * 40) % 256 } } })
      .png()
      .toFile(join(data, `${String(i).padStart(2, '0')}.png`));
  }
});

function profile(granularity: 'tensor' | 'channel') {
  return {
    name: 'w48',
    weights: { bits: [8, 4], granularity },
    activations: { bits: 8, symmetric: false },
    requantization: { multiplierBits: 16, shiftRange: [0, 47] },
  };
}

const a816 = { bits: [8, 16], symmetric: false };

const layer = (name: string, size: number, growth: number): AllocationLayer => ({ name, size, widths: [4, 8], errorGrowth: [growth, 0] });

test('greedy allocation on hand-set sensitivities picks the best set of 8-bit layers within the budget', () => {
  // 4 bits everywhere is 1000 bits; a budget of 5.6 bits per weight leaves 400 bits, and
  // raising a layer to 8 bits costs 4 bits per weight: {a, c} (300 bits, 0.7 recovered) beats
  // {b} (400 bits, 0.5) and {a} or {c} alone, and {a, b} or {b, c} do not fit.
  const layers = [layer('a', 25, 0.3), layer('b', 100, 0.5), layer('c', 50, 0.4), layer('d', 75, 0.01)];
  const budget = budgetBits({ bitsPerElement: 5.6 }, layers, 'test');
  assert.equal(budget, 1400);
  const best = bruteForce(layers, budget);
  const chosen = allocateGreedy(layers, budget, 0.1);
  assert.deepEqual(chosen.widths, [8, 4, 8, 4]);
  assert.deepEqual(chosen.widths, best);
  assert.ok(Math.abs(chosen.predictedError - (0.1 + 0.5 + 0.01)) < 1e-12);
  assert.equal(chosen.bitsPerElement, (25 * 8 + 100 * 4 + 50 * 8 + 75 * 4) / 250);
  assert.deepEqual(
    chosen.path.map((s) => s.layer),
    [undefined, 'a', 'c'],
  );
  assert.ok(chosen.path.every((s, i) => i === 0 || s.predictedError < chosen.path[i - 1]!.predictedError));
  // The whole budget: every layer at 8 bits.
  assert.deepEqual(allocateGreedy(layers, budgetBits({ bitsPerElement: 8 }, layers, 'test'), 0).widths, [8, 8, 8, 8]);
});

test('a layer an override fixes counts in a size budget, not in bits per weight', () => {
  const layers = [{ name: 'first', size: 100, widths: [8], errorGrowth: [0] }, layer('a', 100, 1)];
  assert.equal(budgetBits({ bitsPerElement: 4 }, layers, 'test'), 800 + 400);
  assert.equal(budgetBits({ bytes: 150 }, layers, 'test'), 1200);
  assert.deepEqual(allocateGreedy(layers, 1200, 0).widths, [8, 4]);
  assert.deepEqual(allocateGreedy(layers, 1600, 0).widths, [8, 8]);
});

test('a budget below every layer at its lowest width is a one-line error naming the minimum', () => {
  const layers = [{ name: 'first', size: 100, widths: [8], errorGrowth: [0] }, layer('a', 300, 1)];
  assert.throws(
    () => budgetBits({ bitsPerElement: 3.5 }, layers, 'w48.json'),
    (e: Error) =>
      e instanceof QuantflowError &&
      e.message ===
        'w48.json: a weight budget of 3.5 bits per weight is below the minimum of 4 bits per weight, every layer at its lowest allowed width',
  );
  assert.throws(() => budgetBits({ bytes: 200 }, layers, 'w48.json'), /budget of 200 bytes is below the minimum of 250 bytes/);
});

test('parseBudget reads bits per weight and sizes', () => {
  assert.deepEqual(parseBudget('4.5', '--weight-budget'), { bitsPerElement: 4.5 });
  assert.deepEqual(parseBudget('2.1MB', '--weight-budget'), { bytes: 2.1e6 });
  assert.deepEqual(parseBudget('900 KiB', '--weight-budget'), { bytes: 900 * 1024 });
  assert.throws(() => parseBudget('4.5 bits', '--weight-budget'), /--weight-budget must be average bits per weight/);
});

/**
 * Conv(3→4, 3x3) → Relu → Conv(4→4, 1x1) → Relu → GlobalAveragePool → Reshape → Gemm(4→3);
 * each output channel of the 1x1 convolution reads the fourth input channel, which the bias
 * keeps at zero, with a weight 40 times the others: harmless in float, but at 4 bits its scale
 * rounds the weights that matter to zero.
 */
function outlierCnn(): Model {
  const g = createGraph('outlier');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['batch', 3, 5, 5] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: ['batch', 3] });
  g.initializers.set(
    'w1',
    floatTensor(
      [4, 3, 3, 3],
      Array.from(randomFloats(108, 2), (v) => v - 0.5),
    ),
  );
  g.initializers.set('b1', floatTensor([4], [0, 0, 0, -100]));
  g.initializers.set(
    'w2',
    floatTensor(
      [4, 4, 1, 1],
      Array.from(randomFloats(16, 3), (v, i) => (i % 4 === 3 ? 40 : v - 0.5)),
    ),
  );
  g.initializers.set('shape', int64Tensor([2], [0, -1]));
  g.initializers.set(
    'fc',
    floatTensor(
      [3, 4],
      Array.from(randomFloats(12, 4), (v) => v - 0.5),
    ),
  );
  g.nodes.push(
    makeNode('Conv', ['x', 'w1', 'b1'], ['c1'], { pads: attr.ints([1, 1, 1, 1]), kernel_shape: attr.ints([3, 3]) }, 'conv1'),
    makeNode('Relu', ['c1'], ['r1'], {}, 'relu1'),
    makeNode('Conv', ['r1', 'w2'], ['c2'], { kernel_shape: attr.ints([1, 1]) }, 'conv2'),
    makeNode('Relu', ['c2'], ['r2'], {}, 'relu2'),
    makeNode('GlobalAveragePool', ['r2'], ['pool'], {}, 'pool'),
    makeNode('Reshape', ['pool', 'shape'], ['flat'], {}, 'flat'),
    makeNode('Gemm', ['flat', 'fc'], ['y'], { transB: attr.int(1) }, 'fc'),
  );
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

test('sensitivity ranks first the layer whose weights 4 bits cannot hold', async () => {
  const calib = await loadDataset(data);
  const cal = await calibrateModel(outlierCnn(), calib, {
    profile: parseProfile(profile('channel'), 'w48.json'),
    calibLimit: 12,
    batch: 4,
  });
  const meter = await heldOutMeter(cal, calib);
  const sens = await weightSensitivity(cal, meter, {});
  assert.deepEqual(
    sens.layers.map((l) => l.name),
    ['conv1', 'conv2', 'fc'],
  );
  const ranked = [...sens.layers].sort((a, b) => b.errorGrowth[0]! - a.errorGrowth[0]!);
  assert.equal(ranked[0]!.name, 'conv2', JSON.stringify(sens.layers));
  assert.ok(ranked[0]!.errorGrowth[0]! > 2 * ranked[1]!.errorGrowth[0]!, JSON.stringify(sens.layers));
  assert.ok(sens.layers.every((l) => l.errorGrowth[1] === 0));
  // The session with weights as inputs measures what the QDQ models measure.
  const pick = (layer: number, bits: number) => sens.quantized.map((q, i) => q.get(i === layer ? bits : 8)!);
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-5 * Math.abs(b) + 1e-9;
  assert.ok(close(sens.baseError, await meter.measure(qdqOfLayers(cal, pick(-1, 8)))));
  const swapped = await meter.measure(qdqOfLayers(cal, pick(1, 4)));
  assert.ok(
    close(sens.baseError + sens.layers[1]!.errorGrowth[0]!, swapped),
    `${sens.baseError + sens.layers[1]!.errorGrowth[0]!} vs ${swapped}`,
  );
});

test('quantize --weight-budget writes profile.json, and --profile with it reproduces the QDQ model byte for byte', async () => {
  const model = join(root, 'tiny.onnx');
  writeOnnxFile(tinyCnn(), model);
  const profileFile = join(root, 'w48.json');
  writeFileSync(profileFile, JSON.stringify(profile('channel')));
  const common = { model, calib: data, calibLimit: 12, batch: 4 };
  const first = await runQuantize({ ...common, profile: profileFile, weightBudget: '6', output: join(root, 'budget') });
  const a = first.report.allocation!;
  assert.ok(a, 'the report has the allocation');
  assert.equal(a.heldOutImages, 32);
  assert.equal(first.report.manifest?.options.weightBudget, '6');
  assert.deepEqual(
    a.layers.map((l) => l.widths),
    [
      [4, 8],
      [4, 8],
    ],
  );
  assert.ok(a.bitsPerElement <= 6);
  assert.equal(first.files.profile, join(root, 'budget', 'profile.json'));
  assert.match(readFileSync(first.files.html, 'utf8'), /Weight allocation under a budget/);
  const written = parseProfile(JSON.parse(readFileSync(first.files.profile!, 'utf8')), 'profile.json');
  assert.deepEqual(
    written.overrides.map((o) => [o.match, o.weights?.bits]),
    a.layers.map((l) => [l.name, l.bits]),
  );
  const again = await runQuantize({ ...common, profile: first.files.profile!, output: join(root, 'again') });
  assert.equal(again.report.allocation, undefined);
  assert.ok(readFileSync(first.files.model).equals(readFileSync(again.files.model)), 'the same QDQ model');

  // QFT trains the mixed model as it trains a uniform one, keeping each layer's width.
  const tuned = await runQuantize({ ...common, profile: profileFile, weightBudget: '6', qft: { epochs: 1 }, output: join(root, 'qft') });
  assert.ok(tuned.report.qft);
  assert.deepEqual(
    tuned.quantization.layers.map((l) => l.weightBits),
    a.layers.map((l) => l.bits),
  );

  // Re-run after QFT within every layer at 8 bits: layers QFT trained at 4 bits rise, from their trained weights, where
  // the finetuned model's output error says it helps.
  const again8 = await runQuantize({
    ...common,
    profile: profileFile,
    weightBudget: '6',
    qft: { epochs: 1, reallocate: '8' },
    output: join(root, 'qft-realloc'),
  });
  const after = again8.report.allocation!.afterQft!;
  const at4 = a.layers.filter((l) => l.bits === 4).map((l) => l.name);
  assert.ok(after.raised.length > 0 && after.raised.every((name) => at4.includes(name)), JSON.stringify(after));
  assert.ok(after.measuredError < after.errorBefore, `${after.measuredError} vs ${after.errorBefore}`);
  assert.ok(after.predictedError > 0 && after.predictedError < after.errorBefore, JSON.stringify(after));
  assert.deepEqual(
    again8.quantization.layers.map((l) => l.weightBits),
    a.layers.map((l) => (after.raised.includes(l.name) ? 8 : l.bits)),
  );
  assert.match(readFileSync(again8.files.html, 'utf8'), /After QFT the allocation was re-run/);
  await assert.rejects(
    runQuantize({ ...common, profile: profileFile, qft: { epochs: 1, reallocate: true }, output: join(root, 'realloc-alone') }),
    /--reallocate re-runs the weight allocation after QFT: give --weight-budget too/,
  );

  await assert.rejects(
    runQuantize({ ...common, calibLimit: 20, profile: profileFile, weightBudget: '6', output: join(root, 'overlap') }),
    /--weight-budget measures on the last 32 images of .* use --calib-limit 12 or less/,
  );
  await assert.rejects(
    runQuantize({ ...common, profile: 'w4a8-channel', weightBudget: '6', output: join(root, 'one-width') }),
    /--weight-budget chooses among the weight widths a profile allows, and w4a8-channel.json allows only 4: /,
  );
  await assert.rejects(
    runQuantize({ ...common, profile: profileFile, weightBudget: '3', output: join(root, 'low') }),
    /below the minimum of 4 bits per weight/,
  );
});

/**
 * `outlierCnn` with the fourth output channel of the first convolution alive and 200 times
 * larger, and the 1x1 convolution blind to it: that channel sets the range of the first Relu's
 * output, so at 8 bits the three channels that matter keep few levels; the classifier's
 * weights are 2000 times larger.
 */
function rangeOutlierCnn(): Model {
  const model = outlierCnn();
  const init = model.graph.initializers;
  init.set(
    'w1',
    floatTensor(
      [4, 3, 3, 3],
      Array.from(toFloat32(init.get('w1')!), (v, i) => (i >= 81 ? 200 * v + 100 : v)),
    ),
  );
  init.set('b1', floatTensor([4], [0, 0, 0, 0]));
  init.set(
    'w2',
    floatTensor(
      [4, 4, 1, 1],
      Array.from(toFloat32(init.get('w2')!), (v, i) => (i % 4 === 3 ? 0 : v)),
    ),
  );
  // Confident logits, so that the KL sees what the small channels carry.
  init.set(
    'fc',
    floatTensor(
      [3, 4],
      Array.from(toFloat32(init.get('fc')!), (v) => 2000 * v),
    ),
  );
  return model;
}

test('activation sensitivity measures what QDQ models with that activation at 8 bits measure', async () => {
  const calib = await loadDataset(data);
  const cal = await calibrateModel(rangeOutlierCnn(), calib, {
    profile: parseProfile({ ...profile('channel'), weights: { bits: 8, granularity: 'channel' }, activations: a816 }, 'a816.json'),
    // Min-max ranges keep the large channel, which an MSE range would clip (harmlessly here).
    calibration: 'minmax',
    calibLimit: 12,
    batch: 4,
  });
  const meter = await heldOutMeter(cal, calib);
  const layers = cal.specs.map((spec, i) => quantizeLayer(cal, i, spec));
  const sens = await activationSensitivity(cal, layers, meter, {});
  // The input, both Relu outputs (written on behalf of their convolutions), the pool and the logits.
  assert.deepEqual(
    sens.layers.map((l) => [l.name, l.size, l.widths]),
    [
      ['x', 75, [8, 16]],
      ['relu1', 100, [8, 16]],
      ['relu2', 100, [8, 16]],
      ['pool', 4, [8, 16]],
      ['fc', 3, [8, 16]],
    ].filter(([name]) => sens.layers.some((l) => l.name === name)),
  );
  assert.equal(sens.layers.length, cal.activationGrids.size);
  const at = (tensor: string | undefined) =>
    new Map([...cal.activationGrids].map(([a, grids]) => [a, grids.get(a === tensor || tensor === '*' ? 8 : 16)!]));
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-3 * Math.abs(b) + 1e-7;
  const base = await meter.measure(qdqOfLayers({ ...cal, activations: at(undefined) }, layers));
  assert.ok(close(sens.baseError, base), `${sens.baseError} vs ${base}`);
  for (const [i, tensor] of sens.tensors.entries()) {
    const direct = await meter.measure(qdqOfLayers({ ...cal, activations: at(tensor) }, layers));
    const measured = sens.baseError + sens.layers[i]!.errorGrowth[0]!;
    assert.ok(close(measured, direct), `${tensor}: ${measured} vs ${direct}`);
  }
  const ranked = [...sens.layers].sort((x, y) => y.errorGrowth[0]! - x.errorGrowth[0]!);
  assert.equal(ranked[0]!.name, 'relu1', JSON.stringify(sens.layers));
  // From the other end, raising relu1 alone removes the most error too.
  const gains = [...sens.fromLowest.layers].sort((x, y) => y.errorGrowth[0]! - x.errorGrowth[0]!);
  assert.equal(gains[0]!.name, 'relu1', JSON.stringify(sens.fromLowest));
  const allLow = await meter.measure(qdqOfLayers({ ...cal, activations: at('*') }, layers));
  const predictedLow = sens.fromLowest.baseError + sens.fromLowest.layers.reduce((sum, l) => sum + l.errorGrowth[0]!, 0);
  assert.ok(close(predictedLow, allLow), `${predictedLow} vs ${allLow}`);
  assert.ok(ranked[0]!.errorGrowth[0]! > 10 * Math.max(ranked[1]!.errorGrowth[0]!, sens.baseError), JSON.stringify(sens.layers));
});

test('quantize --activation-budget chooses 16-bit activations into profile.json, which reproduces the QDQ model byte for byte', async () => {
  const model = join(root, 'range-outlier.onnx');
  writeOnnxFile(rangeOutlierCnn(), model);
  const profileFile = join(root, 'a816.json');
  writeFileSync(
    profileFile,
    JSON.stringify({
      ...profile('channel'),
      activations: a816,
      requantization: { multiplierBits: 24, shiftRange: [0, 63] },
      accumulatorBits: 48,
    }),
  );
  const common = { model, calib: data, calibLimit: 12, batch: 4, calibration: 'minmax' as const };
  const first = await runQuantize({ ...common, profile: profileFile, activationBudget: '12', weightBudget: '6', output: join(root, 'ab') });
  const a = first.report.activationAllocation!;
  assert.ok(a, 'the report has the activation allocation');
  assert.ok(first.report.allocation, 'and the weight allocation');
  assert.equal(first.report.manifest?.options.activationBudget, '12');
  assert.ok(a.bitsPerElement <= 12 && a.bitsPerElement > 8, String(a.bitsPerElement));
  // Greedy from both ends of the measurements; the lower measured error is kept.
  assert.equal(a.measuredError, Math.min(a.ends!.fromHighest, a.ends!.fromLowest));
  const wide = a.layers.filter((l) => l.bits === 16).map((l) => l.name);
  assert.ok(wide.includes('relu1') && wide.length < a.layers.length, JSON.stringify(a.layers));
  assert.match(readFileSync(first.files.html, 'utf8'), /Activation allocation under a budget/);
  const written = parseProfile(JSON.parse(readFileSync(first.files.profile!, 'utf8')), 'profile.json');
  assert.deepEqual(
    written.overrides.filter((o) => o.activations).map((o) => [o.match, o.activations!.bits]),
    a.layers.map((l) => [l.name, l.bits]),
  );
  // 16-bit activations are in the QDQ model as uint16 pairs.
  const grids = Object.values(first.report.activations);
  assert.equal(grids.filter((g) => g.qmax === 65535).length, wide.length);
  const again = await runQuantize({ ...common, profile: first.files.profile!, output: join(root, 'ab-again') });
  assert.ok(readFileSync(first.files.model).equals(readFileSync(again.files.model)), 'the same QDQ model');

  await assert.rejects(
    runQuantize({ ...common, profile: profileFile, activationBudget: '7.5', output: join(root, 'ab-low') }),
    (e: Error) =>
      e instanceof QuantflowError &&
      e.message.endsWith(
        'a816.json: an activation budget of 7.5 bits per activation is below the minimum of 8 bits per activation, every activation at its lowest allowed width',
      ),
  );
  await assert.rejects(
    runQuantize({ ...common, profile: 'w8a8-channel', activationBudget: '9', output: join(root, 'ab-one') }),
    /--activation-budget chooses among the activation widths a profile allows, and w8a8-channel.json allows only 8: /,
  );
  assert.throws(() => parseActivationBudget('2MB'), /--activation-budget must be average bits per activation element, 8 to 16/);
});

/** The output error on the last 32 images, which calibration did not see, as the pipeline measures it. */
async function heldOutMeter(cal: Calibration, calib: Dataset): Promise<OutputErrorMeter> {
  const held = await decodeImages(
    cal.model,
    { ...calib, items: calib.items.slice(-32) },
    { limit: 32, preprocess: cal.preprocess.spec, batch: 8 },
  );
  return OutputErrorMeter.create(cal.model, held, { batch: 8 });
}

/** The widths of the allocation with the least predicted error within `budget` bits, by trying every one. */
function bruteForce(layers: AllocationLayer[], budget: number): number[] {
  let best: { error: number; widths: number[] } | undefined;
  for (let mask = 0; mask < 1 << layers.length; mask++) {
    const widths = layers.map((_, i) => (mask & (1 << i) ? 8 : 4));
    const bits = layers.reduce((s, l, i) => s + l.size * widths[i]!, 0);
    const error = layers.reduce((s, l, i) => s + (widths[i] === 4 ? l.errorGrowth[0]! : 0), 0);
    if (bits <= budget && (!best || error < best.error)) best = { error, widths };
  }
  return best!.widths;
}
