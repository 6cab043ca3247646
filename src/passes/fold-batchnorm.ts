import { attrFloat, attrInt, consumerMap, producerMap, pruneUnusedInitializers } from '../graph/graph.js';
import { toFloat32 } from '../graph/tensor.js';
import type { Graph, Node, TensorData } from '../graph/types.js';

/**
 * Folds every inference-mode BatchNormalization that directly follows a Conv or Gemm (and
 * is that layer's only reader) into the layer's weights and bias:
 * W'[c] = W[c]·s[c], b'[c] = (b[c] − mean[c])·s[c] + beta[c], with s = gamma/√(var+ε).
 * Quantization must see the folded weights, since that is what the integer target runs.
 * Returns the number of folded nodes.
 */
export function foldBatchNorm(graph: Graph): number {
  const producers = producerMap(graph);
  const consumers = consumerMap(graph);
  const removed = new Set<Node>();
  for (const bn of graph.nodes) {
    if (bn.opType !== 'BatchNormalization' || bn.outputs.filter(Boolean).length !== 1) continue;
    const layer = producers.get(bn.inputs[0]!);
    if (!layer || (layer.opType !== 'Conv' && layer.opType !== 'Gemm')) continue;
    if ((consumers.get(layer.outputs[0]!) ?? []).length !== 1) continue;
    if (graph.outputs.some((o) => o.name === layer.outputs[0])) continue;
    const params = bn.inputs.slice(1, 5).map((n) => graph.initializers.get(n));
    const weight = graph.initializers.get(layer.inputs[1]!);
    if (params.some((p) => !p) || !weight || weight.dataType !== 'float32') continue;
    const [gamma, beta, mean, variance] = params.map((p) => toFloat32(p!));
    const eps = attrFloat(bn, 'epsilon', 1e-5);
    const channels = gamma!.length;
    const scale = gamma!.map((g, c) => g / Math.sqrt(variance![c]! + eps));

    // Which weight axis holds the output channel: 0 for Conv and Gemm with transB, 1 otherwise.
    const outAxis = layer.opType === 'Gemm' && attrInt(layer, 'transB', 0) === 0 ? 1 : 0;
    if (weight.dims[outAxis] !== channels) continue;
    if (layer.opType === 'Gemm' && attrFloat(layer, 'alpha', 1) !== 1) continue;
    const w = Float32Array.from(weight.data as Float32Array);
    const inner = outAxis === 0 ? w.length / channels : 1;
    const stride = outAxis === 0 ? 1 : channels;
    for (let i = 0; i < w.length; i++) {
      const c = outAxis === 0 ? Math.floor(i / inner) : i % stride;
      w[i]! *= scale[c]!;
    }
    const oldBias = layer.inputs[2] ? graph.initializers.get(layer.inputs[2]) : undefined;
    if (layer.inputs[2] && (!oldBias || oldBias.dims.length !== 1 || oldBias.dims[0] !== channels)) continue;
    const b0 = oldBias ? toFloat32(oldBias) : new Float32Array(channels);
    const beta0 = layer.opType === 'Gemm' ? attrFloat(layer, 'beta', 1) : 1;
    const bias = new Float32Array(channels);
    for (let c = 0; c < channels; c++) bias[c] = (beta0 * b0[c]! - mean![c]!) * scale[c]! + beta![c]!;

    const weightName = `${layer.inputs[1]}_bnfolded`;
    const biasName = `${layer.inputs[1]}_bnfolded_bias`;
    graph.initializers.set(weightName, { dataType: 'float32', dims: [...weight.dims], data: w } satisfies TensorData);
    graph.initializers.set(biasName, { dataType: 'float32', dims: [channels], data: bias });
    layer.inputs = [layer.inputs[0]!, weightName, biasName];
    if (layer.opType === 'Gemm') delete layer.attributes.beta;
    layer.outputs = [bn.outputs[0]!];
    removed.add(bn);
  }
  graph.nodes = graph.nodes.filter((n) => !removed.has(n));
  pruneUnusedInitializers(graph);
  return removed.size;
}
