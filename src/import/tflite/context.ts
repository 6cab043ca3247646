/**
 * State shared by the operator converters while one TFLite subgraph becomes a quantflow graph:
 * which ONNX value holds each TFLite tensor, constants, names, shapes and the clamps that
 * stand in for quantized output ranges.
 */
import { toObject } from 'flatbuffers/mjs/flexbuffers.js';
import { attr, makeNode, nameAllocator } from '../../graph/graph.js';
import { floatTensor, int64Tensor } from '../../graph/tensor.js';
import type { AttributeValue, DataType, Dim, Graph, TensorData } from '../../graph/types.js';
import { QuantflowError } from '../../util/errors.js';
import { NCHW_TO_NHWC, NHWC_TO_NCHW, onnxAxis, onnxShape, permute, sameOrderAsNchw, transposeData } from './layout.js';
import { dequantize, expectedBytes, isDecodable, rawValues, representableRange } from './quant.js';
import type { Table, TfliteModel, TfliteOperator, TfliteSubgraph, TfliteTensor } from './schema.js';

/** A closed real interval; infinite ends mean unbounded. */
export type Interval = readonly [number, number];
const UNBOUNDED: Interval = [-Infinity, Infinity];

/** Output intervals of TFLite's fused activations NONE, RELU, RELU_N1_TO_1 and RELU6, by enum code. */
const ACTIVATIONS: Record<number, Interval> = {
  0: UNBOUNDED,
  1: [0, Infinity],
  2: [-1, 1],
  3: [0, 6],
};

/** Quantization parameters of an ONNX value, as recorded in the model metadata. */
export interface QuantRecord {
  scale: number[];
  zeroPoint: number[];
  /** The quantized axis in the ONNX value's layout. */
  axis: number;
}

/**
 * A custom operator the importer expanded into ONNX ops, recorded so that an exporter can
 * write it back as it was: its code, the ONNX values of its activation inputs and of its
 * outputs, its constant inputs (float32, base64, TFLite shape) and its custom options
 * (base64 flexbuffer).
 */
export interface RecordedCustomOp {
  code: string;
  inputs: string[];
  outputs: string[];
  constants: { index: number; shape: number[]; data: string }[];
  options: string;
}

/** How an operator's output is finished: its fused activation and what its values can be. */
export interface OutputSpec {
  /** Fused activation enum code (NONE when omitted). */
  activation?: number;
  /** Interval the op's results are already known to lie in; clamps that cut nothing off are skipped. */
  bounds?: Interval;
}

/** One operator under conversion: its tensors and options, with errors that name it. */
export class Op {
  constructor(
    private readonly ctx: ImportContext,
    readonly raw: TfliteOperator,
    /** Builtin operator name, e.g. CONV_2D. */
    readonly type: string,
  ) {}

  /** "CONV_2D (operator 3 of subgraph 0)". */
  get label(): string {
    return `${this.type} (operator ${this.raw.index} of subgraph ${this.ctx.subgraph.index})`;
  }

  fail(message: string): never {
    throw new QuantflowError(`${this.ctx.source}: ${this.label}: ${message}`);
  }

  /** Checks the number of inputs (omitted optional ones count) and outputs. */
  arity(minInputs: number, maxInputs: number, outputs = 1): void {
    const n = this.raw.inputs.length;
    if (n < minInputs || n > maxInputs)
      this.fail(`expects ${minInputs === maxInputs ? minInputs : `${minInputs} to ${maxInputs}`} inputs, has ${n}`);
    if (this.raw.outputs.length !== outputs) this.fail(`expects ${outputs} output(s), has ${this.raw.outputs.length}`);
  }

  /** Input tensor k, or null when it is omitted (-1 or past the end). */
  optionalInput(k: number): TfliteTensor | null {
    const i = this.raw.inputs[k] ?? -1;
    return i === -1 ? null : this.ctx.tensor(i, () => `input ${k} of ${this.label}`);
  }

  input(k: number): TfliteTensor {
    return this.optionalInput(k) ?? this.fail(`input ${k} is missing`);
  }

  output(k = 0): TfliteTensor {
    const i = this.raw.outputs[k];
    if (i === undefined || i < 0) this.fail(`output ${k} is missing`);
    return this.ctx.tensor(i, () => `output ${k} of ${this.label}`);
  }

  /** The builtin options table, checked to be of the expected union type; null when absent. */
  options(spec: { type: number }): Table | null {
    if (this.raw.optionsType === 0) return null;
    if (this.raw.optionsType !== spec.type)
      this.fail(`has options of union type ${this.raw.optionsType}, expected ${spec.type} (corrupt file?)`);
    return this.raw.options;
  }

