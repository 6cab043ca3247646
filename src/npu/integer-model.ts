import type { Grid } from '../quantization/grid.js';
import { attr, createGraph, makeNode } from '../graph/graph.js';
import { allocStorage } from '../graph/tensor.js';
import type { AttributeValue, Graph, Model, TensorData } from '../graph/types.js';
import { onnxTypeCode } from '../graph/datatype.js';
import { tfliteKernels } from '../quantization/profile.js';
import type { AvgPoolLayer, ConvLayer, IntTensor, NpuLayer, NpuPackage, Requantization, TensorInfo, TfliteAvgPoolLayer } from './types.js';
import { accumulatorBound } from './accumulator.js';
import { windowCount, windowOutput } from './window.js';

/**
 * The NPU package as an ONNX model whose onnxruntime run reproduces the integer executor
 * bit for bit, at onnxruntime's speed. It is also the reference for what a simulation
 * graph must look like to be exact (the QDQ fake-quant model is not):
 *
 * - Activations are the grid integers q themselves, held in float32 tensors. Convolutions
 *   and matrix products run on (q − z) with integer weights, so float32 sums are exact
 *   while every partial sum stays below 2^24 in magnitude; the executor reports the
 *   largest |accumulator| to check that headroom. A grid wider than 8 bits (16-bit
 *   activations) is split into bytes, q − z = 256·h + l with l in [−128, 127], and summed as
 *   256·Σh + Σl in float64, so each float32 sum stays at 8-bit magnitudes.
 * - Requantization runs in float64: add the bias, multiply by M·2^−(n+k[c]) — the target's
 *   fixed-point multiplier, not the real s_x·s_w/s_y — then Floor(x + 0.5) for round half
 *   up (not QuantizeLinear, which rounds half to even), add the zero point and clamp. The
 *   one product is exact while |acc·M| < 2^53 for the layer's worst-case accumulator;
 *   beyond that M is split into 16-bit halves as multiplyByQuantizedMultiplier does
 *   (exact for |acc| < 2^37).
 * - Add rescales with its two multipliers and rounds once; average pooling sums with a
 *   ones kernel and multiplies by each window count's M·2^−s; tables are Gathers.
 * - With the profile's rounding 'tflite', every rescale is TFLite's MultiplyByQuantizedMultiplier
 *   in float64 ops (`tfliteRescale`): magnitudes and signs apart, the doubling high multiply
 *   over 16-bit halves of M, then a right shift rounding half away from zero; the `tflite-*`
 *   layers add TFLite's rounded integer division.
 *
 * Input: the float image batch under the model's input name, quantized by QuantizeLinear
 * as in the QDQ model. Outputs: the package outputs dequantized to real values, so that
 * the model evaluates like the float one (`quantflow eval`); with `allTensors`, instead the
 * integers (as float32) of every package tensor but the inputs, under their package names.
 */
export function buildIntegerModel(pkg: NpuPackage, options: { allTensors?: boolean } = {}): Model {
  const b = new Builder(pkg);
  for (const name of pkg.inputs) b.input(name);
  for (const layer of pkg.layers) b.layer(layer);
  if (options.allTensors) {
    for (const name of Object.keys(pkg.tensors)) if (!pkg.inputs.includes(name)) b.output(name);
  } else {
    for (const name of pkg.outputs) b.realOutput(name);
  }
  // A 16-bit input grid needs QuantizeLinear with a uint16/int16 zero point: opset 21.
  const wide = pkg.inputs.some((name) => pkg.tensors[name]!.grid.qmax - pkg.tensors[name]!.grid.qmin > 255);
  return { graph: b.graph, opset: wide ? 21 : 17, producerName: 'quantflow', metadata: { 'quantflow.npu': pkg.model } };
}

const FLOAT = onnxTypeCode('float32');
const DOUBLE = onnxTypeCode('float64');
const INT64 = onnxTypeCode('int64');

class Builder {
  readonly graph: Graph;
  /** ONNX value holding each package tensor's integers. */
  private readonly values = new Map<string, string>();
  private count = 0;

  /** The package rounds as TFLite's int8 kernels do ('tflite' or 'xnnpack'). */
  private readonly tflite: boolean;
  /** Products (convolutions, fully connected, multiplications) requantize as XNNPACK's float32 path. */
  private readonly fp32: boolean;

