/**
 * The TFLite export of whole models: a detector's host tail ending in
 * TFLite_Detection_PostProcess, and the models of ../shared run by Arm NN (CpuRef) against
 * quantflow's QDQ model on the same integer input, and by LiteRT against the integer executor.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { encode as flexEncode } from 'flatbuffers/mjs/flexbuffers.js';
import {
  int8NpyInput,
  argmaxLast,
  armnnMissing,
  detections,
  matchDetections,
  nchwToNhwc,
  runArmnnJobs,
  tfliteInput,
  type ArmnnJob,
} from '../bench/armnn/agreement.js';
import { openLitert } from '../bench/litert/runtime.js';
import { execute } from '../src/npu/executor.js';
import { buildNpuPackage } from '../src/npu/package.js';
import { imageBatches, imageInputGeometry } from '../src/data/batches.js';
import { loadDataset } from '../src/data/dataset.js';
import type { PreprocessRequest } from '../src/data/preprocess.js';
import { exportTflite } from '../src/export/tflite/export.js';
import { floatTensor, toFloat32 } from '../src/graph/tensor.js';
import type { Model, TensorData } from '../src/graph/types.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { importTflite } from '../src/import/tflite/import.js';
import { readTfliteModel } from '../src/import/tflite/schema.js';
import { qdqView } from '../src/npu/qdq-view.js';
import { dequantizeTensor, quantizeTensor } from '../src/quantization/grid.js';
import { loadProfile } from '../src/quantization/profile.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import { runModel } from '../src/runtime/session.js';
import { minMaxQdq, randomFloats } from './fixtures.js';
import { sharedPath } from './shared.js';
import { OP, TfliteBuilder } from './tflite-builder.js';

const work = mkdtempSync(join(tmpdir(), 'quantflow-tflite-models-'));
after(() => rmSync(work, { recursive: true, force: true }));
const armnnSkip = armnnMissing();

/**
 * A float SSD head on a 4x4 map: two 1x1 convolutions (box encodings, class logits over
 * background + 2), reshaped into 16 anchors, LOGISTIC on the scores, then
 * TFLite_Detection_PostProcess against a grid of anchors.
 */
function tinyDetector(): Uint8Array {
  const b = new TfliteBuilder();
  const x = b.activation('x', [1, 4, 4, 3]);
  const head = (name: string, out: number, seed: number) => {
    const w = b.constant(`${name}_w`, [out, 1, 1, 3], randomFloats(out * 3, seed));
    const bias = b.constant(`${name}_b`, [out], randomFloats(out, seed + 1));
    const y = b.activation(`${name}_conv`, [1, 4, 4, out]);
    b.op(OP.CONV_2D, [x, w, bias], [y], {
      type: 1,
      fields: [
        { slot: 0, kind: 'int8', value: 1 },
        { slot: 1, kind: 'int32', value: 1 },
        { slot: 2, kind: 'int32', value: 1 },
      ],
    });
    const r = b.activation(`${name}_reshaped`, [1, 16, out]);
    b.op(OP.RESHAPE, [y, b.constant(`${name}_shape`, [3], [1, 16, out], 'int32')], [r]);
    return r;
  };
  const boxes = head('boxes', 4, 1);
  const logits = head('classes', 3, 3);
  const scores = b.activation('scores', [1, 16, 3]);
  b.op(OP.LOGISTIC, [logits], [scores]);
  const anchors = Array.from({ length: 16 }, (_, i) => [(Math.floor(i / 4) + 0.5) / 4, ((i % 4) + 0.5) / 4, 0.3, 0.3]).flat();
  const anc = b.constant('anchors', [16, 4], anchors);
  const outs = ['boxes_out', 'classes_out', 'scores_out', 'count'].map((name) => b.activation(name, []));
  const opts = {
    max_detections: 5,
    max_classes_per_detection: 1,
    nms_score_threshold: 0.4,
    nms_iou_threshold: 0.5,
    num_classes: 2,
    y_scale: 10,
    x_scale: 10,
    h_scale: 5,
    w_scale: 5,
  };
  b.custom('TFLite_Detection_PostProcess', [boxes, scores, anc], outs, flexEncode(opts));
  return b.build([x], outs);
}

const dets = (o: ArrayLike<number>[]) => detections(o[0]!, o[1]!, o[2]!, Math.round(o[3]![0]!));
const values = (r: Record<string, TensorData>, m: Model) => m.graph.outputs.map((o) => toFloat32(r[o.name]!));

