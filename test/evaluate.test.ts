import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadDataset, type Dataset } from '../src/data/dataset.js';
import { evaluate } from '../src/eval/evaluate.js';
import { compareWithReference } from '../src/eval/reference.js';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor } from '../src/graph/tensor.js';
import type { Dim, Model } from '../src/graph/types.js';
import { importTflite } from '../src/import/tflite/import.js';
import { QuantflowError } from '../src/util/errors.js';
import { sharedPath } from './shared.js';

const root = mkdtempSync(join(tmpdir(), 'quantflow-evaluate-'));
after(() => rmSync(root, { recursive: true, force: true }));

/**
 * Scores = channel means (GlobalAveragePool, Flatten) times a 3xK matrix whose column
 * `offset + c` is channel c, so a solid-colour image scores highest on its colour's class.
 */
function colourModel(classes: number, offset = 0, batch: Dim = 'N', size = 8): Model {
  const g = createGraph('colours');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [batch, 3, size, size] });
  g.outputs.push({ name: 'scores', dataType: 'float32', shape: [batch, classes] });
  const w = new Float32Array(3 * classes);
  for (let c = 0; c < 3; c++) w[c * classes + offset + c] = 1;
  // Lower scores for the other classes, in a known order for top-5: column k gets -k/1000.
  for (let k = 0; k < classes; k++) for (let c = 0; c < 3; c++) if (k !== offset + c) w[c * classes + k] = -k / 1000;
  g.initializers.set('w', floatTensor([3, classes], w));
  g.nodes.push(
    makeNode('GlobalAveragePool', ['x'], ['pooled']),
    makeNode('Flatten', ['pooled'], ['flat'], { axis: attr.int(1) }),
    makeNode('Gemm', ['flat', 'w'], ['scores']),
  );
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

const COLOURS = [
  { r: 255, g: 0, b: 0 },
  { r: 0, g: 255, b: 0 },
  { r: 0, g: 0, b: 255 },
];

/** Solid images: image i has colour i % 3; `labels[i]` is its label. */
async function colourDataset(name: string, labels: number[], broken: number[] = []): Promise<Dataset> {
  const items = await Promise.all(
    labels.map(async (label, i) => {
      const file = `${name}-${i}.png`;
      const path = join(root, file);
      if (broken.includes(i)) writeFileSync(path, 'garbage');
      else
        await sharp({ create: { width: 12, height: 10, channels: 3, background: COLOURS[i % 3]! } })
          .png()
          .toFile(path);
      return { file, path, label };
    }),
  );
  return { dir: root, items, labelled: true };
}

