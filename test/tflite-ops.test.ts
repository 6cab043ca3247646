import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { importTflite } from '../src/import/tflite/import.js';
import { runModel } from '../src/runtime/session.js';
import type { TensorData } from '../src/graph/types.js';
import { sharedPath } from './shared.js';
import { OP, options, SAME, TfliteBuilder, VALID, type ElementType, type TensorSpec } from './tflite-builder.js';

// Expected values are worked out by hand from TFLite's (NHWC) semantics and its reference
// kernels; inputs and outputs are NHWC, converted at the NCHW graph boundary.

const permuted = (data: ArrayLike<number>, dims: number[], toNchw: boolean): number[] => {
  const [n, a, b, c] = dims as [number, number, number, number];
  const out = new Array<number>(data.length);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < a; y++)
      for (let x = 0; x < b; x++)
        for (let k = 0; k < c; k++) {
          const nhwc = ((i * a + y) * b + x) * c + k;
          const nchw = ((i * c + k) * a + y) * b + x;
          if (toNchw) out[nchw] = data[nhwc]!;
          else out[nhwc] = Number(data[nchw]!);
        }
  return out;
};

interface Port {
  name: string;
  shape: number[];
  type?: ElementType;
  quant?: TensorSpec['quant'];
}

/**
 * A model of one operator with activation `inputs` (fed in order) and constants, run on
 * `feeds`; returns each output in TFLite layout with its ONNX element type.
 */
async function runOp(
  code: number,
  inputs: (Port | { name: string; shape: number[]; data: number[]; type?: ElementType })[],
  outputs: Port[],
  feeds: number[][],
  opts?: { type: number; fields: unknown[] },
): Promise<{ dims: number[]; data: number[]; dataType: string }[]> {
  const b = new TfliteBuilder();
  const ins = inputs.map((p) =>
    'data' in p ? b.constant(p.name, p.shape, p.data, p.type ?? 'float32') : b.activation(p.name, p.shape, p.quant, p.type ?? 'float32'),
  );
  const outs = outputs.map((p) => b.activation(p.name, p.shape, p.quant, p.type ?? 'float32'));
  b.op(code, ins, outs, opts as Parameters<TfliteBuilder['op']>[3]);
  const fed = inputs.flatMap((p, k) => ('data' in p ? [] : [ins[k]!]));
  const model = importTflite(b.build(fed, outs), 'test.tflite');
  const active = inputs.filter((p) => !('data' in p));
  const feed: Record<string, TensorData> = {};
  model.graph.inputs.forEach((v, k) => {
    const dims = active[k]!.shape;
    const data = dims.length === 4 ? permuted(feeds[k]!, dims, true) : feeds[k]!;
    feed[v.name] = {
      dataType: 'float32',
      dims: v.shape!.map((d, i) => (typeof d === 'number' ? d : dims[i === 0 ? 0 : i]!)),
      data: Float32Array.from(data),
    };
  });
  const result = await runModel(model, feed);
  return model.graph.outputs.map((o) => {
    const y = result[o.name]!;
    const values = Array.from(y.data as ArrayLike<number | bigint>, Number);
    if (y.dims.length !== 4) return { dims: y.dims, data: values, dataType: o.dataType };
    const [n, c, h, w] = y.dims as number[];
    return { dims: [n!, h!, w!, c!], data: permuted(values, [n!, h!, w!, c!], false).map(Number), dataType: o.dataType };
  });
}

function close(actual: number[], expected: number[], tolerance = 1e-5): void {
  assert.equal(actual.length, expected.length, `got [${actual}], expected [${expected}]`);
  actual.forEach((a, i) => assert.ok(Math.abs(a - expected[i]!) <= tolerance, `element ${i}: got [${actual}], expected [${expected}]`));
}

const x4 = (shape: number[]): Port => ({ name: 'x', shape });
const y4 = (shape: number[], type?: ElementType, quant?: TensorSpec['quant']): Port => ({ name: 'y', shape, type, quant });
const ints = (name: string, shape: number[], data: number[]) => ({ name, shape, data, type: 'int32' as const });
const iota = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

