import { GraphBuilder } from '../autodiff/builder.js';
import { attrInt } from '../graph/graph.js';
import type { Graph, Model } from '../graph/types.js';
import type { WeightedLayer } from './plan.js';

/**
 * Second moments of layer inputs, Σ x·xᵀ over every image and position, for the layers whose
 * output is a plain matrix product of the input channels (1x1 convolutions without groups):
 * what `gptqRound` needs to round weights for the least output error rather than the least
 * weight error.
 */

/** Whether `layer` multiplies the channel vector at each position by its weights and nothing else. */
export function isPointwise(layer: WeightedLayer, graph: Graph): boolean {
  const { node } = layer;
  if (node.opType !== 'Conv' || attrInt(node, 'group', 1) !== 1) return false;
  const dims = graph.initializers.get(layer.weight)?.dims ?? [];
  return dims.length === 4 && dims[2] === 1 && dims[3] === 1;
}

/**
 * A copy of `model` (sharing its tensors) that also outputs, for each NCHW input tensor named
 * in `inputs`, the [C, C] matrix Σ over batch and positions of x·xᵀ. Returns the model and
 * the output name per input. The products run in onnxruntime: in JavaScript they would cost
 * more than the model itself.
 */
export function withInputMoments(model: Model, inputs: readonly string[]): { model: Model; outputs: Map<string, string> } {
  const graph: Graph = { ...model.graph, nodes: [...model.graph.nodes], initializers: new Map(model.graph.initializers), outputs: [...model.graph.outputs] };
  const copy: Model = { ...model, graph };
  const b = new GraphBuilder(copy);
  const outputs = new Map<string, string>();
  for (const x of inputs) {
    // [N, C, H, W] → [N·H·W, C] rows, then rowsᵀ·rows.
    const rows = b.op('Flatten', [b.transpose(x, [0, 2, 3, 1])], { axis: { type: 'int', value: 3 } });
    const moments = b.op('Gemm', [rows, rows], { transA: { type: 'int', value: 1 } }, `${x}_moments`);
    graph.outputs.push({ name: moments, dataType: 'float32' });
    outputs.set(x, moments);
  }
  return { model: copy, outputs };
}

/**
 * Running Σ x·xᵀ of one input over batches, in float64. Unnormalized: `gptqRound` depends on
 * H only up to a factor.
 */
export class InputMoments {
  private sums: Float64Array | undefined;

  /** Adds one batch's [C, C] moments. */
  observe(moments: Float32Array): void {
    const sums = (this.sums ??= new Float64Array(moments.length));
    for (let i = 0; i < moments.length; i++) sums[i]! += moments[i]!;
  }

  /** Σ x·xᵀ so far, row-major [C, C]. */
  total(): Float64Array {
    if (!this.sums) throw new Error('InputMoments: nothing observed');
    return this.sums;
  }
}