  constructor(private readonly pkg: NpuPackage) {
    this.graph = createGraph(`${pkg.model}_integer`);
    this.tflite = tfliteKernels(pkg.profile);
    this.fp32 = pkg.profile.requantization.rounding === 'xnnpack';
  }

  input(name: string): void {
    const t = this.pkg.tensors[name]!;
    this.graph.inputs.push({ name, dataType: 'float32', shape: ['batch', ...t.shape.slice(1)] });
    const zpType = t.grid.qmin < -128 ? 'int16' : t.grid.qmin < 0 ? 'int8' : t.grid.qmax > 255 ? 'uint16' : 'uint8';
    const zp = allocStorage(zpType, 1);
    zp[0] = t.grid.zeroPoint;
    const q = this.op('QuantizeLinear', [name, this.float32(t.grid.scale), this.constant({ dataType: zpType, dims: [], data: zp })]);
    this.values.set(name, this.op('Cast', [q], { to: attr.int(FLOAT) }));
  }

  output(name: string): void {
    this.graph.outputs.push({ name: this.op('Identity', [this.values.get(name)!], {}, name), dataType: 'float32' });
  }

  /** (q − z)·scale, in float32 as DequantizeLinear computes it. */
  realOutput(name: string): void {
    const g = this.pkg.tensors[name]!.grid;
    const real = this.op('Mul', [this.centered(this.values.get(name)!, g), this.float32(g.scale)], {}, name);
    this.graph.outputs.push({ name: real, dataType: 'float32', shape: ['batch', ...this.pkg.tensors[name]!.shape.slice(1)] });
  }

