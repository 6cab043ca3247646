/**
 * Shape inference with ONNX semantics. Symbolic dims (strings such as 'batch') survive where
 * an operator passes a dimension through; a dim that cannot be determined becomes null and a
 * rank that cannot be determined leaves the shape undefined, so every number in a result is
 * right. Inconsistencies that inference can prove (channel counts, inner dimensions,
 * broadcasting, element counts, ...) throw a QuantflowError naming the node.
 */
import type { DataType, Dim, Model, Node, TensorData, ValueInfo } from './types.js';
import { attrFloats, attrInt, attrInts, attrString, attrTensor, nodeError, normalizeAxis } from './graph.js';
import { formatShape, sizeOf, toFloat32, toNumbers } from './tensor.js';
import { schemaOf, unsupportedOperatorMessage, type OpType } from './ops.js';
import { dataTypeFromCode } from './datatype.js';
import { explicitPads, isSamePadding, outputSize, windowAttributes, windowExtent, type WindowAttributes } from './window.js';
import { QuantflowError } from '../util/errors.js';

/**
 * Element types and shapes of every value of `model`: node outputs as `inferShapes` finds
 * them, inputs and initializers as declared. Inferred on a copy, so the model is left as it is.
 */
export function valueShapes(model: Model): Map<string, ValueInfo> {
  const probe: Model = { ...model, graph: { ...model.graph, valueInfo: new Map() } };
  inferShapes(probe);
  const shapes = new Map(probe.graph.valueInfo);
  for (const v of model.graph.inputs) shapes.set(v.name, v);
  for (const [name, t] of model.graph.initializers) shapes.set(name, { name, dataType: t.dataType, shape: [...t.dims] });
  return shapes;
}

/**
 * Fills `model.graph.valueInfo` (replacing what it held) with the element type and shape of
 * every node output, walking the nodes in their (topological) order. Throws a QuantflowError
 * for an unsupported operator, an input not produced before its reader, or a shape
 * inconsistency. Returns the elements known before run time of the node outputs that have
 * them (shape arithmetic; see `Value.elements`), which shape folding turns into constants.
 */
export function inferShapes(model: Model): Map<string, Dim[]> {
  const { graph } = model;
  const known = new Map<string, Value>();
  for (const v of graph.inputs) known.set(v.name, { dataType: v.dataType, shape: v.shape });
  const lookup = (name: string): Value | undefined => {
    const v = known.get(name);
    if (v) return v;
    const t = graph.initializers.get(name);
    if (!t) return undefined;
    const value = tensorValue(t);
    known.set(name, value);
    return value;
  };

  const valueInfo = new Map<string, ValueInfo>();
  const elements = new Map<string, Dim[]>();
  for (const node of graph.nodes) {
    if (!schemaOf(node)) throw new QuantflowError(unsupportedOperatorMessage(node));
    const inputs = node.inputs.map((name) => {
      if (name === '') return undefined;
      const v = lookup(name);
      if (!v) throw nodeError(node, `input '${name}' is not produced before this node`);
      return v;
    });
    const c = new Context(node, model.opset, inputs);
    const outputs = SHAPE_FUNCTIONS[node.opType as OpType](c);
    node.outputs.forEach((name, i) => {
      if (name === '') return;
      const v = outputs[i] ?? c.fail(`has ${node.outputs.length} outputs, the operator produces ${outputs.length}`);
      known.set(name, v);
      if (v.elements) elements.set(name, v.elements);
      valueInfo.set(name, v.shape ? { name, dataType: v.dataType, shape: [...v.shape] } : { name, dataType: v.dataType });
    });
  }
  graph.valueInfo = valueInfo;
  return elements;
}

/** What inference knows about one value. */
interface Value {
  dataType: DataType;
  shape?: Dim[];
  /**
   * Row-major elements of a small tensor known before run time: initializers, Constant, and
   * shape arithmetic (Shape → Gather → Concat ...), so that Reshape targets, Resize sizes and
   * Slice bounds computed inside the graph still give static shapes. An element copied from
   * a symbolic dim is that symbol.
   */
  elements?: Dim[];
}

/** Shape operands are a handful of elements; bigger tensors are weights, not worth copying. */
const MAX_TRACKED_ELEMENTS = 64;

/** Exporters write INT32_MAX or INT64_MAX as a Slice end meaning "to the end of the axis". */
const SLICE_TO_END = 2 ** 31 - 1;

const INTEGER_TYPES: ReadonlySet<DataType> = new Set([
  'int4',
  'uint4',
  'int8',
  'uint8',
  'int16',
  'uint16',
  'int32',
  'uint32',
  'int64',
  'uint64',
]);

/** One node as its shape function sees it. */
class Context {
  constructor(
    readonly node: Node,
    readonly opset: number,
    private readonly values: readonly (Value | undefined)[],
  ) {}

  fail(message: string): never {
    throw nodeError(this.node, message);
  }

  input(i: number): Value {
    return this.values[i] ?? this.fail(`missing required input ${i}`);
  }

  /** Undefined for an omitted optional input ('' or past the end). */
  optional(i: number): Value | undefined {
    return this.values[i];
  }
}

type ShapeFunction = (c: Context) => Value[];

function tensorValue(t: TensorData): Value {
  const small = sizeOf(t.dims) <= MAX_TRACKED_ELEMENTS;
  const elements = small ? (t.dataType === 'float16' ? Array.from(toFloat32(t)) : toNumbers(t)) : undefined;
  return { dataType: t.dataType, shape: [...t.dims], elements };
}

// ---- dims -------------------------------------------------------------------------------

const isNum = (d: Dim): d is number => typeof d === 'number';

const unknownDims = (rank: number): Dim[] => new Array<Dim>(rank).fill(null);

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** The elements when all are known numbers. */
function numbers(dims: readonly Dim[] | undefined): number[] | undefined {
  return dims?.every(isNum) ? [...dims] : undefined;
}

/** d + n; a symbolic dim survives only n = 0. */
function addDim(d: Dim, n: number): Dim {
  if (n === 0) return d;
  return isNum(d) ? d + n : null;
}

/** Product of dims: a lone symbol times 1 stays that symbol. */
function productDim(dims: readonly Dim[]): Dim {
  let n = 1;
  const others: Dim[] = [];
  for (const d of dims) {
    if (isNum(d)) n *= d;
    else others.push(d);
  }
  if (n === 0 || others.length === 0) return n;
  return others.length === 1 && n === 1 ? others[0] : null;
}

/** Sum of dims along a concatenation axis: zero-sized parts drop out, so a lone symbol stays. */
function sumDim(dims: readonly Dim[]): Dim {
  const parts = dims.filter((d) => d !== 0);
  if (parts.length <= 1) return parts.length ? parts[0] : 0;
  return parts.every(isNum) ? parts.reduce((a, b) => a + b, 0) : null;
}

/** The common value of two dims that must be equal; undefined when they are different numbers. */
function unifyDim(a: Dim, b: Dim): Dim | undefined {
  if (isNum(a) && isNum(b)) return a === b ? a : undefined;
  if (isNum(a) || b === null) return a;
  if (isNum(b) || a === null) return b;
  return a === b ? a : null;
}

