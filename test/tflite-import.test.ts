import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Model } from '../src/graph/types.js';
import { importTflite } from '../src/import/tflite/import.js';
import { runModel } from '../src/runtime/session.js';
import { QuantflowError } from '../src/util/errors.js';
import { randomFloats } from './fixtures.js';
import { sharedPath } from './shared.js';
import { ACT, OP, options, SAME, TfliteBuilder, VALID } from './tflite-builder.js';

// Expected values below are worked out by hand from TFLite's (NHWC) semantics; inputs and
// outputs are given in NHWC and converted at the graph boundary, which is NCHW.

function nhwcToNchw(data: ArrayLike<number>, [n, h, w, c]: number[]): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < n!; i++)
    for (let y = 0; y < h!; y++)
      for (let x = 0; x < w!; x++)
        for (let k = 0; k < c!; k++) out[((i * c! + k) * h! + y) * w! + x] = data[((i * h! + y) * w! + x) * c! + k]!;
  return out;
}

function nchwToNhwc(data: ArrayLike<number>, [n, c, h, w]: number[]): number[] {
  const out = new Array<number>(data.length);
  for (let i = 0; i < n!; i++)
    for (let k = 0; k < c!; k++)
      for (let y = 0; y < h!; y++)
        for (let x = 0; x < w!; x++) out[((i * h! + y) * w! + x) * c! + k] = data[((i * c! + k) * h! + y) * w! + x]!;
  return out;
}

/** Imports and runs a one-input model on an NHWC (or lower-rank) input; returns the output in TFLite layout. */
async function run(bytes: Uint8Array, dims: number[], data: ArrayLike<number>): Promise<{ dims: number[]; data: number[] }> {
  const model = importTflite(bytes, 'test.tflite');
  checkStructure(model);
  const input = model.graph.inputs[0]!;
  const feed = dims.length === 4 ? nhwcToNchw(data, dims) : Float32Array.from(data);
  const onnxDims = dims.length === 4 ? [dims[0]!, dims[3]!, dims[1]!, dims[2]!] : dims;
  const out = await runModel(model, { [input.name]: { dataType: 'float32', dims: onnxDims, data: feed } });
  const y = out[model.graph.outputs[0]!.name]!;
  if (y.dims.length !== 4) return { dims: y.dims, data: Array.from(y.data as Float32Array) };
  const [n, c, h, w] = y.dims as number[];
  return { dims: [n!, h!, w!, c!], data: nchwToNhwc(y.data as Float32Array, y.dims) };
}

function assertClose(actual: number[], expected: number[], tolerance = 1e-5): void {
  assert.equal(actual.length, expected.length, `got [${actual}], expected [${expected}]`);
  actual.forEach((a, i) => assert.ok(Math.abs(a - expected[i]!) <= tolerance, `element ${i}: got [${actual}], expected [${expected}]`));
}