  layer(l: NpuLayer): void {
    const [x, y] = l.inputs.map((i) => this.values.get(i)!) as [string, string];
    const [xi, yi] = l.inputs.map((i) => this.pkg.tensors[i]!) as [TensorInfo, TensorInfo];
    const out = this.pkg.tensors[l.output]!;
    let value: string;
    switch (l.op) {
      case 'conv': {
        const w = this.floats(l.weights);
        const sums = this.sums(x, xi.grid, (v) => this.op('Conv', [v, w], convAttributes(l)));
        value = this.requantize(sums, l.bias, l.requant, [-1, 1, 1], out.grid.zeroPoint, l.clamp, this.bound(l));
        break;
      }
      case 'fc': {
        const [outC, k] = l.weights.shape as [number, number];
        const kByC = new Float32Array(k * outC);
        for (let c = 0; c < outC; c++) for (let i = 0; i < k; i++) kByC[i * outC + c] = l.weights.data[c * k + i]!;
        const w = this.constant({ dataType: 'float32', dims: [k, outC], data: kByC });
        const sums = this.sums(x, xi.grid, (v) => this.op('MatMul', [v, w]));
        value = this.requantize(sums, l.bias, l.requant, [-1], out.grid.zeroPoint, l.clamp, this.bound(l));
        break;
      }
      case 'add': {
        const term = (v: string, g: Grid, m: number) => this.op('Mul', [this.double(this.centered(v, g)), this.float64(m)]);
        const sum = this.op('Add', [term(x, xi.grid, l.multipliers[0]), term(y, yi.grid, l.multipliers[1])]);
        value = this.round(this.op('Mul', [sum, this.float64(2 ** -l.shift)]), out.grid.zeroPoint, l.clamp);
        break;
      }
      case 'mul': {
        // In float64: two 16-bit operands' product exceeds float32's 24-bit mantissa.
        const product = this.op('Mul', [this.double(this.centered(x, xi.grid)), this.double(this.centered(y, yi.grid))]);
        const scaled = this.fp32
          ? this.fp32Rescale(product, [l.multiplier], [l.shift], [])
          : this.tflite
            ? this.tfliteRescale(product, [l.multiplier], [l.shift], [])
            : this.scaled(product, [l.multiplier], [l.shift], [], this.bound(l));
        value = this.round(scaled, out.grid.zeroPoint, l.clamp);
        break;
      }
      case 'tflite-add': {
        const term = (v: string, g: Grid, m: { multiplier: number; shift: number }) =>
          this.tfliteRescale(
            this.op('Mul', [this.double(this.centered(v, g)), this.float64(2 ** l.leftShift)]),
            [m.multiplier],
            [m.shift],
            [],
          );
        const [a, b] = [term(x, xi.grid, l.inputScales[0]), term(y, yi.grid, l.inputScales[1])];
        const sum = this.op(l.subtract ? 'Sub' : 'Add', [a, b]);
        value = this.round(this.tfliteRescale(sum, [l.outputScale.multiplier], [l.outputScale.shift], []), out.grid.zeroPoint, l.clamp);
        break;
      }
      case 'tflite-avgpool':
        value = this.tfliteAveragePool(l, x, xi, out);
        break;
      case 'tflite-mean': {
        const sums = this.op('ReduceSum', [
          this.double(this.centered(x, xi.grid)),
          this.constant({ dataType: 'int64', dims: [2], data: BigInt64Array.of(2n, 3n) }),
        ]);
        const rescaled = this.tfliteRescale(sums, [l.multiplier], [l.shift], []);
        const mean = this.roundedDivide(rescaled, this.float64(xi.shape[2]! * xi.shape[3]!), (xi.shape[2]! * xi.shape[3]!) >> 1);
        value = this.reshape(this.round(mean, out.grid.zeroPoint, l.clamp), out.shape);
        break;
      }
      case 'avgpool': {
        const channels = xi.shape[1]!;
        const ones: TensorData = {
          dataType: 'float32',
          dims: [channels, 1, ...l.kernel],
          data: new Float32Array(channels * l.kernel[0] * l.kernel[1]).fill(1),
        };
        const w = this.constant(ones);
        const sums = this.sums(x, xi.grid, (v) => this.op('Conv', [v, w], { ...convAttributes(l), group: attr.int(channels) }));
        const { multipliers, shifts, dims } = this.windowMultipliers(l, xi.shape);
        const scaled = this.scaled(sums, multipliers, shifts, dims, this.bound(l));
        value = this.reshape(this.round(scaled, out.grid.zeroPoint, l.clamp), out.shape);
        break;
      }
      case 'maxpool':
        value = this.op('MaxPool', [x], {
          kernel_shape: attr.ints(l.kernel),
          strides: attr.ints(l.strides),
          pads: attr.ints(l.pads),
          dilations: attr.ints(l.dilations),
        });
        break;
      case 'lut':
        value = this.lookup(x, xi.grid, l.table);
        break;
      case 'reshape':
        value = this.reshape(x, out.shape);
        break;
      case 'transpose':
        value = this.op('Transpose', [x], { perm: attr.ints(l.perm) });
        break;
      case 'select':
        value = l.index.reduce((v, index, axis) => {
          if (index.length === xi.shape[axis] && index.every((i, o) => i === o)) return v;
          return this.op(
            'Gather',
            [v, this.constant({ dataType: 'int64', dims: [index.length], data: BigInt64Array.from(index, BigInt) })],
            { axis: attr.int(axis) },
          );
        }, x);
        break;
      case 'pad':
        value = this.op('Pad', [
          x,
          this.constant({ dataType: 'int64', dims: [l.pads.length], data: BigInt64Array.from(l.pads, BigInt) }),
          this.float32(xi.grid.zeroPoint),
        ]);
        break;
      case 'concat':
        value = this.op(
          'Concat',
          l.inputs.map((name, i) => this.lookup(this.values.get(name)!, this.pkg.tensors[name]!.grid, l.tables[i]!)),
          { axis: attr.int(l.axis) },
        );
        break;
    }
    this.values.set(l.output, value);
  }

  /** A fresh value or node name that no package tensor has (outputs keep the package's names). */
  private name(base: string): string {
    let name: string;
    do name = `${base}_${this.count++}`;
    while (this.pkg.tensors[name]);
    return name;
  }

  private op(
    opType: string,
    inputs: string[],
    attributes: Record<string, AttributeValue> = {},
    output = this.name(opType.toLowerCase()),
  ): string {
    this.graph.nodes.push(makeNode(opType, inputs, [output], attributes, this.name(opType)));
    return output;
  }

  private constant(t: TensorData): string {
    const name = this.name('const');
    this.graph.initializers.set(name, t);
    return name;
  }