/**
 * Broadcast of two dims; undefined when they are different numbers other than 1. A symbol
 * might be 1, so only a number or the very same symbol is certain.
 */
function broadcastDim(a: Dim, b: Dim): Dim | undefined {
  if (a === 1) return b;
  if (b === 1) return a;
  if (isNum(a) || isNum(b)) return unifyDim(a, b);
  return a === b ? a : null;
}

/** numpy broadcasting; undefined when any shape is unknown. */
function broadcast(c: Context, shapes: readonly (Dim[] | undefined)[]): Dim[] | undefined {
  const known = shapes.filter((s) => s !== undefined);
  if (known.length < shapes.length) return undefined;
  const rank = Math.max(...known.map((s) => s.length));
  return range(rank).map((i) => {
    let dim: Dim = 1;
    for (const s of known) {
      const j = s.length - rank + i;
      const d = j >= 0 ? s[j] : 1;
      const next = broadcastDim(dim, d);
      if (next === undefined) c.fail(`shapes ${known.map(formatShape).join(' and ')} are not broadcastable`);
      dim = next;
    }
    return dim;
  });
}

// ---- attributes and operands ------------------------------------------------------------

function requiredInt(c: Context, name: string): number {
  if (!c.node.attributes[name]) c.fail(`missing required attribute '${name}'`);
  return attrInt(c.node, name, 0);
}

function requiredInts(c: Context, name: string): number[] {
  return attrInts(c.node, name) ?? c.fail(`missing required attribute '${name}'`);
}

function onnxType(c: Context, code: number, what: string): DataType {
  return dataTypeFromCode(code) ?? c.fail(`${what} ${code} is not an element type quantflow supports`);
}

/**
 * An int list that moved from attribute `name` to input `index` at opset `inputSince`:
 * undefined when absent, null when it is computed at run time.
 */
function listOperand(c: Context, name: string, index: number, inputSince: number): number[] | null | undefined {
  if (c.opset < inputSince) return attrInts(c.node, name);
  const v = c.optional(index);
  return v ? (numbers(v.elements) ?? null) : undefined;
}

/** An optional input that is given and not empty (opset 11 Resize passes empty scales next to sizes). */
function nonEmpty(v: Value | undefined): Value | undefined {
  return v && !v.shape?.includes(0) ? v : undefined;
}

// ---- operators --------------------------------------------------------------------------

function sameAsInput(c: Context): Value[] {
  const x = c.input(0);
  return [{ dataType: x.dataType, shape: x.shape }];
}

/** Identity-like ops: shape and known elements pass through. */
function passThrough(c: Context): Value[] {
  return [c.input(0)];
}

function elementwise(c: Context, dataType = c.input(0).dataType): Value[] {
  const shapes = c.node.inputs.map((_, i) => c.input(i).shape);
  return [{ dataType, shape: broadcast(c, shapes) }];
}

const ARITHMETIC: Readonly<Record<string, (a: number, b: number) => number>> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
};

/** Add/Sub/Mul/Div, also on known elements, which shape subgraphs compute with. */
function arithmetic(c: Context): Value[] {
  const [out] = elementwise(c);
  const [a, b] = [c.input(0).elements, c.input(1).elements];
  if (a && b && out.shape && out.shape.length <= 1) {
    const op = ARITHMETIC[c.node.opType];
    const integer = INTEGER_TYPES.has(out.dataType);
    out.elements = range(Math.max(a.length, b.length)).map((i) => {
      const x = a[a.length === 1 ? 0 : i];
      const y = b[b.length === 1 ? 0 : i];
      if (!isNum(x) || !isNum(y)) return null;
      // onnxruntime computes float32 shape arithmetic in float32 and integer division truncates.
      const r = integer ? Math.trunc(op(x, y)) : out.dataType === 'float32' ? Math.fround(op(x, y)) : op(x, y);
      // A division by zero is the model's bug; it must not turn into a dim.
      return Number.isFinite(r) ? r : null;
    });
  }
  return [out];
}

/** A unary op that also maps known elements (Floor, Ceil on shape arithmetic). */
function unaryElements(f: (x: number) => number): ShapeFunction {
  return (c) => {
    const x = c.input(0);
    return [{ dataType: x.dataType, shape: x.shape, elements: x.elements?.map((e) => (isNum(e) ? f(e) : null)) }];
  };
}

function cast(c: Context): Value[] {
  const x = c.input(0);
  const to = onnxType(c, requiredInt(c, 'to'), 'to');
  const convert = (e: Dim): Dim => {
    if (to === 'bool') return isNum(e) ? Number(e !== 0) : null;
    return isNum(e) && INTEGER_TYPES.has(to) ? Math.trunc(e) : e;
  };
  return [{ dataType: to, shape: x.shape, elements: x.elements?.map(convert) }];
}

function softmax(c: Context): Value[] {
  const x = c.input(0);
  // The default axis moved from 1 to -1 when opset 13 redefined Softmax per axis.
  const axis = attrInt(c.node, 'axis', c.opset >= 13 ? -1 : 1);
  if (x.shape) normalizeAxis(axis, x.shape.length, c.node);
  return [{ dataType: x.dataType, shape: x.shape }];
}

/** Output sizes of a sliding window (Conv, pools) over the spatial dims, symbolic ones included. */
function windowOutputs(c: Context, spatial: readonly Dim[], kernel: readonly Dim[], w: WindowAttributes, ceilMode: boolean): Dim[] {
  const same = isSamePadding(w);
  return spatial.map((d, i) => {
    const [k, stride, dilation] = [kernel[i], w.strides[i]!, w.dilations[i]!];
    const [begin, end] = explicitPads(w, i);
    if (!isNum(d)) {
      // Only a stride-1 window padded by exactly what the kernel consumes keeps the size.
      return stride === 1 && (same || (isNum(k) && begin + end === (k - 1) * dilation)) ? d : null;
    }
    if (same) return Math.ceil(d / stride);
    if (!isNum(k)) return null;
    const extent = windowExtent(k, dilation);
    if (d + begin + end < extent) c.fail(`window of ${extent} exceeds the padded input size ${d + begin + end} on spatial axis ${i}`);
    return outputSize(d, { kernel: k, stride, dilation, begin, end }, ceilMode);
  });
}

/** kernel_shape when given (it must agree with the weight), else the weight's spatial dims. */
function kernelShape(c: Context, weightSpatial: readonly Dim[]): Dim[] {
  const k = attrInts(c.node, 'kernel_shape');
  if (!k) return [...weightSpatial];
  if (k.length !== weightSpatial.length || k.some((d, i) => isNum(weightSpatial[i]) && weightSpatial[i] !== d))
    c.fail(`kernel_shape ${formatShape(k)} does not match the weight's spatial dims ${formatShape(weightSpatial)}`);
  return k;
}

function checkBias(c: Context, channels: Dim): void {
  const b = c.optional(2)?.shape;
  if (b && (b.length !== 1 || (isNum(b[0]) && isNum(channels) && b[0] !== channels)))
    c.fail(`bias ${formatShape(b)} should be [${channels ?? '?'}]`);
}

