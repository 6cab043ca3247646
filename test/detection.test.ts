import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { encode as flexEncode } from 'flatbuffers/mjs/flexbuffers.js';
import { cutBefore } from '../src/graph/cut.js';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { inferShapes } from '../src/graph/shapes.js';
import { int64Tensor } from '../src/graph/tensor.js';
import type { Model, TensorData } from '../src/graph/types.js';
import { validateModel } from '../src/graph/validate.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { importTflite } from '../src/import/tflite/import.js';
import { float32Below } from '../src/import/tflite/ops/detection.js';
import { runModel } from '../src/runtime/session.js';
import { QuantflowError } from '../src/util/errors.js';
import { sharedPath } from './shared.js';
import { OP, TfliteBuilder } from './tflite-builder.js';

const f32 = (values: number[]) => Array.from(Float32Array.from(values));

interface Detections {
  boxes: number[];
  classes: number[];
  scores: number[];
  count: number[];
  dims: number[][];
}

/**
 * A TFLite model holding only TFLite_Detection_PostProcess: encodings and scores are graph
 * inputs, anchors a constant. Runs it on one image.
 */
async function postProcess(
  options: Record<string, number | boolean>,
  anchors: number[][],
  encodings: number[][],
  scores: number[][],
): Promise<Detections> {
  const n = anchors.length;
  const classes = scores[0]!.length;
  const b = new TfliteBuilder();
  const enc = b.activation('box_encodings', [1, n, 4]);
  const cls = b.activation('class_predictions', [1, n, classes]);
  const anc = b.constant('anchors', [n, 4], anchors.flat());
  const outs = ['boxes', 'classes', 'scores', 'count'].map((name) => b.activation(name, []));
  b.custom('TFLite_Detection_PostProcess', [enc, cls, anc], outs, flexEncode(options));
  const model = await prepareModel(importTflite(b.build([enc, cls], outs), 'post.tflite'));
  const result = await runModel(model, {
    box_encodings: { dataType: 'float32', dims: [1, n, 4], data: Float32Array.from(encodings.flat()) },
    class_predictions: { dataType: 'float32', dims: [1, n, classes], data: Float32Array.from(scores.flat()) },
  });
  const [boxes, classIds, detScores, count] = model.graph.outputs.map((o) => result[o.name]!) as TensorData[];
  const list = (t: TensorData) => Array.from(t.data as Float32Array);
  return {
    boxes: list(boxes!),
    classes: list(classIds!),
    scores: list(detScores!),
    count: list(count!),
    dims: [boxes!, classIds!, detScores!, count!].map((t) => t.dims),
  };
}

function assertClose(actual: number[], expected: number[], tolerance = 1e-6): void {
  assert.equal(actual.length, expected.length, `length ${actual.length} vs ${expected.length}`);
  actual.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) <= tolerance, `[${i}] ${v} vs ${expected[i]}`));
}

const SCALES = { y_scale: 10, x_scale: 10, h_scale: 5, w_scale: 5 };

test('box decoding against anchors, with the scales', async () => {
  const anchors = [
    [0.5, 0.5, 0.2, 0.4],
    [0.2, 0.3, 0.1, 0.1],
    [0.8, 0.6, 0.2, 0.2],
  ];
  // ty/10·h + yc, tx/10·w + xc, ½·exp(th/5)·h, ½·exp(tw/5)·w.
  const encodings = [
    [0, 0, 0, 0],
    [5, -10, 5 * Math.LN2, 0],
    [-2, 4, 0, -5 * Math.LN2],
  ];
  const scores = [
    [0, 0.9, 0],
    [0, 0, 0.8],
    [0, 0.7, 0],
  ];
  const opts = {
    max_detections: 3,
    max_classes_per_detection: 1,
    nms_score_threshold: 0.5,
    nms_iou_threshold: 0.5,
    num_classes: 2,
    ...SCALES,
  };
  const r = await postProcess(opts, anchors, encodings, scores);
  assert.deepEqual(r.dims, [[1, 3, 4], [1, 3], [1, 3], [1]]);
  // Box 2: centre (0.8 - 0.04, 0.6 + 0.08), half sizes 0.1 and 0.05.
  assertClose(r.boxes, [0.4, 0.3, 0.6, 0.7, 0.15, 0.15, 0.35, 0.25, 0.66, 0.63, 0.86, 0.73]);
  assert.deepEqual(r.classes, [0, 1, 0]);
  assert.deepEqual(r.scores, f32([0.9, 0.8, 0.7]));
  assert.deepEqual(r.count, [3]);
});

