import { attrFloat, attrInt, attrInts, constantInput, nodeError, normalizeAxis } from '../graph/graph.js';
import { hostTail, networkOutputs, shapeArithmetic } from '../graph/host-tail.js';
import { inferShapes } from '../graph/shapes.js';
import { keepsGrid } from '../quantization/plan.js';
import { toFloat32 } from '../graph/tensor.js';
import { SHAPE_ONLY_OPS, type OpType } from '../graph/ops.js';
import type { Graph, Model, Node, ValueInfo } from '../graph/types.js';
import {
  ifXnnpackTakes,
  quantizeMultiplier,
  quantizeMultiplierTflite,
  xnnpackAddMultipliers,
  xnnpackConvertMultiplier,
  xnnpackScale,
  type FixedPointMultiplier,
} from '../quantization/fixedpoint.js';
import { resolveLayer, tfliteKernels, type Nonlinearity, type TargetProfile } from '../quantization/profile.js';
import { QuantflowError } from '../util/errors.js';
import { quantizeValue, type Grid } from '../quantization/grid.js';
import { accumulatorBound } from './accumulator.js';
import { regridTable, unaryTables, type TableRequest } from './lut.js';
import { qdqView, type DequantizedConstant, type QdqView } from './qdq-view.js';
import { reshapeOutput } from './reshape.js';
import { tfliteRegridTable, tfliteTable } from './tflite-lut.js';
import { resizeSelection, sliceSelection } from './select.js';
import type { IntTensor, LutLayer, NpuLayer, NpuPackage, Requantization, TensorInfo, Window } from './types.js';
import { broadcastShape, windowCount, windowOf } from './window.js';

export interface BuildOptions {
  /** Preprocessing preset of the images (recorded in the manifest for `verify`). */
  preset?: string;
}

/**
 * Lowers a QDQ model (QuantizeResult.model, or a model.qdq.onnx read back) to the integer
 * NPU package for `profile`. Everything integer is taken from the QDQ model itself —
 * weights, biases, activation grids — so the package and the fake-quant simulation of
 * that model describe one network, whatever passes produced it. The profile adds what the
 * QDQ form leaves open: multiplier width and shift range, WESS shift width, accumulator
 * and bias widths, which nonlinearities the target may run. A node without an integer
 * lowering, or one the profile runs as 'float', is a QuantflowError naming it; the host
 * tail (index and post-processing nodes and what follows them) is not lowered: the package
 * outputs its inputs and names it in `hostTail`.
 */
export async function buildNpuPackage(qdq: Model, profile: TargetProfile, options: BuildOptions = {}): Promise<NpuPackage> {
  const view = qdqView(qdq.graph);
  const l = new Lowering(qdq.graph, view, profile, qdq.opset);
  for (const input of qdq.graph.inputs) l.addInput(input.name, input.shape);
  const tail = hostTail(qdq.graph);
  // Shape arithmetic only sizes Reshapes, whose output shapes come from inference at batch 1.
  const skipped = new Set([...tail, ...shapeArithmetic(qdq.graph)]);
  for (const node of view.nodes) if (!skipped.has(node)) l.lower(node);
  const rounding = profile.requantization.rounding;
  const exact = l.tableRequests.map((t) => (rounding !== 'half-up' ? tfliteTableOf(t.request, rounding) : undefined));
  const tables = await unaryTables(
    qdq.graph,
    qdq.opset,
    l.tableRequests.filter((_, i) => !exact[i]).map((t) => t.request),
  );
  let next = 0;
  l.tableRequests.forEach((t, i) => {
    const [lo, hi] = t.clamp;
    const table = exact[i] ?? tables[next++]!;
    t.layer.table = int32(table.map((q) => Math.min(hi, Math.max(lo, q))));
  });
  return {
    format: 'quantflow-npu',
    version: 1,
    model: qdq.graph.name,
    profile,
    ...(options.preset !== undefined && { preset: options.preset }),
    inputs: qdq.graph.inputs.map((i) => i.name),
    outputs: packageOutputs(qdq.graph, tail, l),
    ...(tail.length && { hostTail: tail.map((n) => ({ name: n.name, opType: n.opType })) }),
    tensors: l.tensors,
    layers: l.layers,
  };
}

/**
 * What the package hands over: the model outputs it computes, then the values the host tail
 * reads from it (the cut), each once.
 */
function packageOutputs(graph: Graph, tail: readonly Node[], l: Lowering): string[] {
  return [...new Set(networkOutputs(graph, tail).map((name) => l.packageOutput(name)))];
}

