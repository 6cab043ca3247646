import { consumerMap, producerMap } from './graph.js';
import type { OpType } from './ops.js';
import type { Graph, Node } from './types.js';

/**
 * Index and post-processing ops: they compare, select by computed indices or change types.
 * Their results are indices, counts or picked values that requantization would corrupt and
 * that an integer NPU does not compute, so they run on the host as in the float model.
 */
const HOST_OPS: ReadonlySet<string> = new Set<OpType>([
  'ArgMax',
  'ArgMin',
  'Cast',
  'GatherElements',
  'GatherND',
  'NonMaxSuppression',
  'TopK',
]);

/** Ops whose output describes a tensor's shape rather than its values. */
const SHAPE_OPS: ReadonlySet<string> = new Set<OpType>(['Shape', 'Size']);

/** Quantization's own ops, whose integer outputs are not the model's values. */
const QDQ_OPS: ReadonlySet<string> = new Set<OpType>(['QuantizeLinear', 'DequantizeLinear']);

/** Layers with weights: the NPU's work, never pulled onto the host. */
const WEIGHTED_OPS: ReadonlySet<string> = new Set<OpType>(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

/** Clamps the NPU fuses into the requantization of the layer before them. */
const CLAMPS: ReadonlySet<string> = new Set<OpType>(['Relu', 'Clip']);

/**
 * The host tail of a float or QDQ graph, in graph order: index and post-processing nodes (see
 * HOST_OPS; a Gather whose indices are computed; a node with an output known to be non-float),
 * every node that reads what one of them computes, and the unweighted nodes that feed only the
 * tail (a detector's box decoding before NonMaxSuppression, a segmenter's upsampling before
 * ArgMax; not a layer's own ReLU or clamp): post-processing that a deployment runs on the host, where a fixed-point NPU would
 * only add error to coordinates and scores. Shape arithmetic is not part of it. The tail stays
 * as in the float model, unquantized; the integer NPU package ends at its inputs.
 */
export function hostTail(graph: Graph): Node[] {
  const tailValues = new Set<string>();
  // Shape arithmetic left unfolded (Shape → Gather → Concat → Reshape) sizes tensors, it is no post-processing.
  const shapeNodes = new Set(shapeArithmetic(graph));
  const tail: Node[] = [];
  const nonFloat = (name: string) => {
    const type = graph.valueInfo.get(name)?.dataType;
    return type !== undefined && type !== 'float32';
  };
  for (const node of graph.nodes) {
    if (shapeNodes.has(node)) continue;
    const starts =
      HOST_OPS.has(node.opType) ||
      (node.opType === 'Gather' && !graph.initializers.has(node.inputs[1] ?? '')) ||
      (!QDQ_OPS.has(node.opType) && node.outputs.some((o) => o && nonFloat(o)));
    if (!starts && !node.inputs.some((i) => tailValues.has(i))) continue;
    tail.push(node);
    for (const o of node.outputs) if (o) tailValues.add(o);
  }
  if (!tail.length) return tail;
  const onHost = new Set(tail);
  const consumers = consumerMap(graph);
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  const producers = producerMap(graph);
  const layerClamp = (node: Node) => CLAMPS.has(node.opType) && WEIGHTED_OPS.has(producers.get(node.inputs[0] ?? '')?.opType ?? '');
  // Reverse graph order sees every consumer of a node before the node itself.
  for (const node of [...graph.nodes].reverse()) {
    if (onHost.has(node) || shapeNodes.has(node) || WEIGHTED_OPS.has(node.opType) || QDQ_OPS.has(node.opType) || layerClamp(node)) continue;
    const outputs = node.outputs.filter(Boolean);
    const feedsTailOnly = outputs.every(
      (o) => !graphOutputs.has(o) && (consumers.get(o) ?? []).length > 0 && consumers.get(o)!.every((c) => onHost.has(c)),
    );
    if (outputs.length && feedsTailOnly) onHost.add(node);
  }
  return graph.nodes.filter((n) => onHost.has(n));
}

/** Nodes that compute shapes (Shape, Size and arithmetic on their results alone), in graph order. */
export function shapeArithmetic(graph: Graph): Node[] {
  const shapeValues = new Set<string>();
  const nodes: Node[] = [];
  for (const node of graph.nodes) {
    const operands = node.inputs.filter((i) => i && !graph.initializers.has(i));
    if (!SHAPE_OPS.has(node.opType) && !(operands.length && operands.every((i) => shapeValues.has(i)))) continue;
    nodes.push(node);
    for (const o of node.outputs) if (o) shapeValues.add(o);
  }
  return nodes;
}

/**
 * The values the host tail reads from the rest of the graph (its cut), each once, in order;
 * constants and shape arithmetic aside (the host knows the shapes it is handed).
 */
export function tailInputs(graph: Graph, tail: readonly Node[]): string[] {
  const onHost = new Set([...tail, ...shapeArithmetic(graph)].flatMap((n) => n.outputs));
  return [...new Set(tail.flatMap((n) => n.inputs.filter((i) => i && !onHost.has(i) && !graph.initializers.has(i))))];
}

/**
 * The values the network hands out before the host takes over: the model outputs not on the
 * tail, then the tail's inputs (`tailInputs`), each once.
 */
export function networkOutputs(graph: Graph, tail: readonly Node[]): string[] {
  const onHost = new Set(tail.flatMap((n) => n.outputs));
  return [...new Set([...graph.outputs.map((o) => o.name).filter((o) => !onHost.has(o)), ...tailInputs(graph, tail)])];
}
