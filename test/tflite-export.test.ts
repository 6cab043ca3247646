import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  int8NpyInput,
  argmaxLast,
  armnnMissing,
  classMapAgreement,
  nchwToNhwc,
  npyBytes,
  runArmnnJobs,
  type ArmnnJob,
} from '../bench/armnn/agreement.js';
import { openLitert } from '../bench/litert/runtime.js';
import { withTfliteArithmetic } from '../src/npu/arithmetic.js';
import { exportTflite, QUANTFLOW_METADATA } from '../src/export/tflite/export.js';
import { OP as OPS } from '../src/export/tflite/flatbuffer.js';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor, sizeOf } from '../src/graph/tensor.js';
import type { Model, Node, TensorData } from '../src/graph/types.js';
import { importTflite, METADATA } from '../src/import/tflite/import.js';
import { readTfliteModel } from '../src/import/tflite/schema.js';
import { execute } from '../src/npu/executor.js';
import { buildNpuPackage } from '../src/npu/package.js';
import { integerDifferences } from '../src/npu/verify.js';
import { qdqView } from '../src/npu/qdq-view.js';
import type { NpuPackage } from '../src/npu/types.js';
import { dequantizeTensor, quantizeTensor } from '../src/quantization/grid.js';
import { loadProfile, type TargetProfile } from '../src/quantization/profile.js';
import { QuantflowError } from '../src/util/errors.js';
import { imageBatches, imageInputGeometry } from '../src/data/batches.js';
import { loadDataset } from '../src/data/dataset.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import { openSession, runModel, runSession } from '../src/runtime/session.js';
import { sharedPath } from './shared.js';
import { minMaxQdq, randomFloats, randomTensor } from './fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'quantflow-tflite-export-'));
after(() => rmSync(work, { recursive: true, force: true }));
const armnnSkip = armnnMissing();

/** A float model with input 'x' of `shape` (batch first) and output 'y'. */
function model(shape: number[], nodes: Node[], initializers: Record<string, TensorData>, outputShape?: number[]): Model {
  const g = createGraph('t');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['batch', ...shape.slice(1)] });
  g.outputs.push({ name: 'y', dataType: 'float32', ...(outputShape && { shape: ['batch', ...outputShape.slice(1)] }) });
  for (const [k, v] of Object.entries(initializers)) g.initializers.set(k, v);
  g.nodes.push(...nodes);
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

const conv = (name: string, x: string, w: string, b: string, y: string, a: Record<string, number[] | number> = {}) =>
  makeNode(
    'Conv',
    [x, w, b],
    [y],
    Object.fromEntries(Object.entries(a).map(([k, v]) => [k, Array.isArray(v) ? attr.ints(v) : attr.int(v)])),
    name,
  );
const weights = (out: number, inPerGroup: number, k: number, seed: number) => ({
  [`w${seed}`]: randomTensor([out, inPerGroup, k, k], seed),
  [`b${seed}`]: randomTensor([out], seed + 100),
});

/** One operator (or a few) under test, on a 1x3x6x6 input unless said otherwise. */
interface Case {
  name: string;
  model: Model;
  /** The TFLite builtins the export must contain. */
  ops: string[];
  /** The exported output is the softmax of the package's logits. */
  softmax?: boolean;
  /** Built-in profile (default w8a8-channel). */
  profile?: string;
  /** Largest allowed difference in output steps (default 1). */
  lsb?: number;
}