/** Value info on every intermediate, graph shapes with a symbolic batch, no quantization ops. */
function checkStructure(model: Model): void {
  const g = model.graph;
  const outputs = new Set(g.outputs.map((o) => o.name));
  for (const n of g.nodes)
    for (const o of n.outputs) if (!outputs.has(o)) assert.ok(g.valueInfo.has(o), `no value info for ${o} (${n.opType})`);
  for (const v of [...g.inputs, ...g.outputs]) assert.equal(v.dataType, 'float32');
  assert.equal(g.inputs[0]!.shape![0], 'batch');
  assert.ok(!g.nodes.some((n) => n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear'));
  assert.equal(model.opset, 17);
  assert.equal(model.producerName, 'quantflow-tflite-import');
  assert.equal(model.metadata.source, 'test.tflite');
}

/** A model of one operator: activation input 0 of `shape`, extra constant inputs, one output. */
function single(
  code: number,
  inShape: number[],
  outShape: number[],
  consts: { shape: number[]; data: number[]; type?: 'int32' }[] = [],
  opts?: ReturnType<typeof options.add>,
): Uint8Array {
  const b = new TfliteBuilder();
  const x = b.activation('x', inShape);
  const cs = consts.map((c, i) => b.constant(`c${i}`, c.shape, c.data, c.type ?? 'float32'));
  const y = b.activation('y', outShape);
  b.op(code, [x, ...cs], [y], opts);
  return b.build([x], [y]);
}

test('CONV_2D 2x2 VALID with two output channels and bias', async () => {
  // x channel 0 = [[1,2,3],[4,5,6],[7,8,9]], channel 1 = [[1,2,0],[0,1,0],[3,0,1]].
  const x = [1, 1, 2, 2, 3, 0, 4, 0, 5, 1, 6, 0, 7, 3, 8, 0, 9, 1];
  // Output 0 adds the diagonal of channel 0; output 1 sums channel 1 over the window (OHWI).
  const w = [1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1];
  const bytes = single(
    OP.CONV_2D,
    [1, 3, 3, 2],
    [1, 2, 2, 2],
    [
      { shape: [2, 2, 2, 2], data: w },
      { shape: [2], data: [0.5, -1] },
    ],
    options.conv2d({ padding: VALID }),
  );
  const y = await run(bytes, [1, 3, 3, 2], x);
  assert.deepEqual(y.dims, [1, 2, 2, 2]);
  assertClose(y.data, [6.5, 3, 8.5, 2, 12.5, 3, 14.5, 1]);
});

test('CONV_2D SAME with stride 2 pads the odd pixel at the end', async () => {
  const x = Array.from({ length: 16 }, (_, i) => i + 1);
  const bytes = single(
    OP.CONV_2D,
    [1, 4, 4, 1],
    [1, 2, 2, 1],
    [{ shape: [1, 3, 3, 1], data: new Array(9).fill(1) }],
    options.conv2d({ padding: SAME, stride: [2, 2] }),
  );
  const y = await run(bytes, [1, 4, 4, 1], x);
  // Windows rows/cols {0,1,2} and {2,3,pad}: 1+2+3+5+6+7+9+10+11, 3+4+7+8+11+12, 9+10+11+13+14+15, 11+12+15+16.
  assertClose(y.data, [54, 45, 72, 54]);
});

test('DEPTHWISE_CONV_2D with depth multiplier 2 orders outputs channel-major', async () => {
  // x channel 0 = [[1,2],[3,4]], channel 1 = [[10,20],[30,40]].
  const x = [1, 10, 2, 20, 3, 30, 4, 40];
  // Output k = c*2 + m: k0 picks c0 top-left, k1 c0 bottom-right, k2 sums c1, k3 negates c1 top-right.
  const w = [1, 0, 1, 0, 0, 0, 1, -1, 0, 0, 1, 0, 0, 1, 1, 0];
  const bytes = single(
    OP.DEPTHWISE_CONV_2D,
    [1, 2, 2, 2],
    [1, 1, 1, 4],
    [
      { shape: [1, 2, 2, 4], data: w },
      { shape: [4], data: [0, 0, 1, 0] },
    ],
    options.depthwise({ multiplier: 2 }),
  );
  const y = await run(bytes, [1, 2, 2, 2], x);
  assertClose(y.data, [1, 4, 101, -20]);
});

test('FULLY_CONNECTED runs on any batch size', async () => {
  const bytes = single(
    OP.FULLY_CONNECTED,
    [1, 3],
    [1, 2],
    [
      { shape: [2, 3], data: [1, 0, -1, 2, 1, 0] },
      { shape: [2], data: [0.5, -0.5] },
    ],
    options.fullyConnected(),
  );
  const y = await run(bytes, [2, 3], [1, 2, 3, 0, 1, 0]);
  assert.deepEqual(y.dims, [2, 2]);
  assertClose(y.data, [-1.5, 3.5, 0.5, 0.5]);
});

test('FULLY_CONNECTED with fused RELU6 and no bias', async () => {
  const bytes = single(
    OP.FULLY_CONNECTED,
    [1, 2],
    [1, 3],
    [{ shape: [3, 2], data: [-1, 0, 1, 1, 4, 0] }],
    options.fullyConnected(ACT.RELU6),
  );
  assertClose((await run(bytes, [1, 2], [2, 1])).data, [0, 3, 6]);
});

test('FULLY_CONNECTED flattens a 4-D input in NHWC order', async () => {
  const bytes = single(OP.FULLY_CONNECTED, [1, 1, 2, 2], [1, 1], [{ shape: [1, 4], data: [1, 10, 100, 1000] }], options.fullyConnected());
  assertClose((await run(bytes, [1, 1, 2, 2], [1, 2, 3, 4])).data, [4321]);
});

test('AVERAGE_POOL_2D SAME averages valid pixels only', async () => {
  const bytes = single(OP.AVERAGE_POOL_2D, [1, 3, 3, 1], [1, 2, 2, 1], [], options.pool({ padding: SAME, stride: [2, 2], filter: [2, 2] }));
  const y = await run(bytes, [1, 3, 3, 1], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assertClose(y.data, [3, 4.5, 7.5, 9]);
});

test('MAX_POOL_2D VALID and SAME (padding never wins)', async () => {
  const valid = single(OP.MAX_POOL_2D, [1, 3, 3, 1], [1, 2, 2, 1], [], options.pool({ stride: [1, 1], filter: [2, 2] }));
  assertClose((await run(valid, [1, 3, 3, 1], [1, 2, 3, 4, 5, 6, 7, 8, 9])).data, [5, 6, 8, 9]);
  const same = single(OP.MAX_POOL_2D, [1, 3, 3, 1], [1, 2, 2, 1], [], options.pool({ padding: SAME, stride: [2, 2], filter: [2, 2] }));
  assertClose((await run(same, [1, 3, 3, 1], [-1, -2, -3, -4, -5, -6, -7, -8, -9])).data, [-1, -3, -7, -9]);
});

test('MEAN over H and W, with and without keep_dims', async () => {
  // x[h][w][c] = 10c + 2h + w.
  const x = [0, 10, 20, 1, 11, 21, 2, 12, 22, 3, 13, 23];
  const axes = { shape: [2], data: [1, 2], type: 'int32' as const };
  const flat = await run(single(OP.MEAN, [1, 2, 2, 3], [1, 3], [axes], options.reducer(false)), [1, 2, 2, 3], x);
  assert.deepEqual(flat.dims, [1, 3]);
  assertClose(flat.data, [1.5, 11.5, 21.5]);
  const kept = await run(single(OP.MEAN, [1, 2, 2, 3], [1, 1, 1, 3], [axes], options.reducer(true)), [1, 2, 2, 3], x);
  assert.deepEqual(kept.dims, [1, 1, 1, 3]);
  assertClose(kept.data, [1.5, 11.5, 21.5]);
});

test('MEAN over W alone keeps the remaining dims in NHWC order', async () => {
  // x[h][w][c] = 100c + 10h + w; the mean over w is 100c + 10h + 0.5, laid out [h][c].
  const x = [0, 100, 1, 101, 10, 110, 11, 111];
  const bytes = single(OP.MEAN, [1, 2, 2, 2], [1, 2, 2], [{ shape: [1], data: [2], type: 'int32' }], options.reducer(false));
  assertClose((await run(bytes, [1, 2, 2, 2], x)).data, [0.5, 100.5, 10.5, 110.5]);
});

test('RESHAPE from 4-D with H, W > 1 flattens in NHWC order, and back', async () => {
  const x = Array.from({ length: 12 }, (_, i) => i);
  const flat = await run(single(OP.RESHAPE, [1, 2, 2, 3], [1, 12], [], options.reshape([1, 12])), [1, 2, 2, 3], x);
  assertClose(flat.data, x);
  const back = await run(single(OP.RESHAPE, [1, 12], [1, 2, 2, 3], [], options.reshape([1, 2, 2, 3])), [2, 12], [...x, ...x]);
  assert.deepEqual(back.dims, [2, 2, 2, 3]);
  assertClose(back.data, [...x, ...x]);
});

test('SQUEEZE of H and W, and of H alone', async () => {
  const hw = single(OP.SQUEEZE, [1, 1, 1, 3], [1, 3], [], options.squeeze([1, 2]));
  assertClose((await run(hw, [1, 1, 1, 3], [1, 2, 3])).data, [1, 2, 3]);
  // [1,1,2,2] → [1,2,2]: W stays before C.
  const h = single(OP.SQUEEZE, [1, 1, 2, 2], [1, 2, 2], [], options.squeeze([1]));
  assertClose((await run(h, [1, 1, 2, 2], [1, 2, 3, 4])).data, [1, 2, 3, 4]);
});

test('CONCATENATION on channels (axis 3 and -1) and on W', async () => {
  for (const axis of [3, -1]) {
    const b = new TfliteBuilder();
    const x = b.activation('x', [1, 1, 2, 1]);
    const c = b.constant('c', [1, 1, 2, 2], [10, 20, 30, 40]);
    const y = b.activation('y', [1, 1, 2, 3]);
    b.op(OP.CONCATENATION, [x, c], [y], options.concatenation(axis));
    assertClose((await run(b.build([x], [y]), [1, 1, 2, 1], [1, 2])).data, [1, 10, 20, 2, 30, 40]);
  }
  const b = new TfliteBuilder();
  const x = b.activation('x', [1, 1, 1, 2]);
  const c = b.constant('c', [1, 1, 2, 2], [3, 4, 5, 6]);
  const y = b.activation('y', [1, 1, 3, 2]);
  b.op(OP.CONCATENATION, [x, c], [y], options.concatenation(2));
  assertClose((await run(b.build([x], [y]), [1, 1, 1, 2], [1, 2])).data, [1, 2, 3, 4, 5, 6]);
});

test('PAD adds zeros before H and after W', async () => {
  const b = new TfliteBuilder();
  const x = b.activation('x', [1, 1, 1, 2]);
  const p = b.constant('paddings', [4, 2], [0, 0, 1, 0, 0, 1, 0, 0], 'int32');
  const y = b.activation('y', [1, 2, 2, 2]);
  b.op(OP.PAD, [x, p], [y]);
  assertClose((await run(b.build([x], [y]), [1, 1, 1, 2], [5, 6])).data, [0, 0, 0, 0, 5, 6, 0, 0]);
});

test('SOFTMAX with beta, on 2-D and over the channels of 4-D', async () => {
  const ln = Math.log;
  const plain = single(OP.SOFTMAX, [1, 3], [1, 3], [], options.softmax(1));
  assertClose((await run(plain, [1, 3], [0, ln(2), ln(4)])).data, [1 / 7, 2 / 7, 4 / 7]);
  const halved = single(OP.SOFTMAX, [1, 3], [1, 3], [], options.softmax(0.5));
  assertClose((await run(halved, [1, 3], [0, 2 * ln(2), 4 * ln(2)])).data, [1 / 7, 2 / 7, 4 / 7]);
  const spatial = single(OP.SOFTMAX, [1, 1, 2, 2], [1, 1, 2, 2], [], options.softmax(1));
  assertClose((await run(spatial, [1, 1, 2, 2], [0, ln(3), ln(2), ln(2)])).data, [0.25, 0.75, 0.5, 0.5]);
});

test('HARD_SWISH, LOGISTIC, RELU, RELU6, RELU_N1_TO_1', async () => {
  const hs = single(OP.HARD_SWISH, [1, 7], [1, 7]);
  assertClose((await run(hs, [1, 7], [-4, -3, -1, 0, 1, 3, 4])).data, [0, 0, -1 / 3, 0, 2 / 3, 3, 4]);
  const sig = single(OP.LOGISTIC, [1, 3], [1, 3]);
  assertClose((await run(sig, [1, 3], [0, Math.log(3), -Math.log(3)])).data, [0.5, 0.75, 0.25]);
  const x = [-1, 0.5, 7, -0.1];
  assertClose((await run(single(OP.RELU, [1, 4], [1, 4]), [1, 4], x)).data, [0, 0.5, 7, 0]);
  assertClose((await run(single(OP.RELU6, [1, 4], [1, 4]), [1, 4], x)).data, [0, 0.5, 6, 0]);
  assertClose((await run(single(OP.RELU_N1_TO_1, [1, 4], [1, 4]), [1, 4], [-3, 0.5, 2, -0.5])).data, [-1, 0.5, 1, -0.5]);
});

test('ADD, MUL, SUB broadcast constants against NHWC channels, with fused activations', async () => {
  // x: pixel w0 = (1, 2), pixel w1 = (3, 4).
  const x = [1, 2, 3, 4];
  const add = single(OP.ADD, [1, 1, 2, 2], [1, 1, 2, 2], [{ shape: [2], data: [10, 100] }], options.add());
  assertClose((await run(add, [1, 1, 2, 2], x)).data, [11, 102, 13, 104]);
  const mul = single(OP.MUL, [1, 1, 2, 2], [1, 1, 2, 2], [{ shape: [], data: [0.5] }], options.mul());
  assertClose((await run(mul, [1, 1, 2, 2], x)).data, [0.5, 1, 1.5, 2]);
  const sub = single(OP.SUB, [1, 1, 2, 2], [1, 1, 2, 2], [{ shape: [1, 1, 1, 2], data: [2, 3] }], options.sub(ACT.RELU));
  assertClose((await run(sub, [1, 1, 2, 2], x)).data, [0, 0, 1, 1]);
  const relu6 = single(OP.ADD, [1, 1, 2, 2], [1, 1, 2, 2], [{ shape: [2], data: [4, 4] }], options.add(ACT.RELU6));
  assertClose((await run(relu6, [1, 1, 2, 2], x)).data, [5, 6, 6, 6]);
  const n1to1 = single(OP.ADD, [1, 2], [1, 2], [{ shape: [2], data: [0, -0.5] }], options.add(ACT.RELU_N1_TO_1));
  assertClose((await run(n1to1, [1, 2], [3, -3])).data, [1, -1]);
});

test('MUL of two activations (a squeeze-and-excite style broadcast over H, W)', async () => {
  const b = new TfliteBuilder();
  const x = b.activation('x', [1, 1, 2, 2]);
  const pooled = b.activation('pooled', [1, 1, 1, 2]);
  const y = b.activation('y', [1, 1, 2, 2]);
  b.op(OP.AVERAGE_POOL_2D, [x], [pooled], options.pool({ stride: [1, 2], filter: [1, 2] }));
  b.op(OP.MUL, [x, pooled], [y], options.mul());
  // Channel means are 2 and 3.
  assertClose((await run(b.build([x], [y]), [1, 1, 2, 2], [1, 2, 3, 4])).data, [2, 6, 6, 12]);
});

/** float x → QUANTIZE (uint8) → CONV_2D 1x1 (uint8 weights, int32 bias) → DEQUANTIZE → float y. */
function quantizedConv(): Uint8Array {
  const b = new TfliteBuilder();
  const x = b.activation('x', [1, 1, 3, 2]);
  const xq = b.activation('x_q', [1, 1, 3, 2], { scale: [0.5], zeroPoint: [128] }, 'uint8');
  // w = 0.5 * (q - 128) = [1, -1]; bias = 0.25 * 4 = 1; output range [0, 25.5].
  const w = b.constant('w', [1, 1, 1, 2], [130, 126], 'uint8', { scale: [0.5], zeroPoint: [128] });
  const bias = b.constant('bias', [1], [4], 'int32', { scale: [0.25], zeroPoint: [0] });
  const yq = b.activation('y_q', [1, 1, 3, 1], { scale: [0.1], zeroPoint: [0] }, 'uint8');
  const y = b.activation('y', [1, 1, 3, 1]);
  b.op(OP.QUANTIZE, [x], [xq]).op(OP.CONV_2D, [xq, w, bias], [yq], options.conv2d({})).op(OP.DEQUANTIZE, [yq], [y]);
  return b.build([x], [y]);
}

test('quantized uint8 conv: weights dequantized, QUANTIZE/DEQUANTIZE skipped, output range clamped', async () => {
  const bytes = quantizedConv();
  // Pixels (3,1), (1,3), (40,0) → 3-1+1, 1-3+1 → 0, 40+1 → 25.5.
  assertClose((await run(bytes, [1, 1, 3, 2], [3, 1, 1, 3, 40, 0])).data, [3, 0, 25.5], 1e-4);

  const model = importTflite(bytes, 'test.tflite');
  assert.deepEqual(JSON.parse(model.metadata['tflite.input']!), {
    name: 'x',
    dtype: 'float32',
    scale: null,
    zeroPoint: null,
    realMin: null,
    realMax: null,
  });
  const quant = JSON.parse(model.metadata['tflite.quantization']!);
  assert.deepEqual(quant.w, { scale: [0.5], zeroPoint: [128], axis: 0 });
  assert.deepEqual(quant.y_q, { scale: [0.10000000149011612], zeroPoint: [0], axis: 0 });
  assert.deepEqual(Array.from(model.graph.initializers.get('w')!.data as Float32Array), [1, -1]);
  assert.equal(model.graph.outputs[0]!.name, 'y_q');
});

test('uint8 input: real range in metadata; pools clamp only when the output range is narrower', async () => {
  const quant = { scale: [0.5], zeroPoint: [10] };
  const b = new TfliteBuilder();
  const x = b.activation('image', [1, 2, 2, 1], quant, 'uint8');
  const avg = b.activation('avg', [1, 1, 1, 1], quant, 'uint8');
  b.op(OP.AVERAGE_POOL_2D, [x], [avg], options.pool({ stride: [2, 2], filter: [2, 2] }));
  const model = importTflite(b.build([x], [avg]), 'test.tflite');
  assert.deepEqual(
    model.graph.nodes.map((n) => n.opType),
    ['AveragePool'],
  );
  assert.deepEqual(JSON.parse(model.metadata['tflite.input']!), {
    name: 'image',
    dtype: 'uint8',
    scale: 0.5,
    zeroPoint: 10,
    realMin: -5,
    realMax: 122.5,
  });

  const c = new TfliteBuilder();
  const x2 = c.activation('image', [1, 2, 2, 1], quant, 'uint8');
  const max = c.activation('max', [1, 1, 1, 1], { scale: [0.1], zeroPoint: [0] }, 'uint8');
  c.op(OP.MAX_POOL_2D, [x2], [max], options.pool({ stride: [2, 2], filter: [2, 2] }));
  const bytes = c.build([x2], [max]);
  assert.deepEqual(
    importTflite(bytes, 'test.tflite').graph.nodes.map((n) => n.opType),
    ['MaxPool', 'Clip'],
  );
  assertClose((await run(bytes, [1, 2, 2, 1], [-2, 3, 30, 1])).data, [25.5], 1e-4);
});

test('int8 per-channel depthwise weights and bias dequantize along their channel axis', async () => {
  const b = new TfliteBuilder();
  const x = b.activation('x', [1, 1, 1, 2]);
  const w = b.constant('w', [1, 1, 1, 2], [10, -20], 'int8', { scale: [0.1, 0.05], zeroPoint: [0, 0], axis: 3 });
  const bias = b.constant('bias', [2], [100, -100], 'int32', { scale: [0.01, 0.02], zeroPoint: [0, 0], axis: 0 });
  const y = b.activation('y', [1, 1, 1, 2]);
  b.op(OP.DEPTHWISE_CONV_2D, [x, w, bias], [y], options.depthwise({ multiplier: 1 }));
  const bytes = b.build([x], [y]);
  // w = [1, -1], bias = [1, -2].
  assertClose((await run(bytes, [1, 1, 1, 2], [3, 4])).data, [4, -6], 1e-5);
  const quant = JSON.parse(importTflite(bytes, 'test.tflite').metadata['tflite.quantization']!);
  assert.deepEqual(quant.w.axis, 0, 'the (C·M)1HW layout puts channels first');
});

test('DEQUANTIZE of float16 weights feeds FULLY_CONNECTED', async () => {
  const b = new TfliteBuilder();
  const x = b.activation('x', [1, 3]);
  // float16 bits of 1, 2, -0.5.
  const w16 = b.constant('w16', [1, 3], [0x3c00, 0x4000, 0xb800], 'float16');
  const w = b.activation('w', [1, 3]);
  const y = b.activation('y', [1, 1]);
  b.op(OP.DEQUANTIZE, [w16], [w]).op(OP.FULLY_CONNECTED, [x, w], [y], options.fullyConnected());
  assertClose((await run(b.build([x], [y]), [1, 3], [1, 1, 4])).data, [1]);
});

test('a RELU whose quantized input is already non-negative vanishes (output copied)', async () => {
  const b = new TfliteBuilder();
  const q = { scale: [0.5], zeroPoint: [0] };
  const x = b.activation('x', [1, 2], q, 'uint8');
  const y = b.activation('y', [1, 2], q, 'uint8');
  b.op(OP.RELU, [x], [y]);
  const bytes = b.build([x], [y]);
  assert.deepEqual(
    importTflite(bytes, 'test.tflite').graph.nodes.map((n) => n.opType),
    ['Identity'],
  );
  assertClose((await run(bytes, [1, 2], [1, 2])).data, [1, 2]);
});

test('opcodes written only in the old byte field are read', async () => {
  const b = new TfliteBuilder();
  b.legacyOpcodes = true;
  const x = b.activation('x', [1, 2]);
  const y = b.activation('y', [1, 2]);
  b.op(OP.RELU6, [x], [y]);
  assertClose((await run(b.build([x], [y]), [1, 2], [-1, 9])).data, [0, 6]);
});

function conv(): Uint8Array {
  return single(
    OP.CONV_2D,
    [1, 3, 3, 2],
    [1, 2, 2, 1],
    [
      { shape: [1, 2, 2, 2], data: [1, 2, 3, 4, 5, 6, 7, 8] },
      { shape: [1], data: [0.5] },
    ],
    options.conv2d({}),
  );
}

function importError(bytes: Uint8Array): string {
  try {
    importTflite(bytes, 'model.tflite');
  } catch (e) {
    assert.ok(e instanceof QuantflowError, `not a QuantflowError: ${(e as Error)?.stack ?? e}`);
    assert.ok(!e.message.includes('\n'), 'one-line message');
    assert.ok(e.message.startsWith('model.tflite: '), e.message);
    return e.message;
  }
  assert.fail('import succeeded');
}

test('unsupported operators are named with their index', () => {
  const b = new TfliteBuilder();
  const x = b.activation('x', [1, 2]);
  const r = b.activation('r', [1, 2]);
  const y = b.activation('y', [1, 2]);
  b.op(OP.RELU, [x], [r]).op(OP.BATCH_MATMUL, [r, r], [y]);
  const message = importError(b.build([x], [y]));
  assert.match(message, /unsupported TFLite operator BATCH_MATMUL \(operator 1 of subgraph 0\); supported: ADD, /);

  const c = new TfliteBuilder();
  const x2 = c.activation('x', [1, 2]);
  const y2 = c.activation('y', [1, 2]);
  c.op(OP.GELU, [x2], [y2]);
  assert.match(importError(c.build([x2], [y2])), /operator GELU \(operator 0/);

  const d = new TfliteBuilder();
  const x3 = d.activation('x', [1, 2]);
  const y3 = d.activation('y', [1, 2]);
  d.custom('MyPostProcess', [x3], [y3]);
  assert.match(
    importError(d.build([x3], [y3])),
    /custom operator "MyPostProcess" \(operator 0 of subgraph 0\); pass --cut-before MyPostProcess/,
  );
});

test('a file that is not TFLite is rejected by its identifier', () => {
  const bytes = conv();
  bytes.set([0x41, 0x42, 0x43, 0x44], 4);
  assert.match(importError(bytes), /not a TFLite model \(file identifier "ABCD"/);
  assert.match(importError(new TextEncoder().encode('hello')), /corrupt TFLite file/);
});

test('truncated files fail cleanly at every length', () => {
  const bytes = conv();
  for (let n = 0; n < bytes.length; n++) importError(bytes.subarray(0, n));
});

test('random bytes with a TFL3 identifier fail cleanly', () => {
  for (let seed = 1; seed <= 200; seed++) {
    const noise = randomFloats(64 + seed * 8, seed);
    const bytes = Uint8Array.from(noise, (v) => Math.floor((v + 1) * 128));
    if (seed % 2) bytes.set([0x54, 0x46, 0x4c, 0x33], 4);
    importError(bytes);
  }
});

test('bit flips anywhere give a model or a QuantflowError, never a crash', () => {
  for (const bytes of [conv(), quantizedConv()])
    for (let i = 0; i < bytes.length; i++)
      for (const bit of [0x01, 0x10, 0x80]) {
        const damaged = bytes.slice();
        damaged[i]! ^= bit;
        try {
          importTflite(damaged, 'model.tflite');
        } catch (e) {
          assert.ok(e instanceof QuantflowError, `byte ${i} bit ${bit}: ${(e as Error)?.stack ?? e}`);
        }
      }
});

test('shape errors name the operator', () => {
  const bytes = single(OP.CONV_2D, [1, 3, 3, 2], [1, 3, 3, 1], [{ shape: [1, 2, 2, 2], data: new Array(8).fill(1) }], options.conv2d({}));
  assert.match(importError(bytes), /CONV_2D \(operator 0 of subgraph 0\): output is 3x3 but a 2x2 window with VALID padding/);
});

const REAL_MODELS: [string, number][] = [
  ['mobilenet_v1_0.25_224_float.tflite', 1001],
  ['mobilenet_v2_1.0_224_int8.tflite', 1001],
  ['mobilenet_v2_1.0_224_uint8.tflite', 1001],
  ['mobilenet_v3_small_1.0_224_uint8.tflite', 1001],
  ['resnet8_cifar10_float.tflite', 10],
];

for (const [file, classes] of REAL_MODELS) {
  const { path, skip } = sharedPath('models', file);
  test(`real model ${file} imports and runs a batch of 2`, { skip }, async () => {
    const model = importTflite(readFileSync(path), path);
    checkStructureReal(model);
    const input = model.graph.inputs[0]!;
    const dims = input.shape!.map((d) => (typeof d === 'number' ? d : 2));
    assert.equal(dims[1], 3);
    const data = randomFloats(
      dims.reduce((a, b) => a * b, 1),
      7,
    );
    const out = await runModel(model, { [input.name]: { dataType: 'float32', dims, data } });
    const y = out[model.graph.outputs[0]!.name]!;
    assert.deepEqual(y.dims, [2, classes]);
    assert.ok((y.data as Float32Array).every(Number.isFinite));
  });
}

function checkStructureReal(model: Model): void {
  const g = model.graph;
  assert.deepEqual(g.inputs[0]!.shape!.slice(0, 2), ['batch', 3]);
  assert.equal(g.outputs.length, 1);
  const outputs = new Set(g.outputs.map((o) => o.name));
  for (const n of g.nodes) for (const o of n.outputs) if (!outputs.has(o)) assert.ok(g.valueInfo.has(o), o);
  assert.ok(!g.nodes.some((n) => n.opType.includes('Quantize')));
  const quant: Record<string, { scale: number[]; axis: number }> = JSON.parse(model.metadata['tflite.quantization']!);
  // Per-channel weights are recorded along the ONNX output-channel axis.
  for (const q of Object.values(quant)) if (q.scale.length > 1) assert.equal(q.axis, 0);
  JSON.parse(model.metadata['tflite.input']!);
}