test('RESIZE_BILINEAR 2x2 → 4x4: half_pixel_centers, align_corners and neither, per channel', async () => {
  // Channel 0 = [[0,4],[8,12]], channel 1 its negative: value = 8·wy + 4·wx with wy, wx the source coordinates.
  const x = [0, -0, 4, -4, 8, -8, 12, -12];
  const grid = (w: number[]) => w.flatMap((wy) => w.flatMap((wx) => [8 * wy + 4 * wx, -(8 * wy + 4 * wx)]));
  const cases: [object, number[]][] = [
    [{ halfPixel: true }, [0, 0.25, 0.75, 1]], // (x + 0.5)/2 − 0.5, clamped to [0, 1]
    [{ alignCorners: true }, [0, 1 / 3, 2 / 3, 1]], // x·(2−1)/(4−1)
    [{}, [0, 0.5, 1, 1]], // x/2, the last clamped
  ];
  for (const [o, w] of cases) {
    const [y] = await runOp(
      OP.RESIZE_BILINEAR,
      [x4([1, 2, 2, 2]), ints('size', [2], [4, 4])],
      [y4([1, 4, 4, 2])],
      [x],
      options.resizeBilinear(o),
    );
    assert.deepEqual(y!.dims, [1, 4, 4, 2]);
    close(y!.data, grid(w), 1e-4);
  }
});

test('RESIZE_BILINEAR on uint8 tensors clamps to the output quantized range', async () => {
  const q = { scale: [0.5], zeroPoint: [0] };
  // Output range [0, 0.02·255 = 5.1]: the asymmetric grid 8·wy + 4·wx is cut at 5.1.
  const [y] = await runOp(
    OP.RESIZE_BILINEAR,
    [{ name: 'x', shape: [1, 2, 2, 1], type: 'uint8', quant: q }, ints('size', [2], [4, 4])],
    [y4([1, 4, 4, 1], 'uint8', { scale: [0.02], zeroPoint: [0] })],
    [[0, 4, 8, 12]],
    options.resizeBilinear({}),
  );
  const w = [0, 0.5, 1, 1];
  close(
    y!.data,
    w.flatMap((wy) => w.map((wx) => Math.min(8 * wy + 4 * wx, 5.1))),
    1e-4,
  );
});

test('RESIZE_NEAREST_NEIGHBOR 3 → 5 columns in all three coordinate modes', async () => {
  const cases: [object, number[]][] = [
    [{}, [10, 10, 20, 20, 30]], // floor(x·0.6)
    [{ halfPixel: true }, [10, 10, 20, 30, 30]], // floor((x + 0.5)·0.6)
    [{ alignCorners: true }, [10, 20, 20, 30, 30]], // round(x·0.5), halves up
  ];
  for (const [o, expected] of cases) {
    const [y] = await runOp(
      OP.RESIZE_NEAREST_NEIGHBOR,
      [x4([1, 1, 3, 1]), ints('size', [2], [1, 5])],
      [y4([1, 1, 5, 1])],
      [[10, 20, 30]],
      options.resizeNearest(o),
    );
    close(y!.data, expected);
  }
});

test('TRANSPOSE_CONV SAME stride 2 with bias: kernels stamped at 2·i, the overflow cut', async () => {
  // Input W = [1, 2]; channel 0 kernel [1, 10, 100], channel 1 [1, 1, 1]; pads 0 before, 1 after.
  const [y] = await runOp(
    OP.TRANSPOSE_CONV,
    [
      ints('shape', [4], [1, 1, 4, 2]),
      { name: 'w', shape: [2, 1, 3, 1], data: [1, 10, 100, 1, 1, 1] },
      x4([1, 1, 2, 1]),
      { name: 'b', shape: [2], data: [0.5, 0.5] },
    ],
    [y4([1, 1, 4, 2])],
    [[1, 2]],
    options.transposeConv(SAME, [1, 2]),
  );
  close(y!.data, [1.5, 1.5, 10.5, 1.5, 102.5, 3.5, 20.5, 2.5]);
});

test('STRIDED_SLICE with a negative stride, end mask and channel stride on NHWC', async () => {
  // x[0, 0:2, 2::-1, 1:4:2] of x = iota over [1, 2, 3, 4].
  const [y] = await runOp(
    OP.STRIDED_SLICE,
    [x4([1, 2, 3, 4]), ints('b', [4], [0, 0, 2, 1]), ints('e', [4], [1, 2, 0, 4]), ints('s', [4], [1, 1, -1, 2])],
    [y4([1, 2, 3, 2])],
    [iota(24)],
    options.stridedSlice({ end: 0b0100 }),
  );
  const expected = [0, 1].flatMap((h) => [2, 1, 0].flatMap((w) => [1, 3].map((c) => h * 12 + w * 4 + c)));
  close(y!.data, expected);
});

