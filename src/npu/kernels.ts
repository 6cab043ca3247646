import type { Grid } from '../quantization/grid.js';
import {
  multiplyByQuantizedMultiplier,
  multiplyByQuantizedMultiplierTflite,
  requantizeFp32,
  roundedDivideTflite,
  roundingRightShift,
} from '../quantization/fixedpoint.js';
import type { Rounding } from '../quantization/profile.js';
import { tapRange } from '../graph/window.js';
import { windowAxis, windowOutput } from './window.js';
import type {
  AddLayer,
  AvgPoolLayer,
  ConcatLayer,
  ConvLayer,
  FullyConnectedLayer,
  IntTensor,
  LutLayer,
  MaxPoolLayer,
  MulLayer,
  PadLayer,
  Requantization,
  SelectLayer,
  TfliteAddLayer,
  TfliteAvgPoolLayer,
  TfliteMeanLayer,
  TransposeLayer,
  Window,
} from './types.js';

/**
 * Integer kernels of the reference executor, batch 1, NCHW. Accumulators are integers held
 * in float64, exact below 2^53 (far beyond any accumulator width), so the executor sees an
 * overflow instead of wrapping silently; each accumulating kernel returns the largest |acc|
 * it met.
 */
export interface KernelResult {
  output: Int32Array;
  /** Largest |accumulator| before requantization (0 for kernels that do not accumulate). */
  peak: number;
}

/** Input, its shape and grid, as the executor hands them to a kernel. */
export interface Operand {
  data: Int32Array;
  shape: number[];
  grid: Grid;
}

function centered(x: Operand): Float64Array {
  const out = new Float64Array(x.data.length);
  const z = x.grid.zeroPoint;
  for (let i = 0; i < out.length; i++) out[i] = x.data[i]! - z;
  return out;
}

/** Largest |acc[i]| for i < count. */
function peakOf(acc: Float64Array, count: number): number {
  let peak = 0;
  for (let i = 0; i < count; i++) {
    const a = acc[i]!;
    if (a > peak) peak = a;
    else if (-a > peak) peak = -a;
  }
  return peak;
}

/**
 * Requantizes `count` accumulators of channel `c` into `out` at `at` and returns their
 * largest |acc|. Round half up of acc·M·2^−s is floor(acc·M·2^−s + 0.5), exact in float64
 * while |acc·M| < 2^53 (see fixedpoint.ts); beyond that the 2^53-safe integer routine runs.
 * With the profile's rounding 'tflite', TFLite's MultiplyByQuantizedMultiplier instead; with
 * 'xnnpack', XNNPACK's float32 requantization (M·2^−s is then the float32 scale itself).
 */
function requantize(
  acc: Float64Array,
  count: number,
  r: Requantization,
  c: number,
  zy: number,
  clamp: [number, number],
  out: Int32Array,
  at: number,
  rounding: Rounding,
): number {
  const m = r.multiplier.data[r.multiplier.data.length > 1 ? c : 0]!;
  const s = r.shift.data[r.shift.data.length > 1 ? c : 0]! + (r.channelShift ? r.channelShift.data[c]! : 0);
  const peak = peakOf(acc, count);
  if (rounding === 'xnnpack') requantizeFixed(requantizeFp32, acc, count, m * 2 ** -s, 0, zy, clamp[0], clamp[1], out, at);
  else if (rounding === 'half-up' && peak * Math.abs(m) < 2 ** 53)
    requantizeFloat(acc, count, m * 2 ** -s, zy, clamp[0], clamp[1], out, at);
  else
    requantizeFixed(
      rounding === 'tflite' ? multiplyByQuantizedMultiplierTflite : multiplyByQuantizedMultiplier,
      acc,
      count,
      m,
      s,
      zy,
      clamp[0],
      clamp[1],
      out,
      at,
    );
  return peak;
}

// Hot loops live in small functions of their own: V8 optimizes them whole instead of
// deoptimizing on a branch that had never run when the loop was compiled.
function requantizeFloat(
  acc: Float64Array,
  count: number,
  scale: number,
  zy: number,
  lo: number,
  hi: number,
  out: Int32Array,
  at: number,
): void {
  for (let i = 0; i < count; i++) {
    const q = Math.floor(acc[i]! * scale + 0.5) + zy;
    out[at + i] = q < lo ? lo : q > hi ? hi : q;
  }
}

