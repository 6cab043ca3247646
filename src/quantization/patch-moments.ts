import { GraphBuilder } from '../graph/builder.js';
import { attr, attrInt, attrInts, attrString, cloneModel } from '../graph/graph.js';
import { floatTensor } from '../graph/tensor.js';
import type { Graph, Model } from '../graph/types.js';
import type { WeightedLayer } from './plan.js';

/**
 * Second moments of what each output value of a convolution reads, Σ p·pᵀ over every image
 * and output position, p the input patch (C_in·kh·kw values, ordered as the weights of one
 * filter): what `gptqRound` needs to round weights for the least output error rather than
 * the least weight error. For a 1x1 convolution the patch is the channel vector.
 */

/** Patches larger than this are not measured: H and GPTQ's work grow with its square and cube. */
const MAX_PATCH = 2304;

/**
 * Whether `layer` is a convolution without groups whose patch moments can be measured: each
 * output channel is then the dot product of one filter with the patch (depthwise and other
 * grouped convolutions are left to `preserveKernelSums`).
 */
export function hasPatchMoments(layer: WeightedLayer, graph: Graph): boolean {
  const { node } = layer;
  if (node.opType !== 'Conv' || attrInt(node, 'group', 1) !== 1 || attrString(node, 'auto_pad', 'NOTSET') !== 'NOTSET') return false;
  const dims = graph.initializers.get(layer.weight)?.dims ?? [];
  return dims.length === 4 && dims[1]! * dims[2]! * dims[3]! <= MAX_PATCH;
}

/**
 * A copy of `model` (sharing its tensors) that also outputs, for each layer of `layers` (see
 * `hasPatchMoments`), the [P, P] matrix Σ over batch and output positions of p·pᵀ. Returns
 * the model and the output name per layer node (layers with the same patches share one).
 * Patches come from a convolution with the layer's geometry and one-hot filters, and the
 * products run in onnxruntime: in JavaScript they would cost more than the model itself.
 */
export function withPatchMoments(model: Model, layers: readonly WeightedLayer[]): { model: Model; outputs: Map<string, string> } {
  const copy = cloneModel(model);
  const graph = copy.graph;
  const b = new GraphBuilder(copy);
  const outputs = new Map<string, string>();
  // Layers reading the same patches of the same value (branches of one input) share one product.
  const byPatches = new Map<string, string>();
  for (const { node, weight } of layers) {
    const [, channels, kh, kw] = graph.initializers.get(weight)!.dims as [number, number, number, number];
    const strides = attrInts(node, 'strides', [1, 1]);
    const pads = attrInts(node, 'pads', [0, 0, 0, 0]);
    const dilations = attrInts(node, 'dilations', [1, 1]);
    const key = JSON.stringify([node.inputs[0], kh, kw, strides, pads, dilations]);
    const shared = byPatches.get(key);
    if (shared) {
      outputs.set(node.name, shared);
      continue;
    }
    let patches = node.inputs[0]!;
    const plain = kh === 1 && kw === 1 && [...strides, ...dilations].every((v) => v === 1) && pads.every((v) => v === 0);
    if (!plain) {
      const size = channels * kh * kw;
      const oneHot = new Float32Array(size * size);
      for (let p = 0; p < size; p++) oneHot[p * size + p] = 1;
      const filters = b.tensor(floatTensor([size, channels, kh, kw], oneHot), `${weight}_patch_filters`);
      patches = b.op('Conv', [patches, filters], {
        kernel_shape: attr.ints([kh, kw]),
        strides: attr.ints(strides),
        pads: attr.ints(pads),
        dilations: attr.ints(dilations),
      });
    }
    // [N, P, H, W] → [N·H·W, P] rows, then rowsᵀ·rows.
    const rows = b.op('Flatten', [b.transpose(patches, [0, 2, 3, 1])], { axis: attr.int(3) });
    const moments = b.op('Gemm', [rows, rows], { transA: attr.int(1) }, `${node.name}_moments`);
    graph.outputs.push({ name: moments, dataType: 'float32' });
    byPatches.set(key, moments);
    outputs.set(node.name, moments);
  }
  return { model: copy, outputs };
}

/**
 * Running Σ p·pᵀ of one layer over batches, in float64. Unnormalized: `gptqRound` depends on
 * H only up to a factor.
 */
export class PatchMoments {
  private sums: Float64Array | undefined;

  /** Adds one batch's [P, P] moments. */
  observe(moments: Float32Array): void {
    const sums = (this.sums ??= new Float64Array(moments.length));
    for (let i = 0; i < moments.length; i++) sums[i]! += moments[i]!;
  }

  /** Σ p·pᵀ so far, row-major [P, P]. */
  total(): Float64Array {
    if (!this.sums) throw new Error('PatchMoments: nothing observed');
    return this.sums;
  }
}