const X = [1, 3, 6, 6];
const cases: Case[] = [
  {
    name: 'CONV_2D with SAME padding and fused RELU',
    model: model(X, [conv('conv', 'x', 'w1', 'b1', 'c', { pads: [1, 1, 1, 1] }), makeNode('Relu', ['c'], ['y'])], weights(4, 3, 3, 1)),
    ops: ['CONV_2D'],
  },
  {
    name: 'DEPTHWISE_CONV_2D, stride 2, SAME (pads 0,0,1,1), fused RELU6',
    model: model(
      X,
      [conv('dw', 'x', 'w2', 'b2', 'c', { group: 3, strides: [2, 2], pads: [0, 0, 1, 1] }), makeNode('Clip', ['c', 'lo', 'hi'], ['y'])],
      { ...weights(3, 1, 3, 2), lo: floatTensor([], [0]), hi: floatTensor([], [6]) },
    ),
    ops: ['DEPTHWISE_CONV_2D'],
  },
  {
    name: 'explicit PAD before a convolution with uneven pads',
    model: model(X, [conv('conv', 'x', 'w3', 'b3', 'y', { pads: [2, 0, 0, 1] })], weights(2, 3, 3, 3)),
    ops: ['PAD', 'CONV_2D'],
  },
  {
    name: 'MEAN (global average pool), RESHAPE, and per-channel fully connected as a 1x1 CONV_2D',
    model: model(
      X,
      [
        conv('conv', 'x', 'w4', 'b4', 'c', { pads: [1, 1, 1, 1] }),
        makeNode('GlobalAveragePool', ['c'], ['p']),
        makeNode('Flatten', ['p'], ['f']),
        makeNode('Gemm', ['f', 'fc_w', 'fc_b'], ['y'], { transB: attr.int(1) }),
      ],
      { ...weights(4, 3, 3, 4), fc_w: randomTensor([5, 4], 5), fc_b: randomTensor([5], 6) },
    ),
    ops: ['MEAN', 'RESHAPE', 'CONV_2D'],
  },
  {
    name: 'FULLY_CONNECTED with per-tensor weights',
    model: model([1, 12], [makeNode('Gemm', ['x', 'fc_w', 'fc_b'], ['y'], { transB: attr.int(1) }, 'fc')], {
      fc_w: randomTensor([6, 12], 15),
      fc_b: randomTensor([6], 16),
    }),
    ops: ['FULLY_CONNECTED'],
    profile: 'w8a8-tensor',
  },
  {
    name: 'RESHAPE of a 4-D tensor with H·W > 1 (transposed to NCHW order first)',
    model: model(
      X,
      [
        conv('conv', 'x', 'w5', 'b5', 'c', {}),
        makeNode('Reshape', ['c', 'shape'], ['f']),
        makeNode('Gemm', ['f', 'fc_w', 'fc_b'], ['y'], { transB: attr.int(1) }),
      ],
      { ...weights(2, 3, 3, 5), shape: int64Tensor([2], [0, -1]), fc_w: randomTensor([3, 32], 7), fc_b: randomTensor([3], 8) },
    ),
    ops: ['TRANSPOSE', 'RESHAPE', 'CONV_2D'],
  },
  {
    name: 'ADD and MUL of two tensors on different grids',
    model: model(
      X,
      [
        conv('a', 'x', 'w6', 'b6', 'ca', { pads: [1, 1, 1, 1] }),
        conv('b', 'x', 'w7', 'b7', 'cb', { pads: [1, 1, 1, 1] }),
        makeNode('Add', ['ca', 'cb'], ['s'], {}, 'add'),
        makeNode('Mul', ['s', 'cb'], ['y'], {}, 'mul'),
      ],
      { ...weights(4, 3, 3, 6), ...weights(4, 3, 3, 7) },
    ),
    ops: ['ADD', 'MUL'],
  },
  {
    name: 'MAX_POOL_2D and AVERAGE_POOL_2D (its output requantized by QUANTIZE)',
    model: model(
      X,
      [
        conv('conv', 'x', 'w8', 'b8', 'c', { pads: [1, 1, 1, 1] }),
        makeNode('MaxPool', ['c'], ['m'], { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) }, 'maxpool'),
        makeNode('AveragePool', ['m'], ['y'], { kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]) }, 'avgpool'),
      ],
      weights(4, 3, 3, 8),
    ),
    ops: ['MAX_POOL_2D', 'AVERAGE_POOL_2D', 'QUANTIZE'],
    // AVERAGE_POOL_2D rounds on its input grid, the QUANTIZE after it once more: two roundings where the executor has one.
    lsb: 2,
  },
  {
    name: 'CONCATENATION of inputs on different grids (QUANTIZE onto the output grid)',
    model: model(
      X,
      [
        conv('a', 'x', 'w9', 'b9', 'ca', { pads: [1, 1, 1, 1] }),
        conv('b', 'x', 'w10', 'b10', 'cb', { pads: [1, 1, 1, 1] }),
        makeNode('Concat', ['ca', 'cb'], ['y'], { axis: attr.int(1) }, 'concat'),
      ],
      { ...weights(2, 3, 3, 9), ...weights(3, 3, 3, 10) },
    ),
    ops: ['CONCATENATION', 'QUANTIZE'],
  },
  {
    name: 'SOFTMAX at the output (fixed grid 1/256, −128)',
    model: model(
      [1, 12],
      [makeNode('Gemm', ['x', 'fc_w', 'fc_b'], ['l'], { transB: attr.int(1) }, 'fc'), makeNode('Softmax', ['l'], ['y'], {}, 'softmax')],
      { fc_w: randomTensor([6, 12], 11), fc_b: randomTensor([6], 12) },
    ),
    ops: ['CONV_2D', 'SOFTMAX'],
    softmax: true,
  },
  {
    name: 'LOGISTIC (fixed grid, then QUANTIZE) and HARD_SWISH',
    model: model(
      X,
      [
        conv('conv', 'x', 'w13', 'b13', 'c', { pads: [1, 1, 1, 1] }),
        makeNode('HardSwish', ['c'], ['h'], {}, 'hswish'),
        makeNode('Sigmoid', ['h'], ['y'], {}, 'sigmoid'),
      ],
      weights(4, 3, 3, 13),
    ),
    ops: ['HARD_SWISH', 'LOGISTIC'],
  },
  {
    name: 'RESIZE_NEAREST_NEIGHBOR, STRIDED_SLICE and PAD',
    model: model(
      X,
      [
        conv('conv', 'x', 'w14', 'b14', 'c', {}),
        makeNode(
          'Resize',
          ['c', '', 'scales'],
          ['r'],
          { mode: attr.string('nearest'), coordinate_transformation_mode: attr.string('asymmetric'), nearest_mode: attr.string('floor') },
          'resize',
        ),
        makeNode('Slice', ['r', 'starts', 'ends', 'axes', 'steps'], ['s'], {}, 'slice'),
        makeNode('Pad', ['s', 'pads'], ['y'], {}, 'pad'),
      ],
      {
        ...weights(2, 3, 3, 14),
        scales: floatTensor([4], [1, 1, 2, 2]),
        starts: int64Tensor([2], [1, 0]),
        ends: int64Tensor([2], [7, 8]),
        axes: int64Tensor([2], [2, 3]),
        steps: int64Tensor([2], [2, 3]),
        pads: int64Tensor([8], [0, 0, 1, 0, 0, 0, 0, 2]),
      },
    ),
    ops: ['RESIZE_NEAREST_NEIGHBOR', 'STRIDED_SLICE', 'PAD'],
  },
];

