import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import type { Dataset } from '../src/data/dataset.js';
import { compareModels } from '../src/eval/compare.js';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { writeOnnxFile } from '../src/onnx/write.js';
import { loadShared } from './shared.js';

const root = mkdtempSync(join(tmpdir(), 'quantflow-compare-'));
after(() => rmSync(root, { recursive: true, force: true }));

/**
 * 'seg' [N, 3, 4, 4] = a 1x1 convolution of the image by `mix` (3x3), 'cls' [N, 3] its
 * spatial mean. With the identity, each pixel scores its own colour.
 */
function mixModel(mix: number[]): Model {
  const g = createGraph('mix');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['N', 3, 4, 4] });
  g.outputs.push({ name: 'seg', dataType: 'float32', shape: ['N', 3, 4, 4] }, { name: 'cls', dataType: 'float32', shape: ['N', 3] });
  g.initializers.set('w', floatTensor([3, 3, 1, 1], mix));
  g.initializers.set('flat', int64Tensor([2], [0, -1]));
  g.nodes.push(
    makeNode('Conv', ['x', 'w'], ['seg'], { kernel_shape: attr.ints([1, 1]) }),
    makeNode('GlobalAveragePool', ['seg'], ['pooled']),
    makeNode('Reshape', ['pooled', 'flat'], ['cls']),
  );
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

const IDENTITY = [1, 0, 0, 0, 1, 0, 0, 0, 1];
/** Channels 1 and 2 swapped: a green image scores blue and the other way round. */
const SWAPPED = [1, 0, 0, 0, 0, 1, 0, 1, 0];

const COLOURS = [
  { r: 255, g: 0, b: 0 },
  { r: 0, g: 255, b: 0 },
  { r: 0, g: 0, b: 255 },
  { r: 255, g: 0, b: 0 },
];

let dataset: Dataset;
const dataDir = join(root, 'data');
before(async () => {
  mkdirSync(dataDir);
  const items = await Promise.all(
    COLOURS.map(async (background, i) => {
      const file = `${i}.png`;
      await sharp({ create: { width: 6, height: 5, channels: 3, background } })
        .png()
        .toFile(join(dataDir, file));
      return { file, path: join(dataDir, file), label: i % 3 };
    }),
  );
  writeFileSync(join(dataDir, 'labels.csv'), ['file,label', ...items.map((it) => `${it.file},${it.label}`)].join('\n') + '\n');
  dataset = { dir: dataDir, items, labelled: true };
});

const close = (a: number | null | undefined, b: number, eps = 1e-4) =>
  assert.ok(a !== null && a !== undefined && Math.abs(a - b) < eps, `${a} vs ${b}`);

describe('compareModels', () => {
  it('measures a model against a perturbed copy with hand-computed figures', async () => {
    const progress: number[] = [];
    const r = await compareModels(mixModel(IDENTITY), mixModel(SWAPPED), dataset, {
      preprocess: { preset: 'raw' },
      batch: 3,
      onProgress: (d) => progress.push(d),
    });
    assert.equal(r.n, 4);
    assert.deepEqual(progress, [3, 4]);
    const [seg, cls] = r.outputs;
    assert.equal(seg!.kind, 'segment');
    // Red images agree, green and blue ones swap classes 1 and 2: half the pixels agree;
    // class 0 has IoU 1, classes 1 and 2 IoU 0.
    close(seg!.segment!.pixelAgreement, 0.5);
    close(seg!.segment!.meanIou, 1 / 3);
    // Signal 4·16·255² per channel-pixel, error 2·16·2·255²: SQNR 0 dB; cosine 32/64.
    close(seg!.sqnrDb, 0);
    close(seg!.cosine, 0.5);
    close(seg!.maxAbsError, 255, 1e-2);
    assert.equal(cls!.kind, 'classify');
    assert.equal(cls!.classify!.top1Agreement, 0.5);
    assert.deepEqual(cls!.classify!.labels, { float: { top1: 1, top5: 1 }, quantized: { top1: 0.5, top5: 1 } });
    assert.equal(r.detection, undefined);
  });

  it('--task dense thresholds the maps instead', async () => {
    const r = await compareModels(mixModel(IDENTITY), mixModel(SWAPPED), dataset, {
      preprocess: { preset: 'raw' },
      task: 'dense',
      threshold: 128,
      limit: 3,
    });
    // Red: the same 16 elements; green and blue: 16 vs 16 others each. I 16, U 16 + 32 + 32.
    close(r.outputs[0]!.dense!.iou, 0.2);
    assert.equal(r.outputs[1]!.kind, 'classify');
  });

  it('identical models agree everywhere', async () => {
    const r = await compareModels(mixModel(IDENTITY), mixModel(IDENTITY), dataset, { preprocess: { preset: 'unit' } });
    assert.equal(r.outputs[0]!.sqnrDb, null);
    assert.equal(r.outputs[0]!.segment!.meanIou, 1);
  });

  it('matches outputs by position when the names differ', async () => {
    const renamed = mixModel(SWAPPED);
    renamed.graph.nodes.push(makeNode('Identity', ['seg'], ['a']), makeNode('Identity', ['cls'], ['b']));
    renamed.graph.outputs = renamed.graph.outputs.map((o, i) => ({ ...o, name: ['a', 'b'][i]! }));
    const r = await compareModels(mixModel(IDENTITY), renamed, dataset, { preprocess: { preset: 'raw' } });
    assert.deepEqual(
      r.outputs.map((o) => [o.name, o.quantizedName]),
      [
        ['seg', 'a'],
        ['cls', 'b'],
      ],
    );
    close(r.outputs[0]!.segment!.pixelAgreement, 0.5);
  });

  it('refuses models whose output counts differ', async () => {
    const one = mixModel(IDENTITY);
    one.graph.outputs.pop();
    await assert.rejects(
      compareModels(mixModel(IDENTITY), one, dataset, { preprocess: { preset: 'raw' } }),
      /the float model has 2 output\(s\) and the quantized model 1/,
    );
  });
});

