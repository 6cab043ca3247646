import type { Graph, Model, Node, ValueInfo } from '../graph/types.js';
import { consumerMap, pruneUnusedInitializers } from '../graph/graph.js';
import { runModel } from '../runtime/session.js';

/**
 * Quantize/dequantize pairs on weights must stay in a QDQ model: onnxruntime recognizes
 * them to pick integer kernels, so folding them into float weights would undo the export.
 */
const KEEP = new Set(['QuantizeLinear', 'DequantizeLinear']);

/**
 * Replaces every node whose inputs are all constant by the initializers it computes.
 * The constant part of the graph is evaluated by onnxruntime itself, so folding follows the
 * runtime's own op semantics exactly. Needs output types in `graph.valueInfo` (run
 * `inferShapes` first); values without a known type stay unfolded. Returns the number of
 * removed nodes.
 */
export async function foldConstants(model: Model): Promise<number> {
  const graph = model.graph;
  const constant = new Set(graph.initializers.keys());
  const foldable: Node[] = [];
  for (const n of graph.nodes) {
    if (KEEP.has(n.opType) || n.domain !== '') continue;
    const inputs = n.inputs.filter(Boolean);
    if (inputs.length === 0 || !inputs.every((i) => constant.has(i))) continue;
    if (!n.outputs.every((o) => graph.valueInfo.has(o))) continue;
    foldable.push(n);
    for (const o of n.outputs) constant.add(o);
  }
  if (!foldable.length) return 0;

  const folded = new Set(foldable);
  const readers = consumerMap(graph);
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  const needed = foldable
    .flatMap((n) => n.outputs)
    .filter((o) => graphOutputs.has(o) || (readers.get(o) ?? []).some((r) => !folded.has(r)));
  const sub: Graph = {
    name: `${graph.name}_constants`,
    nodes: foldable,
    initializers: new Map([...graph.initializers].filter(([name]) => foldable.some((n) => n.inputs.includes(name)))),
    inputs: [],
    outputs: needed.map((o) => graph.valueInfo.get(o) as ValueInfo),
    valueInfo: new Map(),
  };
  const values = await runModel({ ...model, graph: sub }, {});
  for (const name of needed) graph.initializers.set(name, values[name]!);
  graph.nodes = graph.nodes.filter((n) => !folded.has(n));
  pruneUnusedInitializers(graph);
  return foldable.length;
}