/** Input and weight shapes of a convolution, with the rank they agree on (undefined if unknown). */
function convOperands(c: Context): { x: Value; xs: Dim[]; ws: Dim[]; rank?: number } {
  const x = c.input(0);
  const w = c.input(1).shape;
  const rank = x.shape?.length ?? w?.length;
  if (rank === undefined) return { x, xs: [], ws: [] };
  if (rank < 3) c.fail(`expects rank ≥ 3 (N, C, spatial...), found ${rank}`);
  if (x.shape && w && w.length !== rank) c.fail(`weight ${formatShape(w)} and input ${formatShape(x.shape)} differ in rank`);
  return { x, xs: x.shape ?? unknownDims(rank), ws: w ?? unknownDims(rank), rank };
}

function group(c: Context): number {
  const g = attrInt(c.node, 'group', 1);
  if (g < 1) c.fail(`group ${g} should be ≥ 1`);
  return g;
}

function conv(c: Context): Value[] {
  const { x, xs, ws, rank } = convOperands(c);
  if (rank === undefined) return [{ dataType: x.dataType }];
  const g = group(c);
  const [channels, outChannels, groupChannels] = [xs[1], ws[0], ws[1]];
  if (isNum(channels) && isNum(groupChannels) && channels !== groupChannels * g)
    c.fail(`input has ${channels} channels but weight ${formatShape(ws)} with group ${g} expects ${groupChannels * g}`);
  if (isNum(outChannels) && outChannels % g !== 0) c.fail(`${outChannels} output channels do not split into ${g} groups`);
  checkBias(c, outChannels);
  const kernel = kernelShape(c, ws.slice(2));
  const spatial = windowOutputs(c, xs.slice(2), kernel, windowAttributes(c.node, rank - 2), false);
  return [{ dataType: x.dataType, shape: [xs[0], outChannels, ...spatial] }];
}

function convTranspose(c: Context): Value[] {
  const { x, xs, ws, rank } = convOperands(c);
  if (rank === undefined) return [{ dataType: x.dataType }];
  const g = group(c);
  const [channels, weightChannels, groupOut] = [xs[1], ws[0], ws[1]];
  if (isNum(channels) && isNum(weightChannels) && channels !== weightChannels)
    c.fail(`input has ${channels} channels but weight ${formatShape(ws)} expects ${weightChannels}`);
  const outChannels = isNum(groupOut) ? groupOut * g : g === 1 ? groupOut : null;
  checkBias(c, outChannels);

  const n = rank - 2;
  const w = windowAttributes(c.node, n);
  const outputShape = attrInts(c.node, 'output_shape');
  if (outputShape) {
    // Exporters write either the spatial sizes (as the spec says) or the whole shape.
    if (outputShape.length !== n && outputShape.length !== rank)
      c.fail(`output_shape ${formatShape(outputShape)} should hold ${n} spatial sizes`);
    return [{ dataType: x.dataType, shape: [xs[0], outChannels, ...outputShape.slice(-n)] }];
  }
  const kernel = kernelShape(c, ws.slice(2));
  const outputPadding = attrInts(c.node, 'output_padding', new Array<number>(n).fill(0));
  if (outputPadding.length !== n) c.fail(`output_padding ${formatShape(outputPadding)} should hold ${n} values`);
  const spatial = xs.slice(2).map((d, i) => {
    const s = w.strides[i];
    if (isSamePadding(w)) return isNum(d) ? d * s : s === 1 ? d : null;
    const k = kernel[i];
    if (!isNum(d) || !isNum(k)) return null;
    const [begin, end] = explicitPads(w, i);
    const out = s * (d - 1) + outputPadding[i] + (k - 1) * w.dilations[i] + 1 - begin - end;
    if (out < 1) c.fail(`output size ${out} on spatial axis ${i} is not positive`);
    return out;
  });
  return [{ dataType: x.dataType, shape: [xs[0], outChannels, ...spatial] }];
}

function gemm(c: Context): Value[] {
  const a = c.input(0);
  const [as, bs, cs] = [a.shape, c.input(1).shape, c.optional(2)?.shape];
  if (as && as.length !== 2) c.fail(`A must be 2-D, found ${formatShape(as)}`);
  if (bs && bs.length !== 2) c.fail(`B must be 2-D, found ${formatShape(bs)}`);
  const transA = attrInt(c.node, 'transA', 0) !== 0;
  const transB = attrInt(c.node, 'transB', 0) !== 0;
  const [m, ka]: Dim[] = as ? (transA ? [as[1], as[0]] : as) : [null, null];
  const [kb, n]: Dim[] = bs ? (transB ? [bs[1], bs[0]] : bs) : [null, null];
  if (isNum(ka) && isNum(kb) && ka !== kb)
    c.fail(
      `inner dimensions differ: A ${formatShape(as!)}${transA ? ' transposed' : ''} · B ${formatShape(bs!)}${transB ? ' transposed' : ''}`,
    );
  if (cs) {
    // C broadcasts one way only: onto [M, N].
    const fits =
      cs.length <= 2 &&
      cs.every((d, i) => {
        const t = [m, n][2 - cs.length + i];
        return !isNum(d) || d === 1 || !isNum(t) || d === t;
      });
    if (!fits) c.fail(`C ${formatShape(cs)} does not broadcast to [M, N] = ${formatShape([m, n])}`);
  }
  return [{ dataType: a.dataType, shape: [m, n] }];
}

function matMul(c: Context): Value[] {
  const a = c.input(0);
  const [as, bs] = [a.shape, c.input(1).shape];
  if (!as || !bs) return [{ dataType: a.dataType }];
  if (as.length === 0 || bs.length === 0) c.fail('operands must not be scalars');
  // 1-D operands are promoted to matrices and the added axis is dropped from the result.
  const a2 = as.length === 1 ? [1, as[0]] : as;
  const b2 = bs.length === 1 ? [bs[0], 1] : bs;
  const [ka, kb] = [a2[a2.length - 1], b2[b2.length - 2]];
  if (isNum(ka) && isNum(kb) && ka !== kb) c.fail(`inner dimensions differ: ${formatShape(as)} · ${formatShape(bs)}`);
  const batch = broadcast(c, [a2.slice(0, -2), b2.slice(0, -2)])!;
  const rows = as.length > 1 ? [a2[a2.length - 2]] : [];
  const cols = bs.length > 1 ? [b2[b2.length - 1]] : [];
  return [{ dataType: a.dataType, shape: [...batch, ...rows, ...cols] }];
}

function pool(c: Context): Value[] {
  const x = c.input(0);
  const kernel = requiredInts(c, 'kernel_shape');
  const rank = kernel.length + 2;
  if (x.shape && x.shape.length !== rank) c.fail(`input ${formatShape(x.shape)} does not fit kernel_shape ${formatShape(kernel)}`);
  const xs = x.shape ?? unknownDims(rank);
  const ceilMode = attrInt(c.node, 'ceil_mode', 0) !== 0;
  const shape = [xs[0], xs[1], ...windowOutputs(c, xs.slice(2), kernel, windowAttributes(c.node, kernel.length), ceilMode)];
  // MaxPool's optional second output holds the flat index of each maximum.
  return [
    { dataType: x.dataType, shape },
    { dataType: 'int64', shape },
  ];
}

