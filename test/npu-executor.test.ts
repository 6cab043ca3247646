import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execute, executeLayer } from '../src/npu/executor.js';
import type { Grid } from '../src/quantization/grid.js';
import type { IntTensor, NpuLayer, NpuPackage, TensorInfo } from '../src/npu/types.js';
import { loadProfile } from '../src/quantization/profile.js';
import { QuantflowError } from '../src/util/errors.js';
import { cornerConv, x3 } from './fixtures.js';

// Hand-computed layers. Real multipliers are chosen so that results land on exact halves,
// where round half up (the target) and round half to even (QuantizeLinear) differ.

const grid = (zeroPoint = 0, qmin = 0, qmax = 255): Grid => ({ scale: 1, zeroPoint, qmin, qmax });
const int32 = (...v: number[]): IntTensor => ({ dtype: 'int32', shape: [v.length], data: Int32Array.from(v) });
const int8 = (shape: number[], v: number[]): IntTensor => ({ dtype: 'int8', shape, data: Int8Array.from(v) });
const window = {
  strides: [1, 1] as [number, number],
  pads: [0, 0, 0, 0] as [number, number, number, number],
  dilations: [1, 1] as [number, number],
};

function packageOf(layer: NpuLayer, tensors: Record<string, TensorInfo>, accumulatorBits = 32): NpuPackage {
  return {
    format: 'quantflow-npu',
    version: 1,
    model: 'test',
    profile: { ...loadProfile('w8a8-channel'), accumulatorBits },
    inputs: layer.inputs,
    outputs: [layer.output],
    tensors,
    layers: [layer],
  };
}

function run(layer: NpuLayer, tensors: Record<string, TensorInfo>, inputs: number[][]): number[] {
  return [
    ...executeLayer(
      packageOf(layer, tensors),
      layer,
      inputs.map((i) => Int32Array.from(i)),
    ).output,
  ];
}

const convTensors = { x: { shape: [1, 1, 3, 3], grid: grid(10) }, y: { shape: [1, 2, 2, 2], grid: grid(100) } };

test('conv: per-channel multipliers, stride, padding, bias, round half up', () => {
  // acc channel 0 = window sums 12, 16, 24, 28 + 5 → ×0.5 = 8.5, 10.5, 14.5, 16.5 → up: 9, 11, 15, 17
  // acc channel 1 = 2·centre 2, 6, 14, 18 − 20 → ×0.75 = −13.5, −10.5, −4.5, −1.5 → up: −13, −10, −4, −1
  const layer = cornerConv({ multiplier: int32(16384, 24576), shift: int32(15, 15) });
  assert.deepEqual(run(layer, convTensors, [x3]), [109, 111, 115, 117, 87, 90, 96, 99]);
  // A fused clamp narrows the output range.
  assert.deepEqual(run({ ...layer, clamp: [90, 112] }, convTensors, [x3]), [109, 111, 112, 112, 90, 90, 96, 99]);
});

test('conv: WESS multiplies one layer multiplier by 2^−k[c] per channel', () => {
  // One M·2^−n = 0.5; channel 1 shifts one more: 0.25. Channel 1: −18, −14, −6, −2 → −4.5, −3.5, −1.5, −0.5 → −4, −3, −1, 0
  const layer = cornerConv({
    multiplier: int32(16384),
    shift: int32(15),
    channelShift: { dtype: 'uint8', shape: [2], data: Uint8Array.of(0, 1) },
  });
  assert.deepEqual(run(layer, convTensors, [x3]), [109, 111, 115, 117, 96, 97, 99, 100]);
});

