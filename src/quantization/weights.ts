import { powerOfTwoCeil, roundHalfToEven } from './fixedpoint.js';
import type { LayerWeights, WeightGranularity } from './profile.js';

/**
 * Symmetric weight quantization: per tensor, per output channel, and WESS (one layer scale
 * plus a power-of-two shift per output channel).
 *
 * Conventions:
 * - Weights are laid out [C_out, ...]: output channel c owns the contiguous slice
 *   [c·n, (c+1)·n) with n = length / C_out (Conv OIHW, Gemm with transB).
 * - The integer grid is narrow-range, [−(2^(b−1)−1), 2^(b−1)−1] ([−127, 127], [−7, 7]): it is
 *   symmetric, so negating a channel negates its integers exactly, and excluding −2^(b−1)
 *   keeps |q_w · q_x| ≤ (2^(b−1)−1)·2^(b−1) as integer kernels and ONNX/TFLite symmetric
 *   weights assume. It costs half a level of resolution.
 * - w ≈ q · scale[c]. Scales are float32 (what an ONNX file stores) and q is computed from
 *   the float32 scale, so the stored integers and a dequantize in onnxruntime agree.
 * - Rounding is half to even (ONNX QuantizeLinear).
 * - An all-zero tensor or channel gets scale 1: any positive scale represents it exactly,
 *   and 1 keeps its requantization multiplier ordinary.
 *
 * WESS (arXiv 2008.05767): channel c is scaled by 2^k[c], k[c] ∈ [0, 2^shiftBits − 1], and
 * the shifted weights share one layer scale s: q = round(w·2^k[c] / s). The effective scale
 * of channel c is s·2^−k[c]; the NPU applies the extra right shift k[c] in requantization, on
 * top of the layer's shift n. With 'minmax' scales k[c] is the paper's rule, the largest
 * shift that keeps max|w_c|·2^k[c] within a reference range (all-zero channels get k = 0);
 * with 'mse' scales s and k are chosen for least squared error, which lets a channel take
 * the finer grid and clip a little where that costs less than the coarser one.
 */

/** How a scale is chosen: the full range, or the clipping that minimizes squared error. */
export type ScaleMethod = 'minmax' | 'mse';

export interface WeightQuantOptions {
  /** Weight width, 2..8. */
  bits: number;
  /** Default 'mse'. */
  method?: ScaleMethod;
  /** Round the (layer) scale up to a power of two (a profile's `powerOfTwoScales`). */
  powerOfTwo?: boolean;
  /**
   * Taps of each spatial kernel (kh·kw for a convolution; default 1). Above 1, each kernel's
   * integers keep its sum within half a step of the float kernel's (`preserveKernelSums`).
   */
  kernelTaps?: number;
}

export interface QuantizedWeights {
  bits: number;
  granularity: WeightGranularity;
  /** Effective scale: 1 entry for 'tensor', one per output channel otherwise (s·2^−k[c] for 'shift'). */
  scale: Float32Array;
  /** The one per-layer scale s of 'tensor' and 'shift'; absent for 'channel'. */
  layerScale?: number;
  /** WESS shifts k[c] ('shift' only). */
  shifts?: Int32Array;
  /** The largest shift the target allows, 2^shiftBits − 1 ('shift' only). */
  maxShift?: number;
  /** The range the shifted channels were fitted into ('shift' with 'minmax' scales; see `shiftsForReference`). */
  shiftReference?: number;
  /** Integer weights in the narrow symmetric grid, same layout as the input (int4 unpacked). */
  q: Int8Array;
  /** Signal-to-quantization-noise ratio of this quantization, in dB. */
  sqnrDb: number;
}

/**
 * Per-channel scales widened where the bias at s_x·s_w[c] would pass 2^30: a channel of all
 * but zero weights with a real bias, whose int32 bias would saturate and leave the accumulator
 * no room (TFLite's converter widens such scales too). Those channels' weights are re-rounded
 * onto the wider grid; other quantizations come back as they are.
 */
export function fitBiasScales(w: QuantizedWeights, bias: Float32Array, inputScale: number): QuantizedWeights {
  if (w.granularity !== 'channel') return w;
  const size = w.q.length / w.scale.length;
  let fitted: QuantizedWeights | undefined;
  for (let c = 0; c < w.scale.length; c++) {
    const needed = Math.abs(bias[c]!) / (inputScale * 2 ** 30);
    if (!(w.scale[c]! < needed)) continue;
    fitted ??= { ...w, scale: Float32Array.from(w.scale), q: Int8Array.from(w.q) };
    // Rounded up, so the float32 scale still holds the bias within 2^30.
    const scale = Math.fround(needed * (1 + 2 ** -20));
    for (let i = c * size; i < (c + 1) * size; i++) fitted.q[i] = roundHalfToEven((w.q[i]! * w.scale[c]!) / scale);
    fitted.scale[c] = scale;
  }
  return fitted ?? w;
}