/** Per-box scores of a batch-1 image: its three channel means, [1, 3]. */
function channelMeans(g: ReturnType<typeof createGraph>, shape: number[], out: string): void {
  g.initializers.set('score_shape', int64Tensor([shape.length], shape));
  g.nodes.push(makeNode('GlobalAveragePool', ['x'], ['pooled']), makeNode('Reshape', ['pooled', 'score_shape'], [out]));
}

const BOXES = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5];
/** The third box moved right by 0.6: IoU 0.4 / 1.6 with the original. */
const MOVED = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4.6, 5, 5.6];

/** Three boxes scored by the image's channel means, through NonMaxSuppression; output: the selected indices. */
function nmsModel(boxes: number[]): Model {
  const g = createGraph('nms');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 3, 4, 4] });
  g.outputs.push({ name: 'selected', dataType: 'int64', shape: ['K', 3] });
  g.initializers.set('boxes', floatTensor([1, 3, 4], boxes));
  g.initializers.set('max', int64Tensor([1], [10]));
  g.initializers.set('iou', floatTensor([1], [0.5]));
  channelMeans(g, [1, 1, 3], 'scores');
  g.nodes.push(makeNode('NonMaxSuppression', ['boxes', 'scores', 'max', 'iou'], ['selected']));
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

/** TFLite_Detection_PostProcess's four outputs: three boxes of the given classes, scored by channel means, count 2. */
function postprocessModel(boxes: number[], classes: number[]): Model {
  const g = createGraph('postprocess');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 3, 4, 4] });
  g.outputs.push(
    { name: 'boxes', dataType: 'float32', shape: [1, 3, 4] },
    { name: 'classes', dataType: 'float32', shape: [1, 3] },
    { name: 'scores', dataType: 'float32', shape: [1, 3] },
    { name: 'count', dataType: 'float32', shape: [1] },
  );
  g.initializers.set('b', floatTensor([1, 3, 4], boxes));
  g.initializers.set('c', floatTensor([1, 3], classes));
  g.initializers.set('n', floatTensor([1], [2]));
  channelMeans(g, [1, 3], 'scores');
  g.nodes.push(makeNode('Identity', ['b'], ['boxes']), makeNode('Identity', ['c'], ['classes']), makeNode('Identity', ['n'], ['count']));
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