/** Elementwise ops that run as a lookup table when all inputs but one are scalar constants (only ops with a schema reach the lowering). */
const TABLE_OPS: ReadonlySet<string> = new Set<OpType>([
  'Relu',
  'Clip',
  'LeakyRelu',
  'Sigmoid',
  'HardSigmoid',
  'HardSwish',
  'Tanh',
  'Erf',
  'Exp',
  'Log',
  'Abs',
  'Neg',
  'Sqrt',
  'Reciprocal',
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Pow',
  'Max',
  'Min',
]);

/** The profile entry that says whether the target may run a table op. */
const PROFILE_ENTRY: Partial<Record<OpType, Nonlinearity>> = {
  Relu: 'relu',
  LeakyRelu: 'leakyRelu',
  Sigmoid: 'sigmoid',
  HardSigmoid: 'hardSigmoid',
  HardSwish: 'hardSwish',
  Tanh: 'tanh',
};

/** Largest input grid a lookup table covers. */
const MAX_TABLE = 1 << 16;

/** Integer weights of a layer in [C_out, ...] layout, with their effective scales. */
interface LayerWeights {
  data: Int8Array;
  shape: number[];
  /** One per output channel, or one for the tensor. */
  scale: Float32Array;
  bits: 4 | 8;
}

/**
 * The lowering state: walks the QDQ model's compute nodes in order, emitting layers and
 * the shape and grid of every tensor they write. Lookup tables are computed afterwards,
 * all in one onnxruntime session.
 */
class Lowering {
  readonly tensors: Record<string, TensorInfo> = {};
  readonly layers: NpuLayer[] = [];
  readonly tableRequests: { layer: LutLayer; request: TableRequest; clamp: [number, number] }[] = [];
  /** Clamps fused into the layer before them. */
  private readonly fused = new Set<Node>();
  /** Graph outputs computed by a trailing float Softmax, mapped to its integer input. */
  private readonly hostSoftmax = new Map<string, string>();
  /** Nodes with quantized weights, in order: the profile's @first/@last refer to them. */
  private readonly weighted: Node[];
  /** Value shapes at batch 1, inferred when a Reshape first needs them. */
  private batchOne: Map<string, ValueInfo> | undefined;

  constructor(
    private readonly graph: Graph,
    private readonly view: QdqView,
    private readonly profile: TargetProfile,
    private readonly opset: number,
  ) {
    this.weighted = view.nodes.filter((n) => WEIGHTED.has(n.opType) && view.constants.has(n.inputs[1] ?? ''));
  }

  addInput(name: string, shape: readonly (number | string | null)[] | undefined): void {
    const q = this.view.quantizedAs.get(name);
    if (!q) throw new QuantflowError(`model input '${name}' is not quantized`);
    if (!shape || shape.slice(1).some((d) => typeof d !== 'number')) {
      throw new QuantflowError(`model input '${name}' needs a static shape (batch aside) for an NPU package`);
    }
    this.checkTfliteGrid(`input ${name}`, q.grid);
    this.tensors[name] = { shape: [1, ...(shape.slice(1) as number[])], grid: q.grid };
  }

  /** Requantization as TFLite's int8 kernels do it (profile rounding 'tflite' or 'xnnpack'). */
  private get tflite(): boolean {
    return tfliteKernels(this.profile);
  }

  private checkTfliteGrid(what: string, g: Grid): void {
    if (this.tflite && g.qmax - g.qmin !== 255)
      throw new QuantflowError(
        `${what}: profile ${this.profile.name} models TFLite's int8 kernels, but this tensor's grid has ${g.qmax - g.qmin + 1} levels; quantize with 8-bit activations`,
      );
  }

  packageOutput(name: string): string {
    const out = this.hostSoftmax.get(name) ?? this.view.tensorOf.get(name) ?? name;
    if (!this.tensors[out]) throw new QuantflowError(`model output or host-tail input '${name}' is not computed in integers`);
    return out;
  }

  lower(node: Node): void {
    if (this.fused.has(node)) return;
    const tensorInputs = node.inputs.filter((i) => i && this.tensors[this.tensorName(i)]);
    if (node.opType === 'Softmax' && this.graph.outputs.some((o) => o.name === node.outputs[0])) {
      this.hostSoftmax.set(node.outputs[0]!, this.tensorName(node.inputs[0]!));
      return void this.info(node, node.inputs[0]!);
    }
    if (TABLE_OPS.has(node.opType) && tensorInputs.length === 1) return this.lowerTable(node, tensorInputs[0]!);
    switch (node.opType as OpType) {
      case 'Conv':
        return this.lowerConv(node);
      case 'Gemm':
      case 'MatMul':
        return this.lowerFullyConnected(node);
      case 'Add':
      case 'Sub':
        return this.lowerAdd(node);
      case 'Mul':
        return this.lowerMul(node);
      case 'AveragePool':
      case 'GlobalAveragePool':
      case 'ReduceMean':
        return this.lowerAveragePool(node);
      case 'MaxPool':
        return this.lowerMaxPool(node);
      case 'Transpose':
        return this.lowerTranspose(node);
      case 'Concat':
        return this.lowerConcat(node);
      case 'Resize':
      case 'Slice':
        return this.lowerSelect(node);
      case 'Pad':
        return this.lowerPad(node);
    }
    if (SHAPE_ONLY_OPS.has(node.opType)) return this.lowerReshape(node);
    throw nodeError(node, 'has no integer lowering for the NPU package');
  }

