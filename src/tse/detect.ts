/**
 * Finds squeeze-and-excite blocks: y = X · gate(excitation(mean over H, W of X)).
 *
 * Matching starts at every Mul of a feature map by a descriptor ([N,C,1,1]) and walks back
 * from the descriptor through every node whose output is a descriptor too, until it leaves
 * that domain through a pooling node: the squeeze. Working on shapes rather than fixed op
 * sequences accepts the forms real exporters produce: GlobalAveragePool, ReduceMean over
 * H and W (axes as attribute or input, keepdims or not) or an AveragePool whose kernel is the
 * whole map (TFLite); 1x1 Conv or Gemm/MatMul with Reshape/Flatten around it; any
 * activation, swish spelled as x·sigmoid(x) included; range clamps of quantized sources
 * anywhere; and a gate recognized by what it computes (gate.ts). A walk that reaches a
 * pooling node but fails a condition is reported as a near miss, with the reason.
 */
import type { Dim, Model, Node } from '../graph/types.js';
import { attrInt, attrInts, attrString, normalizeAxis } from '../graph/graph.js';
import { formatShape, sizeOf, toNumbers } from '../graph/tensor.js';
import { SHAPE_ONLY_OPS, type OpType } from '../graph/ops.js';
import { findGate, type Gate } from './gate.js';
import { GraphView, isDescriptor } from './view.js';

/** One squeeze-and-excite block. */
export interface SqueezeExciteBlock {
  /** The feature map the gate scales: X, [N, C, H, W]. */
  input: string;
  /** The pooling node; it reads X, or X through range clamps (Clip/Relu). */
  squeeze: Node;
  /** Every node from the squeeze's output to the gate's output, gate included, in graph order. */
  excitation: Node[];
  gate: Gate;
  /** What the Mul multiplies X by: [N, C, 1, 1]. */
  gateOutput: string;
  mul: Node;
  channels: number;
  height: number;
  width: number;
}

/** A Mul that looks like a squeeze-and-excite block but is not one, and why. */
export interface NearMiss {
  /** The Mul node's name. */
  node: string;
  reason: string;
}

export interface Detection {
  blocks: SqueezeExciteBlock[];
  nearMisses: NearMiss[];
}

/** Pooling ops that may turn a map into a descriptor; only the averaging ones are squeezes. */
const POOLS: ReadonlySet<string> = new Set([
  'GlobalAveragePool',
  'AveragePool',
  'ReduceMean',
  'GlobalMaxPool',
  'MaxPool',
  'ReduceMax',
  'ReduceSum',
]);

/** Ops that act on each descriptor position alone, so they can run on a map of tile descriptors. */
const EXCITATION_OPS: ReadonlySet<string> = new Set([
  ...SHAPE_ONLY_OPS,
  'Conv',
  'Gemm',
  'MatMul',
  'Relu',
  'Clip',
  'Sigmoid',
  'HardSigmoid',
  'HardSwish',
  'LeakyRelu',
  'Tanh',
  'Neg',
  'Abs',
  'Exp',
  'Erf',
  'Sqrt',
  'Log',
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Min',
  'Max',
  'Pow',
]);

/** Ops that keep a feature map's values in place up to a clamp, as quantized importers insert. */
const RANGE_OPS: ReadonlySet<string> = new Set<OpType>(['Clip', 'Relu', 'Identity']);

/**
 * Finds every squeeze-and-excite block of `model`, and the near misses. Does not modify the
 * model; `view` may be passed when the caller already holds one of this model.
 */
export function detectSqueezeExcite(model: Model, view = new GraphView(model)): Detection {
  const result: Detection = { blocks: [], nearMisses: [] };
  for (const mul of model.graph.nodes) {
    if (mul.opType !== 'Mul' || mul.inputs.length !== 2) continue;
    for (const side of [0, 1]) {
      const match = matchBlock(view, mul, mul.inputs[1 - side]!, mul.inputs[side]!);
      if (!match) continue;
      if (typeof match === 'string') result.nearMisses.push({ node: mul.name, reason: match });
      else result.blocks.push(match);
      break;
    }
  }
  return result;
}