/** One scale for the whole tensor. */
export function quantizePerTensor(w: Float32Array, options: WeightQuantOptions): QuantizedWeights {
  const g = new ChannelGroups(w, 1);
  const scale = chooseScale(g, [0], new Float64Array([1]), options);
  return finish(g, options, 'tensor', Float32Array.of(scale), { layerScale: scale });
}

/** One scale per output channel, each chosen on its own. */
export function quantizePerChannel(w: Float32Array, channels: number, options: WeightQuantOptions): QuantizedWeights {
  const g = new ChannelGroups(w, channels);
  const scale = new Float32Array(channels);
  const one = new Float64Array([1]);
  for (let c = 0; c < channels; c++) scale[c] = chooseScale(g, [c], one, options);
  return finish(g, options, 'channel', scale, {});
}

/** WESS: per-channel power-of-two shifts and one layer scale (see the module comment). */
export function quantizeWithShifts(
  w: Float32Array,
  channels: number,
  options: WeightQuantOptions & { shiftBits: number },
): QuantizedWeights {
  const g = new ChannelGroups(w, channels);
  const maxShift = 2 ** options.shiftBits - 1;
  if ((options.method ?? 'mse') === 'mse') {
    const { layerScale, shifts } = mseShifts(g, options, maxShift);
    const scale = Float32Array.from(shifts, (k) => layerScale * 2 ** -k);
    return finish(g, options, 'shift', scale, { layerScale, shifts, maxShift });
  }
  const reference = shiftReference(g.absMax, maxShift);
  const shifts = new Int32Array(channels);
  const factors = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    const k = shiftFor(g.absMax[c]!, reference, maxShift);
    shifts[c] = k;
    factors[c] = 2 ** -k;
  }
  const all = Array.from({ length: channels }, (_, c) => c);
  const s = chooseScale(g, all, factors, options);
  const scale = Float32Array.from(factors, (f) => s * f);
  return finish(g, options, 'shift', scale, { layerScale: s, shifts, maxShift, shiftReference: reference });
}

/**
 * WESS shifts of weights (output channels first) against a given reference range: per
 * channel the largest k ≤ maxShift with max|w|·2^k ≤ reference, the rule `quantizeWithShifts`
 * applies with 'minmax' scales. QFT re-chooses shifts this way between epochs, with PTQ's reference scaled as the
 * layer scale trained: a channel keeps its shift unless its trained range crossed a power of
 * two, so the rounding QFT has learned elsewhere stays where it was.
 */
export function shiftsForReference(w: Float32Array, channels: number, reference: number, maxShift: number): Int32Array {
  const g = new ChannelGroups(w, channels);
  return Int32Array.from(g.absMax, (m) => shiftFor(m, reference, maxShift));
}

/** The largest k ≤ maxShift with m·2^k ≤ reference (0 for an all-zero channel). */
function shiftFor(m: number, reference: number, maxShift: number): number {
  if (m <= 0) return 0;
  return Math.max(0, Math.min(maxShift, Math.floor(Math.log2(reference / m) + 1e-12)));
}

/** Candidate layer scales tried per octave by `mseShifts`. */
const LAYER_SCALE_STEPS = 48;

/**
 * WESS for least squared error: the layer scale s and the shifts k[c] that keep every
 * channel's error closest to what its own MSE-optimal scale would give (Σ log(err_c/own_c),
 * so the choice does not depend on how large each channel's weights are). For a given s each
 * channel takes the better of the two shifts around its own optimum (`ChannelOptima.shift`),
 * and s is searched over two octaves around the largest channel's own scale.
 */
function mseShifts(g: ChannelGroups, options: WeightQuantOptions, maxShift: number): { layerScale: number; shifts: Int32Array } {
  const optima = new ChannelOptima(g, options, maxShift);
  if (optima.top === 0) return { layerScale: 1, shifts: new Int32Array(g.channels) };
  const candidates = new Set(
    Array.from({ length: 2 * LAYER_SCALE_STEPS }, (_, i) =>
      toScale(optima.top * 2 ** (i / LAYER_SCALE_STEPS - 1), options.powerOfTwo ?? false),
    ),
  );
  let best = Infinity;
  let layerScale = optima.top;
  for (const s of candidates) {
    let score = 0;
    for (let c = 0; c < g.channels && score < best; c++) score += optima.shift(c, s).cost;
    if (score < best) {
      best = score;
      layerScale = s;
    }
  }
  return { layerScale, shifts: Int32Array.from({ length: g.channels }, (_, c) => optima.shift(c, layerScale).k) };
}