function globalPool(c: Context): Value[] {
  const x = c.input(0);
  if (!x.shape) return [{ dataType: x.dataType }];
  if (x.shape.length < 3) c.fail(`expects rank ≥ 3 (N, C, spatial...), found ${formatShape(x.shape)}`);
  return [{ dataType: x.dataType, shape: [x.shape[0], x.shape[1], ...x.shape.slice(2).map(() => 1)] }];
}

function reduce(c: Context): Value[] {
  const x = c.input(0);
  const axesInputSince = c.node.opType === 'ReduceSum' ? 13 : 18;
  const keep = attrInt(c.node, 'keepdims', 1) !== 0;
  const listed = listOperand(c, 'axes', 1, axesInputSince);
  const axes = listed === undefined ? [] : listed;
  if (!x.shape) return [{ dataType: x.dataType }];
  const rank = x.shape.length;
  if (axes === null) return [{ dataType: x.dataType, shape: keep ? unknownDims(rank) : undefined }];
  if (axes.length === 0 && c.opset >= axesInputSince && attrInt(c.node, 'noop_with_empty_axes', 0) !== 0)
    return [{ dataType: x.dataType, shape: x.shape }];
  const reduced = new Set(axes.length ? axes.map((a) => normalizeAxis(a, rank, c.node)) : range(rank));
  const shape = keep ? x.shape.map((d, i) => (reduced.has(i) ? 1 : d)) : x.shape.filter((_, i) => !reduced.has(i));
  return [{ dataType: x.dataType, shape }];
}

/** ArgMax/ArgMin: int64 indices, the axis kept as 1 or dropped. */
function argReduce(c: Context): Value[] {
  const x = c.input(0);
  if (!x.shape) return [{ dataType: 'int64' }];
  const axis = normalizeAxis(attrInt(c.node, 'axis', 0), x.shape.length, c.node);
  const keep = attrInt(c.node, 'keepdims', 1) !== 0;
  const shape = keep ? x.shape.map((d, i) => (i === axis ? 1 : d)) : x.shape.filter((_, i) => i !== axis);
  return [{ dataType: 'int64', shape }];
}

/** Element count of a shape as a number times symbols; null when some dim is unknown. */
function countOf(dims: readonly Dim[]): { n: number; symbols: string[] } | null {
  let n = 1;
  const symbols: string[] = [];
  for (const d of dims) {
    if (d === null) return null;
    if (isNum(d)) n *= d;
    else symbols.push(d);
  }
  return { n, symbols };
}

function reshape(c: Context): Value[] {
  const x = c.input(0);
  const target = c.input(1);
  if (target.shape && target.shape.length !== 1) c.fail(`shape input must be 1-D, found ${formatShape(target.shape)}`);
  if (!target.elements) {
    const rank = target.shape?.[0] ?? null;
    return [{ dataType: x.dataType, shape: isNum(rank) ? unknownDims(rank) : undefined }];
  }
  const allowZero = attrInt(c.node, 'allowzero', 0) !== 0;
  const spec = target.elements;
  if (spec.filter((d) => d === -1).length > 1) c.fail(`shape ${formatShape(spec)} has more than one -1`);
  const shape = spec.map((d, i): Dim => {
    if (isNum(d) && d < -1) c.fail(`shape ${formatShape(spec)} has a negative dim`);
    if (d !== 0 || allowZero) return d;
    if (!x.shape) return null;
    if (i >= x.shape.length) c.fail(`shape ${formatShape(spec)} copies dim ${i} (0), which input ${formatShape(x.shape)} lacks`);
    return x.shape[i];
  });
  return [{ dataType: x.dataType, shape: resolveReshape(c, x.shape, shape), elements: x.elements }];
}

/** Checks the element count and replaces -1 by what it must be (cancelling common symbols). */
function resolveReshape(c: Context, input: Dim[] | undefined, shape: Dim[]): Dim[] {
  const wildcard = shape.indexOf(-1);
  const unresolved = () => shape.map((d) => (d === -1 ? null : d));
  const inCount = input && countOf(input);
  const outCount = countOf(shape.filter((d) => d !== -1));
  if (!inCount || !outCount) return unresolved();
  const remaining = [...inCount.symbols];
  for (const s of outCount.symbols) {
    const j = remaining.indexOf(s);
    if (j < 0) return unresolved();
    remaining.splice(j, 1);
  }
  const mismatch = () =>
    c.fail(`cannot reshape ${formatShape(input!)} (${inCount.n} elements) into ${formatShape(shape)} (${outCount.n} elements)`);
  if (wildcard < 0) {
    if (remaining.length === 0 && inCount.n !== outCount.n) mismatch();
    return shape;
  }
  let inferred: Dim = null;
  if (remaining.length === 0 && outCount.n !== 0) {
    if (inCount.n % outCount.n !== 0) mismatch();
    inferred = inCount.n / outCount.n;
  } else if (remaining.length === 1 && inCount.n === outCount.n) {
    inferred = remaining[0];
  }
  return shape.map((d, i) => (i === wildcard ? inferred : d));
}

function flatten(c: Context): Value[] {
  const x = c.input(0);
  if (!x.shape) return [{ dataType: x.dataType, shape: unknownDims(2) }];
  const rank = x.shape.length;
  const axis = attrInt(c.node, 'axis', 1);
  // Unlike most axes, Flatten's may equal the rank (everything goes into the first dim).
  if (axis < -rank || axis > rank) c.fail(`axis ${axis} is out of range for rank ${rank}`);
  const split = axis < 0 ? axis + rank : axis;
  return [
    {
      dataType: x.dataType,
      shape: [productDim(x.shape.slice(0, split)), productDim(x.shape.slice(split))],
      elements: x.elements,
    },
  ];
}

function squeeze(c: Context): Value[] {
  const x = c.input(0);
  const axes = listOperand(c, 'axes', 1, 13);
  if (!x.shape || axes === null) return [{ dataType: x.dataType }];
  const shape = x.shape;
  let dropped: Set<number>;
  if (!axes?.length) {
    // Without axes every size-1 dim goes; a symbolic dim might be 1, so the rank is unknown.
    if (!shape.every(isNum)) return [{ dataType: x.dataType }];
    dropped = new Set(range(shape.length).filter((i) => shape[i] === 1));
  } else {
    dropped = new Set(axes.map((a) => normalizeAxis(a, shape.length, c.node)));
    for (const i of dropped)
      if (isNum(shape[i]) && shape[i] !== 1) c.fail(`cannot squeeze axis ${i} of size ${shape[i]} in ${formatShape(shape)}`);
  }
  return [{ dataType: x.dataType, shape: shape.filter((_, i) => !dropped.has(i)), elements: x.elements }];
}

function unsqueeze(c: Context): Value[] {
  const x = c.input(0);
  const axes = listOperand(c, 'axes', 1, 13);
  if (axes === undefined) c.fail("missing required 'axes'");
  if (!x.shape || axes === null) return [{ dataType: x.dataType }];
  const rank = x.shape.length + axes.length;
  const inserted = new Set(axes.map((a) => normalizeAxis(a, rank, c.node)));
  if (inserted.size !== axes.length) c.fail(`axes ${formatShape(axes)} repeat an axis`);
  let next = 0;
  const shape = range(rank).map((i) => (inserted.has(i) ? 1 : x.shape![next++]));
  return [{ dataType: x.dataType, shape, elements: x.elements }];
}