/** The block `mul` = `x` · `gate` forms, a near-miss reason, or undefined when it is no candidate. */
function matchBlock(view: GraphView, mul: Node, x: string, gate: string): SqueezeExciteBlock | string | undefined {
  if (view.isConstant(x) || view.isConstant(gate)) return undefined;
  const xs = view.shape(x);
  const gs = view.shape(gate);
  if (!xs || xs.length !== 4 || isDescriptor(xs) || !gs || gs.length !== 4 || !isDescriptor(gs)) return undefined;
  const walk = walkExcitation(view, gate);
  if (!walk) return undefined;
  const { excitation, squeezes } = walk;
  if (squeezes.size > 1)
    return `the gate depends on ${squeezes.size} pooling nodes (${[...squeezes].map((n) => `'${n.name}'`).join(', ')})`;
  const squeeze = [...squeezes][0]!;
  const pooled = squeeze.inputs[0]!;
  const [, channels, height, width] = xs;
  const map = view.shape(pooled);
  if (!isNum(channels) || !isNum(height) || !isNum(width) || !map || map.length !== 4)
    return `block input '${x}' has shape ${formatShape(xs)}; the squeeze needs a known C, H and W`;
  const problem =
    squeezeProblem(view, squeeze, map) ??
    (derivedByRangeOps(view, pooled, x) || derivedByRangeOps(view, x, pooled)
      ? undefined
      : `Mul '${mul.name}' scales '${x}', not the pooled tensor '${pooled}'`) ??
    firstOf([...excitation].map((n) => excitationProblem(view, n))) ??
    escapes(view, [squeeze, ...excitation], excitation, mul, gate);
  if (problem) return problem;
  const found = findGate(gate, excitation, view);
  if (!found) return `no sigmoid-like gate between the excitation and Mul '${mul.name}'`;
  return {
    input: x,
    squeeze,
    excitation: view.graph.nodes.filter((n) => excitation.has(n)),
    gate: found,
    gateOutput: gate,
    mul,
    channels,
    height,
    width,
  };
}

/**
 * Every node between a pooling node and `gate` whose output is a descriptor; undefined when
 * the walk reaches a graph input or a map-sized value made by anything but a pooling node.
 */
function walkExcitation(view: GraphView, gate: string): { excitation: Set<Node>; squeezes: Set<Node> } | undefined {
  const excitation = new Set<Node>();
  const squeezes = new Set<Node>();
  const pending = [gate];
  while (pending.length) {
    const t = pending.pop()!;
    if (!t || view.isConstant(t)) continue;
    const node = view.producer(t);
    if (!node) return undefined;
    if (excitation.has(node) || squeezes.has(node)) continue;
    if (!isDescriptor(view.shape(t))) return undefined;
    if (POOLS.has(node.opType) && !isDescriptor(view.shape(node.inputs[0]!))) {
      squeezes.add(node);
      continue;
    }
    excitation.add(node);
    pending.push(...node.inputs);
  }
  return squeezes.size ? { excitation, squeezes } : undefined;
}

/** Why `squeeze` is not a mean over the whole [N, C, H, W] `map`, or undefined when it is. */
function squeezeProblem(view: GraphView, squeeze: Node, map: Dim[]): string | undefined {
  const [h, w] = [map[2], map[3]];
  switch (squeeze.opType) {
    case 'GlobalAveragePool':
      return undefined;
    case 'ReduceMean': {
      const listed = squeeze.inputs[1] ? view.constant(squeeze.inputs[1]) : undefined;
      const axes = listed ? toNumbers(listed) : attrInts(squeeze, 'axes');
      if (!axes || axes.length === 0) return `ReduceMean '${squeeze.name}' reduces every axis, not just H and W`;
      const spatial = [...new Set(axes.map((a) => normalizeAxis(a, 4, squeeze)))].sort();
      return spatial.join() === '2,3' ? undefined : `ReduceMean '${squeeze.name}' over axes [${axes}] is not a mean over H and W`;
    }
    case 'AveragePool': {
      const kernel = attrInts(squeeze, 'kernel_shape', []);
      const pads = attrInts(squeeze, 'pads', [0, 0, 0, 0]);
      const autoPad = attrString(squeeze, 'auto_pad', 'NOTSET');
      if (pads.some((p) => p !== 0) || (autoPad !== 'NOTSET' && autoPad !== 'VALID'))
        return `pool '${squeeze.name}' pads the map; only an unpadded whole-map window is a squeeze`;
      return kernel[0] === h && kernel[1] === w ? undefined : `pool kernel ${kernel.join('x')} does not cover the ${h}x${w} map`;
    }
    default:
      return `'${squeeze.name}' squeezes by ${squeeze.opType}; tiling handles average pooling only`;
  }
}