  /** A custom operator's flexbuffer map of options (empty when it has none). */
  flexOptions(): Record<string, unknown> {
    const bytes = this.raw.customOptions;
    if (!bytes?.length) return {};
    let root: unknown;
    try {
      root = toObject(bytes.slice().buffer);
    } catch (e) {
      // The flexbuffers reader throws plain strings on malformed data.
      this.fail(`cannot read its custom options (${e instanceof Error ? e.message : String(e)})`);
    }
    if (typeof root !== 'object' || root === null || Array.isArray(root)) this.fail('its custom options are not a flexbuffer map');
    return root as Record<string, unknown>;
  }

  /** Reads a fused activation code and checks that it is one we can express. */
  activation(options: Table | null, slot: number): number {
    const code = options?.int8(slot) ?? 0;
    if (!(code in ACTIVATIONS)) this.fail(`unsupported fused activation ${code} (supported: NONE, RELU, RELU_N1_TO_1, RELU6)`);
    return code;
  }

  /** Reads a Padding enum. */
  padding(options: Table | null, slot: number): 'SAME' | 'VALID' {
    const code = options?.int8(slot) ?? 0;
    if (code !== 0 && code !== 1) this.fail(`unknown padding ${code}`);
    return code === 0 ? 'SAME' : 'VALID';
  }

  /** A positive integer option (strides, kernel sizes, dilations). */
  positive(options: Table | null, slot: number, what: string, fallback: number): number {
    const v = options ? options.int32(slot, fallback) : fallback;
    if (v < 1) this.fail(`${what} is ${v}, must be at least 1`);
    return v;
  }

  /** Whether any activation input carries the batch dimension. */
  get batched(): boolean {
    return this.raw.inputs.some((i) => i >= 0 && this.ctx.isBatched(i));
  }
}

/** A value to reshape: its name, TFLite-layout dims, and whether its leading dim is the batch. */
export interface ReshapeSource {
  name: string;
  dims: number[];
  batched: boolean;
}

/** Conversion state of one subgraph. */
export class ImportContext {
  /** ONNX value holding each TFLite tensor already converted. */
  private readonly values = new Map<number, string>();
  /** Tensors whose leading dimension is the (symbolic) batch. */
  private readonly batchedTensors = new Set<number>();
  /** Constant tensors that DEQUANTIZE ops forward: output tensor → source tensor. */
  private readonly constantAlias = new Map<number, number>();
  private readonly initializerOf = new Map<number, string>();
  private readonly nhwcCopies = new Map<string, string>();
  /** Shapes of outputs the file leaves unspecified, set by their converter (custom ops). */
  private readonly declaredShapes = new Map<number, number[]>();
  /** Quantization parameters of ONNX values, for `tflite.quantization` metadata. */
  readonly quantization: Record<string, QuantRecord> = {};
  /** Custom operators expanded into ONNX ops, for `tflite.custom_ops` metadata. */
  readonly customOps: RecordedCustomOp[] = [];
  readonly fresh: (base: string) => string;

  constructor(
    readonly graph: Graph,
    readonly model: TfliteModel,
    readonly subgraph: TfliteSubgraph,
    readonly source: string,
    /** Static batch size of the TFLite inputs, the leading dim that becomes symbolic. */
    readonly batchSize: number,
  ) {
    this.fresh = nameAllocator(graph);
  }

  fail(message: string): never {
    throw new QuantflowError(`${this.source}: ${message}`);
  }

  tensor(index: number, what: () => string): TfliteTensor {
    const t = this.subgraph.tensors[index];
    const count = this.subgraph.tensors.length;
    if (!t) this.fail(`${what()} refers to tensor ${index}, but subgraph ${this.subgraph.index} has ${count}`);
    return t;
  }

  /** A readable name derived from a TFLite tensor name (not yet made unique). */
  baseName(t: TfliteTensor): string {
    // TF2 converters join fused op names with ';'; the first is the op that produced the value.
    return t.name.split(';')[0]!.replace(/[^A-Za-z0-9_./:-]+/g, '_') || `tensor_${t.index}`;
  }

  /** A readable, unused ONNX name derived from a TFLite tensor name. */
  nameFor(t: TfliteTensor): string {
    return this.fresh(this.baseName(t));
  }

  isBatched(index: number): boolean {
    return this.batchedTensors.has(index);
  }

  /** The static TFLite shape of `t`: the file's, or the one its converter declared. */
  shapeOf(t: TfliteTensor): number[] {
    return this.declaredShapes.get(t.index) ?? t.shape;
  }