// Boxes as anchors with zero encodings: A and B overlap at IoU 0.9, C, D and E stand apart.
const BOXES = [
  [0.5, 0.5, 1, 1],
  [0.5, 0.45, 1, 0.9],
  [2.5, 2.5, 1, 1],
  [5.5, 5.5, 1, 1],
  [8.5, 8.5, 1, 1],
];
const ZERO_ENCODINGS = BOXES.map(() => [0, 0, 0, 0]);
// Background first, then three classes. D's best score sits exactly on the threshold (kept), E's just below.
const SCORES = [
  [0.5, 0.1, 0.9, 0.2],
  [0.5, 0.8, 0.05, 0],
  [0.5, 0.7, 0, 0.6],
  [0.5, 0.3, 0, 0],
  [0.5, 0.29, 0, 0],
];
const BOX = { A: [0, 0, 1, 1], B: [0, 0, 1, 0.9], C: [2, 2, 3, 3], D: [5, 5, 6, 6] };
const NMS = { nms_score_threshold: 0.3, nms_iou_threshold: 0.5, num_classes: 3, y_scale: 1, x_scale: 1, h_scale: 1, w_scale: 1 };

test('fast NMS: class-agnostic suppression, score threshold inclusive, zeros past the count', async () => {
  const r = await postProcess({ ...NMS, max_detections: 4, max_classes_per_detection: 1 }, BOXES, ZERO_ENCODINGS, SCORES);
  assertClose(r.boxes, [...BOX.A, ...BOX.C, ...BOX.D, 0, 0, 0, 0]);
  assert.deepEqual(r.classes, [1, 0, 0, 0]);
  assert.deepEqual(r.scores, f32([0.9, 0.7, 0.3, 0]));
  assert.deepEqual(r.count, [3]);
});

test('fast NMS with two classes per detection repeats each box', async () => {
  const r = await postProcess({ ...NMS, max_detections: 2, max_classes_per_detection: 2 }, BOXES, ZERO_ENCODINGS, SCORES);
  assert.deepEqual(r.dims, [[1, 4, 4], [1, 4], [1, 4], [1]]);
  assertClose(r.boxes, [...BOX.A, ...BOX.A, ...BOX.C, ...BOX.C]);
  assert.deepEqual(r.classes, [1, 2, 0, 2]);
  assert.deepEqual(r.scores, f32([0.9, 0.2, 0.7, 0.6]));
  assert.deepEqual(r.count, [2]);
});

test('regular NMS: per class, detections_per_class, best over all classes', async () => {
  const opts = { ...NMS, max_detections: 4, max_classes_per_detection: 1, detections_per_class: 2, use_regular_nms: true };
  const r = await postProcess(opts, BOXES, ZERO_ENCODINGS, SCORES);
  // Class 0 keeps B and C (D's 0.3 is third), class 1 keeps A, class 2 keeps C.
  assertClose(r.boxes, [...BOX.A, ...BOX.B, ...BOX.C, ...BOX.C]);
  assert.deepEqual(r.classes, [1, 0, 0, 2]);
  assert.deepEqual(r.scores, f32([0.9, 0.8, 0.7, 0.6]));
  assert.deepEqual(r.count, [4]);
});

test('nothing above the threshold: all zeros and a count of 0', async () => {
  const r = await postProcess(
    { ...NMS, nms_score_threshold: 0.95, max_detections: 2, max_classes_per_detection: 1 },
    BOXES,
    ZERO_ENCODINGS,
    SCORES,
  );
  assert.deepEqual(r.boxes, new Array(8).fill(0));
  assert.deepEqual(r.scores, [0, 0]);
  assert.deepEqual(r.count, [0]);
});

test('float32Below is the next float32 down', () => {
  assert.equal(float32Below(1), 1 - 2 ** -24);
  assert.equal(float32Below(-1), -1 - 2 ** -23);
  assert.ok(float32Below(0) < 0 && float32Below(0) > -1e-44);
  assert.equal(float32Below(Math.fround(0.3)), Math.fround(0.3) - 2 ** -25);
});