/**
 * WESS shifts of weights (output channels first) for a given layer scale, by the rule
 * `quantizeWithShifts` applies with MSE scales (each channel the shift whose grid gives it
 * the least squared error). QFT re-chooses shifts this way between epochs, with the layer
 * scale it trained.
 */
export function shiftsForScale(
  w: Float32Array,
  channels: number,
  layerScale: number,
  options: WeightQuantOptions & { maxShift: number },
): Int32Array {
  const optima = new ChannelOptima(new ChannelGroups(w, channels), options, options.maxShift);
  return Int32Array.from({ length: channels }, (_, c) => optima.shift(c, layerScale).k);
}

/**
 * The two shifts around each channel's own MSE-optimal scale under layer scale s (the finer
 * grid and the coarser one; equal where maxShift bounds them), for a rounding that judges
 * them by something other than weight error (`gptqRoundChoosing`).
 */
export function shiftChoices(
  w: Float32Array,
  channels: number,
  layerScale: number,
  options: WeightQuantOptions & { maxShift: number },
): [Int32Array, Int32Array] {
  const optima = new ChannelOptima(new ChannelGroups(w, channels), options, options.maxShift);
  const pairs = Array.from({ length: channels }, (_, c) => optima.around(c, layerScale));
  return [Int32Array.from(pairs, (p) => p[0]), Int32Array.from(pairs, (p) => p[1])];
}

/** Each channel's own MSE-optimal scale and error, against which shifted grids are scored. */
class ChannelOptima {
  /** The largest own scale (0 when every channel is zero). */
  readonly top: number = 0;
  private readonly own: Float64Array;
  private readonly ownError: Float64Array;
  private readonly floor: Float64Array;
  private readonly qmax: number;

  constructor(
    private readonly g: ChannelGroups,
    options: WeightQuantOptions,
    private readonly maxShift: number,
  ) {
    this.qmax = qmaxOf(options.bits);
    this.own = new Float64Array(g.channels);
    this.ownError = new Float64Array(g.channels);
    this.floor = new Float64Array(g.channels);
    const one = new Float64Array([1]);
    for (let c = 0; c < g.channels; c++) {
      if (g.absMax[c] === 0) continue;
      this.own[c] = chooseScale(g, [c], one, { ...options, method: 'mse', powerOfTwo: false });
      this.ownError[c] = channelError(g, c, this.own[c]!, this.qmax);
      let energy = 0;
      for (let i = c * g.size; i < (c + 1) * g.size; i++) energy += g.w[i]! * g.w[i]!;
      // 60 dB below the channel's energy: keeps channels that a grid represents exactly finite.
      this.floor[c] = 1e-6 * energy;
      this.top = Math.max(this.top, this.own[c]!);
    }
  }

  /**
   * Channel c's shift under layer scale s: of the two around its own optimum (the finer grid
   * with some clipping, or the coarser one without), the one with less squared error; `cost`
   * is log(err/own err), 0 for an all-zero channel.
   */
  shift(c: number, s: number): { k: number; cost: number } {
    if (this.g.absMax[c] === 0) return { k: 0, cost: 0 };
    let k = 0;
    let error = Infinity;
    for (const candidate of new Set(this.around(c, s))) {
      const e = channelError(this.g, c, Math.fround(s * 2 ** -candidate), this.qmax);
      if (e < error) {
        error = e;
        k = candidate;
      }
    }
    return { k, cost: Math.log(error + this.floor[c]!) - Math.log(this.ownError[c]! + this.floor[c]!) };
  }

  /** The coarser and the finer shift around channel c's own scale under layer scale s (0, 0 for an all-zero channel). */
  around(c: number, s: number): [number, number] {
    if (this.g.absMax[c] === 0) return [0, 0];
    const ideal = Math.log2(s / this.own[c]!);
    const clamp = (k: number) => Math.max(0, Math.min(this.maxShift, k));
    return [clamp(Math.floor(ideal)), clamp(Math.ceil(ideal))];
  }
}

/** Candidate references tried per octave by `shiftReference`. */
const REFERENCE_STEPS = 64;