/** Requantization by a multiply function of (acc, m, s): wide accumulators, TFLite's or XNNPACK's arithmetic. */
function requantizeFixed(
  multiply: (x: number, m: number, s: number) => number,
  acc: Float64Array,
  count: number,
  m: number,
  s: number,
  zy: number,
  lo: number,
  hi: number,
  out: Int32Array,
  at: number,
): void {
  for (let i = 0; i < count; i++) {
    const q = multiply(acc[i]!, m, s) + zy;
    out[at + i] = q < lo ? lo : q > hi ? hi : q;
  }
}

/** Weights as float64 (exact), converted once per weight tensor: the kernels multiply doubles. */
const floatWeights = new WeakMap<object, Float64Array>();
function weightsOf(t: IntTensor): Float64Array {
  let w = floatWeights.get(t.data);
  if (!w) floatWeights.set(t.data, (w = Float64Array.from(t.data)));
  return w;
}

/** Σ a[i + k]·b[j + k] for k < n, in four independent partial sums so the additions overlap. */
function dot(a: Float64Array, i: number, b: Float64Array, j: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let k = 0;
  for (; k + 3 < n; k += 4) {
    s0 += a[i + k]! * b[j + k]!;
    s1 += a[i + k + 1]! * b[j + k + 1]!;
    s2 += a[i + k + 2]! * b[j + k + 2]!;
    s3 += a[i + k + 3]! * b[j + k + 3]!;
  }
  for (; k < n; k++) s0 += a[i + k]! * b[j + k]!;
  return s0 + s1 + s2 + s3;
}

/** Conv: exact integer sums per output channel (three loop shapes), plus bias, requantized. */
export function conv(l: ConvLayer, x: Operand, outShape: number[], zy: number, rounding: Rounding): KernelResult {
  const [, outC, oh, ow] = outShape as [number, number, number, number];
  const plane = oh * ow;
  const acc = new Float64Array(plane);
  const output = new Int32Array(outC * plane);
  const weights = weightsOf(l.weights);
  const pointwise = l.kernel.every((k) => k === 1) && l.strides.every((s) => s === 1) && l.pads.every((p) => p === 0) && l.group === 1;
  const depthwise = l.group === x.shape[1] && l.group === outC;
  // Pointwise convolutions read the input as HWC rows of channels, the others as planes.
  const input = pointwise ? centeredHwc(x) : centered(x);
  const g = geometry(l, x.shape, oh, ow);
  const bias = l.bias?.data;
  let peak = 0;
  for (let co = 0; co < outC; co++) {
    if (pointwise) pointwiseSums(weights, input, x.shape[1]!, co, plane, acc);
    else if (depthwise) depthwiseSums(weights, input, g, co, acc);
    else directSums(weights, input, g, co, acc);
    if (bias) addConstant(acc, plane, bias[co]!);
    peak = Math.max(peak, requantize(acc, plane, l.requant, co, zy, l.clamp, output, co * plane, rounding));
  }
  return { output, peak };
}

/** Everything the window loops need, as plain numbers. */
interface Geometry {
  h: number;
  w: number;
  oh: number;
  ow: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  dh: number;
  dw: number;
  pt: number;
  pl: number;
  inPerGroup: number;
  outPerGroup: number;
}

function geometry(l: ConvLayer, shape: number[], oh: number, ow: number): Geometry {
  const [, channels, h, w] = shape as [number, number, number, number];
  return {
    h,
    w,
    oh,
    ow,
    kh: l.kernel[0],
    kw: l.kernel[1],
    sh: l.strides[0],
    sw: l.strides[1],
    dh: l.dilations[0],
    dw: l.dilations[1],
    pt: l.pads[0],
    pl: l.pads[1],
    inPerGroup: channels / l.group,
    outPerGroup: l.weights.shape[0]! / l.group,
  };
}

function addConstant(acc: Float64Array, count: number, b: number): void {
  for (let i = 0; i < count; i++) acc[i]! += b;
}

/** (q − z) of every element, channels last: each pixel's channels are contiguous. */
function centeredHwc(x: Operand): Float64Array {
  const channels = x.shape[1]!;
  const plane = x.data.length / channels;
  const z = x.grid.zeroPoint;
  const out = new Float64Array(x.data.length);
  for (let c = 0; c < channels; c++) for (let p = 0; p < plane; p++) out[p * channels + c] = x.data[c * plane + p]! - z;
  return out;
}