  /** Sets the shape of an output the file leaves unspecified (custom operators' outputs). */
  declareShape(t: TfliteTensor, shape: number[]): void {
    this.declaredShapes.set(t.index, shape);
  }

  /** TFLite shape of `t` with its leading dim symbolic when it is the batch. */
  tfliteDims(t: TfliteTensor): Dim[] {
    return this.shapeOf(t).map((d, i) => (i === 0 && this.isBatched(t.index) ? 'batch' : d));
  }

  /** Shape of the ONNX value of `t` (NCHW for 4-D). */
  onnxDims(t: TfliteTensor): Dim[] {
    return onnxShape(this.tfliteDims(t));
  }

  /** Constant bytes of `t` (following DEQUANTIZE forwarding), or null for an activation. */
  private constantSource(t: TfliteTensor): TfliteTensor | null {
    const src = this.constantAlias.get(t.index);
    if (src !== undefined) return this.subgraph.tensors[src]!;
    return (this.model.buffers[t.buffer]?.length ?? 0) > 0 ? t : null;
  }

  isConstant(t: TfliteTensor): boolean {
    return this.constantSource(t) !== null;
  }

  /** Real values of a constant tensor in TFLite layout (dequantized when quantized). */
  constantValues(op: Op, t: TfliteTensor): Float32Array {
    const src = this.constantSource(t) ?? op.fail(`tensor '${t.name}' must be a constant`);
    const bytes = this.model.buffers[src.buffer]!;
    if (!isDecodable(src.type)) op.fail(`constant '${src.name}' has unsupported type ${src.type}`);
    if (bytes.length !== expectedBytes(src.type, src.shape))
      op.fail(`constant '${src.name}' of shape [${src.shape}] ${src.type} has ${bytes.length} bytes of data`);
    const q = src.quantization;
    if (q) {
      const channels = q.scale.length;
      const axisOk = channels === 1 || (q.axis >= 0 && q.axis < src.shape.length && src.shape[q.axis] === channels);
      if (!axisOk || (q.zeroPoint.length !== 1 && q.zeroPoint.length !== channels))
        op.fail(`constant '${src.name}' has ${channels} scales for quantized dimension ${q.axis} of shape [${src.shape}]`);
    }
    // float16 or int8 weights behind a DEQUANTIZE: the source's own parameters decode them.
    return dequantize(rawValues(bytes, src.type), src.shape, q);
  }

  /** Integer contents of a constant (axes, paddings, shapes). */
  constantInts(op: Op, t: TfliteTensor): number[] {
    if (t.type !== 'int32' && t.type !== 'int64') op.fail(`tensor '${t.name}' must be an int32 constant, is ${t.type}`);
    return Array.from(this.constantValues(op, t));
  }

  /** Adds an initializer under a fresh name derived from `base`. */
  initializer(base: string, tensor: TensorData, quant?: QuantRecord): string {
    const name = this.fresh(base);
    this.graph.initializers.set(name, tensor);
    if (quant) this.quantization[name] = quant;
    return name;
  }

  /** Quantization record of `t`, its axis mapped into the ONNX layout by `onnxAxisOf`. */
  quantRecord(t: TfliteTensor, onnxAxisOf: (axis: number) => number): QuantRecord | undefined {
    const q = t.quantization;
    return q ? { scale: q.scale, zeroPoint: q.zeroPoint, axis: onnxAxisOf(q.axis) } : undefined;
  }

  /** A float32 scalar initializer. */
  scalar(base: string, value: number): string {
    return this.initializer(base, floatTensor([], [value]));
  }

  /** An int64 initializer (shapes, pads). */
  int64s(base: string, values: number[]): string {
    return this.initializer(base, int64Tensor([values.length], values));
  }

  /**
   * Appends a node; `outputs[i]` gets value info `shapes[i]` and element type `types[i]`,
   * by default the type of the first input (data movement keeps it).
   */
  node(
    opType: string,
    inputs: string[],
    outputs: string[],
    shapes: Dim[][],
    attributes: Record<string, AttributeValue> = {},
    types: DataType[] = [],
  ): void {
    this.graph.nodes.push(makeNode(opType, inputs, outputs, attributes));
    const inherited = inputs[0] ? this.typeOf(inputs[0]) : 'float32';
    outputs.forEach((o, i) => this.graph.valueInfo.set(o, { name: o, dataType: types[i] ?? inherited, shape: shapes[i]! }));
  }