test('STRIDED_SLICE shrinks H and keeps W, C in NHWC order; an ellipsis covers the rest', async () => {
  const [y] = await runOp(
    OP.STRIDED_SLICE,
    [x4([1, 2, 3, 4]), ints('b', [2], [0, 1]), ints('e', [2], [0, 2]), ints('s', [2], [1, 1])],
    [y4([1, 3, 4])],
    [iota(24)],
    options.stridedSlice({ begin: 0b01, end: 0b01, shrink: 0b10 }),
  );
  close(
    y!.data,
    iota(12).map((i) => 12 + i),
  );
  // x[..., 2]: the ellipsis spans N, H, W; the last axis shrinks.
  const [z] = await runOp(
    OP.STRIDED_SLICE,
    [x4([1, 2, 3, 4]), ints('b', [2], [0, 2]), ints('e', [2], [0, 3]), ints('s', [2], [1, 1])],
    [y4([1, 2, 3])],
    [iota(24)],
    options.stridedSlice({ ellipsis: 0b01, shrink: 0b10 }),
  );
  close(
    z!.data,
    iota(6).map((i) => i * 4 + 2),
  );
});

test('SPLIT on channels and SPLIT_V on W with a −1 size', async () => {
  const x = iota(8); // [1, 1, 2, 4]
  const outs = await runOp(
    OP.SPLIT,
    [ints('axis', [], [-1]), x4([1, 1, 2, 4])],
    [y4([1, 1, 2, 2]), { name: 'y2', shape: [1, 1, 2, 2] }],
    [x],
    options.split(35, 2),
  );
  close(outs[0]!.data, [0, 1, 4, 5]);
  close(outs[1]!.data, [2, 3, 6, 7]);
  const v = await runOp(
    OP.SPLIT_V,
    [x4([1, 1, 3, 2]), ints('sizes', [2], [1, -1]), ints('axis', [], [2])],
    [y4([1, 1, 1, 2]), { name: 'y2', shape: [1, 1, 2, 2] }],
    [iota(6)],
    options.split(79, 2),
  );
  close(v[0]!.data, [0, 1]);
  close(v[1]!.data, [2, 3, 4, 5]);
});

test('PACK two [1, 2, 3] tensors on the last axis into NHWC [1, 2, 3, 2]; UNPACK channels', async () => {
  const [y] = await runOp(
    OP.PACK,
    [
      { name: 'x', shape: [1, 2, 3] },
      { name: 'c', shape: [1, 2, 3], data: [10, 11, 12, 13, 14, 15] },
    ],
    [y4([1, 2, 3, 2])],
    [iota(6)],
    options.pack(59, 2, 3),
  );
  close(
    y!.data,
    iota(6).flatMap((i) => [i, 10 + i]),
  );
  const parts = await runOp(
    OP.UNPACK,
    [x4([1, 2, 2, 3])],
    [0, 1, 2].map((k) => ({ name: `y${k}`, shape: [1, 2, 2] })),
    [iota(12)],
    options.pack(64, 3, 3),
  );
  parts.forEach((p, k) =>
    close(
      p.data,
      [0, 1, 2, 3].map((i) => i * 3 + k),
    ),
  );
});

test('TRANSPOSE of NHWC [1, 2, 3, 4] by [0, 2, 1, 3] swaps H and W', async () => {
  const [y] = await runOp(OP.TRANSPOSE, [x4([1, 2, 3, 4]), ints('perm', [4], [0, 2, 1, 3])], [y4([1, 3, 2, 4])], [iota(24)]);
  close(
    y!.data,
    [0, 1, 2].flatMap((w) => [0, 1].flatMap((h) => [0, 1, 2, 3].map((c) => h * 12 + w * 4 + c))),
  );
});

test('GATHER channels of a 4-D map, and one row (H) dropping the axis', async () => {
  const [y] = await runOp(OP.GATHER, [x4([1, 1, 2, 3]), ints('i', [2], [2, 0])], [y4([1, 1, 2, 2])], [iota(6)], options.gather(3));
  close(y!.data, [2, 0, 5, 3]);
  const [z] = await runOp(OP.GATHER, [x4([1, 2, 2, 2]), ints('i', [], [1])], [y4([1, 2, 2])], [iota(8)], options.gather(1));
  close(z!.data, [4, 5, 6, 7]);
});