test('a detector exports its host tail ending in TFLite_Detection_PostProcess; re-imported it detects as the QDQ model', async () => {
  const float = await prepareModel(importTflite(tinyDetector(), 'detector.tflite'));
  const profile = loadProfile('w8a8-shift');
  const sample = floatTensor([1, 3, 4, 4], randomFloats(48, 5));
  const { qdq } = await minMaxQdq(float, profile, sample);
  const bytes = await exportTflite(qdq, profile, { ioType: 'float32' });
  const tfl = readTfliteModel(bytes, 'exported');
  const codes = tfl.subgraphs[0]!.operators.map((op) => tfl.operatorCodes[op.opcodeIndex]!);
  assert.deepEqual(
    codes.filter((c) => c.builtin === OP.CUSTOM).map((c) => c.customCode),
    ['TFLite_Detection_PostProcess'],
  );
  for (const code of [OP.DEQUANTIZE, OP.LOGISTIC, OP.RESHAPE])
    assert.ok(
      codes.some((c) => c.builtin === code),
      `builtin ${code}`,
    );
  // The heads' NCHW→NHWC transposes cancel against the NHWC storage: no TRANSPOSE is written.
  assert.ok(!codes.some((c) => c.builtin === OP.TRANSPOSE));
  // Without the host tail the file ends at the package's integer outputs: no custom op, no DEQUANTIZE.
  const pkg = await buildNpuPackage(qdq, profile);
  const bare = readTfliteModel(await exportTflite(qdq, profile, { npu: pkg, hostTail: false }), 'bare');
  const bareCodes = bare.subgraphs[0]!.operators.map((op) => bare.operatorCodes[op.opcodeIndex]!.builtin);
  assert.ok(!bareCodes.includes(OP.CUSTOM) && !bareCodes.includes(OP.DEQUANTIZE), `[${bareCodes}]`);
  assert.deepEqual(
    bare.subgraphs[0]!.outputs.map((i) => bare.subgraphs[0]!.tensors[i]!.name),
    pkg.outputs,
  );

  const back = await prepareModel(importTflite(bytes, 'exported.tflite'));
  const expected = dets(values(await runModel(qdq, { x: sample }), qdq));
  const got = dets(values(await runModel(back, { [back.graph.inputs[0]!.name]: sample }), back));
  assert.ok(expected.length >= 2, `only ${expected.length} detections to compare`);
  assert.equal(got.length, expected.length);
  got.forEach((d, i) => {
    const e = expected[i]!;
    assert.equal(d.cls, e.cls);
    // The re-imported model does not round its activations to the grid as the QDQ model does: a fraction of a step apart.
    assert.ok(Math.abs(d.score - e.score) < 0.01, `score ${d.score} vs ${e.score}`);
    d.box.forEach((v, k) => assert.ok(Math.abs(v - e.box[k]!) < 0.01, `box ${d.box} vs ${e.box}`));
  });
});

interface SharedRun {
  qdq: Model;
  bytes: Uint8Array;
  /** Arm NN's outputs and the QDQ model's (4-D in NHWC) for each image. */
  armnn: ArrayLike<number>[][];
  reference: ArrayLike<number>[][];
}

/** Quantizes a model of ../shared on 2 calibration images, exports it, and runs both on `images` images. */
async function sharedRun(
  t: { skip(message: string): void },
  modelName: string,
  dataName: string,
  opts: { profile?: string; preprocess?: PreprocessRequest; images?: number } = {},
): Promise<SharedRun | undefined> {
  const modelFile = sharedPath('models', modelName);
  const dataDir = sharedPath('data', dataName);
  const skip = modelFile.skip || dataDir.skip;
  if (skip) return void t.skip(skip);
  const float = await prepareModel(loadModel(modelFile.path));
  const profile = loadProfile(opts.profile ?? 'w8a8-shift');
  const data = await loadDataset(dataDir.path);
  const result = await quantizeModel(float, data, {
    profile,
    calibration: 'minmax',
    calibLimit: 2,
    batch: 1,
    ...(opts.preprocess && { preprocess: opts.preprocess }),
  });
  const qdq = result.model;
  const bytes = await exportTflite(qdq, profile, { preprocess: result.preprocess.spec });
  const file = join(work, `${modelName}.int8.tflite`);
  writeFileSync(file, bytes);
  const geometry = imageInputGeometry(float);
  const inputName = qdq.graph.inputs[0]!.name;
  const grid = qdqView(qdq.graph).quantizedAs.get(inputName)!.grid;
  const shape = [1, geometry.channels, geometry.height, geometry.width];
  const jobs: ArmnnJob[] = [];
  const reference: ArrayLike<number>[][] = [];
  const items = data.items.slice(0, opts.images ?? 2);
  for await (const b of imageBatches(items, { ...geometry, preprocess: result.preprocess.spec, batch: 1 })) {
    const q = quantizeTensor(b.data, grid);
    const feed = floatTensor(shape, dequantizeTensor(q, grid));
    const out = await runModel(qdq, { [inputName]: feed });
    reference.push(
      qdq.graph.outputs.map((o) =>
        (out[o.name]!.dims.length === 4 ? nchwToNhwc : (v: Float32Array) => v)(toFloat32(out[o.name]!), out[o.name]!.dims),
      ),
    );
    const path = join(work, `${modelName}_${jobs.length}.npy`);
    writeFileSync(path, int8NpyInput(q, shape, grid));
    jobs.push({
      model: file,
      inputs: [path],
      out: join(work, `${modelName}_${jobs.length}`),
    });
  }
  const armnn = runArmnnJobs(jobs, join(work, `${modelName}_jobs.json`)).map((r) => r.outputs.map((o) => o.data));
  return { qdq, bytes, armnn, reference };
}