  /** Element type of an ONNX value made so far (graph input, initializer or node output). */
  typeOf(name: string): DataType {
    return (
      this.graph.valueInfo.get(name)?.dataType ??
      this.graph.initializers.get(name)?.dataType ??
      this.graph.inputs.find((v) => v.name === name)?.dataType ??
      'float32'
    );
  }

  /** Binds TFLite tensor `t` to ONNX value `name` (the first binding of a value keeps its metadata). */
  private bind(op: Op | null, t: TfliteTensor, name: string): void {
    this.values.set(t.index, name);
    if (op ? this.outputBatched(op, t) : this.shapeOf(t).length > 0) this.batchedTensors.add(t.index);
    const record = this.quantRecord(t, (a) => onnxAxis(a, t.shape.length));
    if (record && !(name in this.quantization)) this.quantization[name] = record;
  }

  /** Registers a graph input and returns its ONNX name. */
  defineInput(t: TfliteTensor): string {
    const name = this.nameFor(t);
    this.bind(null, t, name);
    return name;
  }

  /**
   * The ONNX value of an operator input: an activation already produced, or a constant made
   * into an initializer in ONNX layout (4-D data transposed to NCHW).
   */
  value(op: Op, t: TfliteTensor): string {
    const v = this.values.get(t.index);
    if (v !== undefined) return v;
    if (!this.isConstant(t)) op.fail(`reads tensor '${t.name}' before any operator writes it`);
    let name = this.initializerOf.get(t.index);
    if (!name && valueType(t) !== 'float32') {
      const values = this.constantValues(op, t);
      const data = t.shape.length === 4 ? transposeData(values, t.shape, NHWC_TO_NCHW) : values;
      name = this.initializer(this.baseName(t), integerTensor(valueType(t), onnxShape(t.shape), data));
      this.initializerOf.set(t.index, name);
    }
    if (!name) {
      let data = this.constantValues(op, t);
      if (t.shape.length === 4) data = transposeData(data, t.shape, NHWC_TO_NCHW);
      name = this.initializer(
        this.baseName(t),
        floatTensor(onnxShape(t.shape), data),
        this.quantRecord(t, (a) => onnxAxis(a, t.shape.length)),
      );
      this.initializerOf.set(t.index, name);
    }
    return name;
  }

  /** Makes output tensor `to` of a DEQUANTIZE forward constant `from`. */
  forwardConstant(from: TfliteTensor, to: TfliteTensor): void {
    this.constantAlias.set(to.index, this.constantSource(from)!.index);
  }

  /** The clamp interval an output needs beyond `bounds`, or null when none is needed. */
  private clampFor(t: TfliteTensor, spec: OutputSpec): Interval | null {
    const act = ACTIVATIONS[spec.activation ?? 0]!;
    const q = representableRange(t.type, t.quantization);
    let lo = Math.max(act[0], q?.[0] ?? -Infinity);
    let hi = Math.min(act[1], q?.[1] ?? Infinity);
    const [boundLo, boundHi] = spec.bounds ?? UNBOUNDED;
    // Cutting off less than one quantization step changes nothing an 8-bit model can tell apart.
    const tolerance = t.quantization && q ? t.quantization.scale[0]! : 0;
    if (lo <= boundLo + tolerance) lo = -Infinity;
    if (hi >= boundHi - tolerance) hi = Infinity;
    return lo === -Infinity && hi === Infinity ? null : [lo, hi];
  }

  private clampNode(input: string, output: string, shape: Dim[], [lo, hi]: Interval): void {
    if (lo === 0 && hi === Infinity) this.node('Relu', [input], [output], [shape]);
    else {
      const min = lo === -Infinity ? '' : this.scalar(`${output}_min`, lo);
      const max = hi === Infinity ? '' : this.scalar(`${output}_max`, hi);
      this.node('Clip', [input, min, max].slice(0, max ? 3 : 2), [output], [shape]);
    }
  }

  /**
   * Name the converter writes output k to. When the fused activation or the quantized range
   * of the output needs a clamp, that Clip (or Relu) is added here and the converter's result
   * becomes its input.
   */
  output(op: Op, k: number, spec: OutputSpec = {}): string {
    const t = op.output(k);
    const name = this.nameFor(t);
    this.bind(op, t, name);
    const clamp = this.clampFor(t, spec);
    if (!clamp) return name;
    const raw = this.fresh(`${name}_unclamped`);
    this.clampNode(raw, name, this.onnxDims(t), clamp);
    return raw;
  }