  private tensorName(value: string): string {
    return this.view.tensorOf.get(value) ?? value;
  }

  /** The integer tensor a node reads as `value`; an error unless the package computes it. */
  private info(node: Node, value: string): TensorInfo & { name: string } {
    const name = this.tensorName(value);
    const t = this.tensors[name];
    if (!t) throw nodeError(node, `input '${value}' is not an integer tensor of the package (not quantized, or computed in float)`);
    return { name, ...t };
  }

  private emit(layer: NpuLayer, shape: number[], grid: Grid): void {
    this.checkTfliteGrid(layer.name, grid);
    const bound = accumulatorBound(layer, this.tensors);
    const bits = this.profile.accumulatorBits;
    // TFLite's kernels accumulate in int32 with no worst-case bound, so TFLite profiles lower
    // such a layer too (quantize warns; the executor still refuses an accumulator that gets there).
    if (bound >= 2 ** (bits - 1) && !this.tflite) {
      const needed = Math.ceil(Math.log2(bound + 1)) + 1;
      throw new QuantflowError(
        `layer '${layer.name}': its worst-case accumulator ±${bound} needs ${needed} bits, more than the ${bits}-bit accumulator of profile ${this.profile.name}; use a profile with accumulatorBits ≥ ${needed} or narrower activations`,
      );
    }
    this.layers.push(layer);
    this.tensors[layer.output] = { shape, grid };
  }

  /**
   * Where a layer that computes new values writes: the tensor its output is quantized into,
   * or — when a ReLU/Clip alone reads it and is quantized — the clamp's tensor, with the
   * clamp fused as narrower bounds. Quantization is monotone, so clamping on the grid
   * equals quantizing the clamped float.
   */
  private requantOutput(node: Node): RequantOutput {
    const raw = node.outputs[0]!;
    const own = this.view.quantizedAs.get(raw);
    if (own) return { output: own.tensor, grid: own.grid, clamp: [own.grid.qmin, own.grid.qmax] };
    const readers = this.view.readers.get(raw) ?? [];
    const clamp = readers.length === 1 ? readers[0]! : undefined;
    const q = clamp && (clamp.opType === 'Relu' || clamp.opType === 'Clip') ? this.view.quantizedAs.get(clamp.outputs[0]!) : undefined;
    if (!clamp || !q) throw nodeError(node, `output '${raw}' is not quantized`);
    this.fused.add(clamp);
    const [lo, hi] = this.clampBounds(clamp);
    return { output: q.tensor, grid: q.grid, clamp: [quantizeValue(lo, q.grid), quantizeValue(hi, q.grid)] };
  }

  private clampBounds(node: Node): [number, number] {
    if (node.opType === 'Relu') return [0, Infinity];
    if (!node.inputs[1] && !node.inputs[2]) return [attrFloat(node, 'min', -Infinity), attrFloat(node, 'max', Infinity)];
    const bound = (i: number, fallback: number) => {
      const name = node.inputs[i];
      if (!name) return fallback;
      const t = this.graph.initializers.get(name);
      if (!t || t.data.length !== 1) throw nodeError(node, `bound '${name}' is not a constant scalar`);
      return toFloat32(t)[0]!;
    };
    return [bound(1, -Infinity), bound(2, Infinity)];
  }

  private constant(node: Node, i: number, what: string): DequantizedConstant {
    const c = this.view.constants.get(node.inputs[i] ?? '');
    if (!c) throw nodeError(node, `${what} must be a constant behind DequantizeLinear`);
    return c;
  }

  /** Integer weights with output channels first ([C_out, ...]) and one scale per channel or per tensor. */
  private weightsOf(node: Node, outAxis: number): LayerWeights {
    const c = this.constant(node, 1, 'weights');
    const { dataType, dims } = c.values;
    if (dataType !== 'int8' && dataType !== 'int4') throw nodeError(node, `${dataType} weights are not supported (int8 or int4)`);
    if (c.scale.length > 1 && (c.axis + dims.length) % dims.length !== outAxis)
      throw nodeError(node, 'weight scales must run along the output channels');
    const data = c.values.data as Int8Array;
    const bits = dataType === 'int4' ? 4 : 8;
    if (outAxis === 0) return { data, shape: dims, scale: c.scale, bits };
    return { data: transpose2d(data, dims[0]!, dims[1]!), shape: [dims[1]!, dims[0]!], scale: c.scale, bits };
  }