describe('compareModels on detectors', () => {
  let photos: Dataset;
  before(async () => {
    // Channel means 0.78, 0.59, 0.39 and 0.39, 0.59, 0.78: every box scores above 0.3.
    const colours = [
      { r: 200, g: 150, b: 100 },
      { r: 100, g: 150, b: 200 },
    ];
    const items = await Promise.all(
      colours.map(async (background, i) => {
        const path = join(root, `photo-${i}.png`);
        await sharp({ create: { width: 4, height: 4, channels: 3, background } })
          .png()
          .toFile(path);
        return { file: `photo-${i}.png`, path, label: 0 };
      }),
    );
    photos = { dir: root, items, labelled: true };
  });

  it('NonMaxSuppression: detections from its selected indices, boxes and scores', async () => {
    const r = await compareModels(nmsModel(BOXES), nmsModel(MOVED), photos, { preprocess: { preset: 'unit' } });
    const d = r.detection!;
    assert.equal(d.source, 'nms');
    assert.deepEqual(d.outputs, ['boxes', 'scores', 'selected']);
    // Per image: 3 float and 3 quantized detections, the moved box unmatched.
    assert.deepEqual([d.floatDetections, d.quantizedDetections, d.matched], [6, 6, 4]);
    close(d.precision, 2 / 3);
    close(d.recall, 2 / 3);
    assert.equal(r.outputs[0]!.kind, 'detect');
  });

  it('TFLite_Detection_PostProcess outputs: the first count detections, same class only', async () => {
    const r = await compareModels(postprocessModel(BOXES, [1, 2, 1]), postprocessModel(BOXES, [1, 1, 1]), photos, {
      preprocess: { preset: 'unit' },
    });
    const d = r.detection!;
    assert.equal(d.source, 'postprocess');
    // Count 2: boxes 0 and 1; box 1 changed class.
    assert.deepEqual([d.floatDetections, d.quantizedDetections, d.matched], [4, 4, 2]);
    assert.equal(d.precision, 0.5);
    assert.equal(r.outputs[1]!.sqnrDb! < 10, true);
    assert.equal(r.outputs[0]!.sqnrDb, null);
  });

  it('a score threshold above every score leaves nothing to match: precision and recall 1', async () => {
    const r = await compareModels(nmsModel(BOXES), nmsModel(MOVED), photos, { preprocess: { preset: 'unit' }, scoreThreshold: 0.9 });
    assert.deepEqual([r.detection!.floatDetections, r.detection!.precision, r.detection!.recall], [0, 1, 1]);
  });
});

describe('quantflow compare', () => {
  it('takes a quantize output folder, prints the table and writes JSON', async () => {
    const float = join(root, 'float.onnx');
    const folder = join(root, 'out');
    mkdirSync(folder);
    writeOnnxFile(mixModel(IDENTITY), float);
    writeOnnxFile(mixModel(SWAPPED), join(folder, 'model.qdq.onnx'));
    const json = join(root, 'r.json');
    const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [
      main,
      'compare',
      float,
      folder,
      '--data',
      dataDir,
      '--preset',
      'raw',
      '--json',
      json,
    ]);
    const lines = stdout.trim().split('\n');
    assert.match(lines[0]!, /^output\s+kind\s+SQNR dB\s+cosine\s+max abs err\s+task figures$/);
    assert.match(lines[2]!, /^seg\s+segment\s+-?0\.0\s+0\.5000\s+255\s+pixel agreement 50\.0%, mIoU 33\.3%$/);
    assert.match(lines[3]!, /^cls\s+classify\s+\S+\s+\S+\s+\S+\s+top-1 agreement 50\.0%; labels top-1 float 100\.0%, quantized 50\.0%$/);
    assert.equal(lines[4], "4 images; preprocessing: raw (preset 'raw' given)");
    const written = JSON.parse(readFileSync(json, 'utf8'));
    assert.equal(written.quantized, join(folder, 'model.qdq.onnx'));
    assert.equal(written.outputs[0].segment.pixelAgreement, 0.5);
  });

  it('a folder without model.qdq.onnx is a one-line error', async () => {
    const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
    const e = await promisify(execFile)(process.execPath, [main, 'compare', join(root, 'float.onnx'), dataDir, '--data', dataDir]).then(
      () => assert.fail('compare succeeded'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(e.code, 2);
    assert.equal(e.stderr, `quantflow: ${dataDir} is a folder without model.qdq.onnx: give a model file or a quantize output folder\n`);
  });
});

describe('compare on a real model', () => {
  it('MobileNetV2 against itself with a perturbed classifier agrees on most images', async (t) => {
    const shared = await loadShared('mobilenet_v2_1.0_224_int8.tflite', 'imagenet-val-650');
    if ('skip' in shared) return t.skip(shared.skip);
    const { model, data } = shared;
    // The perturbed copy: every weight of the last layer rounded to 3 decimals.
    const perturbed: Model = { ...model, graph: { ...model.graph, initializers: new Map(model.graph.initializers) } };
    const last = model.graph.nodes.filter((n) => n.opType === 'Conv' || n.opType === 'Gemm').at(-1)!;
    const w = model.graph.initializers.get(last.inputs[1]!)!;
    perturbed.graph.initializers.set(last.inputs[1]!, {
      ...w,
      data: Float32Array.from(w.data as Float32Array, (v) => Math.round(v * 1000) / 1000),
    });
    const r = await compareModels(model, perturbed, data[0]!, { limit: 8, batch: 4 });
    assert.equal(r.n, 8);
    const out = r.outputs[0]!;
    assert.equal(out.kind, 'classify');
    assert.ok(out.sqnrDb! > 10 && out.sqnrDb! < 80, `SQNR ${out.sqnrDb}`);
    assert.ok(out.classify!.top1Agreement >= 0.75);
    assert.equal(out.classify!.labelOffset, 1);
    assert.equal(out.classify!.labelled, 8);
  });
});