/** 1x1 stride 1 is a matrix product: one dot product over the input channels per pixel. */
function pointwiseSums(weights: Float64Array, hwc: Float64Array, channels: number, co: number, plane: number, acc: Float64Array): void {
  const row = co * channels;
  for (let p = 0; p < plane; p++) acc[p] = dot(weights, row, hwc, p * channels, channels);
}

/** One input channel per output channel: each output pixel sums its in-bounds taps. */
function depthwiseSums(weights: Float64Array, xc: Float64Array, g: Geometry, co: number, acc: Float64Array): void {
  const { h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl } = g;
  const xBase = co * h * w;
  const wBase = co * kh * kw;
  for (let oy = 0, o = 0; oy < oh; oy++) {
    for (let ox = 0; ox < ow; ox++, o++) {
      let s = 0;
      for (let ky = 0; ky < kh; ky++) {
        const iy = oy * sh - pt + ky * dh;
        if (iy < 0 || iy >= h) continue;
        for (let kx = 0; kx < kw; kx++) {
          const ix = ox * sw - pl + kx * dw;
          if (ix >= 0 && ix < w) s += weights[wBase + ky * kw + kx]! * xc[xBase + iy * w + ix]!;
        }
      }
      acc[o] = s;
    }
  }
}

/**
 * Any other convolution, as a sum of shifted rows: for each (input channel, tap) the weight
 * is multiplied into the contiguous run of output columns whose input lies inside the row,
 * which keeps the inner loop free of bounds checks.
 */
function directSums(weights: Float64Array, xc: Float64Array, g: Geometry, co: number, acc: Float64Array): void {
  const { h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, inPerGroup, outPerGroup } = g;
  acc.fill(0);
  const firstIn = Math.floor(co / outPerGroup) * inPerGroup;
  for (let ci = 0; ci < inPerGroup; ci++) {
    const xBase = (firstIn + ci) * h * w;
    const wBase = (co * inPerGroup + ci) * kh * kw;
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++) {
        const wv = weights[wBase + ky * kw + kx]!;
        if (wv === 0) continue;
        // Output columns whose input column ox·sw + offset lies inside the row.
        const offset = kx * dw - pl;
        const oxStart = Math.max(0, Math.ceil(-offset / sw));
        const oxEnd = Math.min(ow, Math.floor((w - 1 - offset) / sw) + 1);
        for (let oy = 0; oy < oh; oy++) {
          const iy = oy * sh - pt + ky * dh;
          if (iy >= 0 && iy < h) shiftedRow(acc, oy * ow + oxStart, oy * ow + oxEnd, wv, xc, xBase + iy * w + oxStart * sw + offset, sw);
        }
      }
    }
  }
}

function shiftedRow(acc: Float64Array, from: number, to: number, wv: number, xc: Float64Array, xi: number, step: number): void {
  for (let ai = from; ai < to; ai++, xi += step) acc[ai]! += wv * xc[xi]!;
}

/** Gemm/MatMul: each row of the input (last axis K) times the [C_out, K] weights. */
export function fullyConnected(l: FullyConnectedLayer, x: Operand, zy: number, rounding: Rounding): KernelResult {
  const [outC, k] = l.weights.shape as [number, number];
  const rows = x.data.length / k;
  const xc = centered(x);
  const weights = weightsOf(l.weights);
  const bias = l.bias?.data;
  const acc = new Float64Array(rows);
  const output = new Int32Array(rows * outC);
  const channel = new Int32Array(rows);
  let peak = 0;
  for (let co = 0; co < outC; co++) {
    for (let r = 0; r < rows; r++) acc[r] = (bias ? bias[co]! : 0) + dot(weights, co * k, xc, r * k, k);
    peak = Math.max(peak, requantize(acc, rows, l.requant, co, zy, l.clamp, channel, 0, rounding));
    for (let r = 0; r < rows; r++) output[r * outC + co] = channel[r]!;
  }
  return { output, peak };
}

/** For each element of `outShape`, the flat index of the element of `inShape` broadcast to it. */
function broadcastIndex(outShape: number[], inShape: number[]): Int32Array {
  const strides = new Array<number>(outShape.length).fill(0);
  for (let i = outShape.length - 1, s = 1, j = inShape.length - 1; j >= 0; i--, j--) {
    strides[i] = inShape[j] === 1 ? 0 : s;
    s *= inShape[j]!;
  }
  return stridedIndex(outShape, strides);
}