  /**
   * The multiplier of a product's requantization, s_a·s_b/s_y: with rounding 'xnnpack' the
   * float32 scale XNNPACK computes, held exactly; otherwise as every other multiplier.
   */
  private scaleMultiplier(node: Node, sa: number, sb: number, sy: number): FixedPointMultiplier {
    if (this.profile.requantization.rounding !== 'xnnpack') return this.multiplier(node, (sa * sb) / sy);
    const m = xnnpackScale(sa, sb, sy);
    const [lo, hi] = this.profile.requantization.shiftRange;
    // Below 2^−33 every int32 accumulator requantizes to 0 (a channel of zero weights).
    if (m.multiplier * 2 ** -m.shift < 2 ** -33) return { multiplier: 0, shift: 0 };
    if (m.shift < lo || m.shift > hi)
      throw nodeError(node, `requantization scale ${(sa * sb) / sy} has no float32 form within the target's shift range [${lo}, ${hi}]`);
    return m;
  }

  /** The multiplier of an int8 → int8 QUANTIZE the export writes: XNNPACK's with rounding 'xnnpack', TFLite's otherwise. */
  private convertMultiplier(node: Node, inputScale: number, outputScale: number): FixedPointMultiplier {
    if (this.profile.requantization.rounding !== 'xnnpack') return this.multiplier(node, inputScale / outputScale);
    try {
      return xnnpackConvertMultiplier(inputScale, outputScale);
    } catch (e) {
      if (e instanceof RangeError) throw nodeError(node, `${e.message}; TFLite's own QUANTIZE kernel there is not modelled`);
      throw e;
    }
  }

  private multiplier(node: Node, real: number, shiftRange = this.profile.requantization.shiftRange): FixedPointMultiplier {
    if (this.tflite) {
      const m = quantizeMultiplierTflite(real);
      if (m.multiplier && (m.shift < shiftRange[0] || m.shift > shiftRange[1]))
        throw nodeError(
          node,
          `requantization multiplier ${real} needs a right shift of ${m.shift}, outside the target's range [${shiftRange.join(', ')}]`,
        );
      return m;
    }
    try {
      return quantizeMultiplier(real, this.profile.requantization.multiplierBits, shiftRange);
    } catch (e) {
      if (e instanceof QuantflowError) throw nodeError(node, e.message);
      throw e;
    }
  }

  /**
   * M and shifts of a weighted layer from the real multipliers s_x·s_w[c]/s_y. WESS layers
   * (granularity 'shift' in the profile) have effective scales s·2^−k[c]: one M·2^−n for
   * s_x·s/s_y serves every channel with its extra shift k[c], and n is limited so that
   * n + max k stays within the target's shift range. TFLite derives one multiplier per channel
   * from the effective scales, WESS or not, so with rounding 'tflite' every channel gets its own.
   */
  private weightRequant(node: Node, w: LayerWeights, sx: number, sy: number): Requantization {
    const index = this.weighted.indexOf(node);
    const spec = resolveLayer(this.profile, node.name, { isFirst: index === 0, isLast: index === this.weighted.length - 1 });
    if (spec.granularity === 'shift' && w.scale.length > 1 && !this.tflite) {
      const k = wessShifts(node, w.scale, spec.shiftBits);
      const layerScale = Math.max(...w.scale);
      const maxK = Math.max(...k);
      const [min, max] = this.profile.requantization.shiftRange;
      if (max - maxK < min) throw nodeError(node, `WESS shift ${maxK} leaves no layer shift within the target's range [${min}, ${max}]`);
      const m = this.multiplier(node, (sx * layerScale) / sy, [min, max - maxK]);
      return { multiplier: int32([m.multiplier]), shift: int32([m.shift]), channelShift: { dtype: 'uint8', shape: [k.length], data: k } };
    }
    const ms = Array.from(w.scale, (s) => this.scaleMultiplier(node, sx, s, sy));
    return { multiplier: int32(ms.map((m) => m.multiplier)), shift: int32(ms.map((m) => m.shift)) };
  }

