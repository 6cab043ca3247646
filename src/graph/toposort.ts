import type { Graph, Node } from './types.js';
import { QuantflowError } from '../util/errors.js';

/**
 * Orders nodes so that every value is produced before it is read (stable: keeps the
 * existing order where it already is valid). Throws on a cycle, naming a node on it.
 */
export function topologicalSort(graph: Graph): void {
  const available = new Set<string>(['', ...graph.initializers.keys(), ...graph.inputs.map((v) => v.name)]);
  const producedBy = new Map<string, Node>();
  for (const n of graph.nodes) for (const o of n.outputs) producedBy.set(o, n);
  const pending = new Map<Node, number>();
  const waiting = new Map<string, Node[]>();
  const ready: Node[] = [];
  for (const n of graph.nodes) {
    const missing = new Set(n.inputs.filter((i) => !available.has(i) && producedBy.has(i)));
    pending.set(n, missing.size);
    for (const i of missing) (waiting.get(i) ?? waiting.set(i, []).get(i)!).push(n);
    if (missing.size === 0) ready.push(n);
  }
  const order: Node[] = [];
  const index = new Map(graph.nodes.map((n, i) => [n, i]));
  while (ready.length) {
    ready.sort((a, b) => index.get(a)! - index.get(b)!);
    const n = ready.shift()!;
    order.push(n);
    for (const o of n.outputs) {
      for (const w of waiting.get(o) ?? []) {
        const left = pending.get(w)! - 1;
        pending.set(w, left);
        if (left === 0) ready.push(w);
      }
      waiting.delete(o);
    }
  }
  if (order.length !== graph.nodes.length) {
    const stuck = graph.nodes.find((n) => !order.includes(n))!;
    throw new QuantflowError(`graph '${graph.name}' has a cycle through node '${stuck.name}' (${stuck.opType})`);
  }
  graph.nodes = order;
}