function transpose(c: Context): Value[] {
  const x = c.input(0);
  const perm = attrInts(c.node, 'perm');
  const rank = x.shape?.length ?? perm?.length;
  if (rank === undefined) return [{ dataType: x.dataType }];
  const p = perm ?? range(rank).reverse();
  if (p.length !== rank || [...p].sort((a, b) => a - b).some((v, i) => v !== i))
    c.fail(`perm ${formatShape(p)} is not a permutation of ${rank} axes`);
  const xs = x.shape ?? unknownDims(rank);
  return [{ dataType: x.dataType, shape: p.map((i) => xs[i]) }];
}

function concat(c: Context): Value[] {
  const inputs = c.node.inputs.map((_, i) => c.input(i));
  const { dataType } = inputs[0];
  const known = inputs.flatMap((v) => (v.shape ? [v.shape] : []));
  if (known.length === 0) return [{ dataType }];
  const rank = known[0].length;
  if (rank === 0) c.fail('cannot concatenate scalars');
  if (known.some((s) => s.length !== rank)) c.fail(`inputs ${known.map(formatShape).join(', ')} differ in rank`);
  const axis = normalizeAxis(requiredInt(c, 'axis'), rank, c.node);
  const shape = range(rank).map((j) => {
    if (j === axis) return known.length === inputs.length ? sumDim(known.map((s) => s[j])) : null;
    return known.reduce<Dim>((dim, s) => {
      const next = unifyDim(dim, s[j]);
      if (next === undefined)
        c.fail(`inputs ${known.map(formatShape).join(', ')} differ on axis ${j}, which is not the concatenation axis ${axis}`);
      return next;
    }, known[0][j]);
  });
  const parts = inputs.map((v) => v.elements);
  const elements = rank === 1 && parts.every((e) => e !== undefined) ? parts.flat() : undefined;
  return [{ dataType, shape, elements }];
}

function pad(c: Context): Value[] {
  const x = c.input(0);
  const pads = listOperand(c, 'pads', 1, 11);
  if (pads === undefined) c.fail("missing required attribute 'pads'");
  if (!x.shape) return [{ dataType: x.dataType }];
  const rank = x.shape.length;
  const axesList = c.opset >= 18 ? listOperand(c, 'axes', 3, 18) : undefined;
  if (axesList === null) return [{ dataType: x.dataType, shape: unknownDims(rank) }];
  const axes = axesList?.map((a) => normalizeAxis(a, rank, c.node)) ?? range(rank);
  const shape = [...x.shape];
  if (pads === null) {
    for (const a of axes) shape[a] = null;
    return [{ dataType: x.dataType, shape }];
  }
  if (pads.length !== 2 * axes.length) c.fail(`pads ${formatShape(pads)} should hold ${2 * axes.length} values`);
  axes.forEach((a, j) => {
    // Negative pads crop, but never below zero.
    const d = addDim(x.shape![a], pads[j] + pads[j + axes.length]);
    if (isNum(d) && d < 0) c.fail(`pads ${formatShape(pads)} crop axis ${a} of ${formatShape(x.shape!)} below zero`);
    shape[a] = d;
  });
  return [{ dataType: x.dataType, shape }];
}

function batchNormalization(c: Context): Value[] {
  const x = c.input(0);
  const channels = x.shape && x.shape.length >= 2 ? x.shape[1] : null;
  if (x.shape && x.shape.length < 2) c.fail(`expects rank ≥ 2 (N, C, ...), found ${formatShape(x.shape)}`);
  ['scale', 'B', 'mean', 'var'].forEach((name, j) => {
    const s = c.input(j + 1).shape;
    if (s && (s.length !== 1 || (isNum(s[0]) && isNum(channels) && s[0] !== channels)))
      c.fail(`${name} ${formatShape(s)} should be [${channels ?? '?'}]`);
  });
  // Training-mode outputs (running or saved mean and variance) are per channel.
  const stats: Value = { dataType: c.input(3).dataType, shape: [channels] };
  return [{ dataType: x.dataType, shape: x.shape }, stats, stats, stats, stats];
}

/** DepthToSpace/SpaceToDepth on NCHW: channels trade places with blocksize² spatial pixels. */
function blockRearrange(c: Context, direction: 'depth-to-space' | 'space-to-depth'): Value[] {
  const x = c.input(0);
  const b = requiredInt(c, 'blocksize');
  if (b < 1) c.fail(`blocksize ${b} must be at least 1`);
  if (!x.shape) return [{ dataType: x.dataType, shape: unknownDims(4) }];
  if (x.shape.length !== 4) c.fail(`expects a 4-D input, found ${formatShape(x.shape)}`);
  const [n, ch, h, w] = x.shape;
  const divide = (d: Dim, k: number, what: string): Dim => {
    if (!isNum(d)) return null;
    if (d % k !== 0) c.fail(`${what} ${d} is not a multiple of ${k}`);
    return d / k;
  };
  const times = (d: Dim, k: number): Dim => (isNum(d) ? d * k : k === 1 ? d : null);
  if (direction === 'depth-to-space')
    return [{ dataType: x.dataType, shape: [n, divide(ch, b * b, 'channel count'), times(h, b), times(w, b)] }];
  return [{ dataType: x.dataType, shape: [n, times(ch, b * b), divide(h, b, 'height'), divide(w, b, 'width')] }];
}

/** floor(d · scale) in float32, as onnxruntime computes it. */
function scaledDim(c: Context, d: Dim, scale: Dim): Dim {
  if (isNum(scale) && scale <= 0) c.fail(`scale ${scale} should be positive`);
  if (scale === 1) return d;
  return isNum(d) && isNum(scale) ? Math.floor(Math.fround(d * scale)) : null;
}

function resize(c: Context): Value[] {
  const x = c.input(0);
  const scales = nonEmpty(c.optional(c.opset >= 11 ? 2 : 1));
  const sizes = c.opset >= 11 ? nonEmpty(c.optional(3)) : undefined;
  const operand = sizes ?? scales ?? c.fail('needs scales or sizes');
  const axesAttr = attrInts(c.node, 'axes');
  const rank = x.shape?.length ?? (axesAttr ? null : (operand.shape?.[0] ?? null));
  if (!isNum(rank)) return [{ dataType: x.dataType }];
  const axes = axesAttr?.map((a) => normalizeAxis(a, rank, c.node)) ?? range(rank);
  const values = operand.elements;
  if (values && values.length !== axes.length)
    c.fail(`${sizes ? 'sizes' : 'scales'} ${formatShape(values)} should hold ${axes.length} values`);
  const shape = x.shape ? [...x.shape] : unknownDims(rank);
  // not_larger/not_smaller rescale all axes by one common factor; tf_crop_and_resize scales the roi.
  const exact = sizes
    ? attrString(c.node, 'keep_aspect_ratio_policy', 'stretch') === 'stretch'
    : attrString(c.node, 'coordinate_transformation_mode', 'half_pixel') !== 'tf_crop_and_resize';
  axes.forEach((a, j) => {
    shape[a] = !values || !exact ? null : sizes ? values[j] : scaledDim(c, shape[a], values[j]);
  });
  return [{ dataType: x.dataType, shape }];
}