test('missing or bad post-processing options are named', () => {
  const b = new TfliteBuilder();
  const enc = b.activation('e', [1, 2, 4]);
  const cls = b.activation('c', [1, 2, 3]);
  const anc = b.constant('a', [2, 4], new Array(8).fill(0.5));
  const outs = [0, 1, 2, 3].map((i) => b.activation(`o${i}`, []));
  b.custom('TFLite_Detection_PostProcess', [enc, cls, anc], outs, flexEncode({ max_detections: 3, num_classes: 2 }));
  assert.throws(
    () => importTflite(b.build([enc, cls], outs), 'p.tflite'),
    /TFLite_Detection_PostProcess \(operator 0 of subgraph 0\): custom option 'nms_iou_threshold' is missing/,
  );
});

/** x → RELU → r → MyOp(r, w) → y → LOGISTIC → z, and r → RELU6 → s (a second output). */
function customOpModel(): Uint8Array {
  const b = new TfliteBuilder();
  const x = b.activation('x', [1, 3]);
  const r = b.activation('r', [1, 3]);
  const w = b.constant('w', [3], [1, 2, 3]);
  const y = b.activation('y', [1, 3]);
  const z = b.activation('z', [1, 3]);
  const s = b.activation('s', [1, 3]);
  b.op(OP.RELU, [x], [r]).custom('MyOp', [r, w], [y]).op(OP.LOGISTIC, [y], [z]).op(OP.RELU6, [r], [s]);
  return b.build([x], [z, s]);
}

test('TFLite --cut-before: an unknown custom op is refused, then cut off by kind or by tensor', async () => {
  const bytes = customOpModel();
  assert.throws(
    () => importTflite(bytes, 'c.tflite'),
    (e: unknown) => {
      assert.ok(e instanceof QuantflowError);
      assert.match(e.message, /^c\.tflite: unsupported TFLite custom operator "MyOp" \(operator 1 of subgraph 0\); pass --cut-before MyOp/);
      return true;
    },
  );
  const byKind = importTflite(bytes, 'c.tflite', { cutBefore: 'MyOp' });
  validateModel(byKind);
  assert.deepEqual(byKind.graph.nodes.map((n) => n.opType).sort(), ['Clip', 'Relu']);
  const x = { dataType: 'float32' as const, dims: [1, 3], data: Float32Array.from([-1, 2, 7]) };
  const out = await runModel(byKind, { x });
  // The original output s (not after the cut) stays first; MyOp's activation input r follows, its constant does not.
  assert.deepEqual(
    byKind.graph.outputs.map((o) => o.name),
    ['s', 'r'],
  );
  assert.deepEqual(Array.from(out['s']!.data as Float32Array), [0, 2, 6]);
  assert.deepEqual(Array.from(out['r']!.data as Float32Array), [0, 2, 7]);

  // A tensor: it becomes the output and every operator reading it, directly or not, goes.
  const byTensor = importTflite(bytes, 'c.tflite', { cutBefore: 'r' });
  assert.deepEqual(
    byTensor.graph.outputs.map((o) => o.name),
    ['r'],
  );
  assert.deepEqual(
    byTensor.graph.nodes.map((n) => n.opType),
    ['Relu'],
  );

  assert.throws(() => importTflite(bytes, 'c.tflite', { cutBefore: 'nope' }), /--cut-before 'nope': no operator kind or tensor/);
});

/** x → Relu → a → Frobnicate (custom domain) → b → Sigmoid → y, and a → Neg → z. */
function onnxWithCustomOp(): Model {
  const g = createGraph('g');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['batch', 4] });
  g.nodes.push(
    makeNode('Relu', ['x'], ['a'], {}, 'relu'),
    { ...makeNode('Frobnicate', ['a', 'k'], ['b'], {}, 'frob'), domain: 'com.example' },
    makeNode('Sigmoid', ['b'], ['y'], {}, 'sigmoid'),
    makeNode('Neg', ['a'], ['z'], {}, 'neg'),
  );
  g.initializers.set('k', int64Tensor([1], [3]));
  g.outputs.push({ name: 'y', dataType: 'float32' }, { name: 'z', dataType: 'float32', shape: ['batch', 4] });
  return { graph: g, opset: 17, producerName: 'test', extraOpsets: { 'com.example': 1 }, metadata: {} };
}