  private float32(v: number): string {
    return this.constant({ dataType: 'float32', dims: [], data: Float32Array.of(v) });
  }

  private float64(v: number): string {
    return this.constant({ dataType: 'float64', dims: [], data: Float64Array.of(v) });
  }

  private floats(t: IntTensor): string {
    return this.constant({ dataType: 'float32', dims: t.shape, data: Float32Array.from(t.data) });
  }

  private double(v: string): string {
    return this.op('Cast', [v], { to: attr.int(DOUBLE) });
  }

  /** q − z, exact in float32. */
  private centered(v: string, g: Grid): string {
    return g.zeroPoint === 0 ? v : this.op('Sub', [v, this.float32(g.zeroPoint)]);
  }

  /** The layer's worst-case |accumulator| (see accumulator.ts). */
  private bound(l: NpuLayer): number {
    return accumulatorBound(l, this.pkg.tensors);
  }

  /**
   * `linear` (a Conv or MatMul with integer weights) of (v − z), as float64: in one float32
   * run on an 8-bit grid, else as 256·linear(h) + linear(l) over the bytes of v − z.
   */
  private sums(v: string, g: Grid, linear: (input: string) => string): string {
    const c = this.centered(v, g);
    if (g.qmax - g.qmin < 256) return this.double(linear(c));
    const high = this.op('Floor', [this.op('Add', [this.op('Mul', [c, this.float32(1 / 256)]), this.float32(0.5)])]);
    const low = this.op('Sub', [c, this.op('Mul', [high, this.float32(256)])]);
    return this.op('Add', [this.op('Mul', [this.double(linear(high)), this.float64(256)]), this.double(linear(low))]);
  }

  /**
   * Exact sums (float64) plus bias, times M·2^−(n+k[c]) per channel along the axis that
   * `channelShape` puts the channels on, rounded half up, clamped.
   */
  private requantize(
    sums: string,
    bias: IntTensor | undefined,
    r: Requantization,
    channelShape: number[],
    zy: number,
    clamp: [number, number],
    bound: number,
  ): string {
    const channels = Math.max(r.multiplier.data.length, r.shift.data.length, r.channelShift?.data.length ?? 1);
    const multipliers = Array.from({ length: channels }, (_, c) => r.multiplier.data[r.multiplier.data.length > 1 ? c : 0]!);
    const shifts = Array.from(
      { length: channels },
      (_, c) => r.shift.data[r.shift.data.length > 1 ? c : 0]! + (r.channelShift ? r.channelShift.data[c]! : 0),
    );
    const shape = channels === 1 ? [] : channelShape.map((d) => (d === -1 ? channels : d));
    let acc = sums;
    if (bias)
      acc = this.op('Add', [
        acc,
        this.constant({
          dataType: 'float64',
          dims: bias.shape.length === 1 ? channelShape.map((d) => (d === -1 ? bias.shape[0]! : d)) : bias.shape,
          data: Float64Array.from(bias.data),
        }),
      ]);
    const scaled = this.fp32
      ? this.fp32Rescale(acc, multipliers, shifts, shape)
      : this.tflite
        ? this.tfliteRescale(acc, multipliers, shifts, shape)
        : this.scaled(acc, multipliers, shifts, shape, bound);
    return this.round(scaled, zy, clamp);
  }