const profile = loadProfile('w8a8-channel');

interface Exported {
  qdq: Model;
  pkg: NpuPackage;
  bytes: Uint8Array;
  file: string;
}

async function exportCase(c: Case, p: TargetProfile = c.profile ? loadProfile(c.profile) : profile): Promise<Exported> {
  const shape = c.model.graph.inputs[0]!.shape!.map((d) => (typeof d === 'number' ? d : 4)) as number[];
  const { qdq } = await minMaxQdq(c.model, p, floatTensor(shape, randomFloats(sizeOf(shape), 42)));
  const pkg = await buildNpuPackage(qdq, p);
  const bytes = await exportTflite(qdq, p, { npu: pkg });
  const file = join(work, `${c.name.replace(/[^A-Za-z0-9]+/g, '_')}.tflite`);
  writeFileSync(file, bytes);
  return { qdq, pkg, bytes, file };
}

/** The package input for one image as integers on its grid, and the same as TFLite int8. */
function inputsFor(pkg: NpuPackage, seed: number): { q: Int32Array; int8: number[]; shape: number[] } {
  const info = pkg.tensors[pkg.inputs[0]!]!;
  const q = quantizeTensor(randomFloats(sizeOf(info.shape), seed), info.grid);
  const offset = info.grid.qmin === 0 ? 128 : 0;
  const nhwc = info.shape.length === 4 ? nchwToNhwc(q, info.shape) : Float64Array.from(q);
  const shape = info.shape.length === 4 ? [info.shape[0]!, info.shape[2]!, info.shape[3]!, info.shape[1]!] : info.shape;
  return { q, int8: Array.from(nhwc, (v) => v - offset), shape };
}