  /** The int32 bias, which must be at scale s_x·s_w[c] (as the QDQ export writes it) and fit the profile's biasBits. */
  private bias(node: Node, w: LayerWeights, sx: number): { bias?: IntTensor } {
    if (!node.inputs[2]) return {};
    const c = this.constant(node, 2, 'the bias');
    if (c.values.dataType !== 'int32') throw nodeError(node, `the bias must be int32, got ${c.values.dataType}`);
    const data = Int32Array.from(c.values.data as Int32Array);
    for (let ch = 0; ch < data.length; ch++) {
      const expected = Math.fround(sx * w.scale[w.scale.length > 1 ? ch : 0]!);
      const scale = c.scale[c.scale.length > 1 ? ch : 0]!;
      if (Math.abs(scale - expected) > 1e-6 * expected)
        throw nodeError(node, `bias scale ${scale} of channel ${ch} is not s_x·s_w = ${expected}`);
    }
    const limit = 2 ** (this.profile.biasBits - 1);
    if (data.some((b) => b < -limit || b >= limit))
      throw nodeError(node, `a bias does not fit the profile's ${this.profile.biasBits}-bit biases`);
    return { bias: { dtype: 'int32', shape: [data.length], data } };
  }

  private lowerConv(node: Node): void {
    const x = this.info(node, node.inputs[0]!);
    const w = this.weightsOf(node, 0);
    const dims = w.shape;
    const group = attrInt(node, 'group', 1);
    if (dims.length !== 4 || x.shape.length !== 4) throw nodeError(node, 'only 2-D convolutions are supported');
    if (x.shape[1] !== dims[1]! * group) throw nodeError(node, `input has ${x.shape[1]} channels, weights expect ${dims[1]! * group}`);
    const { window, out } = windowOf(node, x.shape.slice(2), attrInts(node, 'kernel_shape', dims.slice(2)));
    const o = this.requantOutput(node);
    this.emit(
      {
        op: 'conv',
        name: node.name,
        inputs: [x.name],
        output: o.output,
        ...window,
        group,
        weights: weightTensor(w),
        ...this.bias(node, w, x.grid.scale),
        requant: this.weightRequant(node, w, x.grid.scale, o.grid.scale),
        clamp: o.clamp,
      },
      [1, dims[0]!, ...out],
      o.grid,
    );
  }

  private lowerFullyConnected(node: Node): void {
    if (node.opType === 'Gemm' && (attrInt(node, 'transA', 0) || attrFloat(node, 'alpha', 1) !== 1 || attrFloat(node, 'beta', 1) !== 1)) {
      throw nodeError(node, 'only Gemm with transA=0, alpha=1, beta=1 is supported');
    }
    const x = this.info(node, node.inputs[0]!);
    const w = this.weightsOf(node, node.opType === 'Gemm' && attrInt(node, 'transB', 0) ? 0 : 1);
    const [outC, k] = w.shape as [number, number];
    if (w.shape.length !== 2 || x.shape.at(-1) !== k || (node.opType === 'Gemm' && x.shape.length !== 2)) {
      throw nodeError(node, `input shape [${x.shape}] does not match weights [${w.shape}]`);
    }
    const o = this.requantOutput(node);
    this.emit(
      {
        op: 'fc',
        name: node.name,
        inputs: [x.name],
        output: o.output,
        weights: weightTensor(w),
        ...this.bias(node, w, x.grid.scale),
        requant: this.weightRequant(node, w, x.grid.scale, o.grid.scale),
        clamp: o.clamp,
      },
      [...x.shape.slice(0, -1), outC],
      o.grid,
    );
  }

  /**
   * Add/Sub of two tensors: the larger of s_a/s_y, s_b/s_y is normalized to the multiplier
   * width and the other shares its shift, so one rounding ends the sum.
   */
  private lowerAdd(node: Node): void {
    const [a, b] = [this.info(node, node.inputs[0]!), this.info(node, node.inputs[1]!)];
    const o = this.requantOutput(node);
    if (this.profile.requantization.rounding === 'xnnpack') {
      const x = ifXnnpackTakes(() => xnnpackAddMultipliers(a.grid.scale, b.grid.scale, o.grid.scale));
      if (x) return this.emitAdd(node, a, b, o, [x.multipliers[0], x.multipliers[1]], x.shift);
    }
    if (this.tflite) return this.lowerTfliteAdd(node, a, b, o);
    const ra = a.grid.scale / o.grid.scale;
    const rb = b.grid.scale / o.grid.scale;
    const m = this.multiplier(node, Math.max(ra, rb));
    const other = Math.round(Math.min(ra, rb) * 2 ** m.shift);
    const [ma, mb] = ra >= rb ? [m.multiplier, other] : [other, m.multiplier];
    this.emitAdd(node, a, b, o, [ma, mb], m.shift);
  }