  /**
   * TFLite's MultiplyByQuantizedMultiplier of an int32 held in float64, exactly (see
   * fixedpoint.ts): with e = 31 − s, x·2^max(e,0) = sign·A; the doubling high multiply is
   * sign·⌊(A·M + 2^30 − [x < 0]) / 2^31⌋, formed over M's 16-bit halves so every product
   * stays below 2^53; the right shift by max(−e, 0) rounds half away from zero,
   * sign·⌊mag·2^−r + ½⌋. M ≥ 0 always, so the saturating case never arises.
   */
  private tfliteRescale(x: string, multipliers: number[], shifts: number[], dims: number[]): string {
    const constant = (f: (m: number, s: number) => number) =>
      this.constant({ dataType: 'float64', dims, data: Float64Array.from(multipliers, (m, i) => f(m, shifts[i]!)) });
    const shifted = this.op('Mul', [x, constant((_, s) => 2 ** Math.max(31 - s, 0))]);
    const sign = this.op('Sign', [shifted]);
    const magnitude = this.op('Abs', [shifted]);
    const negative = this.op('Cast', [this.op('Less', [shifted, this.float64(0)])], { to: attr.int(DOUBLE) });
    const nudge = this.op('Sub', [this.float64(2 ** 30), negative]);
    const low = this.op('Mul', [magnitude, constant((m) => m % 65536)]);
    const carry = this.op('Floor', [this.op('Mul', [this.op('Add', [low, nudge]), this.float64(2 ** -16)])]);
    const high = this.op('Add', [this.op('Mul', [magnitude, constant((m) => Math.floor(m / 65536))]), carry]);
    const product = this.op('Floor', [this.op('Mul', [high, this.float64(2 ** -15)])]);
    const divided = this.op('Floor', [
      this.op('Add', [this.op('Mul', [product, constant((_, s) => 2 ** -Math.max(s - 31, 0))]), this.float64(0.5)]),
    ]);
    return this.op('Mul', [sign, divided]);
  }

  /**
   * XNNPACK's float32 requantization: the accumulator cast to float32 times the float32 scale
   * M·2^−s (exact in float32) in a float32 Mul, rounded half to even by ONNX Round.
   */
  private fp32Rescale(x: string, multipliers: number[], shifts: number[], dims: number[]): string {
    const scale = this.constant({ dataType: 'float32', dims, data: Float32Array.from(multipliers, (m, i) => m * 2 ** -shifts[i]!) });
    const product = this.op('Mul', [this.op('Cast', [x], { to: attr.int(FLOAT) }), scale]);
    return this.double(this.op('Round', [product]));
  }

  /** TFLite's (acc ± ⌊n/2⌋) / n truncated, as sign·⌊(|acc| + ⌊n/2⌋) / n⌋ (exact in float64 for these magnitudes). */
  private roundedDivide(acc: string, count: string, half: number | string): string {
    const halfValue = typeof half === 'number' ? this.float64(half) : half;
    const magnitude = this.op('Floor', [this.op('Div', [this.op('Add', [this.op('Abs', [acc]), halfValue]), count])]);
    return this.op('Mul', [this.op('Sign', [acc]), magnitude]);
  }

  /** Stored values (q shifted onto −128..127) summed by a ones kernel, divided by each window's in-bounds count, regridded. */
  private tfliteAveragePool(l: TfliteAvgPoolLayer, x: string, xi: TensorInfo, out: TensorInfo): string {
    const g = xi.grid;
    const offset = -(g.qmax - g.qmin + 1) / 2 - g.qmin;
    const channels = xi.shape[1]!;
    const ones: TensorData = {
      dataType: 'float32',
      dims: [channels, 1, ...l.kernel],
      data: new Float32Array(channels * l.kernel[0] * l.kernel[1]).fill(1),
    };
    const stored = offset === 0 ? x : this.op('Add', [x, this.float32(offset)]);
    const sums = this.double(this.op('Conv', [stored, this.constant(ones)], { ...convAttributes(l), group: attr.int(channels) }));
    const [h, w] = xi.shape.slice(2) as [number, number];
    const [oh, ow] = windowOutput(l, h, w);
    const counts = new Float64Array(oh * ow);
    for (let y = 0, i = 0; y < oh; y++) for (let xo = 0; xo < ow; xo++, i++) counts[i] = windowCount(l, false, y, xo, h, w);
    const count = this.constant({ dataType: 'float64', dims: [oh, ow], data: counts });
    const half = this.constant({ dataType: 'float64', dims: [oh, ow], data: counts.map((n) => Math.floor(n / 2)) });
    let average = this.op('Sub', [this.roundedDivide(sums, count, half), this.float64(offset)]);
    if (l.regrid) {
      const centered = this.op('Sub', [average, this.float64(g.zeroPoint)]);
      const [m, s] = [[l.regrid.multiplier], [l.regrid.shift]];
      // XNNPACK's conversion rounds half up (|centered| ≤ 256 bounds the product); TFLite's QUANTIZE rounds twice.
      average = this.fp32 ? this.scaled(centered, m, s, [], 256) : this.tfliteRescale(centered, m, s, []);
    }
    return this.round(average, l.regrid ? out.grid.zeroPoint : 0, l.clamp);
  }