function builtinsOf(bytes: Uint8Array): string[] {
  const tfl = readTfliteModel(bytes, 'exported');
  return tfl.subgraphs[0]!.operators.map((op) => {
    const code = tfl.operatorCodes[op.opcodeIndex]!.builtin;
    return Object.entries({ ...OPS }).find(([, v]) => v === code)?.[0] ?? String(code);
  });
}

test('each operator as TFLite: Arm NN (CpuRef) within 1 LSB of the integer executor', { skip: armnnSkip }, async () => {
  const runs = await Promise.all(cases.map((c) => exportCase(c)));
  const jobs: ArmnnJob[] = [];
  const inputs = runs.map((r, k) => {
    const i = inputsFor(r.pkg, 7 + k);
    const path = join(work, `input${k}.npy`);
    writeFileSync(path, npyBytes('int8', i.shape, i.int8));
    jobs.push({ model: r.file, inputs: [path], out: join(work, `out${k}`) });
    return i;
  });
  const results = runArmnnJobs(jobs, join(work, 'jobs.json'));
  cases.forEach((c, k) => {
    const { pkg, bytes } = runs[k]!;
    const ops = builtinsOf(bytes);
    for (const op of c.ops) assert.ok(ops.includes(op), `${c.name}: ${op} missing from [${ops}]`);
    const expected = executorOutput(c, pkg, inputs[k]!.q);
    const got = results[k]!.outputs[0]!.data;
    assert.equal(got.length, expected.length, c.name);
    const worst = integerDifferences(got, expected).max;
    assert.ok(worst <= (c.lsb ?? 1), `${c.name}: Arm NN differs from the executor by ${worst} LSB`);
  });
});

test('each operator as TFLite: LiteRT (XNNPACK) computes what the executor computes with profile rounding xnnpack', async () => {
  const failures: string[] = [];
  for (const [k, c] of cases.entries()) {
    const { pkg, bytes } = await exportCase(c, withTfliteArithmetic(c.profile ? loadProfile(c.profile) : profile, 'xnnpack'));
    const model = await openLitert(bytes);
    const input = inputsFor(pkg, 7 + k);
    const [out] = await model.run([{ data: input.int8, shape: input.shape, dtype: 'int8' }]);
    model.delete();
    const expected = executorOutput(c, pkg, input.q);
    assert.equal(out!.data.length, expected.length, c.name);
    // TFLite's int8 SOFTMAX (not delegated) works from a float exp table: within a step of the float softmax.
    const worst = integerDifferences(out!.data, expected).max;
    if (worst > (c.softmax ? 1 : 0)) failures.push(`${c.name}: LiteRT differs from the executor by ${worst} LSB`);
  }
  assert.deepEqual(failures, []);
});

/**
 * The executor's output of case `c` as the exported file returns it: NHWC int8; for a softmax
 * case, the float softmax of the executor's logits on TFLite's fixed grid 1/256, −128.
 */
function executorOutput(c: Case, pkg: NpuPackage, q: Int32Array): number[] {
  const outName = pkg.outputs[0]!;
  const info = pkg.tensors[outName]!;
  const out = execute(pkg, { [pkg.inputs[0]!]: q }).tensors.get(outName)!;
  const expected = Array.from(info.shape.length === 4 ? nchwToNhwc(out, info.shape) : out, (v) => (info.grid.qmin === 0 ? v - 128 : v));
  if (!c.softmax) return expected;
  const zp = info.grid.qmin === 0 ? info.grid.zeroPoint - 128 : info.grid.zeroPoint;
  const e = expected.map((v) => Math.exp((v - zp) * info.grid.scale));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => Math.min(127, Math.round((v / sum) * 256) - 128));
}