function upsample(c: Context): Value[] {
  const x = c.input(0);
  const scales = c.opset >= 9 ? c.input(1).elements : (attrFloats(c.node, 'scales') ?? c.fail("missing required attribute 'scales'"));
  if (!x.shape) return [{ dataType: x.dataType }];
  if (!scales) return [{ dataType: x.dataType, shape: unknownDims(x.shape.length) }];
  if (scales.length !== x.shape.length) c.fail(`scales ${formatShape(scales)} should hold ${x.shape.length} values`);
  return [{ dataType: x.dataType, shape: x.shape.map((d, i) => scaledDim(c, d, scales[i])) }];
}

function shapeOp(c: Context): Value[] {
  const x = c.input(0);
  if (!x.shape) return [{ dataType: 'int64', shape: [null] }];
  const rank = x.shape.length;
  const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + rank : i, 0), rank);
  const dims = x.shape.slice(clamp(attrInt(c.node, 'start', 0)), clamp(attrInt(c.node, 'end', rank)));
  return [{ dataType: 'int64', shape: [dims.length], elements: dims }];
}

/** Size: the element count, known when every dim is. */
function sizeOp(c: Context): Value[] {
  const dims = numbers(c.input(0).shape);
  return [{ dataType: 'int64', shape: [], elements: dims && [sizeOf(dims)] }];
}

function gather(c: Context): Value[] {
  const data = c.input(0);
  const indices = c.input(1);
  if (!data.shape || !indices.shape) return [{ dataType: data.dataType }];
  const rank = data.shape.length;
  if (rank === 0) c.fail('cannot gather from a scalar');
  const axis = normalizeAxis(attrInt(c.node, 'axis', 0), rank, c.node);
  const picks = numbers(indices.elements);
  const size = data.shape[axis];
  for (const i of picks ?? [])
    if (isNum(size) && (i < -size || i >= size)) c.fail(`index ${i} is out of range for axis ${axis} of size ${size}`);
  const shape = [...data.shape.slice(0, axis), ...indices.shape, ...data.shape.slice(axis + 1)];
  const from = data.elements;
  const elements = rank === 1 && from && picks ? picks.map((i) => from[i < 0 ? i + from.length : i]) : undefined;
  return [{ dataType: data.dataType, shape, elements }];
}

/** GatherND: indices' leading dims, then the data dims its last index dim does not address. */
function gatherNd(c: Context): Value[] {
  const data = c.input(0);
  const indices = c.input(1);
  if (!INTEGER_TYPES.has(indices.dataType)) c.fail(`indices must be integers, are ${indices.dataType}`);
  if (!data.shape || !indices.shape) return [{ dataType: data.dataType }];
  const batchDims = attrInt(c.node, 'batch_dims', 0);
  const depth = indices.shape[indices.shape.length - 1];
  if (indices.shape.length < 1 || !isNum(depth)) return [{ dataType: data.dataType }];
  if (depth < 1 || batchDims + depth > data.shape.length)
    c.fail(`indices ${formatShape(indices.shape)} address ${depth} dims of data ${formatShape(data.shape)} after ${batchDims} batch dims`);
  return [{ dataType: data.dataType, shape: [...indices.shape.slice(0, -1), ...data.shape.slice(batchDims + depth)] }];
}

/** First index and length of a slice of an axis of `size`, clamped as ONNX does. */
function sliceRange(size: number, start: number, end: number, step: number): { first: number; count: number } {
  const wrap = (i: number) => (i < 0 ? i + size : i);
  const clamp = (i: number, lo: number, hi: number) => Math.min(Math.max(i, lo), hi);
  if (step > 0) {
    const first = clamp(wrap(start), 0, size);
    return { first, count: Math.max(0, Math.ceil((clamp(wrap(end), 0, size) - first) / step)) };
  }
  const first = clamp(wrap(start), 0, size - 1);
  return { first, count: Math.max(0, Math.ceil((first - clamp(wrap(end), -1, size - 1)) / -step)) };
}

function slice(c: Context): Value[] {
  const x = c.input(0);
  const starts = listOperand(c, 'starts', 1, 10);
  const ends = listOperand(c, 'ends', 2, 10);
  const axesList = listOperand(c, 'axes', 3, 10);
  const steps = c.opset >= 10 ? listOperand(c, 'steps', 4, 10) : undefined;
  if (starts === undefined || ends === undefined) c.fail("missing required 'starts' or 'ends'");
  if (!x.shape) return [{ dataType: x.dataType }];
  const rank = x.shape.length;
  const axes = axesList === undefined ? starts && range(starts.length) : axesList?.map((a) => normalizeAxis(a, rank, c.node));
  if (!axes) return [{ dataType: x.dataType, shape: unknownDims(rank) }];
  if (new Set(axes).size !== axes.length) c.fail(`axes ${formatShape(axes)} repeat an axis`);
  const shape = [...x.shape];
  if (!starts || !ends || steps === null) {
    for (const a of axes) shape[a] = null;
    return [{ dataType: x.dataType, shape }];
  }
  const counts = [starts.length, ends.length, axes.length, steps?.length ?? axes.length];
  if (counts.some((n) => n !== axes.length)) c.fail(`starts, ends, axes and steps differ in length (${counts.join(', ')})`);
  let elements: Dim[] | undefined;
  axes.forEach((a, j) => {
    const step = steps?.[j] ?? 1;
    if (step === 0) c.fail('step 0 is not allowed');
    const size = x.shape![a];
    if (!isNum(size)) {
      shape[a] = starts[j] === 0 && step === 1 && ends[j] >= SLICE_TO_END ? size : null;
      return;
    }
    const { first, count } = sliceRange(size, starts[j], ends[j], step);
    shape[a] = count;
    const from = x.elements;
    if (rank === 1 && from) elements = range(count).map((k) => from[first + k * step]);
  });
  return [{ dataType: x.dataType, shape, elements }];
}

/** Constant's scalar and list attributes: element type and the attribute type each must have. */
const CONSTANT_ATTRIBUTES = {
  value_float: ['float32', 'float'],
  value_floats: ['float32', 'floats'],
  value_int: ['int64', 'int'],
  value_ints: ['int64', 'ints'],
} as const;

function constant(c: Context): Value[] {
  const { node } = c;
  const tensor = attrTensor(node, 'value');
  if (tensor) return [tensorValue(tensor)];
  for (const [name, [dataType, kind]] of Object.entries(CONSTANT_ATTRIBUTES)) {
    const a = node.attributes[name];
    if (!a) continue;
    if (a.type === 'float' || a.type === 'int') {
      if (a.type === kind) return [{ dataType, shape: [], elements: [a.value] }];
    } else if (a.type === kind) {
      return [{ dataType, shape: [a.value.length], elements: a.value.length <= MAX_TRACKED_ELEMENTS ? a.value : undefined }];
    }
    c.fail(`attribute '${name}' should be ${kind}, found ${a.type}`);
  }
  if (node.attributes.value_string || node.attributes.value_strings) c.fail('string constants are not supported');
  c.fail('has no value attribute');
}