test('conv: depthwise (group = channels) with a 2x2 kernel', () => {
  const layer: NpuLayer = {
    op: 'conv',
    name: 'dw',
    inputs: ['x'],
    output: 'y',
    kernel: [2, 2],
    ...window,
    group: 2,
    weights: int8([2, 1, 2, 2], [1, 0, 0, 1, 0, -1, 1, 0]),
    requant: { multiplier: int32(16384), shift: int32(14) },
    clamp: [-128, 127],
  };
  const tensors = { x: { shape: [1, 2, 3, 3], grid: grid(10) }, y: { shape: [1, 2, 2, 2], grid: grid(0, -128, 127) } };
  // Channel 0 (1..9): x00 + x11 → 6, 8, 12, 14. Channel 1 (2, 4, ..., 18): x10 − x01 → 4 everywhere.
  const x = [...x3, ...Array.from({ length: 9 }, (_, i) => 2 * (i + 1) + 10)];
  assert.deepEqual(run(layer, tensors, [x]), [6, 8, 12, 14, 4, 4, 4, 4]);
});

test('fully connected: rows times [C_out, K] weights', () => {
  const layer: NpuLayer = {
    op: 'fc',
    name: 'fc',
    inputs: ['x'],
    output: 'y',
    weights: int8([2, 3], [1, 1, 1, 1, -1, 2]),
    bias: int32(0, 10),
    requant: { multiplier: int32(16384), shift: int32(15) },
    clamp: [0, 255],
  };
  // acc = 6, 1 − 2 + 6 + 10 = 15 → ×0.5 = 3, 7.5 → 3, 8
  assert.deepEqual(run(layer, { x: { shape: [1, 3], grid: grid(0) }, y: { shape: [1, 2], grid: grid(0) } }, [[1, 2, 3]]), [3, 8]);
});

test('add: both inputs rescaled with one shift, rounded once, with broadcasting', () => {
  const layer: NpuLayer = { op: 'add', name: 'add', inputs: ['a', 'b'], output: 'y', multipliers: [3, 1], shift: 1, clamp: [0, 255] };
  const tensors = {
    a: { shape: [1, 1, 1, 3], grid: grid(128) },
    b: { shape: [1, 1, 1, 1], grid: grid(0) },
    y: { shape: [1, 1, 1, 3], grid: grid(5) },
  };
  // (3·{1, −1, 2} + 2) / 2 = 2.5, −0.5, 4 → 3, 0, 4 → +5
  assert.deepEqual(run(layer, tensors, [[129, 127, 130], [2]]), [8, 5, 9]);
});

test('mul: product of centred inputs, requantized', () => {
  const layer: NpuLayer = { op: 'mul', name: 'mul', inputs: ['a', 'b'], output: 'y', multiplier: 16384, shift: 15, clamp: [0, 255] };
  const tensors = {
    a: { shape: [1, 2, 1, 1], grid: grid(3) },
    b: { shape: [1, 1, 1, 1], grid: grid(1) },
    y: { shape: [1, 2, 1, 1], grid: grid(10) },
  };
  // {2, −3}·5·0.5 = 5, −7.5 → 5, −7 → +10
  assert.deepEqual(run(layer, tensors, [[5, 0], [6]]), [15, 3]);
});

test('average pool: padded edge windows average their valid elements with their own multiplier', () => {
  const layer: NpuLayer = {
    op: 'avgpool',
    name: 'pool',
    inputs: ['x'],
    output: 'y',
    kernel: [2, 2],
    ...window,
    pads: [1, 1, 0, 0],
    countIncludePad: false,
    windows: [
      { count: 1, multiplier: 16384, shift: 14 },
      { count: 2, multiplier: 16384, shift: 15 },
      { count: 4, multiplier: 16384, shift: 16 },
    ],
    clamp: [0, 255],
  };
  // Windows over [[1, 2], [3, 4]] from the top-left pad: {1}, {1, 2}, {1, 3}, all → 1, 1.5, 2, 2.5 → 1, 2, 2, 3
  assert.deepEqual(
    run(layer, { x: { shape: [1, 1, 2, 2], grid: grid(0) }, y: { shape: [1, 1, 2, 2], grid: grid(0) } }, [[1, 2, 3, 4]]),
    [1, 2, 2, 3],
  );
});