  /** An 'add' layer: the centred inputs times `multipliers`, rounded half up by `shift` (Sub negates b's). */
  private emitAdd(
    node: Node,
    a: TensorInfo & { name: string },
    b: TensorInfo & { name: string },
    o: RequantOutput,
    [ma, mb]: [number, number],
    shift: number,
  ): void {
    this.emit(
      {
        op: 'add',
        name: node.name,
        inputs: [a.name, b.name],
        output: o.output,
        multipliers: [ma, node.opType === 'Sub' ? -mb : mb],
        shift,
        clamp: o.clamp,
      },
      broadcastShape(node, a.shape, b.shape),
      o.grid,
    );
  }

  /** TFLite's int8 ADD/SUB multipliers (kernels/add.cc, sub.cc), from the float scales in double precision as TFLite computes them. */
  private lowerTfliteAdd(node: Node, a: TensorInfo & { name: string }, b: TensorInfo & { name: string }, o: RequantOutput): void {
    const leftShift = 20;
    const twiceMax = 2 * Math.max(a.grid.scale, b.grid.scale);
    this.emit(
      {
        op: 'tflite-add',
        name: node.name,
        inputs: [a.name, b.name],
        output: o.output,
        leftShift,
        inputScales: [this.multiplier(node, a.grid.scale / twiceMax), this.multiplier(node, b.grid.scale / twiceMax)],
        outputScale: this.multiplier(node, twiceMax / (2 ** leftShift * o.grid.scale)),
        subtract: node.opType === 'Sub',
        clamp: o.clamp,
      },
      broadcastShape(node, a.shape, b.shape),
      o.grid,
    );
  }

  private lowerMul(node: Node): void {
    const [a, b] = [this.info(node, node.inputs[0]!), this.info(node, node.inputs[1]!)];
    const o = this.requantOutput(node);
    const m = this.scaleMultiplier(node, a.grid.scale, b.grid.scale, o.grid.scale);
    this.emit(
      { op: 'mul', name: node.name, inputs: [a.name, b.name], output: o.output, multiplier: m.multiplier, shift: m.shift, clamp: o.clamp },
      broadcastShape(node, a.shape, b.shape),
      o.grid,
    );
  }

  private lowerAveragePool(node: Node): void {
    const x = this.info(node, node.inputs[0]!);
    if (x.shape.length !== 4) throw nodeError(node, 'only NCHW inputs are supported');
    const [h, w] = x.shape.slice(2) as [number, number];
    let kernel = [h, w];
    let keep = true;
    if (node.opType === 'ReduceMean') {
      const axes = (constantInput(node, 1, this.graph.initializers) ?? attrInts(node, 'axes', []))
        .map((a) => normalizeAxis(a, 4, node))
        .sort();
      if (axes.join() !== '2,3') throw nodeError(node, `only the spatial mean (axes 2, 3) is supported, got axes [${axes}]`);
      keep = attrInt(node, 'keepdims', 1) === 1;
    } else if (node.opType === 'AveragePool') kernel = attrInts(node, 'kernel_shape', []);
    const { window, out } = windowOf(node, [h, w], kernel);
    const countIncludePad = attrInt(node, 'count_include_pad', 0) === 1;
    const o = this.requantOutput(node);
    const shape = keep ? [1, x.shape[1]!, ...out] : [1, x.shape[1]!];
    if (this.tflite) return this.lowerTflitePool(node, x, o, window, countIncludePad, shape);
    const windows = windowCounts(window, h, w, out, countIncludePad).map((count) => {
      const m = this.multiplier(node, x.grid.scale / (count * o.grid.scale));
      return { count, multiplier: m.multiplier, shift: m.shift };
    });
    this.emit(
      { op: 'avgpool', name: node.name, inputs: [x.name], output: o.output, ...window, countIncludePad, windows, clamp: o.clamp },
      shape,
      o.grid,
    );
  }

  /**
   * AveragePool as TFLite's AVERAGE_POOL_2D (on the input grid, then regridded when the
   * output grid differs, as an int8 → int8 QUANTIZE after it would); GlobalAveragePool and
   * the spatial ReduceMean as TFLite's MEAN, which rescales itself.
   */
  private lowerTflitePool(
    node: Node,
    x: TensorInfo & { name: string },
    o: RequantOutput,
    window: Window,
    includePad: boolean,
    shape: number[],
  ): void {
    const base = { name: node.name, inputs: [x.name], output: o.output, clamp: o.clamp };
    if (node.opType !== 'AveragePool') {
      const m = this.multiplier(node, x.grid.scale / o.grid.scale);
      return this.emit({ op: 'tflite-mean', ...base, multiplier: m.multiplier, shift: m.shift }, shape, o.grid);
    }
    if (includePad && window.pads.some((p) => p > 0))
      throw nodeError(node, "count_include_pad=1 with padding: TFLite's AVERAGE_POOL_2D never counts padding");
    const same = x.grid.scale === o.grid.scale && x.grid.zeroPoint === o.grid.zeroPoint;
    const regrid = same ? {} : { regrid: this.convertMultiplier(node, x.grid.scale, o.grid.scale) };
    this.emit({ op: 'tflite-avgpool', ...base, ...window, ...regrid }, shape, o.grid);
  }