test(
  "a segmenter's graph (dilated DEPTHWISE_CONV_2D, float RESIZE_BILINEAR, ARG_MAX): Arm NN, cut before ARG_MAX, matches the QDQ model",
  { skip: armnnSkip },
  async () => {
    // The parts of DeepLabV3 the classifiers lack, in a graph small enough for the test suite
    // (DeepLab itself takes a minute an image in Arm NN's CpuRef: npm run bench:tflite).
    const m = model(
      X,
      [
        conv('conv', 'x', 'w20', 'b20', 'c', { pads: [1, 1, 1, 1] }),
        makeNode('Relu', ['c'], ['r']),
        conv('atrous', 'r', 'w21', 'b21', 'd', { pads: [2, 2, 2, 2], dilations: [2, 2], group: 4 }),
        makeNode('Relu', ['d'], ['dr']),
        conv('logits', 'dr', 'w22', 'b22', 'l'),
        makeNode(
          'Resize',
          ['l', '', 'upscale'],
          ['u'],
          { mode: attr.string('linear'), coordinate_transformation_mode: attr.string('align_corners') },
          'upsample',
        ),
        makeNode('ArgMax', ['u'], ['y'], { axis: attr.int(1), keepdims: attr.int(0) }, 'argmax'),
      ],
      { ...weights(4, 3, 3, 20), ...weights(4, 1, 3, 21), ...weights(3, 4, 1, 22), upscale: floatTensor([4], [1, 1, 2, 2]) },
    );
    m.graph.outputs[0]!.dataType = 'int64';
    const { qdq, pkg, bytes, file } = await exportCase({ name: 'segmenter', model: m, ops: [] });
    const ops = builtinsOf(bytes);
    for (const op of ['DEPTHWISE_CONV_2D', 'DEQUANTIZE', 'RESIZE_BILINEAR', 'ARG_MAX'])
      assert.ok(ops.includes(op), `${op} missing from [${ops}]`);
    const input = inputsFor(pkg, 21);
    const path = join(work, 'segmenter.npy');
    writeFileSync(path, npyBytes('int8', input.shape, input.int8));
    const [armnn] = runArmnnJobs(
      [{ model: file, inputs: [path], out: join(work, 'segmenter'), outputs: ['u'] }],
      join(work, 'segmenter.json'),
    );
    const grid = pkg.tensors[pkg.inputs[0]!]!.grid;
    const feed = floatTensor(X, dequantizeTensor(input.q, grid));
    // The fake-quant simulation: onnxruntime's integer kernels (QLinearConv) put this graph's
    // depthwise layer, whose input is a ReLU's (zero point 0), tens of steps off the float
    // arithmetic, where the integer executor and Arm NN agree with it.
    const session = await openSession(
      { ...qdq, graph: { ...qdq.graph, outputs: [{ name: 'u', dataType: 'float32' }] } },
      { simulate: true },
    );
    const out = await runSession(session, { x: feed }).finally(() => session.release());
    const expected = nchwToNhwc(out['u']!.data as Float32Array, [1, 3, 12, 12]);
    const got = armnn!.outputs[0]!.data;
    assert.equal(got.length, expected.length);
    // Arm NN's integer layers may differ from the simulation by a step; the resize averages them.
    const step = pkg.tensors[pkg.outputs[0]!]!.grid.scale;
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
    assert.ok(worst <= 2 * step + 1e-6, `Arm NN's upsampled logits differ from the QDQ model's by ${worst / step} steps`);
    const { pixels } = classMapAgreement(argmaxLast(got, 3), argmaxLast(expected, 3));
    assert.ok(pixels >= 0.95, `class map agreement ${pixels}`);
  },
);