test('max pool keeps the grid', () => {
  const layer: NpuLayer = { op: 'maxpool', name: 'max', inputs: ['x'], output: 'y', kernel: [2, 2], ...window, strides: [2, 2] };
  const tensors = { x: { shape: [1, 1, 2, 4], grid: grid(0) }, y: { shape: [1, 1, 1, 2], grid: grid(0) } };
  assert.deepEqual(run(layer, tensors, [[1, 9, 3, 4, 5, 2, 8, 7]]), [9, 8]);
});

test('lookup table indexed from the input grid minimum', () => {
  const layer: NpuLayer = { op: 'lut', name: 'lut', inputs: ['x'], output: 'y', table: int32(50, 60, 70, 80) };
  const tensors = { x: { shape: [1, 3], grid: grid(0, -2, 1) }, y: { shape: [1, 3], grid: grid(0) } };
  assert.deepEqual(run(layer, tensors, [[1, -2, 0]]), [80, 50, 70]);
});

test('concat maps each input onto the output grid through its table', () => {
  const layer: NpuLayer = { op: 'concat', name: 'cat', inputs: ['a', 'b'], output: 'y', axis: 1, tables: [int32(0, 2, 4), int32(1, 1)] };
  const tensors = {
    a: { shape: [1, 2, 1], grid: grid(0, 0, 2) },
    b: { shape: [1, 1, 1], grid: grid(0, 0, 1) },
    y: { shape: [1, 3, 1], grid: grid(0) },
  };
  assert.deepEqual(run(layer, tensors, [[2, 1], [0]]), [4, 2, 1]);
});

test('transpose moves integers only', () => {
  const layer: NpuLayer = { op: 'transpose', name: 't', inputs: ['x'], output: 'y', perm: [0, 2, 1] };
  assert.deepEqual(
    run(layer, { x: { shape: [1, 2, 3], grid: grid(0) }, y: { shape: [1, 3, 2], grid: grid(0) } }, [[1, 2, 3, 4, 5, 6]]),
    [1, 4, 2, 5, 3, 6],
  );
});

test('multipliers too wide for float64 products take the exact integer path', () => {
  // acc = 2^25 + 1 and M = 2^31 − 1: acc·M ≈ 2^56 is beyond float64's exact integers.
  const acc = 2 ** 25 + 1;
  const m = 2 ** 31 - 1;
  const layer: NpuLayer = {
    op: 'fc',
    name: 'fc',
    inputs: ['x'],
    output: 'y',
    weights: int8([1, 1], [0]),
    bias: int32(acc),
    requant: { multiplier: int32(m), shift: int32(42) },
    clamp: [-32768, 32767],
  };
  const expected = Number((BigInt(acc) * BigInt(m) + (1n << 41n)) >> 42n);
  const tensors = { x: { shape: [1, 1], grid: grid(0) }, y: { shape: [1, 1], grid: grid(0, -32768, 32767) } };
  assert.deepEqual(run(layer, tensors, [[0]]), [expected]);
});

test('an accumulator beyond the profile width is an error naming the layer', () => {
  const layer = cornerConv({ multiplier: int32(16384), shift: int32(15) });
  const pkg = packageOf({ ...layer, bias: int32(40000, 0) }, convTensors, 16);
  assert.throws(
    () => execute(pkg, { x: x3 }),
    (e: unknown) => e instanceof QuantflowError && /'conv'.*16-bit accumulator/.test(e.message),
  );
});

test('execute checks inputs against their grid', () => {
  const pkg = packageOf(cornerConv({ multiplier: int32(16384), shift: int32(15) }), convTensors);
  assert.throws(() => execute(pkg, { x: [1, 2] }), QuantflowError);
  assert.throws(() => execute(pkg, { x: x3.map((v) => v + 300) }), /outside its grid/);
  assert.deepEqual([...execute(pkg, { x: x3 }).tensors.get('y')!].slice(0, 4), [109, 111, 115, 117]);
});