test('SSD MobileNetV1 w8a8-shift: Arm NN runs the export, detections match the QDQ model on 2 images', { skip: armnnSkip }, async (t) => {
  const run = await sharedRun(t, 'ssd_mobilenet_v1_coco_uint8.tflite', 'coco-val-100', { preprocess: { resize: 'stretch' } });
  if (!run) return;
  let matched = 0;
  let total = 0;
  for (let k = 0; k < run.armnn.length; k++) {
    const m = matchDetections(dets(run.armnn[k]!), dets(run.reference[k]!), 0.3);
    matched += m.matched;
    total += Math.max(m.test, m.reference);
  }
  t.diagnostic(`Arm NN detections matched to the QDQ model's (score ≥ 0.3, IoU ≥ 0.5): ${matched}/${total}`);
  assert.ok(total > 0 && matched / total >= 0.8, `${matched}/${total}`);
});

/** Top-1 of Arm NN's first output (int8 logits or probabilities: the order is the same) against the QDQ model's. */
function assertSameTop1(t: { diagnostic(m: string): void }, run: SharedRun): void {
  const classes = run.reference[0]![0]!.length;
  const tops = run.armnn.map((o, k) => [argmaxLast(o[0]!, classes)[0], argmaxLast(run.reference[k]![0]!, classes)[0]]);
  t.diagnostic(`top-1 Arm NN / QDQ: ${tops.map(([a, b]) => `${a}/${b}`).join(', ')}`);
  for (const [a, b] of tops) assert.equal(a, b);
}

// One classifier end to end: MobileNetV3 under tflite-int8 has HARD_SWISH, the SE blocks' MUL
// and TFLite's own ADD and pooling arithmetic. The other families, DeepLabV3 (a minute an image
// in Arm NN's CpuRef) and more images run in npm run bench:tflite; the segmenter's operators run
// on a tiny graph in tflite-export.test.ts.
test(
  "mobilenet_v3_small_1.0_224_uint8.tflite tflite-int8: Arm NN's top-1 is the QDQ model's on 1 image",
  { skip: armnnSkip },
  async (t) => {
    const run = await sharedRun(t, 'mobilenet_v3_small_1.0_224_uint8.tflite', 'imagenet-val-650', { profile: 'tflite-int8', images: 1 });
    if (run) assertSameTop1(t, run);
  },
);

test('mobilenet_v3_small_1.0_224_uint8.tflite tflite-int8-xnnpack: LiteRT computes the integer executor’s logits bit for bit on 2 images', async (t) => {
  const modelFile = sharedPath('models', 'mobilenet_v3_small_1.0_224_uint8.tflite');
  const dataDir = sharedPath('data', 'imagenet-val-650');
  const skip = modelFile.skip || dataDir.skip;
  if (skip) return void t.skip(skip);
  const float = await prepareModel(loadModel(modelFile.path));
  const profile = loadProfile('tflite-int8-xnnpack');
  const data = await loadDataset(dataDir.path);
  const result = await quantizeModel(float, data, { profile, calibration: 'minmax', calibLimit: 2, batch: 1 });
  const pkg = await buildNpuPackage(result.model, profile);
  // The file ends in SOFTMAX; the logits come out as a probe.
  const model = await openLitert(await exportTflite(result.model, profile, { npu: pkg, ioType: 'uint8', probes: pkg.outputs }));
  const geometry = imageInputGeometry(float);
  const input = pkg.inputs[0]!;
  const grid = pkg.tensors[input]!.grid;
  const shape = [1, geometry.channels, geometry.height, geometry.width];
  const logits = pkg.tensors[pkg.outputs[0]!]!;
  for await (const b of imageBatches(data.items.slice(0, 2), { ...geometry, preprocess: result.preprocess.spec, batch: 1 })) {
    const q = quantizeTensor(b.data, grid);
    const [, out] = await model.run([
      { data: tfliteInput(q, shape, grid, 'uint8'), shape: [1, shape[2]!, shape[3]!, shape[1]!], dtype: 'uint8' },
    ]);
    const expected = execute(pkg, { [input]: q }).tensors.get(pkg.outputs[0]!)!;
    // The uint8 output is the int8 logits + 128; the package's uint8 grid holds them as they are.
    assert.deepEqual(
      Array.from(out!.data),
      Array.from(expected, (v) => (logits.grid.qmin === 0 ? v : v + 128)),
    );
  }
  model.delete();
});