test('the export re-imports as the quantized graph: weights, scales, zero points, ops, shapes', async () => {
  const c = cases[3]!;
  const { qdq, pkg, bytes } = await exportCase(c);
  const back = importTflite(bytes, 'exported.tflite');
  const view = qdqView(qdq.graph);
  // Weights: the re-imported constants are the QDQ model's dequantized integers, exactly.
  const convNode = qdq.graph.nodes.find((n) => n.name === 'conv')!;
  const w = view.constants.get(convNode.inputs[1]!)!;
  const expected = Array.from(w.values.data as Int8Array, (q, i) =>
    Math.fround(q * w.scale[Math.floor(i / (w.values.data.length / w.scale.length))]!),
  );
  const imported = back.graph.initializers.get('conv_weights')!;
  assert.deepEqual(imported.dims, w.values.dims);
  assert.deepEqual(Array.from(imported.data as Float32Array), expected);
  // Activation grids: every package tensor's scale and (int8) zero point.
  const quant = JSON.parse(back.metadata[METADATA.quantization]!) as Record<string, { scale: number[]; zeroPoint: number[] }>;
  for (const [name, info] of Object.entries(pkg.tensors)) {
    const q = quant[name];
    assert.ok(q, `no quantization recorded for ${name}`);
    assert.equal(q.scale[0], Math.fround(info.grid.scale), name);
    assert.equal(q.zeroPoint[0], info.grid.qmin === 0 ? info.grid.zeroPoint - 128 : info.grid.zeroPoint, name);
  }
  // Ops and shapes.
  const ops = back.graph.nodes.map((n) => n.opType);
  for (const op of ['Conv', 'ReduceMean', 'Reshape']) assert.ok(ops.includes(op), `${op} missing from [${ops}]`);
  assert.deepEqual(back.graph.outputs[0]!.shape!.slice(1), [5]);
  assert.deepEqual(back.graph.inputs[0]!.shape!.slice(1), [3, 6, 6]);
});

test('the file carries min_runtime_version, TFLITE_METADATA with the normalization, and quantflow metadata', async () => {
  const c = cases[0]!;
  const { qdq } = await minMaxQdq(c.model, profile, floatTensor(X, randomFloats(sizeOf(X), 3)));
  qdq.metadata['quantflow.preprocess'] = JSON.stringify({
    mean: [127.5, 127.5, 127.5],
    std: [127.5, 127.5, 127.5],
    channels: 'rgb',
    resize: 'stretch',
    crop: 1,
    padValue: 0,
  });
  const bytes = await exportTflite(qdq, loadProfile('w4a8-channel'), { ioType: 'float32' });
  const text = new TextDecoder('latin1').decode(bytes);
  assert.match(text, /min_runtime_version/);
  assert.match(text, /TFLITE_METADATA/);
  assert.match(text, /M001/);
  const json = /\{"format":"quantflow-tflite".*?\]\}/.exec(text);
  assert.ok(json);
  const meta = JSON.parse(json[0]) as {
    profile: string;
    ioType: string;
    layers: { layer: string; bits: number }[];
    preprocess: { mean: number[] };
  };
  assert.equal(meta.profile, 'w4a8-channel');
  assert.equal(meta.ioType, 'float32');
  assert.deepEqual(meta.preprocess.mean, [127.5, 127.5, 127.5]);
  assert.deepEqual(
    meta.layers.map((l) => l.layer),
    ['conv'],
  );
  assert.ok(text.includes(QUANTFLOW_METADATA));
  // float32 I/O: QUANTIZE in, DEQUANTIZE out.
  const ops = builtinsOf(bytes);
  assert.equal(ops[0], 'QUANTIZE');
  assert.equal(ops.at(-1), 'DEQUANTIZE');
  const tfl = readTfliteModel(bytes, 'x');
  const sg = tfl.subgraphs[0]!;
  assert.equal(sg.tensors[sg.inputs[0]!]!.type, 'float32');
  assert.equal(sg.tensors[sg.outputs[0]!]!.type, 'float32');
});