/**
 * The range the shifted channels are fitted into. Shifting is by powers of two, so after
 * shifting each channel fills a fraction u[c] ∈ (1/2, 1] of the grid, and its resolution
 * (SQNR) grows with log u[c]. The layer maximum is one choice of reference; any value in
 * [max, 2·max) is another, with different fractions. This picks the one that maximizes
 * Σ log u[c], i.e. the mean per-channel resolution, which is what a per-channel quantizer
 * would give every channel in full.
 */
function shiftReference(absMax: Float64Array, maxShift: number): number {
  const layerMax = absMax.reduce((m, x) => Math.max(m, x), 0);
  if (layerMax === 0) return 0;
  let best = layerMax;
  let bestScore = -Infinity;
  for (let i = 0; i < REFERENCE_STEPS; i++) {
    const reference = layerMax * 2 ** (i / REFERENCE_STEPS);
    let score = 0;
    for (const m of absMax) if (m > 0) score += Math.log2((m * 2 ** shiftFor(m, reference, maxShift)) / reference);
    if (score > bestScore) {
      bestScore = score;
      best = reference;
    }
  }
  return best;
}

/** Quantizes a layer's weights the way `resolveLayer` says. */
export function quantizeWeights(
  w: Float32Array,
  channels: number,
  layer: LayerWeights,
  options: Omit<WeightQuantOptions, 'bits'> = {},
): QuantizedWeights {
  const opts = { ...options, bits: layer.bits };
  switch (layer.granularity) {
    case 'tensor':
      return quantizePerTensor(w, opts);
    case 'channel':
      return quantizePerChannel(w, channels, opts);
    case 'shift':
      return quantizeWithShifts(w, channels, { ...opts, shiftBits: layer.shiftBits });
  }
}

/** q · scale[c] as float32, in the input layout. */
export function dequantize(qw: QuantizedWeights): Float32Array {
  const out = new Float32Array(qw.q.length);
  const n = qw.q.length / qw.scale.length;
  for (let i = 0; i < out.length; i++) out[i] = qw.q[i]! * qw.scale[Math.floor(i / n)]!;
  return out;
}

/** 10·log10(Σx² / Σ(x − x̂)²); Infinity when the reconstruction is exact. */
export function sqnrDb(original: Float32Array, reconstructed: Float32Array): number {
  if (original.length !== reconstructed.length) {
    throw new RangeError(`sqnrDb: lengths differ (${original.length} vs ${reconstructed.length})`);
  }
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < original.length; i++) {
    const x = original[i]!;
    const e = x - reconstructed[i]!;
    signal += x * x;
    noise += e * e;
  }
  return noise === 0 ? Infinity : 10 * Math.log10(signal / noise);
}

/** Clipping ratios tried by the MSE search: 100 steps of max|w|·α, α from 1 down to 0.2. */
const MSE_RATIOS = Array.from({ length: 100 }, (_, i) => 1 - (0.8 * i) / 99);

/** The weights viewed as C_out contiguous channels, with each channel's max |w|. */
class ChannelGroups {
  readonly size: number;
  readonly absMax: Float64Array;

  constructor(
    readonly w: Float32Array,
    readonly channels: number,
  ) {
    if (!Number.isInteger(channels) || channels < 1 || w.length % channels !== 0) {
      throw new RangeError(`${w.length} weights do not split into ${channels} output channels`);
    }
    this.size = w.length / channels;
    this.absMax = new Float64Array(channels);
    for (let c = 0; c < channels; c++) {
      let m = 0;
      for (let i = c * this.size; i < (c + 1) * this.size; i++) m = Math.max(m, Math.abs(w[i]!));
      this.absMax[c] = m;
    }
  }
}

/** The largest integer of the narrow symmetric weight grid of `bits`: 7 for 4 bits, 127 for 8. */
export function qmaxOf(bits: number): number {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) throw new RangeError(`weight bits must be in 2..8, got ${bits}`);
  return 2 ** (bits - 1) - 1;
}

/**
 * The float32 scale s shared by the listed channels, channels[i] quantized with
 * s·factors[i]: the one minimizing Σ (w − q·s·f)² in the original domain ('mse'), or the
 * one covering the largest |w|/f exactly ('minmax'). Candidates are fractions of the latter.
 */