/** Flat input index for every output element, given the input stride of each output axis. */
function stridedIndex(outShape: number[], strides: number[]): Int32Array {
  const size = outShape.reduce((a, b) => a * b, 1);
  const index = new Int32Array(size);
  const pos = new Array<number>(outShape.length).fill(0);
  for (let i = 0, at = 0; i < size; i++) {
    index[i] = at;
    for (let d = outShape.length - 1; d >= 0; d--) {
      pos[d]++;
      at += strides[d]!;
      if (pos[d]! < outShape[d]!) break;
      at -= strides[d]! * pos[d]!;
      pos[d] = 0;
    }
  }
  return index;
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Elementwise over two broadcast operands: `f(a − z_a, b − z_b)` for every output element. */
function binary(a: Operand, b: Operand, outShape: number[], f: (x: number, y: number, i: number) => void): void {
  const ia = sameShape(a.shape, outShape) ? undefined : broadcastIndex(outShape, a.shape);
  const ib = sameShape(b.shape, outShape) ? undefined : broadcastIndex(outShape, b.shape);
  const size = outShape.reduce((x, y) => x * y, 1);
  const [za, zb] = [a.grid.zeroPoint, b.grid.zeroPoint];
  for (let i = 0; i < size; i++) f(a.data[ia ? ia[i]! : i]! - za, b.data[ib ? ib[i]! : i]! - zb, i);
}

/**
 * The rescaled sum is a requantization product, like acc·M of a convolution, not an
 * accumulator: it needs (activation bits + 1) + multiplierBits + 1 bits by construction, so
 * no peak is reported against the accumulator width.
 */
export function add(l: AddLayer, a: Operand, b: Operand, outShape: number[], zy: number): KernelResult {
  const output = new Int32Array(outShape.reduce((x, y) => x * y, 1));
  const [ma, mb] = l.multipliers;
  const [lo, hi] = l.clamp;
  binary(a, b, outShape, (x, y, i) => {
    const q = roundingRightShift(x * ma + y * mb, l.shift) + zy;
    output[i] = q < lo ? lo : q > hi ? hi : q;
  });
  return { output, peak: 0 };
}

export function mul(l: MulLayer, a: Operand, b: Operand, outShape: number[], zy: number, rounding: Rounding): KernelResult {
  const output = new Int32Array(outShape.reduce((x, y) => x * y, 1));
  const [lo, hi] = l.clamp;
  const rescale =
    rounding === 'xnnpack'
      ? (acc: number, m: number, s: number) => requantizeFp32(acc, m * 2 ** -s)
      : rounding === 'tflite'
        ? multiplyByQuantizedMultiplierTflite
        : multiplyByQuantizedMultiplier;
  let peak = 0;
  binary(a, b, outShape, (x, y, i) => {
    const acc = x * y;
    peak = Math.max(peak, Math.abs(acc));
    const q = rescale(acc, l.multiplier, l.shift) + zy;
    output[i] = q < lo ? lo : q > hi ? hi : q;
  });
  return { output, peak };
}

export function averagePool(l: AvgPoolLayer, x: Operand, zy: number): KernelResult {
  const byCount = new Map(l.windows.map((r) => [r.count, r]));
  const output = new Int32Array(windowedSize(l, x));
  const [lo, hi] = l.clamp;
  let peak = 0;
  windowSums(l, x, -x.grid.zeroPoint, (o, acc, taps) => {
    const r = byCount.get(l.countIncludePad ? l.kernel[0] * l.kernel[1] : taps)!;
    peak = Math.max(peak, Math.abs(acc));
    const q = multiplyByQuantizedMultiplier(acc, r.multiplier, r.shift) + zy;
    output[o] = q < lo ? lo : q > hi ? hi : q;
  });
  return { output, peak };
}

/** Elements of a pooling layer's output over `x`. */
function windowedSize(l: Window, x: Operand): number {
  const [oh, ow] = windowOutput(l, x.shape[2]!, x.shape[3]!);
  return x.shape[1]! * oh * ow;
}

/**
 * Every pooling window over NCHW `x`, in output order: `visit` gets the output index, the sum
 * of q + `bias` over the window's taps inside the input, and how many taps that is.
 */
function windowSums(l: Window, x: Operand, bias: number, visit: (o: number, sum: number, taps: number) => void): void {
  const [, channels, h, w] = x.shape as [number, number, number, number];
  const [oh, ow] = windowOutput(l, h, w);
  const [ay, ax] = [windowAxis(l, 0), windowAxis(l, 1)];
  for (let c = 0, o = 0; c < channels; c++) {
    for (let oy = 0; oy < oh; oy++) {
      const [y0, y1] = tapRange(ay, oy, h);
      for (let ox = 0; ox < ow; ox++, o++) {
        const [x0, x1] = tapRange(ax, ox, w);
        let acc = 0;
        for (let ky = y0; ky < y1; ky++) {
          const row = c * h * w + (oy * l.strides[0] - l.pads[0] + ky * l.dilations[0]) * w;
          for (let kx = x0; kx < x1; kx++) acc += x.data[row + ox * l.strides[1] - l.pads[1] + kx * l.dilations[1]]! + bias;
        }
        visit(o, acc, (y1 - y0) * (x1 - x0));
      }
    }
  }
}

/**
 * TFLite's int8 ADD/SUB: (q − z)·2^leftShift rescaled per input, summed, rescaled onto the
 * output grid, each step TFLite's MultiplyByQuantizedMultiplier. Like `add`, no accumulator.
 */
export function tfliteAdd(l: TfliteAddLayer, a: Operand, b: Operand, outShape: number[], zy: number): KernelResult {
  const output = new Int32Array(outShape.reduce((x, y) => x * y, 1));
  const [ma, mb] = l.inputScales;
  const { multiplier, shift } = l.outputScale;
  const left = 2 ** l.leftShift;
  const sign = l.subtract ? -1 : 1;
  const [lo, hi] = l.clamp;
  binary(a, b, outShape, (x, y, i) => {
    const sa = multiplyByQuantizedMultiplierTflite(x * left, ma.multiplier, ma.shift);
    const sb = multiplyByQuantizedMultiplierTflite(y * left, mb.multiplier, mb.shift);
    const q = multiplyByQuantizedMultiplierTflite(sa + sign * sb, multiplier, shift) + zy;
    output[i] = q < lo ? lo : q > hi ? hi : q;
  });
  return { output, peak: 0 };
}

/**
 * The value TFLite stores for q: its int8 (int16) tensors span −2^(b−1)..2^(b−1) − 1, so a
 * grid starting at qmin is shifted by −2^(b−1) − qmin (−128 for uint8 grids, 0 for int8).
 */
function storedOffset(g: Grid): number {
  return -(g.qmax - g.qmin + 1) / 2 - g.qmin;
}

/** TFLite's int8 AVERAGE_POOL_2D on the stored values, then the optional int8 → int8 regrid. */
export function tfliteAveragePool(l: TfliteAvgPoolLayer, x: Operand, zy: number, rounding: Rounding): KernelResult {
  // The regrid is the QUANTIZE after the pool: XNNPACK's conversion (half up of M·2^−8) when delegated.
  const regrid = rounding === 'xnnpack' ? multiplyByQuantizedMultiplier : multiplyByQuantizedMultiplierTflite;
  const offset = storedOffset(x.grid);
  const zx = x.grid.zeroPoint;
  const output = new Int32Array(windowedSize(l, x));
  const [lo, hi] = l.clamp;
  let peak = 0;
  windowSums(l, x, offset, (o, acc, taps) => {
    peak = Math.max(peak, Math.abs(acc));
    const average = roundedDivideTflite(acc, taps) - offset;
    const q = l.regrid ? regrid(average - zx, l.regrid.multiplier, l.regrid.shift) + zy : average;
    output[o] = q < lo ? lo : q > hi ? hi : q;
  });
  return { output, peak };
}

/** TFLite's int8 MEAN over height and width: rescale the centered sum, then divide by the count. */
export function tfliteMean(l: TfliteMeanLayer, x: Operand, zy: number): KernelResult {
  const [, channels, h, w] = x.shape as [number, number, number, number];
  const plane = h * w;
  const zx = x.grid.zeroPoint;
  const output = new Int32Array(channels);
  const [lo, hi] = l.clamp;
  let peak = 0;
  for (let c = 0; c < channels; c++) {
    let acc = 0;
    for (let i = c * plane; i < (c + 1) * plane; i++) acc += x.data[i]! - zx;
    peak = Math.max(peak, Math.abs(acc));
    const q = roundedDivideTflite(multiplyByQuantizedMultiplierTflite(acc, l.multiplier, l.shift), plane) + zy;
    output[c] = q < lo ? lo : q > hi ? hi : q;
  }
  return { output, peak };
}

export function maxPool(l: MaxPoolLayer, x: Operand): KernelResult {
  const [, channels, h, w] = x.shape as [number, number, number, number];
  const [oh, ow] = windowOutput(l, h, w);
  const [ay, ax] = [windowAxis(l, 0), windowAxis(l, 1)];
  const output = new Int32Array(channels * oh * ow);
  for (let c = 0, o = 0; c < channels; c++) {
    for (let oy = 0; oy < oh; oy++) {
      const [y0, y1] = tapRange(ay, oy, h);
      for (let ox = 0; ox < ow; ox++, o++) {
        const [x0, x1] = tapRange(ax, ox, w);
        let m = -Infinity;
        for (let ky = y0; ky < y1; ky++) {
          const row = c * h * w + (oy * l.strides[0] - l.pads[0] + ky * l.dilations[0]) * w;
          for (let kx = x0; kx < x1; kx++) m = Math.max(m, x.data[row + ox * l.strides[1] - l.pads[1] + kx * l.dilations[1]]!);
        }
        output[o] = m;
      }
    }
  }
  return { output, peak: 0 };
}

export function lookup(l: LutLayer, x: Operand): KernelResult {
  const table = l.table.data;
  const qmin = x.grid.qmin;
  return { output: Int32Array.from(x.data, (q) => table[q - qmin]!), peak: 0 };
}

export function transpose(l: TransposeLayer, x: Operand): KernelResult {
  const outShape = l.perm.map((p) => x.shape[p]!);
  const inStrides = x.shape.map((_, i) => x.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const moved = l.perm.map((p) => inStrides[p]!);
  const source = stridedIndex(outShape, moved);
  return { output: Int32Array.from(source, (i) => x.data[i]!), peak: 0 };
}

export function select(l: SelectLayer, x: Operand): KernelResult {
  const strides = x.shape.map((_, i) => x.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const size = l.index.reduce((p, axis) => p * axis.length, 1);
  const output = new Int32Array(size);
  const pos = l.index.map(() => 0);
  for (let i = 0; i < size; i++) {
    let at = 0;
    for (let d = 0; d < pos.length; d++) at += l.index[d]![pos[d]!]! * strides[d]!;
    output[i] = x.data[at]!;
    for (let d = pos.length - 1; d >= 0 && ++pos[d]! === l.index[d]!.length; d--) pos[d] = 0;
  }
  return { output, peak: 0 };
}

export function pad(l: PadLayer, x: Operand, outShape: number[]): KernelResult {
  const rank = x.shape.length;
  const output = new Int32Array(outShape.reduce((a, b) => a * b, 1)).fill(x.grid.zeroPoint);
  const outStrides = outShape.map((_, i) => outShape.slice(i + 1).reduce((a, b) => a * b, 1));
  const pos = x.shape.map(() => 0);
  for (let i = 0; i < x.data.length; i++) {
    let at = 0;
    for (let d = 0; d < rank; d++) at += (pos[d]! + l.pads[d]!) * outStrides[d]!;
    output[at] = x.data[i]!;
    for (let d = rank - 1; d >= 0 && ++pos[d]! === x.shape[d]!; d--) pos[d] = 0;
  }
  return { output, peak: 0 };
}

export function concat(l: ConcatLayer, xs: Operand[], outShape: number[]): KernelResult {
  const output = new Int32Array(outShape.reduce((a, b) => a * b, 1));
  const outer = outShape.slice(0, l.axis).reduce((a, b) => a * b, 1);
  const outInner = outShape.slice(l.axis).reduce((a, b) => a * b, 1);
  let offset = 0;
  xs.forEach((x, n) => {
    const inner = x.shape.slice(l.axis).reduce((a, b) => a * b, 1);
    const table = l.tables[n]!.data;
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) output[o * outInner + offset + i] = table[x.data[o * inner + i]! - x.grid.qmin]!;
    }
    offset += inner;
  });
  return { output, peak: 0 };
}
