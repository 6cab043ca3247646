import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execute } from '../src/npu/executor.js';
import { buildIntegerModel } from '../src/npu/integer-model.js';
import type { IntTensor, NpuLayer, NpuPackage, TensorInfo } from '../src/npu/types.js';
import type { Grid } from '../src/quantization/grid.js';
import { loadProfile } from '../src/quantization/profile.js';
import { runModel } from '../src/runtime/session.js';
import { cornerConv, x3 } from './fixtures.js';

// Tiny layers under the tflite-int8 profile, their outputs worked out by hand with TFLite's
// int8 formulas (conv.h, add.h, pooling.h, mean.h); each is chosen to land on ties, where
// TFLite's double rounding differs from quantflow's single round half up. The package's
// integer ONNX model must give the same integers.

const grid = (scale: number, zeroPoint: number): Grid => ({ scale, zeroPoint, qmin: 0, qmax: 255 });
const int32 = (...v: number[]): IntTensor => ({ dtype: 'int32', shape: [v.length], data: Int32Array.from(v) });
const window = {
  strides: [1, 1] as [number, number],
  pads: [0, 0, 0, 0] as [number, number, number, number],
  dilations: [1, 1] as [number, number],
};

/** Runs `layers` on `inputs` (integers per input) with the executor and the integer ONNX model; both must agree. */
async function run(
  layers: NpuLayer[],
  tensors: Record<string, TensorInfo>,
  inputs: Record<string, number[]>,
  profile = 'tflite-int8',
): Promise<number[]> {
  const pkg: NpuPackage = {
    format: 'quantflow-npu',
    version: 1,
    model: 'tflite',
    profile: loadProfile(profile),
    inputs: Object.keys(inputs),
    outputs: [layers.at(-1)!.output],
    tensors,
    layers,
  };
  const got = [...execute(pkg, inputs).tensors.get(layers.at(-1)!.output)!];
  const feeds = Object.fromEntries(
    Object.entries(inputs).map(([name, q]) => {
      const t = tensors[name]!;
      const data = Float32Array.from(q, (v) => (v - t.grid.zeroPoint) * t.grid.scale);
      return [name, { dataType: 'float32' as const, dims: t.shape, data }];
    }),
  );
  const twin = await runModel(buildIntegerModel(pkg, { allTensors: true }), feeds);
  assert.deepEqual([...(twin[layers.at(-1)!.output]!.data as Float32Array)], got, 'integer ONNX model');
  return got;
}

test('conv: per-channel Q0.31 requantization with TFLite double rounding', async () => {
  // 3x3 input, centered values 1..9 (zero point 10); 3x3 kernel, pad 1, stride 2. Channel 0
  // sums each window (ones) + bias 5: 17, 21, 29, 33; ×0.5 (M = 2^30, e = 0): the doubling
  // high multiply rounds ties up, 9, 11, 15, 17. Channel 1 is twice the centre − 20: −18,
  // −14, −6, −2; ×0.25 (M = 2^30, e = −1): −9, −7, −3, −1 after the high multiply, then
  // the right shift by 1 rounds −4.5, −3.5, −1.5, −0.5 away from zero: −5, −4, −2, −1
  // (round half up would give −4, −3, −1, 0). Output zero point 100.
  const conv = cornerConv({ multiplier: int32(2 ** 30, 2 ** 30), shift: int32(31, 32) });
  const tensors = { x: { shape: [1, 1, 3, 3], grid: grid(1, 10) }, y: { shape: [1, 2, 2, 2], grid: grid(1, 100) } };
  assert.deepEqual(await run([conv], tensors, { x: x3 }), [109, 111, 115, 117, 95, 96, 98, 99]);
});

test("conv with XNNPACK's rounding: float32 acc·scale rounded half to even", async () => {
  // The same sums as above: channel 0 ×0.5 (M = 2^23, s = 24) gives 8.5, 10.5, 14.5, 16.5 →
  // 8, 10, 14, 16; channel 1 ×0.25 (s = 25) gives −4.5, −3.5, −1.5, −0.5 → −4, −4, −2, 0.
  const conv = cornerConv({ multiplier: int32(2 ** 23, 2 ** 23), shift: int32(24, 25) });
  const tensors = { x: { shape: [1, 1, 3, 3], grid: grid(1, 10) }, y: { shape: [1, 2, 2, 2], grid: grid(1, 100) } };
  assert.deepEqual(await run([conv], tensors, { x: x3 }, 'tflite-int8-xnnpack'), [108, 110, 114, 116, 96, 96, 98, 100]);
});