test('GATHER_ND picks [n, h, w] pixels of a 4-D map', async () => {
  const [y] = await runOp(OP.GATHER_ND, [x4([1, 2, 2, 2]), ints('i', [2, 3], [0, 1, 0, 0, 0, 1])], [y4([2, 2])], [iota(8)]);
  close(y!.data, [4, 5, 2, 3]);
});

test('ARG_MAX over channels (int64) and over H (int32), ARG_MIN, first index on ties', async () => {
  // [1, 2, 2, 3]: pixel p has channels x[p·3 .. p·3+2].
  const x = [1, 5, 5, 9, 0, 2, 3, 3, 3, 0, 7, -1];
  const axis = (a: number) => ints('axis', [], [a]);
  const [c] = await runOp(OP.ARG_MAX, [x4([1, 2, 2, 3]), axis(3)], [y4([1, 2, 2], 'int64')], [x]);
  assert.equal(c!.dataType, 'int64');
  close(c!.data, [1, 0, 0, 1]);
  const [h] = await runOp(OP.ARG_MAX, [x4([1, 2, 2, 3]), axis(1)], [y4([1, 2, 3], 'int32')], [x]);
  assert.equal(h!.dataType, 'int32');
  close(h!.data, [1, 0, 0, 0, 1, 0]); // per (w, c): max of x[0,0,w,c] and x[0,1,w,c]
  const [m] = await runOp(OP.ARG_MIN, [x4([1, 2, 2, 3]), axis(-1)], [y4([1, 2, 2], 'int64')], [x]);
  close(m!.data, [0, 1, 0, 2]);
});

test('ARG_MAX on a uint8 map (segmentation head) keeps the dequantized order', async () => {
  const q = { scale: [0.25], zeroPoint: [100] };
  const [y] = await runOp(
    OP.ARG_MAX,
    [{ name: 'x', shape: [1, 1, 2, 3], type: 'uint8', quant: q }, ints('axis', [], [3])],
    [y4([1, 1, 2], 'int64')],
    [[-1, 2, 0.5, 3, -4, 2.75]],
  );
  close(y!.data, [1, 0]);
});

test('CAST float → int32 truncates; FLOOR_DIV rounds down; DIV, SQUARED_DIFFERENCE', async () => {
  const [c] = await runOp(OP.CAST, [{ name: 'x', shape: [3] }], [{ name: 'y', shape: [3], type: 'int32' }], [[2.7, -1.5, 3]]);
  assert.equal(c!.dataType, 'int32');
  close(c!.data, [2, -1, 3]);
  const two = { name: 'c', shape: [1], data: [2] };
  const [f] = await runOp(OP.FLOOR_DIV, [{ name: 'x', shape: [2] }, two], [{ name: 'y', shape: [2] }], [[7, -7]]);
  close(f!.data, [3, -4]);
  const [d] = await runOp(OP.DIV, [{ name: 'x', shape: [2] }, two], [{ name: 'y', shape: [2] }], [[7, -7]]);
  close(d!.data, [3.5, -3.5]);
  const [s] = await runOp(OP.SQUARED_DIFFERENCE, [{ name: 'x', shape: [2] }, two], [{ name: 'y', shape: [2] }], [[7, -1]]);
  close(s!.data, [25, 9]);
});

test('LEAKY_RELU, PRELU per channel on NHWC, MAXIMUM and MINIMUM with a channel constant', async () => {
  const x = [-2, 3, 4, -6]; // [1, 1, 2, 2]
  const [l] = await runOp(OP.LEAKY_RELU, [x4([1, 1, 2, 2])], [y4([1, 1, 2, 2])], [x], options.leakyRelu(0.5));
  close(l!.data, [-1, 3, 4, -3]);
  const slope = { name: 'a', shape: [1, 1, 2], data: [0.1, 0.01] };
  const [p] = await runOp(OP.PRELU, [x4([1, 1, 2, 2]), slope], [y4([1, 1, 2, 2])], [x]);
  close(p!.data, [-0.2, 3, 4, -0.06]);
  const c = { name: 'c', shape: [2], data: [0, 5] };
  const [mx] = await runOp(OP.MAXIMUM, [x4([1, 1, 2, 2]), c], [y4([1, 1, 2, 2])], [x]);
  close(mx!.data, [0, 5, 4, 5]);
  const [mn] = await runOp(OP.MINIMUM, [x4([1, 1, 2, 2]), c], [y4([1, 1, 2, 2])], [x]);
  close(mn!.data, [-2, 3, 0, -6]);
});