test('16-bit activations are a one-line error naming the layer', async () => {
  const c = cases[0]!;
  const a16 = loadProfile('w8a16-channel');
  const shape = X;
  const { qdq } = await minMaxQdq(c.model, profile, floatTensor(shape, randomFloats(sizeOf(shape), 1)));
  // A package whose output grid is 16 bits wide, as w8a16-channel writes.
  const pkg = await buildNpuPackage(qdq, a16);
  const out = pkg.tensors[pkg.outputs[0]!]!;
  out.grid = { ...out.grid, qmin: 0, qmax: 65535 };
  await assert.rejects(exportTflite(qdq, a16, { npu: pkg }), (e: Error) => {
    assert.ok(e instanceof QuantflowError);
    assert.match(e.message, /^layer 'conv': its 16-bit activations have no form in TFLite's int8 scheme/);
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });
});

test(
  'MobileNetV2 w8a8-shift exported: re-imports, and Arm NN agrees on top-1 with the QDQ model on 3 images',
  { skip: armnnSkip },
  async (t) => {
    const modelFile = sharedPath('models', 'mobilenet_v2_1.0_224_int8.tflite');
    const calibDir = sharedPath('data', 'imagenet-sample-1k');
    const dataDir = sharedPath('data', 'imagenet-val-650');
    const skip = modelFile.skip || calibDir.skip || dataDir.skip;
    if (skip) return void t.skip(skip);
    const float = await prepareModel(loadModel(modelFile.path));
    const p = loadProfile('w8a8-shift');
    const result = await quantizeModel(float, await loadDataset(calibDir.path), {
      profile: p,
      calibration: 'minmax',
      calibLimit: 4,
      batch: 4,
    });
    const bytes = await exportTflite(result.model, p, { preprocess: result.preprocess.spec });
    const file = join(work, 'mobilenet_v2.int8.tflite');
    writeFileSync(file, bytes);
    // Re-import: the same network, weights included (53 convolutions, the classifier's 1001 outputs).
    const back = importTflite(bytes, file);
    assert.equal(back.graph.nodes.filter((n) => n.opType === 'Conv').length, 53);
    assert.deepEqual(back.graph.outputs[0]!.shape!.slice(1), [1001]);

    const geometry = imageInputGeometry(float);
    const images = (await loadDataset(dataDir.path)).items.slice(0, 3);
    const inputGrid = qdqView(result.model.graph).quantizedAs.get(result.model.graph.inputs[0]!.name)!.grid;
    const jobs: ArmnnJob[] = [];
    const feeds: TensorData[] = [];
    for await (const b of imageBatches(images, { ...geometry, preprocess: result.preprocess.spec, batch: 1 })) {
      const shape = [1, 3, 224, 224];
      const q = quantizeTensor(b.data, inputGrid);
      // The QDQ model is fed the grid's own values, which it quantizes back to the same integers.
      feeds.push(floatTensor(shape, dequantizeTensor(q, inputGrid)));
      const path = join(work, `image${jobs.length}.npy`);
      writeFileSync(path, int8NpyInput(q, shape, inputGrid));
      jobs.push({ model: file, inputs: [path], out: join(work, `mnv2_${jobs.length}`) });
    }
    const armnn = runArmnnJobs(jobs, join(work, 'mnv2_jobs.json'));
    let agree = 0;
    for (let k = 0; k < jobs.length; k++) {
      const qdqOut = Object.values(await runModel(result.model, { [result.model.graph.inputs[0]!.name]: feeds[k]! }))[0]!;
      const [qdqTop] = argmaxLast(qdqOut.data as Float32Array, 1001);
      const [tfliteTop] = argmaxLast(armnn[k]!.outputs[0]!.data, 1001);
      if (qdqTop === tfliteTop) agree++;
    }
    t.diagnostic(`top-1 agreement Arm NN vs QDQ: ${agree}/${jobs.length}; ${(bytes.length / 1e6).toFixed(2)} MB`);
    assert.equal(agree, jobs.length);
  },
);
