import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor } from '../src/graph/tensor.js';
import { planQuantization } from '../src/quantization/plan.js';
import { loadProfile } from '../src/quantization/profile.js';
import { renderReportHtml } from '../src/report/html.js';
import { reportFilesIn, writeReportFiles } from '../src/report/files.js';
import { shortLabels } from '../src/report/markup.js';
import { niceTicks } from '../src/report/charts.js';
import { stepsPerEpoch } from '../src/report/sections/qft.js';
import { layerWeightStats } from '../src/report/weight-stats.js';
import type { QftReport, QuantizeReportJson } from '../src/report/types.js';
import { presetSpec } from '../src/data/preprocess.js';

/** A small WESS report: a depthwise layer with unequal channels, a projection, a classifier. */
function sampleReport(): QuantizeReportJson {
  const layer = (name: string, ranges: number[], shifts: number[], weightSqnrDb: number | null, outputSqnrDb: number) => {
    const s = Math.max(...ranges.map((r, c) => r * 2 ** shifts[c]!)) / 127;
    return {
      name,
      opType: 'Conv',
      weightBits: 8,
      granularity: 'shift',
      weightScales: shifts.map((k) => s / 2 ** k),
      shifts,
      weightSqnrDb,
      outputSqnrDb,
      outputActivation: { tensor: `${name}/out`, scale: 0.02, zeroPoint: 0 },
      channelRanges: ranges,
      weightCount: ranges.length * 9,
    };
  };
  return {
    model: 'models/net.tflite',
    profile: loadProfile('w8a8-shift'),
    calibration: { method: 'mse', images: 64, preset: 'inception', folder: 'data/calib' },
    biasCorrection: false,
    seconds: { calibration: 2.5, weights: 0.5, export: 0.01, evaluation: 1 },
    layers: [
      layer('Net/block_1/depthwise/relu', [4, 0.2, 0.06, 0.01], [0, 3, 6, 8], 45, 30),
      layer('Net/block_1/project/bn', [1, 0.8, 0.9, 0.7], [0, 0, 0, 0], null, 12.5),
      layer('Net/logits/<fc>', [0.3, 0.2], [0, 0], 40, 9),
    ],
    activations: {
      input: { scale: 0.0078, zeroPoint: 128, qmin: 0, qmax: 255 },
      'Net/block_1/depthwise/relu/out': { scale: 0.02, zeroPoint: 0, qmin: 0, qmax: 255 },
    },
  };
}

const sectionIds = (html: string) => [...html.matchAll(/<section id="([^"]+)"/g)].map((m) => m[1]);