/** Scale and zero point must be per tensor, per channel along `axis`, or blocked (same rank). */
function checkQuantParams(c: Context): void {
  const x = c.input(0).shape;
  const scale = c.input(1).shape;
  const zeroPoint = c.optional(2)?.shape;
  if (scale && zeroPoint && formatShape(scale) !== formatShape(zeroPoint))
    c.fail(`scale ${formatShape(scale)} and zero point ${formatShape(zeroPoint)} differ in shape`);
  if (!x || !scale) return;
  if (attrInt(c.node, 'block_size', 0) > 0) {
    if (scale.length !== x.length) c.fail(`blocked scale ${formatShape(scale)} should have the rank of ${formatShape(x)}`);
    return;
  }
  if (scale.length === 0 || (scale.length === 1 && scale[0] === 1)) return;
  if (scale.length > 1) c.fail(`scale ${formatShape(scale)} should be a scalar or 1-D`);
  const axis = normalizeAxis(attrInt(c.node, 'axis', 1), x.length, c.node);
  if (isNum(scale[0]) && isNum(x[axis]) && scale[0] !== x[axis])
    c.fail(`per-axis scale has ${scale[0]} values but axis ${axis} of ${formatShape(x)} has ${x[axis]}`);
}

function quantizeLinear(c: Context): Value[] {
  const x = c.input(0);
  checkQuantParams(c);
  const zeroPoint = c.optional(2);
  const code = attrInt(c.node, 'output_dtype', 0);
  const declared = code ? onnxType(c, code, 'output_dtype') : undefined;
  if (declared && zeroPoint && zeroPoint.dataType !== declared)
    c.fail(`output_dtype ${declared} differs from the zero point's type ${zeroPoint.dataType}`);
  // Without a zero point or output_dtype ONNX quantizes to uint8.
  return [{ dataType: declared ?? zeroPoint?.dataType ?? 'uint8', shape: x.shape }];
}

function dequantizeLinear(c: Context): Value[] {
  const x = c.input(0);
  checkQuantParams(c);
  const code = attrInt(c.node, 'output_dtype', 0);
  return [{ dataType: code ? onnxType(c, code, 'output_dtype') : c.input(1).dataType, shape: x.shape }];
}

function dropout(c: Context): Value[] {
  const x = c.input(0);
  return [
    { dataType: x.dataType, shape: x.shape },
    { dataType: 'bool', shape: x.shape },
  ];
}

function split(c: Context): Value[] {
  const x = c.input(0);
  const count = c.node.outputs.length;
  const rank = x.shape?.length;
  const axis = rank === undefined ? -1 : normalizeAxis(attrInt(c.node, 'axis', 0), rank, c.node);
  const size = rank === undefined ? null : x.shape![axis];
  const withDim = (d: Dim): Value => ({ dataType: x.dataType, shape: x.shape?.map((v, i) => (i === axis ? d : v)) });
  const parts = listOperand(c, 'split', 1, 13);
  const numOutputs = attrInt(c.node, 'num_outputs', count);
  if (numOutputs !== count) c.fail(`num_outputs is ${numOutputs} but the node has ${count} outputs`);
  if (parts) {
    if (parts.length !== count) c.fail(`split ${formatShape(parts)} should hold ${count} sizes, one per output`);
    if (isNum(size) && parts.reduce((a, b) => a + b, 0) !== size) c.fail(`split ${formatShape(parts)} does not add up to ${size}`);
    return parts.map(withDim);
  }
  if (parts === null || !isNum(size)) return range(count).map(() => withDim(null));
  if (c.node.attributes.num_outputs) {
    // num_outputs (opset 18) makes every part ceil(size / n) but the last, which gets the rest.
    const chunk = Math.ceil(size / count);
    const last = size - chunk * (count - 1);
    if (last < 1) c.fail(`cannot split ${size} into ${count} parts`);
    return range(count).map((i) => withDim(i < count - 1 ? chunk : last));
  }
  if (size % count !== 0) c.fail(`${size} does not split into ${count} equal parts`);
  return range(count).map(() => withDim(size / count));
}

/** A 1-D int operand that lists a shape (ConstantOfShape, Expand, Tile): its elements, if known. */
function shapeOperand(c: Context, i: number, what: string): Dim[] | undefined {
  const v = c.input(i);
  if (v.shape && v.shape.length !== 1) c.fail(`${what} must be 1-D, found ${formatShape(v.shape)}`);
  if (v.elements?.some((d) => isNum(d) && d < 0)) c.fail(`${what} ${formatShape(v.elements)} has a negative value`);
  return v.elements;
}

/** Elements of a small tensor of known `shape`, each computed from its flat index. */
function fillElements(shape: readonly Dim[], at: (i: number) => Dim): Dim[] | undefined {
  const dims = numbers(shape);
  if (!dims) return undefined;
  const n = dims.reduce((a, b) => a * b, 1);
  return n <= MAX_TRACKED_ELEMENTS ? range(n).map(at) : undefined;
}

function constantOfShape(c: Context): Value[] {
  const value = attrTensor(c.node, 'value');
  if (value && sizeOf(value.dims) !== 1) c.fail(`value should hold one element, found ${formatShape(value.dims)}`);
  // Without a value ONNX fills float32 zeros.
  const dataType = value?.dataType ?? 'float32';
  const fill = value ? (tensorValue(value).elements?.[0] ?? null) : 0;
  const dims = shapeOperand(c, 0, 'shape');
  if (!dims) {
    const rank = c.input(0).shape?.[0] ?? null;
    return [{ dataType, shape: isNum(rank) ? unknownDims(rank) : undefined }];
  }
  return [{ dataType, shape: [...dims], elements: fillElements(dims, () => fill) }];
}

/** Expand broadcasts both ways: the target may hold 1 where the input has more. */
function expand(c: Context): Value[] {
  const x = c.input(0);
  const target = shapeOperand(c, 1, 'shape');
  if (!target) {
    const rank = c.input(1).shape?.[0] ?? null;
    return [{ dataType: x.dataType, shape: x.shape && isNum(rank) ? unknownDims(Math.max(rank, x.shape.length)) : undefined }];
  }
  const shape = broadcast(c, [x.shape, target]);
  const from = x.elements;
  const elements = shape && shape.length <= 1 && from ? fillElements(shape, (i) => from[from.length === 1 ? 0 : i] ?? null) : undefined;
  return [{ dataType: x.dataType, shape, elements }];
}

function rangeOp(c: Context): Value[] {
  const operands = ['start', 'limit', 'delta'].map((what, i) => {
    const v = c.input(i);
    if (v.shape && numbers(v.shape)?.reduce((a, b) => a * b, 1) !== 1) c.fail(`${what} must be a scalar, found ${formatShape(v.shape)}`);
    return v.elements?.[0] ?? null;
  });
  const { dataType } = c.input(0);
  const [start, limit, delta] = operands;
  if (!isNum(start) || !isNum(limit) || !isNum(delta)) return [{ dataType, shape: [null] }];
  if (delta === 0) c.fail('delta must not be 0');
  const count = Math.max(Math.ceil((limit - start) / delta), 0);
  return [{ dataType, shape: [count], elements: fillElements([count], (i) => start + i * delta) }];
}