  private lowerMaxPool(node: Node): void {
    const x = this.info(node, node.inputs[0]!);
    if (node.outputs[1] && this.view.readers.has(node.outputs[1])) throw nodeError(node, 'the indices output is not supported');
    if (x.shape.length !== 4) throw nodeError(node, 'only NCHW inputs are supported');
    const { window, out } = windowOf(node, x.shape.slice(2), attrInts(node, 'kernel_shape', []));
    this.emitSameGrid(
      node,
      { op: 'maxpool', name: node.name, inputs: [x.name], output: node.outputs[0]!, ...window },
      [1, x.shape[1]!, ...out],
      x.grid,
    );
  }

  private lowerReshape(node: Node): void {
    const x = this.info(node, node.inputs[0]!);
    const computed = node.opType === 'Reshape' && !this.graph.initializers.has(node.inputs[1]!);
    const shape = computed ? this.inferredShape(node) : reshapeOutput(node, x.shape, this.graph.initializers);
    this.emitSameGrid(node, { op: 'reshape', name: node.name, inputs: [x.name], output: node.outputs[0]! }, shape, x.grid);
  }

  private lowerTranspose(node: Node): void {
    const x = this.info(node, node.inputs[0]!);
    const perm = attrInts(
      node,
      'perm',
      x.shape.map((_, i) => x.shape.length - 1 - i),
    );
    this.emitSameGrid(
      node,
      { op: 'transpose', name: node.name, inputs: [x.name], output: node.outputs[0]!, perm },
      perm.map((p) => x.shape[p]!),
      x.grid,
    );
  }

  private lowerSelect(node: Node): void {
    const x = this.info(node, node.inputs[0]!);
    const { index, shape } = (node.opType === 'Resize' ? resizeSelection : sliceSelection)(node, x.shape, this.graph.initializers);
    if (shape[0] !== x.shape[0]) throw nodeError(node, 'changes the batch axis, which a package running one image at a time cannot');
    this.emitSameGrid(node, { op: 'select', name: node.name, inputs: [x.name], output: node.outputs[0]!, index }, shape, x.grid);
  }

  /** Zero padding (the plan keeps the grid of such a Pad, see `keepsGrid`): the zero point around the input. */
  private lowerPad(node: Node): void {
    const x = this.info(node, node.inputs[0]!);
    if (!keepsGrid(node)) throw nodeError(node, 'only constant zero padding is supported');
    const pads = constantInput(node, 1, this.graph.initializers);
    if (!pads || pads.length !== 2 * x.shape.length || pads.some((p) => p < 0))
      throw nodeError(node, 'needs constant non-negative pads, two per axis');
    if (pads[0] || pads[x.shape.length]) throw nodeError(node, 'pads the batch axis, which a package running one image at a time cannot');
    const shape = x.shape.map((d, i) => d + pads[i]! + pads[i + x.shape.length]!);
    this.emitSameGrid(node, { op: 'pad', name: node.name, inputs: [x.name], output: node.outputs[0]!, pads }, shape, x.grid);
  }

  /** The static output shape of `node` at batch 1, for a Reshape whose target the graph computes. */
  private inferredShape(node: Node): number[] {
    if (!this.batchOne) {
      const inputs = this.graph.inputs.map((v) => ({ ...v, shape: v.shape && [1, ...v.shape.slice(1)] }));
      const copy: Model = { graph: { ...this.graph, inputs, valueInfo: new Map() }, opset: this.opset, producerName: '', metadata: {} };
      inferShapes(copy);
      this.batchOne = copy.graph.valueInfo;
    }
    const shape = this.batchOne.get(node.outputs[0]!)?.shape;
    if (!shape?.every((d): d is number => typeof d === 'number'))
      throw nodeError(node, 'its target shape is computed and not static at batch 1');
    return shape;
  }

  /** Ops that keep their input's grid write their own output name, which nothing may requantize. */
  private emitSameGrid(node: Node, layer: NpuLayer, shape: number[], grid: Grid): void {
    if (this.view.quantizedAs.has(node.outputs[0]!))
      throw nodeError(node, 'its output is requantized, which a grid-preserving op does not support');
    this.emit(layer, shape, grid);
  }