test('add and sub: left shift 20, one multiplier per input and one for the output', async () => {
  // s_a = 0.5, s_b = 0.25, s_y = 1: 2·max = 1, so the inputs scale by 0.5 (M = 2^30, e = 0)
  // and 0.25 (e = −1), the output by 2^−20 (e = −19). a = {1, −1, 2, −4}·0.5, b = 2·0.25:
  // (a + b)·2^20 = {1, 0, 1.5, −1.5}·2^20 exactly, then ×2^−20 rounds 1.5 → 2 and −1.5 → −2
  // away from zero. a − b = {0, −1, 0.5, −2.5} → 0, −1, 1, −3. Output zero point 5.
  const m = (multiplier: number, shift: number) => ({ multiplier, shift });
  const add: NpuLayer = {
    op: 'tflite-add',
    name: 'add',
    inputs: ['a', 'b'],
    output: 'y',
    leftShift: 20,
    inputScales: [m(2 ** 30, 31), m(2 ** 30, 32)],
    outputScale: m(2 ** 30, 50),
    subtract: false,
    clamp: [0, 255],
  };
  const tensors = {
    a: { shape: [1, 1, 1, 4], grid: grid(0.5, 128) },
    b: { shape: [1, 1, 1, 1], grid: grid(0.25, 0) },
    y: { shape: [1, 1, 1, 4], grid: grid(1, 5) },
  };
  const inputs = { a: [129, 127, 130, 124], b: [2] };
  assert.deepEqual(await run([add], tensors, inputs), [6, 5, 7, 3]);
  assert.deepEqual(await run([{ ...add, subtract: true }], tensors, inputs), [5, 4, 6, 2]);
});

test('average pool: rounded mean of the stored int8 values over in-bounds taps, then the optional regrid', async () => {
  // 2x2 input, uint8 grid stored as q − 128 = {1, 2, 3, −8}; a 2x2 window padded top-left by
  // one sees {1}, {1, 2}, {1, 3} and all four: 1, 1.5 → 2, 2, −0.5 → −1 (ties away from zero).
  const pool: NpuLayer = {
    op: 'tflite-avgpool',
    name: 'pool',
    inputs: ['x'],
    output: 'y',
    kernel: [2, 2],
    ...window,
    pads: [1, 1, 0, 0],
    clamp: [0, 255],
  };
  const x = [129, 130, 131, 120];
  const same = { x: { shape: [1, 1, 2, 2], grid: grid(1, 130) }, y: { shape: [1, 1, 2, 2], grid: grid(1, 130) } };
  assert.deepEqual(await run([pool], same, { x }), [129, 130, 130, 127]);
  // Onto s_y = 2, z_y = 100: (q − 130)·0.5 = −0.5, 0, 0, −1.5 → 0, 0, 0, −1 (the high multiply's ties go up)
  const regrid: NpuLayer = { ...pool, regrid: { multiplier: 2 ** 30, shift: 31 } };
  const other = { ...same, y: { shape: [1, 1, 2, 2], grid: grid(2, 100) } };
  assert.deepEqual(await run([regrid], other, { x }), [100, 100, 100, 99]);
  // XNNPACK's QUANTIZE after the pool: M = lrintf(256·0.5) = 128, ⌊((q − 130)·128 + 128) / 256⌋: −0.5 → 0, −1.5 → −1
  const xnnpack: NpuLayer = { ...pool, regrid: { multiplier: 128, shift: 8 } };
  assert.deepEqual(await run([xnnpack], other, { x }, 'tflite-int8-xnnpack'), [100, 100, 100, 99]);
  // From s_x = 1 onto s_y = 1.5: M = lrintf(256/1.5) = 171; (q − 130)·171/256 for −1, 0, 0, −3 → −0.67, 0, 0, −2.0 → −1, 0, 0, −2
  const third: NpuLayer = { ...pool, regrid: { multiplier: 171, shift: 8 } };
  const wider = { ...same, y: { shape: [1, 1, 2, 2], grid: grid(1.5, 100) } };
  assert.deepEqual(await run([third], wider, { x }, 'tflite-int8-xnnpack'), [99, 100, 100, 98]);
});

test('mean: the centered sum rescaled, then divided by the element count with ties away from zero', async () => {
  // s_x/s_y = 2 (M = 2^30, e = 2). Channel 0: {1, 2, 3, 5} sums to 11 → 22 → 22/4 = 5.5 → 6;
  // channel 1: {−1, −2, 0, −2} → −5 → −10 → −2.5 → −3. Output zero point 3.
  const mean: NpuLayer = { op: 'tflite-mean', name: 'mean', inputs: ['x'], output: 'y', multiplier: 2 ** 30, shift: 29, clamp: [0, 255] };
  const tensors = { x: { shape: [1, 2, 2, 2], grid: grid(1, 10) }, y: { shape: [1, 2, 1, 1], grid: grid(0.5, 3) } };
  assert.deepEqual(await run([mean], tensors, { x: [11, 12, 13, 15, 9, 8, 10, 8] }), [9, 0]);
});