test('ONNX --cut-before: by operator type, node name or value', () => {
  assert.throws(
    () => validateModel(onnxWithCustomOp()),
    /operator 'Frobnicate' \(domain 'com.example'\) is not supported.*pass --cut-before Frobnicate/,
  );

  const byType = onnxWithCustomOp();
  cutBefore(byType, 'Frobnicate', 'm.onnx');
  validateModel(byType);
  assert.deepEqual(
    byType.graph.nodes.map((n) => n.opType),
    ['Relu', 'Neg'],
  );
  assert.deepEqual(byType.graph.outputs, [
    { name: 'z', dataType: 'float32', shape: ['batch', 4] },
    { name: 'a', dataType: 'float32', shape: ['batch', 4] },
  ]);
  assert.equal(byType.graph.initializers.size, 0);

  const byName = onnxWithCustomOp();
  cutBefore(byName, 'frob', 'm.onnx');
  assert.deepEqual(
    byName.graph.outputs.map((o) => o.name),
    ['z', 'a'],
  );

  const byValue = onnxWithCustomOp();
  cutBefore(byValue, 'a', 'm.onnx');
  assert.deepEqual(
    byValue.graph.nodes.map((n) => n.opType),
    ['Relu'],
  );
  assert.deepEqual(
    byValue.graph.outputs.map((o) => o.name),
    ['a'],
  );

  assert.throws(() => cutBefore(onnxWithCustomOp(), 'zz', 'm.onnx'), /^QuantflowError: m\.onnx: --cut-before 'zz'/);
});

test('TopK, GatherElements, ScatterElements and NonMaxSuppression shapes', () => {
  const g = createGraph('s');
  g.inputs.push(
    { name: 'x', dataType: 'float32', shape: ['batch', 7] },
    { name: 'boxes', dataType: 'float32', shape: ['batch', 7, 4] },
    { name: 'scores', dataType: 'float32', shape: ['batch', 2, 7] },
  );
  g.initializers.set('k', int64Tensor([1], [3]));
  g.nodes.push(
    makeNode('TopK', ['x', 'k'], ['v', 'i'], { axis: attr.int(1) }),
    makeNode('GatherElements', ['x', 'i'], ['g'], { axis: attr.int(1) }),
    makeNode('ScatterElements', ['x', 'i', 'v'], ['s'], { axis: attr.int(1) }),
    makeNode('NonMaxSuppression', ['boxes', 'scores'], ['sel']),
  );
  const m: Model = { graph: g, opset: 17, producerName: 't', metadata: {} };
  inferShapes(m);
  const info = (name: string) => {
    const v = m.graph.valueInfo.get(name)!;
    return [v.dataType, v.shape];
  };
  assert.deepEqual(info('v'), ['float32', ['batch', 3]]);
  assert.deepEqual(info('i'), ['int64', ['batch', 3]]);
  assert.deepEqual(info('g'), ['float32', ['batch', 3]]);
  assert.deepEqual(info('s'), ['float32', ['batch', 7]]);
  assert.deepEqual(info('sel'), ['int64', [null, 3]]);

  g.initializers.set('k', int64Tensor([1], [8]));
  assert.throws(() => inferShapes(m), /TopK\): k = 8 is out of range for axis 1 of size 7/);
  g.initializers.set('k', int64Tensor([1], [3]));
  g.nodes[1] = makeNode('GatherElements', ['x', 'k'], ['g'], { axis: attr.int(1) });
  assert.throws(() => inferShapes(m), /indices of shape \[1\] must have the rank of data \[batch, 7\]/);
  g.nodes[1] = makeNode('GatherElements', ['x', 'i'], ['g'], { axis: attr.int(1) });
  g.inputs[2] = { name: 'scores', dataType: 'float32', shape: ['batch', 2, 6] };
  assert.throws(() => inferShapes(m), /disagree on batch or box count/);
});