  /**
   * acc·M·2^−s (M, s broadcast over acc with `dims`) as a float64 x whose Floor(x + 0.5) is
   * the exact round-half-up result. One product while |acc·M| < 2^53; else, as
   * multiplyByQuantizedMultiplier, a = acc·⌊M/2^16⌋ and b = acc·(M mod 2^16), both exact,
   * combined as (a·2^(16−u) + ⌊b·2^−u + h⌋)·2^−(s−u) with u = min(s, 16) and h = ½ when the
   * whole shift falls on b (s ≤ 16), 0 when the final rounding does it.
   */
  private scaled(acc: string, multipliers: number[], shifts: number[], dims: number[], bound: number): string {
    const constant = (f: (m: number, s: number) => number) =>
      this.constant({ dataType: 'float64', dims, data: Float64Array.from(multipliers, (m, i) => f(m, shifts[i]!)) });
    if (bound * Math.max(...multipliers.map(Math.abs)) < 2 ** 53) return this.op('Mul', [acc, constant((m, s) => m * 2 ** -s)]);
    const a = this.op('Mul', [acc, constant((m) => Math.floor(m / 65536))]);
    const b = this.op('Mul', [acc, constant((m) => m % 65536)]);
    const low = this.op('Floor', [
      this.op('Add', [this.op('Mul', [b, constant((_, s) => 2 ** -Math.min(s, 16))]), constant((_, s) => (s <= 16 ? 0.5 : 0))]),
    ]);
    const t = this.op('Add', [this.op('Mul', [a, constant((_, s) => 2 ** (16 - Math.min(s, 16)))]), low]);
    return this.op('Mul', [t, constant((_, s) => 2 ** -(s - Math.min(s, 16)))]);
  }

  /** float64 real → clamp(floor(x + 0.5) + z) as float32. */
  private round(v: string, zy: number, [lo, hi]: [number, number]): string {
    const rounded = this.op('Floor', [this.op('Add', [v, this.float64(0.5)])]);
    const clamped = this.op('Clip', [this.op('Add', [rounded, this.float64(zy)]), this.float64(lo), this.float64(hi)]);
    return this.op('Cast', [clamped], { to: attr.int(FLOAT) });
  }

  /** M and s of each output position's window count, one pair or an [OH, OW] map. */
  private windowMultipliers(l: AvgPoolLayer, inShape: number[]): { multipliers: number[]; shifts: number[]; dims: number[] } {
    if (l.windows.length === 1) return { multipliers: [l.windows[0]!.multiplier], shifts: [l.windows[0]!.shift], dims: [] };
    const byCount = new Map(l.windows.map((w) => [w.count, w]));
    const [h, w] = inShape.slice(2) as [number, number];
    const [oh, ow] = windowOutput(l, h, w);
    const multipliers: number[] = [];
    const shifts: number[] = [];
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const r = byCount.get(windowCount(l, l.countIncludePad, y, x, h, w))!;
        multipliers.push(r.multiplier);
        shifts.push(r.shift);
      }
    }
    return { multipliers, shifts, dims: [oh, ow] };
  }

  private lookup(v: string, g: Grid, table: IntTensor): string {
    const index = this.op('Cast', [g.qmin === 0 ? v : this.op('Sub', [v, this.float32(g.qmin)])], { to: attr.int(INT64) });
    return this.op('Gather', [this.floats(table), index]);
  }

  /** Reshape keeping the batch dimension free. */
  private reshape(v: string, shape: number[]): string {
    const dims = [-1, ...shape.slice(1)];
    return this.op('Reshape', [v, this.constant({ dataType: 'int64', dims: [dims.length], data: BigInt64Array.from(dims, BigInt) })]);
  }
}

function convAttributes(
  l: Pick<ConvLayer, 'kernel' | 'strides' | 'pads' | 'dilations'> & { group?: number },
): Record<string, AttributeValue> {
  return {
    kernel_shape: attr.ints(l.kernel),
    strides: attr.ints(l.strides),
    pads: attr.ints(l.pads),
    dilations: attr.ints(l.dilations),
    group: attr.int(l.group ?? 1),
  };
}