function tile(c: Context): Value[] {
  const x = c.input(0);
  const repeats = shapeOperand(c, 1, 'repeats');
  if (!x.shape) return [{ dataType: x.dataType }];
  if (!repeats) return [{ dataType: x.dataType, shape: unknownDims(x.shape.length) }];
  if (repeats.length !== x.shape.length)
    c.fail(`repeats ${formatShape(repeats)} should hold ${x.shape.length} values, one per axis of ${formatShape(x.shape)}`);
  const shape = x.shape.map((d, i) => {
    const k = repeats[i];
    if (k === 1 || k === 0) return k === 1 ? d : 0;
    return isNum(d) && isNum(k) ? d * k : null;
  });
  const from = x.elements;
  const size = from?.length ?? 0;
  const elements = shape.length === 1 && from ? fillElements(shape, (i) => from[i % size] ?? null) : undefined;
  return [{ dataType: x.dataType, shape, elements }];
}

/** GatherElements and ScatterElements: `indices` (and `updates`) have the rank of `data`. */
function checkElementIndices(c: Context, data: Value, others: Value[]): void {
  if (!data.shape) return;
  const rank = data.shape.length;
  if (rank === 0) c.fail('cannot index a scalar');
  normalizeAxis(attrInt(c.node, 'axis', 0), rank, c.node);
  for (const v of others)
    if (v.shape && v.shape.length !== rank)
      c.fail(`indices of shape ${formatShape(v.shape)} must have the rank of data ${formatShape(data.shape)}`);
}

function gatherElements(c: Context): Value[] {
  const data = c.input(0);
  const indices = c.input(1);
  checkElementIndices(c, data, [indices]);
  return [{ dataType: data.dataType, shape: indices.shape }];
}

function scatterElements(c: Context): Value[] {
  const [data, indices, updates] = [c.input(0), c.input(1), c.input(2)];
  checkElementIndices(c, data, [indices, updates]);
  if (indices.shape && updates.shape && indices.shape.some((d, i) => unifyDim(d, updates.shape![i]!) === undefined))
    c.fail(`updates ${formatShape(updates.shape)} must have the shape of indices ${formatShape(indices.shape)}`);
  return [{ dataType: data.dataType, shape: data.shape }];
}

/** Selected [batch, class, box] triples: how many is known only at run time. */
function nonMaxSuppression(c: Context): Value[] {
  const [boxes, scores] = [c.input(0), c.input(1)];
  if (boxes.shape && (boxes.shape.length !== 3 || unifyDim(boxes.shape[2]!, 4) === undefined))
    c.fail(`boxes must be [batch, boxes, 4], found ${formatShape(boxes.shape)}`);
  if (scores.shape && scores.shape.length !== 3) c.fail(`scores must be [batch, classes, boxes], found ${formatShape(scores.shape)}`);
  if (
    boxes.shape &&
    scores.shape &&
    (unifyDim(boxes.shape[0]!, scores.shape[0]!) === undefined || unifyDim(boxes.shape[1]!, scores.shape[2]!) === undefined)
  )
    c.fail(`boxes ${formatShape(boxes.shape)} and scores ${formatShape(scores.shape)} disagree on batch or box count`);
  return [{ dataType: 'int64', shape: [null, 3] }];
}

function topK(c: Context): Value[] {
  const x = c.input(0);
  let k: Dim = null;
  if (c.opset < 10) k = requiredInt(c, 'k');
  else {
    const given = c.input(1);
    if (given.shape && given.shape.length !== 1) c.fail(`k must be a 1-D tensor of one element, found ${formatShape(given.shape)}`);
    k = given.elements?.[0] ?? null;
  }
  if (!x.shape) return [{ dataType: x.dataType }, { dataType: 'int64' }];
  const axis = normalizeAxis(attrInt(c.node, 'axis', -1), x.shape.length, c.node);
  const size = x.shape[axis]!;
  if (isNum(k) && (k < 0 || (isNum(size) && k > size))) c.fail(`k = ${k} is out of range for axis ${axis} of size ${size}`);
  const shape = x.shape.map((d, i) => (i === axis ? (isNum(k) ? k : null) : d));
  return [
    { dataType: x.dataType, shape },
    { dataType: 'int64', shape: [...shape] },
  ];
}

/** One shape function per supported operator; the key type makes the table complete. */
const SHAPE_FUNCTIONS: Readonly<Record<OpType, ShapeFunction>> = {
  Abs: sameAsInput,
  Add: arithmetic,
  And: (c) => elementwise(c, 'bool'),
  ArgMax: argReduce,
  ArgMin: argReduce,
  AveragePool: pool,
  BatchNormalization: batchNormalization,
  Cast: cast,
  Ceil: unaryElements(Math.ceil),
  Clip: sameAsInput,
  Concat: concat,
  Constant: constant,
  ConstantOfShape: constantOfShape,
  Conv: conv,
  ConvTranspose: convTranspose,
  DepthToSpace: (c) => blockRearrange(c, 'depth-to-space'),
  DequantizeLinear: dequantizeLinear,
  Div: arithmetic,
  Dropout: dropout,
  Equal: (c) => elementwise(c, 'bool'),
  Erf: sameAsInput,
  Exp: sameAsInput,
  Expand: expand,
  Flatten: flatten,
  Floor: unaryElements(Math.floor),
  Gather: gather,
  GatherElements: gatherElements,
  GatherND: gatherNd,
  Gemm: gemm,
  Greater: (c) => elementwise(c, 'bool'),
  GlobalAveragePool: globalPool,
  GlobalMaxPool: globalPool,
  HardSigmoid: sameAsInput,
  HardSwish: sameAsInput,
  Identity: passThrough,
  LeakyRelu: sameAsInput,
  Less: (c) => elementwise(c, 'bool'),
  Log: sameAsInput,
  LogSoftmax: softmax,
  MatMul: matMul,
  Max: elementwise,
  MaxPool: pool,
  Min: elementwise,
  Mul: arithmetic,
  Neg: sameAsInput,
  NonMaxSuppression: nonMaxSuppression,
  Pad: pad,
  Pow: elementwise,
  PRelu: elementwise,
  QuantizeLinear: quantizeLinear,
  Range: rangeOp,
  Reciprocal: sameAsInput,
  ReduceMax: reduce,
  ReduceMean: reduce,
  ReduceSum: reduce,
  Relu: sameAsInput,
  Reshape: reshape,
  Resize: resize,
  Round: sameAsInput,
  ScatterElements: scatterElements,
  Shape: shapeOp,
  Sigmoid: sameAsInput,
  Size: sizeOp,
  Slice: slice,
  Softmax: softmax,
  SpaceToDepth: (c) => blockRearrange(c, 'space-to-depth'),
  Split: split,
  Sqrt: sameAsInput,
  Squeeze: squeeze,
  Sub: arithmetic,
  Sum: elementwise,
  Tanh: sameAsInput,
  Tile: tile,
  TopK: topK,
  Transpose: transpose,
  Unsqueeze: unsqueeze,
  Upsample: upsample,
  Where: (c) => elementwise(c, c.input(1).dataType),
};