test('TopK and GatherElements compute the known answer in onnxruntime', async () => {
  const g = createGraph('r');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [2, 4] });
  g.initializers.set('k', int64Tensor([1], [2]));
  g.nodes.push(
    makeNode('TopK', ['x', 'k'], ['v', 'i'], { axis: attr.int(1) }),
    makeNode('GatherElements', ['x', 'i'], ['g'], { axis: attr.int(1) }),
  );
  g.outputs.push({ name: 'v', dataType: 'float32' }, { name: 'i', dataType: 'int64' }, { name: 'g', dataType: 'float32' });
  const out = await runModel(
    { graph: g, opset: 17, producerName: 't', metadata: {} },
    {
      x: { dataType: 'float32', dims: [2, 4], data: Float32Array.from([1, 5, 3, 5, 9, 0, 2, 4]) },
    },
  );
  assert.deepEqual(Array.from(out['v']!.data as Float32Array), [5, 5, 9, 4]);
  // Equal values: the lower index first, as TFLite's stable sort.
  assert.deepEqual(Array.from(out['i']!.data as BigInt64Array, Number), [1, 3, 0, 3]);
  assert.deepEqual(Array.from(out['g']!.data as Float32Array), [5, 5, 9, 4]);
});

const SSD = 'ssd_mobilenet_v1_coco_uint8.tflite';
const ssdModel = sharedPath('models', SSD);
const coco = sharedPath('data', 'coco-val-100');

test('SSD MobileNetV1: imports with its four outputs and finds objects in a COCO photo', { skip: ssdModel.skip || coco.skip }, async () => {
  const model = await prepareModel(loadModel(ssdModel.path));
  assert.deepEqual(
    model.graph.outputs.map((o) => o.shape),
    [['batch', 10, 4], ['batch', 10], ['batch', 10], ['batch']],
  );
  const file = readdirSync(coco.path)
    .filter((f) => f.endsWith('.jpg'))
    .sort()[1]!;
  // Stretched to 300x300; the uint8 input's real value is (q - 128) / 128.
  const { data } = await sharp(join(coco.path, file))
    .removeAlpha()
    .toColourspace('srgb')
    .resize(300, 300, { fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const x = new Float32Array(3 * 300 * 300);
  for (let i = 0; i < 300 * 300; i++) for (let c = 0; c < 3; c++) x[c * 90000 + i] = (data[3 * i + c]! - 128) / 128;
  const out = await runModel(model, { [model.graph.inputs[0]!.name]: { dataType: 'float32', dims: [1, 3, 300, 300], data: x } });
  const [boxes, classes, scores, count] = model.graph.outputs.map((o) => Array.from(out[o.name]!.data as Float32Array));
  const n = count![0]!;
  console.log(`${file}: ${n} detections`);
  for (let i = 0; i < n; i++)
    console.log(
      `  class ${classes![i]} score ${scores![i]!.toFixed(3)} box ${boxes!
        .slice(4 * i, 4 * i + 4)
        .map((v) => v.toFixed(3))
        .join(' ')}`,
    );
  assert.ok(n >= 1 && n <= 10 && Number.isInteger(n));
  for (let i = 0; i < n; i++) {
    assert.ok(Number.isInteger(classes![i]) && classes![i]! >= 0 && classes![i]! < 90);
    assert.ok(scores![i]! > 0 && scores![i]! <= 1 && (i === 0 || scores![i]! <= scores![i - 1]!));
    const [y0, x0, y1, x1] = boxes!.slice(4 * i, 4 * i + 4);
    assert.ok(y0! < y1! && x0! < x1! && y0! > -0.2 && y1! < 1.2);
  }
  assert.ok(scores![0]! > 0.5, 'a confident detection on a COCO photo');
});

test('SSD MobileNetV1 cut before its post-processing keeps the raw box and score tensors', { skip: ssdModel.skip }, async () => {
  const model = await prepareModel(loadModel(ssdModel.path, { cutBefore: 'TFLite_Detection_PostProcess' }));
  assert.deepEqual(
    model.graph.outputs.map((o) => [o.name, o.shape]),
    [
      ['Squeeze', ['batch', 1917, 4]],
      ['convert_scores', ['batch', 1917, 91]],
    ],
  );
  assert.ok(!model.graph.nodes.some((n) => n.opType === 'NonMaxSuppression'));
});