test('EXP, TANH, SQRT, RSQRT', async () => {
  const one = (code: number, data: number[]) =>
    runOp(code, [{ name: 'x', shape: [data.length] }], [{ name: 'y', shape: [data.length] }], [data]);
  close((await one(OP.EXP, [0, 1]))[0]!.data, [1, Math.E]);
  close((await one(OP.TANH, [0, 100]))[0]!.data, [0, 1]);
  close((await one(OP.SQRT, [4, 9]))[0]!.data, [2, 3]);
  close((await one(OP.RSQRT, [4, 0.25]))[0]!.data, [0.5, 2]);
});

test('SUM over H and W, REDUCE_MAX over H dropping it (NHWC order kept)', async () => {
  const x = iota(8); // [1, 2, 2, 2]
  const axes = (v: number[]) => ints('axes', [v.length], v);
  const [s] = await runOp(OP.SUM, [x4([1, 2, 2, 2]), axes([1, 2])], [y4([1, 2])], [x], options.reducer(false));
  close(s!.data, [0 + 2 + 4 + 6, 1 + 3 + 5 + 7]);
  const [m] = await runOp(OP.REDUCE_MAX, [x4([1, 2, 2, 2]), axes([1])], [y4([1, 2, 2])], [x], options.reducer(false));
  close(m!.data, [4, 5, 6, 7]);
});

test('SPACE_TO_DEPTH and DEPTH_TO_SPACE use TensorFlow channel order', async () => {
  // Both directions keep the NHWC element sequence of a single 2x2 block.
  const [s] = await runOp(OP.SPACE_TO_DEPTH, [x4([1, 2, 2, 2])], [y4([1, 1, 1, 8])], [iota(8)], options.blockSize(19, 2));
  close(s!.data, iota(8));
  const [d] = await runOp(OP.DEPTH_TO_SPACE, [x4([1, 1, 1, 8])], [y4([1, 2, 2, 2])], [iota(8)], options.blockSize(94, 2));
  close(d!.data, iota(8));
  // Two blocks across W: output pixel (0, 2·j + b) takes channels of input pixel j.
  const [e] = await runOp(OP.DEPTH_TO_SPACE, [x4([1, 1, 2, 4])], [y4([1, 2, 4, 1])], [iota(8)], options.blockSize(94, 2));
  close(e!.data, [0, 1, 4, 5, 2, 3, 6, 7]);
});

test('TRANSPOSE_CONV VALID refuses an output size it cannot produce', () => {
  const b = new TfliteBuilder();
  const shape = b.constant('shape', [4], [1, 1, 9, 1], 'int32');
  const w = b.constant('w', [1, 1, 3, 1], [1, 1, 1]);
  const x = b.activation('x', [1, 1, 2, 1]);
  const y = b.activation('y', [1, 1, 9, 1]);
  b.op(OP.TRANSPOSE_CONV, [shape, w, x], [y], options.transposeConv(VALID, [1, 2]));
  assert.throws(() => importTflite(b.build([x], [y]), 'test.tflite'), /TRANSPOSE_CONV \(operator 0.*cannot produce/);
});

const deeplab = sharedPath('models', 'deeplabv3_mnv2_pascal_uint8.tflite');
test('DeepLabV3 (uint8, RESIZE_BILINEAR, ARG_MAX) imports and runs to an int64 class map', { skip: deeplab.skip }, async () => {
  const model = importTflite(readFileSync(deeplab.path), 'deeplab.tflite');
  const out = model.graph.outputs[0]!;
  assert.equal(out.dataType, 'int64');
  assert.deepEqual(out.shape, ['batch', 513, 513]);
  const input = model.graph.inputs[0]!;
  // A flat grey image: every pixel is background (class 0) or some class below 21.
  const data = new Float32Array(3 * 513 * 513).fill(128);
  const result = await runModel(model, { [input.name]: { dataType: 'float32', dims: [1, 3, 513, 513], data } });
  const map = result[out.name]!;
  assert.deepEqual(map.dims, [1, 513, 513]);
  const classes = new Set(Array.from(map.data as BigInt64Array, Number));
  assert.ok(
    [...classes].every((c) => c >= 0 && c < 21),
    `classes ${[...classes]}`,
  );
});