test('the report renders every section that has data, in order, and nothing else', () => {
  const html = renderReportHtml(sampleReport());
  assert.deepEqual(sectionIds(html), ['summary', 'sqnr', 'wess', 'layers', 'activations']);
  assert.doesNotMatch(html, /Accuracy|Run manifest|Passes|TSE/);
  // Self-contained: no scripts, no external resources.
  assert.doesNotMatch(html, /<script|<link|src=|url\(|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
  assert.match(html, /3 quantized: 3 × 8-bit shift/);
  assert.match(html, /float32 360 B → 90 B/);
});

test('sections appear when extras carry their data', () => {
  const html = renderReportHtml(sampleReport(), {
    accuracy: {
      float: { data: 'val', n: 100, top1: 0.785, top5: 0.955 },
      quantized: { data: 'val', n: 100, top1: 0.754, top5: 0.932 },
    },
    buffers: {
      tiles: '7-row tiles',
      blocks: [{ block: 'se/mul', input: 'x', channels: 16, height: 56, width: 56, tile: [7, 56], se: 50176, tse: 6272 }],
      se: 50176,
      tse: 6272,
      reduction: 0.875,
    },
    passes: [
      {
        pass: 'fold-batchnorm',
        seconds: 0.01,
        nodes: { before: 6, after: 5 },
        parameters: { before: 143, after: 127 },
        opDelta: { BatchNormalization: -1 },
        initializers: { added: 0, removed: 4, changed: 2 },
      },
    ],
  });
  assert.deepEqual(sectionIds(html), ['summary', 'sqnr', 'wess', 'layers', 'buffers', 'activations', 'passes']);
  assert.match(html, /−3\.1 pt/);
  assert.match(html, /BatchNormalization −1/);
  assert.match(html, /−87\.5%/);
});

test('accuracy on different image sets shows no difference row', () => {
  const html = renderReportHtml(sampleReport(), {
    accuracy: { float: { data: 'a', n: 10, top1: 0.5, top5: 0.9 }, quantized: { data: 'b', n: 10, top1: 0.4, top5: 0.8 } },
  });
  assert.match(html, /<h3>Accuracy/);
  assert.doesNotMatch(html, /difference/);
});

test('WESS picture: picks the layer shifting helps most, or the one asked for; left out without channel ranges', () => {
  const report = sampleReport();
  let html = renderReportHtml(report);
  assert.match(html, /Layer <code title="Net\/block_1\/depthwise\/relu">block_1\/depthwise<\/code> \(4 output channels/);
  // Shifting lifts the three small channels of the depthwise layer above 16 levels.
  assert.match(html, /3 of 4 channels would use fewer than 16 of its levels; .* brings that to 0/);
  html = renderReportHtml(report, { wessLayer: 'Net/block_1/project/bn' });
  assert.match(html, /Layer <code title="Net\/block_1\/project\/bn">/);
  for (const l of report.layers) delete l.channelRanges;
  assert.ok(!sectionIds(renderReportHtml(report)).includes('wess'));
});

test('names are escaped, SQNR null renders as infinity, charts have bars', () => {
  const html = renderReportHtml(sampleReport());
  assert.match(html, /logits\/&#60;fc&#62;/);
  assert.doesNotMatch(html, /<fc>/);
  assert.match(html, /weight SQNR ∞ dB/);
  const svgs = html.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
  assert.ok(svgs.length >= 5, `${svgs.length} charts`);
  for (const s of svgs) assert.match(s, /class="bar"/);
  assert.ok(!/NaN|undefined/.test(html), 'no NaN or undefined leaks into the page');
});

/** Means summed in order, as QFT sums them. */
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

/** Three epochs of 5 steps, the last stopped after one step by a time budget; the loss falls 20x. */
function sampleQft(): QftReport {
  const stepLosses = [2, 1.4, 1, 0.8, 0.6, 0.45, 0.35, 0.3, 0.25, 0.2, 0.1];
  return {
    options: {
      epochs: 3,
      batch: 16,
      lrWeights: 0.001,
      lrScales: 0.001,
      loss: 'kl',
      seed: 0,
      schedule: 'cosine',
      train: ['weights', 'biases'],
    },
    steps: 11,
    seconds: 18.7,
    initialLoss: 2,
    epochLosses: [mean(stepLosses.slice(0, 5)), mean(stepLosses.slice(5, 10)), mean(stepLosses.slice(10))],
    stepLosses,
  };
}

const qftSectionOf = (html: string) => /<section id="qft">[\s\S]*?<\/section>/.exec(html)?.[0] ?? '';
const polylineXY = (html: string) =>
  /<polyline class="line" points="([^"]+)"/
    .exec(html)![1]!
    .split(' ')
    .map((p) => p.split(',').map(Number) as [number, number]);
const dotXY = (html: string) =>
  [...html.matchAll(/<circle class="dot" cx="([^"]+)" cy="([^"]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);

test('QFT section: loss per step as a line, epoch means as dots mid-epoch, a log axis over a decade, a table', () => {
  assert.ok(!sectionIds(renderReportHtml(sampleReport())).includes('qft'), 'absent without qft');
  const html = renderReportHtml({ ...sampleReport(), qft: sampleQft() });
  assert.deepEqual(sectionIds(html), ['summary', 'qft', 'sqnr', 'wess', 'layers', 'activations']);
  const qft = qftSectionOf(html);
  const line = polylineXY(qft);
  assert.equal(line.length, 11);
  assert.ok(line.every(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  for (let i = 1; i < line.length; i++)
    assert.ok(line[i]![0] > line[i - 1]![0] && line[i]![1] > line[i - 1]![1], 'steps left to right, a falling loss goes down');
  // Epochs [1..5], [6..10] and the cut one, [11]: dots at steps 3, 8 and 11.
  assert.deepEqual(
    dotXY(qft).map(([x]) => x),
    [line[2]![0], line[7]![0], line[10]![0]],
  );
  // On a log axis the last epoch's mean (one step, 0.1) sits exactly on its step.
  assert.equal(dotXY(qft)[2]![1], line[10]![1]);
  assert.match(qft, /loss, log scale/);
  assert.match(qft, /PTQ start 2/);
  assert.match(
    qft,
    /<td class="n">2<\/td><td class="n">0\.1<\/td><td class="n">−95\.0%<\/td><td class="n">3<\/td><td class="n">11<\/td><td class="n">18\.7<\/td><td class="n">1\.7<\/td>/,
  );
  assert.match(qft, /<td>train<\/td><td><code>\[&#34;weights&#34;,&#34;biases&#34;\]<\/code><\/td>/);
  assert.match(qft, /<td>loss<\/td><td><code>kl<\/code><\/td>/);
  assert.ok(!/NaN|undefined/.test(html), 'no NaN or undefined leaks into the page');
});

test('QFT section: a linear axis within a decade; a diverged step is left out of the line', () => {
  const stepLosses = [0.5, 0.45, NaN, 0.38];
  const html = renderReportHtml({
    ...sampleReport(),
    qft: { options: {}, steps: 4, seconds: 2, initialLoss: 0.5, epochLosses: [0.44], stepLosses },
  });
  const qft = qftSectionOf(html);
  assert.doesNotMatch(qft, /log scale|<h3>Options/);
  assert.equal(polylineXY(qft).length, 3);
  assert.equal(dotXY(qft).length, 1);
  assert.ok(!/NaN|undefined/.test(html));
  // One epoch of 4 steps: its mean sits at step 2.5, between the first and the (missing) third.
  const [[x1], [x2]] = polylineXY(qft);
  assert.ok(Math.abs(dotXY(qft)[0]![0] - (x1! + 1.5 * (x2! - x1!))) < 0.2);
});

test('stepsPerEpoch: equal epochs, a last epoch cut short, one epoch', () => {
  const q = sampleQft();
  assert.equal(stepsPerEpoch(q.stepLosses, q.epochLosses), 5);
  const full = q.stepLosses.slice(0, 10);
  assert.equal(stepsPerEpoch(full, [mean(full.slice(0, 5)), mean(full.slice(5))]), 5);
  assert.equal(stepsPerEpoch(full, [mean(full)]), 10);
});

test('writeReportFiles writes report.json and report.html atomically', () => {
  const dir = mkdtempSync(join(tmpdir(), 'report-html-'));
  try {
    const files = reportFilesIn(join(dir, 'out'));
    writeReportFiles(files, sampleReport());
    assert.equal(files.html, join(dir, 'out', 'report.html'));
    assert.match(readFileSync(files.html, 'utf8'), /^<!doctype html>/);
    assert.deepEqual(readdirSync(join(dir, 'out')).sort(), ['report.html', 'report.json']);
    assert.ok(!existsSync(`${files.html}.tmp-${process.pid}`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('layerWeightStats: per-channel max |w| along the output-channel axis of Conv and Gemm', () => {
  const g = createGraph('stats');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 1, 2, 2] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: [1, 2] });
  g.initializers.set('w', floatTensor([2, 1, 1, 2], [0.5, -3, 0, 0.25]));
  // Gemm without transB: [in, out], channels along axis 1.
  g.initializers.set('fc', floatTensor([4, 2], [1, -2, 0, 0, 0, 0, -7, 0.5]));
  g.initializers.set('shape', { dataType: 'int64', dims: [2], data: BigInt64Array.of(1n, -1n) });
  g.nodes.push(
    makeNode('Conv', ['x', 'w'], ['c'], { kernel_shape: attr.ints([1, 2]) }),
    makeNode('Reshape', ['c', 'shape'], ['f']),
    makeNode('Gemm', ['f', 'fc'], ['y']),
  );
  const model = { graph: g, opset: 17, producerName: 't', metadata: {} };
  const stats = layerWeightStats(model, planQuantization(g));
  assert.deepEqual(
    [...stats.values()],
    [
      { channelRanges: [3, 0.25], weightCount: 4 },
      { channelRanges: [7, 2], weightCount: 8 },
    ],
  );
});

test('shortLabels drops the shared prefix and keeps names unique', () => {
  assert.deepEqual(shortLabels(['M/a/x/1', 'M/a/y/1', 'M/b/x/1', 'M/c']), ['a/x', 'a/y', 'b', 'c']);
  assert.deepEqual(shortLabels(['same', 'same']), ['same', 'same']);
  assert.deepEqual(shortLabels(['M/only']), ['only']);
  assert.deepEqual(shortLabels([]), []);
});

test('niceTicks spans the range with round steps', () => {
  assert.deepEqual(niceTicks(0, 47.3), [0, 10, 20, 30, 40]);
  assert.deepEqual(niceTicks(-2, 3, 5), [-2, -1, 0, 1, 2, 3]);
  assert.deepEqual(niceTicks(5, 5), [5]);
});

test('compare section: a row per output with the figures of its kind, detection below; null SQNR is infinity', () => {
  const report: QuantizeReportJson = {
    ...sampleReport(),
    compare: {
      data: 'data/<faces>',
      n: 40,
      preprocess: presetSpec('inception'),
      preset: 'inception',
      presetReason: 'given explicitly',
      skipped: ['bad.jpg'],
      simulate: true,
      outputs: [
        {
          name: 'seg',
          quantizedName: 'seg',
          kind: 'segment',
          sqnrDb: 21.25,
          cosine: 0.99123,
          maxAbsError: 0.5,
          segment: { pixelAgreement: 0.955, meanIou: 0.8, classIou: { 0: 0.9, 3: 0.7 } },
        },
        {
          name: 'cls',
          quantizedName: 'cls',
          kind: 'classify',
          sqnrDb: null,
          cosine: 1,
          maxAbsError: 0,
          classify: { top1Agreement: 1, labelled: 0, labelOffset: 0 },
        },
        { name: 'boxes', quantizedName: 'boxes', kind: 'detect' },
      ],
      detection: {
        scoreThreshold: 0.3,
        iouThreshold: 0.5,
        precision: 0.9,
        recall: 0.75,
        matched: 9,
        floatDetections: 12,
        quantizedDetections: 10,
        source: 'postprocess',
        outputs: ['boxes'],
      },
    },
  };
  const html = renderReportHtml(report);
  assert.deepEqual(sectionIds(html), ['summary', 'compare', 'sqnr', 'wess', 'layers', 'activations']);
  assert.match(html, /same 40 images of <code>data\/&#60;faces&#62;<\/code>.*1 unreadable image\(s\) skipped/);
  assert.match(
    html,
    /<td><code>seg<\/code><\/td><td>segment<\/td><td class="n">21\.3<\/td><td class="n">0\.9912<\/td><td class="n">0\.5<\/td><td>pixel agreement 95\.5%, mean IoU 80\.0% over 2 classes<\/td>/,
  );
  assert.match(
    html,
    /<td><code>cls<\/code><\/td><td>classify<\/td><td class="n">∞<\/td><td class="n">1\.0000<\/td><td class="n">0<\/td><td>top-1 agreement 100\.0%<\/td>/,
  );
  assert.match(html, /<td><code>boxes<\/code><\/td><td>detect<\/td><td class="n">–<\/td>/);
  assert.match(
    html,
    /Precision <b>90\.0%<\/b>, recall <b>75\.0%<\/b>: 9 of the quantized model's 10 detections match one of the float model's 12/,
  );
});