  private lowerConcat(node: Node): void {
    const xs = node.inputs.map((i) => this.info(node, i));
    const rank = xs[0]!.shape.length;
    const axis = normalizeAxis(attrInt(node, 'axis', 0), rank, node);
    const o = this.requantOutput(node);
    const shape = [...xs[0]!.shape];
    shape[axis] = xs.reduce((n, t) => n + t.shape[axis]!, 0);
    const [lo, hi] = o.clamp;
    const rounding = this.profile.requantization.rounding;
    const tables = xs.map((t) => {
      this.checkTableSize(node, t.grid);
      // TFLite concatenates on one grid: the export moves the others onto it with QUANTIZE.
      const table = rounding === 'half-up' ? regridTable(t.grid, o.grid) : tfliteRegridTable(t.grid, o.grid, rounding);
      return int32(table.map((q) => Math.min(hi, Math.max(lo, q))));
    });
    this.emit({ op: 'concat', name: node.name, inputs: xs.map((t) => t.name), output: o.output, axis, tables }, shape, o.grid);
  }

  private lowerTable(node: Node, input: string): void {
    const nonlinearity = PROFILE_ENTRY[node.opType as OpType];
    if (nonlinearity && this.profile.nonlinearities[nonlinearity] === 'float') {
      throw nodeError(node, `profile ${this.profile.name} runs ${nonlinearity} on the host ('float'), which an integer package cannot`);
    }
    for (const c of node.inputs) {
      if (!c || c === input) continue;
      const constant = this.graph.initializers.get(c);
      if (!constant) this.info(node, c);
      else if (constant.data.length !== 1) throw nodeError(node, `input '${c}' is not a scalar constant; only those fit a lookup table`);
    }
    const x = this.info(node, input);
    this.checkTableSize(node, x.grid);
    const o = this.requantOutput(node);
    const layer: LutLayer = { op: 'lut', name: node.name, inputs: [x.name], output: o.output, table: int32([]) };
    this.tableRequests.push({ layer, request: { node, input, inGrid: x.grid, outGrid: o.grid }, clamp: o.clamp });
    this.emit(layer, x.shape, o.grid);
  }

  private checkTableSize(node: Node, g: Grid): void {
    if (g.qmax - g.qmin + 1 > MAX_TABLE)
      throw nodeError(node, `input grid of ${g.qmax - g.qmin + 1} levels is too large for a lookup table`);
  }
}

/** TFLite's own table of a unary node, with the node named when TFLite's kernel refuses its grids. */
function tfliteTableOf(r: TableRequest, rounding: 'tflite' | 'xnnpack'): Int32Array | undefined {
  try {
    return tfliteTable(r, rounding);
  } catch (e) {
    if (e instanceof RangeError) throw nodeError(r.node, e.message);
    throw e;
  }
}

const WEIGHTED = new Set(['Conv', 'Gemm', 'MatMul']);

/** Where a requantizing layer writes: its output tensor, that tensor's grid and the clamp on it. */
interface RequantOutput {
  output: string;
  grid: Grid;
  clamp: [number, number];
}

/** k[c] with scale[c] = max(scale)·2^−k[c] exactly, as WESS weights are; an error when the scales are not of that form. */
function wessShifts(node: Node, scale: Float32Array, shiftBits: number): Uint8Array {
  const top = Math.max(...scale);
  return Uint8Array.from(scale, (s, c) => {
    const k = Math.log2(top / s);
    if (!Number.isInteger(k) || k > 2 ** shiftBits - 1) {
      throw nodeError(
        node,
        `weight scale of channel ${c} is not the layer scale times 2^−k with k in 0..${2 ** shiftBits - 1} (profile granularity 'shift')`,
      );
    }
    return k;
  });
}

function weightTensor(w: LayerWeights): IntTensor {
  return { dtype: w.bits === 4 ? 'int4' : 'int8', shape: w.shape, data: w.data };
}

/** [rows, cols] → [cols, rows]. */
function transpose2d(q: Int8Array, rows: number, cols: number): Int8Array {
  const out = new Int8Array(q.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = q[r * cols + c]!;
  return out;
}

function int32(values: ArrayLike<number>): IntTensor {
  return { dtype: 'int32', shape: [values.length], data: Int32Array.from(values) };
}

/** The distinct element counts of the pooling windows (one, unless edge windows exclude padding). */
function windowCounts(w: Window, h: number, wd: number, out: [number, number], includePad: boolean): number[] {
  const counts = new Set<number>();
  for (let oy = 0; oy < out[0]; oy++) for (let ox = 0; ox < out[1]; ox++) counts.add(windowCount(w, includePad, oy, ox, h, wd));
  return [...counts].sort((a, b) => a - b);
}