/** Why `node` cannot run on a map of tile descriptors, or undefined when it can. */
function excitationProblem(view: GraphView, node: Node): string | undefined {
  const where = `excitation ${node.opType} '${node.name}'`;
  if (!EXCITATION_OPS.has(node.opType)) return `${where} is not an operation on each descriptor alone`;
  const out = view.shape(node.outputs[0]!)!;
  switch (node.opType) {
    case 'Conv': {
      const weight = view.shape(node.inputs[1]!);
      const kernel = attrInts(node, 'kernel_shape') ?? weight?.slice(2) ?? [];
      if (kernel.some((k) => k !== 1)) return `${where} has kernel ${kernel.join('x')}; only 1x1 convolutions act on each tile alone`;
      if (attrInts(node, 'strides', []).some((s) => s !== 1)) return `${where} is strided`;
      if (attrInts(node, 'pads', []).some((p) => p !== 0)) return `${where} is padded`;
      return undefined;
    }
    case 'Gemm':
      return attrInt(node, 'transA', 0) === 0 && view.isConstant(node.inputs[1]!) && (!node.inputs[2] || view.isConstant(node.inputs[2]))
        ? undefined
        : `${where} needs constant weights and bias and transA = 0`;
    case 'MatMul':
      return view.shape(node.inputs[0]!)?.length === 2 && view.constant(node.inputs[1]!)?.dims.length === 2
        ? undefined
        : `${where} needs a [N, C] input and constant 2-D weights`;
  }
  if (SHAPE_ONLY_OPS.has(node.opType)) {
    const channels = view.shape(node.inputs[0]!)?.[1];
    return isNum(channels) && channels === out[1] ? undefined : `${where} changes the channel count`;
  }
  // Elementwise: constants may vary along channels only, so that they broadcast the same way on tile maps.
  for (const input of node.inputs) {
    const t = input ? view.constant(input) : undefined;
    if (!t || sizeOf(t.dims) === 1) continue;
    const channelAxis = t.dims.length - out.length + 1;
    const ok = channelAxis >= 0 && t.dims.every((d, i) => i === channelAxis || d === 1);
    if (!ok) return `${where}: constant '${input}' ${formatShape(t.dims)} does not broadcast along channels only`;
  }
  return undefined;
}

/** Why some value of `nodes` is needed outside the block (by other readers or as a graph output), if one is. */
function escapes(view: GraphView, nodes: Node[], excitation: ReadonlySet<Node>, mul: Node, gate: string): string | undefined {
  for (const node of nodes)
    for (const out of node.outputs) {
      if (!out) continue;
      if (view.isGraphOutput(out)) return `'${out}' is a graph output inside the block`;
      const outsider = view.readers(out).find((r) => !excitation.has(r) && !(r === mul && out === gate));
      if (outsider) return `'${out}' is also read outside the block, by '${outsider.name}'`;
    }
  return undefined;
}

/** Whether `to` is `from` itself or `from` through clamps only. */
function derivedByRangeOps(view: GraphView, from: string, to: string): boolean {
  for (let t: string | undefined = to; t;) {
    if (t === from) return true;
    const node = view.producer(t);
    t = node && RANGE_OPS.has(node.opType) ? node.inputs[0] : undefined;
  }
  return false;
}

function firstOf(problems: (string | undefined)[]): string | undefined {
  return problems.find((p) => p !== undefined);
}

function isNum(d: Dim | undefined): d is number {
  return typeof d === 'number';
}
