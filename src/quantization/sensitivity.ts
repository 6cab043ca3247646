import type { OutputErrorMeter } from '../eval/output-error.js';
import type { AllocationLayer } from './allocation.js';
import { allowedWeightBits } from './profile.js';
import { qdqOfLayers, quantizeLayer, type Calibration, type QuantizedLayer } from './quantize.js';

/** Per-layer sensitivity of the model's output error to its weight width. */
export interface WeightSensitivity {
  /** Output error with every layer at its highest allowed width. */
  baseError: number;
  layers: AllocationLayer[];
  /** The layers quantized at each allowed width, by layer index then width: what an allocation picks from. */
  quantized: Map<number, QuantizedLayer>[];
  seconds: number;
}

/**
 * For every layer, how much the output error (`meter`: KL for a classifier, normalized L2
 * otherwise, on images held apart from calibration) grows when that layer alone drops from its
 * highest allowed weight width to each lower one. Runs in the fake-quant simulation on the
 * calibration's activation grids and statistics: each layer is quantized once per width, and
 * each mixed model only swaps one layer's weights.
 */
export async function weightSensitivity(
  cal: Calibration,
  meter: OutputErrorMeter,
  options: { onProgress?: (done: number, total: number) => void },
): Promise<WeightSensitivity> {
  const t0 = performance.now();
  const layers = cal.plan.layers;
  const widths = allocationLayers(cal).map((l) => l.widths);
  const quantized = layers.map((_, i) => new Map(widths[i]!.map((bits) => [bits, quantizeLayer(cal, i, { ...cal.specs[i]!, bits })])));
  const highest = quantized.map((q, i) => q.get(widths[i]!.at(-1)!)!);
  const baseError = await meter.measure(qdqOfLayers(cal, highest));
  const total = widths.reduce((s, w) => s + w.length - 1, 0);
  let done = 0;
  const result: AllocationLayer[] = [];
  for (const [i, layer] of layers.entries()) {
    const growth: number[] = [];
    for (const bits of widths[i]!.slice(0, -1)) {
      const mixed = highest.map((h, j) => (j === i ? quantized[i]!.get(bits)! : h));
      growth.push((await meter.measure(qdqOfLayers(cal, mixed))) - baseError);
      options.onProgress?.(++done, total);
    }
    result.push({ name: layer.node.name, size: weightCount(cal, i), widths: widths[i]!, errorGrowth: [...growth, 0] });
  }
  return { baseError, layers: result, quantized, seconds: (performance.now() - t0) / 1000 };
}

/** Each layer's name, weight count and allowed widths: what a budget is checked against before anything is measured. */
export function allocationLayers(cal: Calibration): { name: string; size: number; widths: (4 | 8)[] }[] {
  const layers = cal.plan.layers;
  return layers.map((l, i) => ({
    name: l.node.name,
    size: weightCount(cal, i),
    widths: allowedWeightBits(cal.profile, l.node.name, { isFirst: i === 0, isLast: i === layers.length - 1 }),
  }));
}

function weightCount(cal: Calibration, index: number): number {
  return cal.model.graph.initializers.get(cal.plan.layers[index]!.weight)!.dims.reduce((p, d) => p * d, 1);
}
