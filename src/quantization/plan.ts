import { attrFloat, attrInt, attrString, consumerMap } from '../graph/graph.js';
import { hostTail } from '../graph/host-tail.js';
import { resizeBroadcastAxes } from '../graph/resize.js';
import type { Graph, Node } from '../graph/types.js';

/** A layer whose constant weights get quantized. */
export interface WeightedLayer {
  node: Node;
  /** Initializer name of the weights. */
  weight: string;
  /** Initializer name of the bias, if any (quantized to int32 at scale s_x·s_w). */
  bias?: string;
  /** Weight axis that indexes output channels (per-channel scales and WESS shifts run along it). */
  channelAxis: number;
}

/**
 * A layer's weights (or integers) reordered so output channels come first, as the quantizers
 * lay them out: a copy for a [rest, C_out] weight (Gemm without transB, MatMul), `w` itself
 * when the output channels already lead.
 */
export function outputChannelsFirst<T extends Float32Array | Int8Array>(w: T, dims: readonly number[], layer: WeightedLayer): T {
  return layer.channelAxis === 0 ? w : transpose(w, dims[0]!, dims[1]!);
}

/** The inverse of `outputChannelsFirst`: back to the layout of the weight tensor. */
export function weightLayout<T extends Float32Array | Int8Array>(w: T, dims: readonly number[], layer: WeightedLayer): T {
  return layer.channelAxis === 0 ? w : transpose(w, dims[1]!, dims[0]!);
}

/** A rows x cols matrix, row-major, transposed into a new array of the same type. */
function transpose<T extends Float32Array | Int8Array>(w: T, rows: number, cols: number): T {
  const out = new (w.constructor as new (n: number) => T)(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

/** Which tensors of a float graph a quantized target represents in integers. */
export interface QuantizationPlan {
  layers: WeightedLayer[];
  /** Activation tensors that get their own scale, in graph order. */
  activations: string[];
}

/** Activations the NPU applies inside the producing layer's requantization (a clamp). */
const FUSIBLE_ACTIVATIONS = new Set(['Relu', 'Clip']);
const SAME_GRID_OPS: ReadonlySet<string> = new Set([
  'Reshape',
  'Flatten',
  'Squeeze',
  'Unsqueeze',
  'Transpose',
  'MaxPool',
  'Identity',
  'Dropout',
  'Slice',
]);

/**
 * Whether `node`'s output lies on the same integer grid as its (first) input, so the target
 * needs no new scale: it moves or selects values without arithmetic (a nearest-neighbour
 * Resize included, and an interpolating one that only broadcasts length-1 axes
 * (`resizeBroadcastAxes`, which needs `graph`'s shapes); zero padding too).
 */
export function keepsGrid(node: Node, graph?: Graph): boolean {
  if (node.opType === 'Resize') {
    const shape = (name: string | undefined) => graph?.valueInfo.get(name ?? '')?.shape;
    return attrString(node, 'mode', 'nearest') === 'nearest' || !!resizeBroadcastAxes(node, shape(node.inputs[0]), shape(node.outputs[0]));
  }
  return SAME_GRID_OPS.has(node.opType) || padsWithZeros(node);
}

/** A constant-mode Pad whose value is 0, which every grid holds exactly (its zero point). */
function padsWithZeros(node: Node): boolean {
  return (
    node.opType === 'Pad' && attrString(node, 'mode', 'constant') === 'constant' && !node.inputs[2] && attrFloat(node, 'value', 0) === 0
  );
}

function weightedLayer(node: Node, graph: Graph): WeightedLayer | undefined {
  const weight = node.inputs[1];
  if (!weight || !graph.initializers.has(weight)) return undefined;
  const bias = node.inputs[2] && graph.initializers.has(node.inputs[2]) ? node.inputs[2] : undefined;
  switch (node.opType) {
    case 'Conv':
      return { node, weight, bias, channelAxis: 0 };
    case 'Gemm':
      return { node, weight, bias, channelAxis: attrInt(node, 'transB', 0) ? 0 : 1 };
    case 'MatMul':
      return graph.initializers.get(weight)!.dims.length === 2 ? { node, weight, channelAxis: 1 } : undefined;
    default:
      return undefined;
  }
}

/**
 * Decides what gets quantized: the weights of Conv/Gemm/MatMul layers, and every float
 * activation at a layer boundary — model inputs and node outputs, except (a) an output read
 * only by a ReLU/Clip, whose clamp the target fuses into the producer's requantization (the
 * clamp's output is quantized instead), (b) outputs of ops that keep their input's grid, (c) a final
 * Softmax, which stays float as the model's probability output, and (d) the host tail
 * (`hostTail`), which stays as in the float model.
 */
export function planQuantization(graph: Graph): QuantizationPlan {
  const consumers = consumerMap(graph);
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  const isFloat = (name: string) => (graph.valueInfo.get(name)?.dataType ?? 'float32') === 'float32';
  const tail = new Set(hostTail(graph));
  const layers: WeightedLayer[] = [];
  const activations: string[] = graph.inputs.filter((v) => v.dataType === 'float32').map((v) => v.name);
  for (const node of graph.nodes) {
    if (tail.has(node)) continue;
    const layer = weightedLayer(node, graph);
    if (layer) layers.push(layer);
    if (keepsGrid(node, graph)) continue;
    if (node.opType === 'Softmax' && graphOutputs.has(node.outputs[0]!)) continue;
    for (const out of node.outputs) {
      if (!out || !isFloat(out) || graph.initializers.has(out)) continue;
      const readers = consumers.get(out) ?? [];
      const fused =
        !FUSIBLE_ACTIVATIONS.has(node.opType) &&
        !graphOutputs.has(out) &&
        readers.length === 1 &&
        FUSIBLE_ACTIVATIONS.has(readers[0]!.opType) &&
        !tail.has(readers[0]!);
      if (!fused) activations.push(out);
    }
  }
  return { layers, activations };
}