  /**
   * Output k of an op that computes nothing in float (QUANTIZE, DEQUANTIZE, RELU on data
   * already in range): the input value itself, or a clamp of it when one is needed.
   */
  passThrough(op: Op, k: number, input: string, spec: OutputSpec = {}): void {
    const t = op.output(k);
    const clamp = this.clampFor(t, spec);
    if (!clamp) {
      this.bind(op, t, input);
      return;
    }
    const name = this.nameFor(t);
    this.bind(op, t, name);
    this.clampNode(input, name, this.onnxDims(t), clamp);
  }

  /** The interval an activation input is known to lie in (its quantized range, if any). */
  rangeOf(t: TfliteTensor): Interval {
    return representableRange(t.type, t.quantization) ?? UNBOUNDED;
  }

  /** The smallest interval holding the ranges of all of `tensors`. */
  hullOf(tensors: TfliteTensor[]): Interval {
    const ranges = tensors.map((t) => this.rangeOf(t));
    return [Math.min(...ranges.map((r) => r[0])), Math.max(...ranges.map((r) => r[1]))];
  }

  /** The value of input tensor `t` described for `reshape`. */
  reshapeSource(op: Op, t: TfliteTensor): ReshapeSource {
    return { name: this.value(op, t), dims: t.shape, batched: this.isBatched(t.index) };
  }

  /** A value with its elements in TFLite (row-major NHWC) order. */
  private inTfliteOrder(src: ReshapeSource): string {
    if (sameOrderAsNchw(src.dims)) return src.name;
    let copy = this.nhwcCopies.get(src.name);
    if (!copy) {
      copy = this.fresh(`${src.name}_nhwc`);
      const dims: Dim[] = src.batched ? ['batch', ...src.dims.slice(1)] : src.dims;
      this.node('Transpose', [src.name], [copy], [dims], { perm: attr.ints(NCHW_TO_NHWC) });
      this.nhwcCopies.set(src.name, copy);
    }
    return copy;
  }

  /**
   * Writes to `output` the TFLite reshape of `src` to shape `dims` (TFLite layout; its leading
   * dim is symbolic when `batched`), inserting Transposes where NCHW and NHWC element orders
   * differ. `output` ends up in ONNX layout.
   */
  reshape(src: ReshapeSource, dims: number[], batched: boolean, output: string): void {
    const from = this.inTfliteOrder(src);
    const target = (d: number[]): number[] => (batched ? [-1, ...d.slice(1)] : d);
    const withBatch = (d: number[]): Dim[] => (batched ? ['batch', ...d.slice(1)] : d);
    if (sameOrderAsNchw(dims)) {
      const shape = this.int64s(`${output}_shape`, target(onnxShape(dims)));
      this.node('Reshape', [from, shape], [output], [onnxShape(withBatch(dims))]);
      return;
    }
    const nhwc = this.fresh(`${output}_nhwc`);
    this.node('Reshape', [from, this.int64s(`${output}_shape`, target(dims))], [nhwc], [withBatch(dims)]);
    this.node('Transpose', [nhwc], [output], [onnxShape(withBatch(dims))], { perm: attr.ints(NHWC_TO_NCHW) });
  }

  /** Whether an output of `op` will have the symbolic batch as its leading dim. */
  outputBatched(op: Op, t: TfliteTensor): boolean {
    const shape = this.shapeOf(t);
    return op.batched && shape.length > 0 && shape[0] === this.batchSize;
  }

  /** The ONNX value bound to `t` (after conversion); undefined when none is. */
  boundValue(t: TfliteTensor): string | undefined {
    return this.values.get(t.index);
  }
}

/**
 * The ONNX element type that holds a TFLite tensor's values: float32 for float and quantized
 * tensors (the import is a float graph), the integer type itself for plain indices and counts.
 */
export function valueType(t: TfliteTensor): DataType {
  if (t.quantization) return 'float32';
  return t.type === 'int32' || t.type === 'int64' || t.type === 'bool' ? t.type : 'float32';
}

function integerTensor(dataType: DataType, dims: number[], values: Float32Array): TensorData {
  if (dataType === 'int64') return int64Tensor(dims, Array.from(values));
  if (dataType === 'int32') return { dataType, dims, data: Int32Array.from(values) };
  return { dataType, dims, data: Uint8Array.from(values, (v) => (v ? 1 : 0)) };
}

/** Constant data of TFLite shape `dims` as a float tensor transposed by `perm` (into ONNX layout). */
export function permuteConstant(data: Float32Array, dims: number[], perm: number[]): TensorData {
  return floatTensor(permute(dims, perm), transposeData(data, dims, perm));
}
