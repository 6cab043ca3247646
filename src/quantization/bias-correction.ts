import { attrInt } from '../graph/graph.js';
import type { WeightedLayer } from './plan.js';
import { dequantize, type QuantizedWeights } from './weights.js';

/** Running per-channel means of an NCHW (or NC) tensor over batches: bounded state. */
export class ChannelMeans {
  private sums: Float64Array | undefined;
  private count = 0;

  observe(values: Float32Array, dims: readonly number[]): void {
    const channels = dims[1] ?? 1;
    const inner = dims.slice(2).reduce((a, b) => a * b, 1);
    const sums = (this.sums ??= new Float64Array(channels));
    const batch = dims[0] ?? 1;
    for (let n = 0; n < batch; n++)
      for (let c = 0; c < channels; c++) {
        let s = 0;
        const base = (n * channels + c) * inner;
        for (let i = 0; i < inner; i++) s += values[base + i]!;
        sums[c]! += s;
      }
    this.count += batch * inner;
  }

  means(): Float64Array {
    if (!this.sums || this.count === 0) throw new Error('ChannelMeans: nothing observed');
    return this.sums.map((s) => s / this.count);
  }
}

/**
 * Bias correction: the expected change of each output channel that weight rounding causes,
 * E[(Ŵ − W)·x] = Σ_j (Ŵ − W)[c, j]·E[x_j], with the layer input's per-channel means measured on
 * calibration images (spatially constant means: the standard approximation, which ignores
 * zero padding at the borders). Returns the amount to subtract from the bias, per output
 * channel. Weights are in [C_out, ...] layout, as the quantizers see them.
 */
export function biasCorrection(
  layer: WeightedLayer,
  channels: number,
  original: Float32Array,
  quantized: QuantizedWeights,
  inputMeans: Float64Array,
): Float64Array {
  const perChannel = original.length / channels;
  const approx = dequantize(quantized);
  const groups = layer.node.opType === 'Conv' ? attrInt(layer.node, 'group', 1) : 1;
  const inPerGroup = inputMeans.length / groups;
  const outPerGroup = channels / groups;
  const kernel = perChannel / inPerGroup;
  const delta = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    const firstInput = Math.floor(c / outPerGroup) * inPerGroup;
    let d = 0;
    for (let j = 0; j < perChannel; j++) {
      const i = c * perChannel + j;
      d += (approx[i]! - original[i]!) * inputMeans[firstInput + Math.floor(j / kernel)]!;
    }
    delta[c] = d;
  }
  return delta;
}
