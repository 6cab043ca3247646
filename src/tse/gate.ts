/**
 * Recognizes the gate of a squeeze-and-excite block by what it computes, not how it is
 * spelled: exporters write sigmoid, HardSigmoid, Add 3 → Relu6/Clip(0,6) → Mul 1/6 or Div 6,
 * x/6 + 0.5 → Clip(0,1), often with the range clamps of a quantized source interleaved. The
 * chain of scalar elementwise ops that ends at the gate is evaluated on a grid of inputs and
 * accepted when it behaves like a sigmoid: monotone from ≈0 to ≈1 through ≈0.5 at 0.
 */
import { SHAPE_ONLY_OPS } from '../graph/ops.js';
import type { Node } from '../graph/types.js';
import { attrFloat } from '../graph/graph.js';
import { toFloat32 } from '../graph/tensor.js';
import type { GraphView } from './view.js';

/** How the gate is written: a Sigmoid, a HardSigmoid, or a hard sigmoid in arithmetic. */
export type GateKind = 'sigmoid' | 'hard-sigmoid' | 'hard-sigmoid-arithmetic';

export interface Gate {
  kind: GateKind;
  /** The gate's nodes in graph order; its output is what the block's Mul reads (or reshapes). */
  nodes: Node[];
}

type ScalarFn = (v: number) => number;

const CLAMPS: ReadonlySet<string> = new Set(['Clip', 'Relu']);

/**
 * The gate that ends at `output`, searched among `excitation` nodes only; undefined when the
 * scalar chain ending there does not act like a sigmoid.
 */
export function findGate(output: string, excitation: ReadonlySet<Node>, view: GraphView): Gate | undefined {
  // The chain backwards from the output: each entry is one node and its scalar function.
  const chain: { node: Node; fn: ScalarFn }[] = [];
  for (let t = output; ;) {
    const node = view.producer(t);
    if (!node || !excitation.has(node)) break;
    const step = SHAPE_ONLY_OPS.has(node.opType) ? { fn: (v: number) => v, data: node.inputs[0]! } : scalarStep(node, view);
    if (!step) break;
    chain.push({ node, fn: step.fn });
    t = step.data;
  }
  // The longest gate-like suffix, so that "x/6 + 0.5 → Clip" counts the scaling as gate too;
  // range clamps before the gate make the function fail at -∞ and stop the search.
  const gateLike = (start: number) => {
    const part = chain.slice(0, start + 1).reverse();
    return isSigmoidLike((v) => part.reduce((x, s) => s.fn(x), v));
  };
  for (let start = chain.length - 1; start >= 0; start--) {
    if (!gateLike(start)) continue;
    // A clamp in front that changes nothing is the previous layer's range, not the gate.
    while (start > 0 && CLAMPS.has(chain[start]!.node.opType) && gateLike(start - 1)) start--;
    const nodes = chain
      .slice(0, start + 1)
      .reverse()
      .map((s) => s.node)
      .filter((n) => !SHAPE_ONLY_OPS.has(n.opType));
    if (!nodes.length) return undefined;
    const kind: GateKind = nodes.some((n) => n.opType === 'Sigmoid')
      ? 'sigmoid'
      : nodes.some((n) => n.opType === 'HardSigmoid')
        ? 'hard-sigmoid'
        : 'hard-sigmoid-arithmetic';
    return { kind, nodes };
  }
  return undefined;
}

function isSigmoidLike(f: ScalarFn): boolean {
  const low = f(-20);
  const high = f(20);
  const mid = f(0);
  if (!(low <= 0.02 && high >= 0.98 && mid >= 0.25 && mid <= 0.75)) return false;
  for (let v = -20, prev = low; v <= 20; v += 0.25) {
    const y = f(v);
    if (!(y >= prev - 1e-6)) return false;
    prev = y;
  }
  return true;
}

/** A scalar constant operand (a one-element initializer or Constant). */
function scalar(view: GraphView, name: string | undefined): number | undefined {
  if (!name) return undefined;
  const t = view.constant(name);
  return t && t.data.length === 1 ? toFloat32(t)[0]! : undefined;
}

/** The scalar function of a one-data-input elementwise node, and its data input. */
function scalarStep(node: Node, view: GraphView): { fn: ScalarFn; data: string } | undefined {
  const data = node.inputs.filter((i) => i && !view.isConstant(i));
  if (data.length !== 1) return undefined;
  const x = data[0]!;
  const first = node.inputs[0] === x;
  const other = node.inputs.find((i) => i && i !== x);
  const c = scalar(view, other);
  const step = (fn: ScalarFn) => ({ fn, data: x });
  switch (node.opType) {
    case 'Relu':
      return step((v) => Math.max(v, 0));
    case 'Sigmoid':
      return step((v) => 1 / (1 + Math.exp(-v)));
    case 'HardSigmoid': {
      const alpha = attrFloat(node, 'alpha', 0.2);
      const beta = attrFloat(node, 'beta', 0.5);
      return step((v) => Math.min(1, Math.max(0, alpha * v + beta)));
    }
    case 'Clip': {
      const lo = view.opset >= 11 ? (node.inputs[1] ? scalar(view, node.inputs[1]) : -Infinity) : attrFloat(node, 'min', -Infinity);
      const hi = view.opset >= 11 ? (node.inputs[2] ? scalar(view, node.inputs[2]) : Infinity) : attrFloat(node, 'max', Infinity);
      return lo === undefined || hi === undefined || !first ? undefined : step((v) => Math.min(hi, Math.max(lo, v)));
    }
  }
  if (c === undefined || node.inputs.length !== 2) return undefined;
  switch (node.opType) {
    case 'Add':
      return step((v) => v + c);
    case 'Sub':
      return step(first ? (v) => v - c : (v) => c - v);
    case 'Mul':
      return step((v) => v * c);
    case 'Div':
      return step(first ? (v) => v / c : (v) => c / v);
    case 'Min':
      return step((v) => Math.min(v, c));
    case 'Max':
      return step((v) => Math.max(v, c));
    default:
      return undefined;
  }
}