function chooseScale(g: ChannelGroups, channels: number[], factors: Float64Array, options: WeightQuantOptions): number {
  const qmax = qmaxOf(options.bits);
  let range = 0;
  for (let i = 0; i < channels.length; i++) range = Math.max(range, g.absMax[channels[i]!]! / factors[i]!);
  if (range === 0) return 1;
  const ratios = (options.method ?? 'mse') === 'mse' ? MSE_RATIOS : [1];
  const candidates = new Set(ratios.map((a) => toScale((a * range) / qmax, options.powerOfTwo ?? false)));
  if (candidates.size === 1) return [...candidates][0]!;
  let best = 0;
  let bestError = Infinity;
  for (const s of candidates) {
    let error = 0;
    for (let i = 0; i < channels.length; i++) error += channelError(g, channels[i]!, Math.fround(s * factors[i]!), qmax);
    if (error < bestError) {
      bestError = error;
      best = s;
    }
  }
  return best;
}

/**
 * Σ (w − q·scale)² over one channel: the search's hot loop. floor(x·(1/scale) + 0.5) is
 * several times faster than Math.round in V8 and differs from the final half-to-even rounding
 * only at exact ties, which never decide which scale wins.
 */
function channelError(g: ChannelGroups, c: number, scale: number, qmax: number): number {
  const w = g.w;
  const inv = 1 / scale;
  let error = 0;
  for (let j = c * g.size, end = (c + 1) * g.size; j < end; j++) {
    const x = w[j]!;
    let q = Math.floor(x * inv + 0.5);
    q = q > qmax ? qmax : q < -qmax ? -qmax : q;
    const e = x - q * scale;
    error += e * e;
  }
  return error;
}

function toScale(s: number, powerOfTwo: boolean): number {
  return powerOfTwo ? powerOfTwoCeil(s) : Math.fround(s);
}

/** w/scale rounded half to even onto the narrow grid [−qmax, qmax]: what every quantizer here stores. */
export function quantize(x: number, scale: number, qmax: number): number {
  return Math.max(-qmax, Math.min(qmax, roundHalfToEven(x / scale)));
}

function finish(
  g: ChannelGroups,
  options: WeightQuantOptions,
  granularity: WeightGranularity,
  scale: Float32Array,
  extra: { layerScale?: number; shifts?: Int32Array; maxShift?: number; shiftReference?: number },
): QuantizedWeights {
  const { bits, kernelTaps = 1 } = options;
  const qmax = qmaxOf(bits);
  const q = new Int8Array(g.w.length);
  const n = g.w.length / scale.length;
  for (let i = 0; i < q.length; i++) q[i] = quantize(g.w[i]!, scale[Math.floor(i / n)]!, qmax);
  if (kernelTaps > 1) preserveKernelSums(g.w, q, scale, kernelTaps, qmax);
  const qw: QuantizedWeights = { bits, granularity, scale, ...extra, q, sqnrDb: 0 };
  qw.sqnrDb = sqnrDb(g.w, dequantize(qw));
  return qw;
}

/**
 * Re-rounds, in place, the fewest weights of each kernel of `taps` consecutive values (one
 * input channel of one filter) needed to bring the sum of its integers within half a step of
 * the float kernel's sum Σw/s, each time the weight whose rounding the change costs least
 * (the DC part of clipping error is compensated too, where the grid has room).
 * Rounding each weight to nearest leaves a kernel-sum error that grows with √taps; a
 * convolution's response to the smooth (low-frequency) part of its input, most of a feature
 * map's energy, is that sum times the local mean, so at 4 bits this error dominates
 * depthwise layers.
 */
export function preserveKernelSums(w: Float32Array, q: Int8Array, scale: Float32Array, taps: number, qmax: number): void {
  const perChannel = w.length / scale.length;
  if (!Number.isInteger(taps) || taps < 1 || perChannel % taps)
    throw new RangeError(`${perChannel} weights per channel do not split into kernels of ${taps}`);
  for (let start = 0; start < w.length; start += taps) {
    const s = scale[Math.floor(start / perChannel)]!;
    let excess = 0;
    const target = (i: number) => w[i]! / s;
    for (let i = start; i < start + taps; i++) excess += q[i]! - target(i);
    while (Math.abs(excess) > 0.5) {
      const step = excess > 0 ? -1 : 1;
      let best = -1;
      let cost = Infinity;
      for (let i = start; i < start + taps; i++) {
        const r = q[i]! + step;
        if (r < -qmax || r > qmax) continue;
        const extra = Math.abs(r - target(i)) - Math.abs(q[i]! - target(i));
        if (extra < cost) {
          cost = extra;
          best = i;
        }
      }
      if (best < 0) break;
      q[best]! += step;
      excess += step;
    }
  }
}