describe('evaluate', () => {
  let seven: Dataset;
  before(async () => {
    // Labels 0,1,2,0,1,2,1: the last one is wrong (a red image labelled 1).
    seven = await colourDataset('seven', [0, 1, 2, 0, 1, 2, 1]);
  });

  it('scores top-1 and top-5 over batches, the last one partial', async () => {
    const progress: [number, number][] = [];
    const r = await evaluate(colourModel(10), seven, {
      preprocess: { preset: 'raw' },
      batch: 3,
      onProgress: (d, t) => progress.push([d, t]),
    });
    assert.equal(r.n, 7);
    assert.equal(r.top1, 6 / 7);
    // Red image labelled 1: class 1 (-1/1000) ranks second, inside the top 5.
    assert.equal(r.top5, 1);
    assert.equal(r.labelOffset, 0);
    assert.equal(r.preset, 'raw');
    assert.deepEqual(progress, [
      [3, 7],
      [6, 7],
      [7, 7],
    ]);
    assert.deepEqual(r.predictions[6], { file: 'seven-6.png', label: 1, top5: [0, 1, 2, 3, 4] });
    assert.deepEqual(
      r.predictions.map((p) => p.top5[0]),
      [0, 1, 2, 0, 1, 2, 0],
    );
    assert.ok(r.imagesPerSecond > 0);
    assert.deepEqual(r.skipped, []);
  });

  it('drops a background column when a 1001-way model scores labels below 1000', async () => {
    const r = await evaluate(colourModel(1001, 1), seven, { preprocess: { preset: 'raw' }, batch: 4 });
    assert.equal(r.labelOffset, 1);
    assert.equal(r.top1, 6 / 7);
    assert.deepEqual(r.predictions[0]!.top5, [0, 1, 2, 3, 4]);
  });

  it('honours limit and a model with a fixed batch size', async () => {
    const r = await evaluate(colourModel(3, 0, 2), seven, { preprocess: { preset: 'unit' }, batch: 32, limit: 5 });
    assert.equal(r.n, 5);
    assert.equal(r.top1, 1);
    assert.equal(r.predictions[0]!.top5.length, 3);
  });

  it('chooses the preset from the model when none is given', async () => {
    const r = await evaluate(colourModel(3), seven, { limit: 3 });
    assert.equal(r.preset, 'imagenet-torch');
    assert.equal(r.top1, 1);
    assert.match(r.presetReason, /ONNX/);
  });

  it('fails on an unreadable image, naming it', async () => {
    const ds = await colourDataset('bad', [0, 1, 2, 0, 1], [3]);
    await assert.rejects(evaluate(colourModel(3), ds, { preprocess: { preset: 'raw' }, batch: 2 }), (e: unknown) => {
      assert.ok(e instanceof QuantflowError);
      assert.match(e.message, /cannot decode image '.*bad-3\.png'/);
      return true;
    });
  });

  it('skips unreadable images when asked', async () => {
    const ds = await colourDataset('skip', [0, 1, 2, 0, 1, 2], [1, 4, 5]);
    const r = await evaluate(colourModel(3), ds, { preprocess: { preset: 'raw' }, batch: 2, skipBadImages: true });
    assert.deepEqual(r.skipped, ['skip-1.png', 'skip-4.png', 'skip-5.png']);
    assert.equal(r.n, 3);
    assert.equal(r.top1, 1);
    assert.deepEqual(
      r.predictions.map((p) => p.file),
      ['skip-0.png', 'skip-2.png', 'skip-3.png'],
    );
  });

  it('rejects a model whose input is not [N, C, H, W] with fixed C, H and W', async () => {
    const m = colourModel(3);
    m.graph.inputs[0]!.shape = ['N', 3, 'H', 8];
    await assert.rejects(
      evaluate(m, seven),
      /wrong input shape: input 'x' has shape \[N, 3, H, 8\], expected \[N, C, H, W\] with fixed C, H and W/,
    );
    const two = colourModel(3);
    two.graph.inputs.push({ name: 'y', dataType: 'float32', shape: ['N', 3, 4, 4] });
    await assert.rejects(
      evaluate(two, seven),
      /^QuantflowError: input 'y' has shape \[N, 3, 4, 4\], input 'x' \[N, 3, 8, 8\]: .* must agree$/,
    );
  });

  it('feeds the same image to every image input', async () => {
    // scores = colour means of x + colour means of y: twice the one-input scores.
    const m = colourModel(3);
    m.graph.inputs.push({ name: 'y', dataType: 'float32', shape: ['N', 3, 8, 8] });
    m.graph.nodes.unshift(makeNode('Add', ['x', 'y'], ['xy']));
    m.graph.nodes[1]!.inputs = ['xy'];
    const r = await evaluate(m, seven, { preprocess: { preset: 'raw' }, batch: 4 });
    assert.equal(r.top1, 6 / 7);
  });

  it('runs on an unlabelled folder: predictions without top-1', async () => {
    const unlabelled = { ...seven, items: seven.items.map(({ file, path }) => ({ file, path })), labelled: false };
    const r = await evaluate(colourModel(3), unlabelled, { preprocess: { preset: 'raw' } });
    assert.equal(r.labelled, false);
    assert.equal(r.n, 7);
    assert.deepEqual(r.predictions[6], { file: 'seven-6.png', top5: [0, 1, 2] });
  });

  it('feeds a 1-channel model grayscale', async () => {
    // One input plane, one score: decodeImage's tests check the gray values themselves.
    const g = createGraph('gray');
    g.inputs.push({ name: 'x', dataType: 'float32', shape: ['N', 1, 8, 8] });
    g.outputs.push({ name: 'scores', dataType: 'float32', shape: ['N', 1] });
    g.nodes.push(makeNode('GlobalAveragePool', ['x'], ['pooled']), makeNode('Flatten', ['pooled'], ['scores'], { axis: attr.int(1) }));
    const m: Model = { graph: g, opset: 17, producerName: 'test', metadata: {} };
    const unlabelled = { ...seven, items: seven.items.map(({ file, path }) => ({ file, path })), labelled: false };
    const r = await evaluate(m, unlabelled, { preprocess: { preset: 'raw' }, limit: 3 });
    assert.match(r.presetReason, /grayscale for its 1-channel input/);
    assert.equal(r.preprocess.channels, 'gray');
    assert.equal(r.predictions.length, 3);
    await assert.rejects(
      evaluate(m, seven, { preprocess: { preset: 'raw', channels: 'bgr' } }),
      /channels 'bgr' gives 3 planes but the model's image input has 1 channel/,
    );
  });

  it('rejects labels the model has no score for', async () => {
    const ds = await colourDataset('range', [0, 1, 5]);
    await assert.rejects(
      evaluate(colourModel(3), ds, { preprocess: { preset: 'raw' } }),
      /dataset label 5 is out of range for a model with 3 output classes/,
    );
  });
});

describe('evaluate on a real model', () => {
  const model = sharedPath('models', 'mobilenet_v1_0.25_224_float.tflite');
  const data = sharedPath('data', 'imagenet-val-650');
  const reference = sharedPath('reference', 'mobilenet_v1_0.25_224_float__imagenet-val-650.csv');
  const skip = model.skip || data.skip || reference.skip;

  it('mobilenet_v1_0.25 float agrees with the reference runtime on >= 99% of 100 images', { skip, timeout: 60_000 }, async () => {
    const m = importTflite(readFileSync(model.path), 'mobilenet_v1_0.25_224_float.tflite');
    const r = await evaluate(m, await loadDataset(data.path), { limit: 100 });
    assert.equal(r.preset, 'inception');
    assert.equal(r.labelOffset, 1);
    const { n, top1Agreement } = compareWithReference(r.predictions, reference.path);
    assert.equal(n, 100);
    assert.ok(top1Agreement >= 0.99, `top-1 agreement ${top1Agreement}`);
  });
});
