import { toFloat32 } from '../graph/tensor.js';
import type { Model } from '../graph/types.js';
import type { QuantizationPlan } from '../quantization/plan.js';

/** Float-weight facts the quantizer's report lacks, for the report's WESS and size sections. */
export interface LayerWeightStats {
  /** max|w| of each output channel, before any shift. */
  channelRanges: number[];
  weightCount: number;
}

/**
 * Per-channel ranges and sizes of each planned layer's float weights, keyed by layer (node)
 * name as in `LayerReport.name`. `model` must be the float model the plan was made for;
 * `quantizeModel` does not modify it, so this may run before or after quantization.
 */
export function layerWeightStats(model: Model, plan: QuantizationPlan): Map<string, LayerWeightStats> {
  return new Map(
    plan.layers.map((layer) => {
      const tensor = model.graph.initializers.get(layer.weight)!;
      const w = toFloat32(tensor);
      const channels = tensor.dims[layer.channelAxis]!;
      // Elements of one channel's slice lie in runs of `inner` consecutive values.
      const inner = tensor.dims.slice(layer.channelAxis + 1).reduce((a, b) => a * b, 1);
      const ranges = new Array<number>(channels).fill(0);
      for (let i = 0; i < w.length; i++) {
        const c = Math.floor(i / inner) % channels;
        ranges[c] = Math.max(ranges[c]!, Math.abs(w[i]!));
      }
      return [layer.node.name, { channelRanges: ranges, weightCount: w.length }];
    }),
  );
}
