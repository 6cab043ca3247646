import type { AttributeValue, Graph, Model, Node, TensorData } from './types.js';
import { toNumbers } from './tensor.js';
import { QuantflowError } from '../util/errors.js';

/** An empty graph. */
export function createGraph(name: string): Graph {
  return { name, nodes: [], initializers: new Map(), inputs: [], outputs: [], valueInfo: new Map() };
}

/**
 * A copy of `model` that passes may edit freely: nodes, lists and maps are new, constant
 * tensors are shared (passes replace tensors, they never write into one).
 */
export function cloneModel(model: Model): Model {
  const g = model.graph;
  return {
    ...model,
    metadata: { ...model.metadata },
    graph: {
      ...g,
      nodes: g.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attributes: { ...n.attributes } })),
      initializers: new Map(g.initializers),
      inputs: g.inputs.map((v) => ({ ...v, shape: v.shape && [...v.shape] })),
      outputs: g.outputs.map((v) => ({ ...v, shape: v.shape && [...v.shape] })),
      valueInfo: new Map(g.valueInfo),
    },
  };
}

/** Error about one node: names it, as every user-facing failure does. */
export function nodeError(node: Node, message: string): QuantflowError {
  return new QuantflowError(`node '${node.name}' (${node.opType}): ${message}`);
}

/**
 * Input `i` of `node` as numbers, when `constants` (initializers, folded values) holds it;
 * undefined when the input is omitted. A computed input fails naming the node, with
 * `computed` saying why it must be constant.
 */
export function constantInput(
  node: Node,
  i: number,
  constants: { get(name: string): TensorData | undefined },
  computed = `input '${node.inputs[i]}' must be a constant`,
): number[] | undefined {
  const name = node.inputs[i];
  if (!name) return undefined;
  const t = constants.get(name);
  if (!t) throw nodeError(node, computed);
  return toNumbers(t);
}

/**
 * `axis` (negative counts from the end) as a non-negative axis of a rank-`rank` tensor. Out
 * of range fails naming `node` when given: every axis read from a model comes from one.
 */
export function normalizeAxis(axis: number, rank: number, node?: Node, what = 'axis'): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    const message = `${what} ${axis} is out of range for rank ${rank}`;
    throw node ? nodeError(node, message) : new QuantflowError(message);
  }
  return axis < 0 ? axis + rank : axis;
}

/** Every value name the graph defines or refers to, and every node name. */
function usedNames(graph: Graph): Set<string> {
  const used = new Set<string>(graph.initializers.keys());
  for (const v of graph.inputs) used.add(v.name);
  for (const n of graph.nodes) {
    used.add(n.name);
    for (const o of n.outputs) used.add(o);
    for (const i of n.inputs) used.add(i);
  }
  return used;
}

/**
 * Returns a function that hands out names not yet used in `graph` (nor by earlier calls),
 * `base`, then `base_1`, `base_2`, ...
 */
export function nameAllocator(graph: Graph): (base: string) => string {
  const used = usedNames(graph);
  return (base: string) => {
    let name = base;
    for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
    used.add(name);
    return name;
  };
}

/** Builds a node in the default domain. */
export function makeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  attributes: Record<string, AttributeValue> = {},
  name = outputs[0] ?? opType,
): Node {
  return { name, opType, domain: '', inputs, outputs, attributes };
}

/** Map from each value name to the node that produces it. */
export function producerMap(graph: Graph): Map<string, Node> {
  const m = new Map<string, Node>();
  for (const n of graph.nodes) for (const o of n.outputs) if (o) m.set(o, n);
  return m;
}

/** Drops initializers that no node reads any more. */
export function pruneUnusedInitializers(graph: Graph): void {
  const used = new Set(graph.nodes.flatMap((n) => n.inputs));
  for (const o of graph.outputs) used.add(o.name);
  for (const name of graph.initializers.keys()) if (!used.has(name)) graph.initializers.delete(name);
}

/** Removes nodes that no graph output depends on, then initializers nothing reads. The nodes must be in topological order. */
export function pruneDeadNodes(graph: Graph): number {
  const needed = new Set(graph.outputs.map((o) => o.name));
  const kept = [];
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i]!;
    if (!node.outputs.some((o) => needed.has(o))) continue;
    kept.push(node);
    for (const input of node.inputs) if (input) needed.add(input);
  }
  const removed = graph.nodes.length - kept.length;
  graph.nodes = kept.reverse();
  pruneUnusedInitializers(graph);
  return removed;
}

/** Map from each value name to the nodes that read it. */
export function consumerMap(graph: Graph): Map<string, Node[]> {
  const m = new Map<string, Node[]>();
  for (const n of graph.nodes)
    for (const i of n.inputs) {
      if (!i) continue;
      const list = m.get(i);
      if (list) list.push(n);
      else m.set(i, [n]);
    }
  return m;
}

function attribute(node: Node, name: string): AttributeValue | undefined {
  return node.attributes[name];
}

function wrongType(node: Node, name: string, want: string): QuantflowError {
  return nodeError(node, `attribute '${name}' should be ${want}, found ${attribute(node, name)?.type}`);
}

export function attrInt(node: Node, name: string, fallback: number): number {
  const a = attribute(node, name);
  if (!a) return fallback;
  if (a.type !== 'int') throw wrongType(node, name, 'an int');
  return a.value;
}

export function attrFloat(node: Node, name: string, fallback: number): number {
  const a = attribute(node, name);
  if (!a) return fallback;
  if (a.type !== 'float') throw wrongType(node, name, 'a float');
  return a.value;
}

export function attrInts(node: Node, name: string): number[] | undefined;
export function attrInts(node: Node, name: string, fallback: number[]): number[];
export function attrInts(node: Node, name: string, fallback?: number[]): number[] | undefined {
  const a = attribute(node, name);
  if (!a) return fallback;
  if (a.type !== 'ints') throw wrongType(node, name, 'a list of ints');
  return a.value;
}

export function attrFloats(node: Node, name: string): number[] | undefined {
  const a = attribute(node, name);
  if (!a) return undefined;
  if (a.type !== 'floats') throw wrongType(node, name, 'a list of floats');
  return a.value;
}

export function attrString(node: Node, name: string, fallback: string): string {
  const a = attribute(node, name);
  if (!a) return fallback;
  if (a.type !== 'string') throw wrongType(node, name, 'a string');
  return a.value;
}

export function attrTensor(node: Node, name: string): TensorData | undefined {
  const a = attribute(node, name);
  if (!a) return undefined;
  if (a.type !== 'tensor') throw wrongType(node, name, 'a tensor');
  return a.value;
}

/** Attribute constructors, so that building nodes reads like the ONNX spec. */
export const attr = {
  int: (value: number): AttributeValue => ({ type: 'int', value }),
  ints: (value: number[]): AttributeValue => ({ type: 'ints', value }),
  float: (value: number): AttributeValue => ({ type: 'float', value }),
  floats: (value: number[]): AttributeValue => ({ type: 'floats', value }),
  string: (value: string): AttributeValue => ({ type: 'string', value }),
  tensor: (value: TensorData): AttributeValue => ({ type: 'tensor', value }),
};
