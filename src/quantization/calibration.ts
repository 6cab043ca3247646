import { QuantflowError } from '../util/errors.js';
import { powerOfTwoCeil, roundHalfToEven } from './fixedpoint.js';
import type { Grid } from './grid.js';

/**
 * Activation calibration: streaming observers that summarize every value a tensor takes on
 * the calibration images in bounded memory, and the per-tensor quantization parameters
 * derived from their range.
 *
 * Grids: asymmetric activations use the unsigned grid [0, 2^b − 1] with an integer zero
 * point, so real 0 (padding, ReLU) is exactly representable; symmetric ones use the signed
 * grid [−2^(b−1), 2^(b−1) − 1] with zero point 0 and scale max|x| / (2^(b−1) − 1). Every
 * range an observer returns contains 0, and is [−a, a] when symmetric.
 */

/** minmax: observed extremes; percentile: the observer's percentile; mse: least squared error. */
export type RangeMethod = 'minmax' | 'percentile' | 'mse';

export interface ActivationRange {
  min: number;
  max: number;
}

export interface Observer {
  /** Accumulates a batch of values; nothing of the batch is kept. */
  observe(values: Float32Array): void;
  /** The real range the grid of `bits` should cover. Throws if nothing was observed. */
  range(method: RangeMethod, bits: number, symmetric: boolean): ActivationRange;
}

/** Tracks extremes only; supports the 'minmax' method. */
export class MinMaxObserver implements Observer {
  min = Infinity;
  max = -Infinity;
  count = 0;

  observe(values: Float32Array): void {
    const s = scan(values);
    this.min = Math.min(this.min, s.min);
    this.max = Math.max(this.max, s.max);
    this.count += values.length;
  }

  range(method: RangeMethod, _bits: number, symmetric: boolean): ActivationRange {
    if (method !== 'minmax') throw new Error(`MinMaxObserver keeps no histogram: use HistogramObserver for '${method}'`);
    if (this.count === 0) throw new Error('MinMaxObserver.range: no values observed');
    return gridRange(this.min, this.max, symmetric);
  }
}

export interface HistogramOptions {
  /** Number of bins; default 2048. */
  bins?: number;
  /** Percentile used by range('percentile'), in (50, 100]; default 99.99. */
  percentile?: number;
}

/** A snapshot of a histogram: bin i covers [lo + i·width, lo + (i+1)·width). */
export interface Histogram {
  lo: number;
  width: number;
  counts: Float64Array;
}

/**
 * A fixed number of equal-width bins over a range that always contains 0 (as the final
 * grid must) and grows as data arrives: when a batch falls outside it, the range is
 * extended and the bin width multiplied by a power of two, with bin boundaries kept aligned
 * so that each old bin lands whole in one new bin and no count is smeared. Memory is
 * O(bins) whatever the number of values. Within a bin values are modelled as uniform.
 */
export class HistogramObserver implements Observer {
  readonly bins: number;
  readonly percentileForRange: number;
  min = Infinity;
  max = -Infinity;
  count = 0;
  /** Exact zeros: exactly representable on every grid, so they add no rounding error. */
  private zeros = 0;
  private counts: Float64Array;
  private lo = 0;
  /** 0 while every observed value is 0 (no scale to bin them on yet). */
  private width = 0;

  constructor(options: HistogramOptions = {}) {
    this.bins = options.bins ?? 2048;
    this.percentileForRange = options.percentile ?? 99.99;
    if (!Number.isInteger(this.bins) || this.bins < 16) throw new RangeError(`bins must be an integer ≥ 16, got ${this.bins}`);
    if (!(this.percentileForRange > 50 && this.percentileForRange <= 100)) {
      throw new RangeError(`percentile must be in (50, 100], got ${this.percentileForRange}`);
    }
    this.counts = new Float64Array(this.bins);
  }

  observe(values: Float32Array): void {
    if (values.length === 0) return;
    const s = scan(values);
    const before = this.count;
    this.min = Math.min(this.min, s.min);
    this.max = Math.max(this.max, s.max);
    this.count += values.length;
    this.zeros += s.zeros;
    const lo = Math.min(this.min, 0);
    const hi = Math.max(this.max, 0);
    if (lo === hi) return;
    if (this.width === 0) {
      this.lo = lo;
      this.width = (hi - lo) / this.bins;
      this.counts[this.binOf(0)]! += before;
    } else if (lo < this.lo || hi > this.lo + this.bins * this.width) {
      this.grow(lo, hi);
    }
    for (let i = 0; i < values.length; i++) this.counts[this.binOf(values[i]!)]! += 1;
  }

  /** The value below which p% of the observed values lie (0 ≤ p ≤ 100), interpolated in its bin. */
  percentile(p: number): number {
    if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be in [0, 100], got ${p}`);
    this.requireData();
    if (this.width === 0) return 0;
    const target = (p / 100) * this.count;
    let below = 0;
    for (let i = 0; i < this.bins; i++) {
      const n = this.counts[i]!;
      if (n > 0 && below + n >= target) {
        const x = this.lo + (i + (target - below) / n) * this.width;
        return Math.min(this.max, Math.max(this.min, x));
      }
      below += n;
    }
    return this.max;
  }

  range(method: RangeMethod, bits: number, symmetric: boolean): ActivationRange {
    this.requireData();
    switch (method) {
      case 'minmax':
        return gridRange(this.min, this.max, symmetric);
      case 'percentile':
        return gridRange(this.percentile(100 - this.percentileForRange), this.percentile(this.percentileForRange), symmetric);
      case 'mse':
        return this.mseRange(bits, symmetric);
    }
  }

  /** A copy of the current bins, for reports and plots. */
  histogram(): Histogram {
    return { lo: this.lo, width: this.width, counts: this.counts.slice() };
  }

  /**
   * The clipping range that minimizes the expected squared error of quantizing the observed
   * values: clipped values cost their squared distance to the grid's end, the others
   * step²/12 (uniform rounding noise), exact zeros nothing. Searches fractions of the
   * observed extremes, one per side (two-dimensional when asymmetric).
   */
  private mseRange(bits: number, symmetric: boolean): ActivationRange {
    checkActivationBits(bits);
    if (this.width === 0) return { min: 0, max: 0 };
    const model = new BinModel(this.lo, this.width, this.counts);
    const rounding = (lo: number, hi: number, step: number): number =>
      (Math.max(0, this.count - this.zeros - model.massBelow(lo) - (this.count - model.massBelow(hi))) * (step * step)) / 12;
    let best = { min: 0, max: 0 };
    let bestError = Infinity;
    const consider = (min: number, max: number, error: number): void => {
      if (error < bestError) {
        bestError = error;
        best = { min, max };
      }
    };
    if (symmetric) {
      const qmax = 2 ** (bits - 1) - 1;
      const amax = Math.max(-this.min, this.max);
      for (const f of MSE_FRACTIONS) {
        const t = amax * f;
        const step = t / qmax;
        const low = -(qmax + 1) * step;
        consider(0 - t, t, model.clipBelow(low) + model.clipAbove(t) + rounding(low, t, step));
      }
      return best;
    }
    const levels = 2 ** bits - 1;
    const lows = this.min < 0 ? MSE_FRACTIONS.map((f) => this.min * f) : [0];
    const highs = this.max > 0 ? MSE_FRACTIONS.map((f) => this.max * f) : [0];
    for (const lo of lows) {
      const below = model.clipBelow(lo);
      for (const hi of highs) {
        consider(lo, hi, below + model.clipAbove(hi) + rounding(lo, hi, (hi - lo) / levels));
      }
    }
    return best;
  }

  private binOf(x: number): number {
    const i = Math.floor((x - this.lo) / this.width);
    return i < 0 ? 0 : i >= this.bins ? this.bins - 1 : i;
  }

  /** Extends the bins to cover [lo, hi]: m old bins prepended, width multiplied by f = 2^j. */
  private grow(lo: number, hi: number): void {
    const m = Math.max(0, Math.ceil((this.lo - lo) / this.width));
    const span = m + Math.max(this.bins, Math.ceil((hi - this.lo) / this.width));
    let f = 1;
    while (f * this.bins < span) f *= 2;
    const counts = new Float64Array(this.bins);
    for (let i = 0; i < this.bins; i++) counts[Math.floor((m + i) / f)]! += this.counts[i]!;
    this.counts = counts;
    this.lo -= m * this.width;
    this.width *= f;
  }

  private requireData(): void {
    if (this.count === 0) throw new Error('HistogramObserver: no values observed');
  }
}

/** Candidate clipping fractions of the extremes: 256 geometric steps from 1 down to 2^−9. */
const MSE_FRACTIONS = Array.from({ length: 256 }, (_, j) => 2 ** ((-9 * j) / 255));

/**
 * Squared-error sums over a histogram in O(1) per query, from prefix sums of count, count·c
 * and count·c² (c the bin centre); a bin cut by the clipping point is integrated exactly
 * under the uniform-within-bin model.
 */
class BinModel {
  private readonly p0: Float64Array;
  private readonly p1: Float64Array;
  private readonly p2: Float64Array;
  private readonly hi: number;

  constructor(
    private readonly lo: number,
    private readonly width: number,
    private readonly counts: Float64Array,
  ) {
    const n = counts.length;
    this.hi = lo + n * width;
    this.p0 = new Float64Array(n + 1);
    this.p1 = new Float64Array(n + 1);
    this.p2 = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) {
      const c = lo + (i + 0.5) * width;
      this.p0[i + 1] = this.p0[i]! + counts[i]!;
      this.p1[i + 1] = this.p1[i]! + counts[i]! * c;
      this.p2[i + 1] = this.p2[i]! + counts[i]! * c * c;
    }
  }

  /** Number of values below x. */
  massBelow(x: number): number {
    if (x <= this.lo) return 0;
    if (x >= this.hi) return this.p0[this.counts.length]!;
    const i = this.binOf(x);
    return this.p0[i]! + (this.counts[i]! * (x - this.lo - i * this.width)) / this.width;
  }

  /** Σ (t − v)² over values v < t. */
  clipBelow(t: number): number {
    if (t <= this.lo) return 0;
    if (t >= this.hi) return this.full(0, this.counts.length, t);
    const i = this.binOf(t);
    const cut = t - (this.lo + i * this.width);
    return this.full(0, i, t) + (this.counts[i]! * cut ** 3) / (3 * this.width);
  }

  /** Σ (v − t)² over values v > t. */
  clipAbove(t: number): number {
    const n = this.counts.length;
    if (t >= this.hi) return 0;
    if (t <= this.lo) return this.full(0, n, t);
    const i = this.binOf(t);
    const cut = this.lo + (i + 1) * this.width - t;
    return this.full(i + 1, n, t) + (this.counts[i]! * cut ** 3) / (3 * this.width);
  }

  /** Σ over whole bins [a, b) of E[(v − t)²] = (c − t)² + width²/12 per value. */
  private full(a: number, b: number, t: number): number {
    const s0 = this.p0[b]! - this.p0[a]!;
    const s1 = this.p1[b]! - this.p1[a]!;
    const s2 = this.p2[b]! - this.p2[a]!;
    return Math.max(0, s2 - 2 * t * s1 + t * t * s0) + (s0 * this.width * this.width) / 12;
  }

  private binOf(x: number): number {
    return Math.min(this.counts.length - 1, Math.floor((x - this.lo) / this.width));
  }
}

/**
 * Per-tensor scale and zero point covering `range` (extended to contain 0). Asymmetric: the
 * zero point is the integer nearest −min/scale, so a range with min ≥ 0 (a ReLU output) gets
 * zero point 0. An all-zero range gets scale 1. `powerOfTwo` rounds the scale up to a power
 * of two (a profile's `powerOfTwoScales`), keeping the range covered.
 */
export function activationQuantParams(
  range: ActivationRange,
  bits: number,
  symmetric: boolean,
  options: { powerOfTwo?: boolean } = {},
): Grid {
  checkActivationBits(bits);
  const { min, max } = gridRange(range.min, range.max, symmetric);
  const qmin = symmetric ? -(2 ** (bits - 1)) : 0;
  const qmax = symmetric ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  let scale = symmetric ? max / qmax : (max - min) / qmax;
  if (scale === 0) scale = 1;
  scale = options.powerOfTwo ? powerOfTwoCeil(scale) : Math.fround(scale);
  const zeroPoint = symmetric ? 0 : Math.min(qmax, Math.max(0, roundHalfToEven(-min / scale)));
  return { scale, zeroPoint, qmin, qmax };
}

function checkActivationBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 2 || bits > 16) throw new RangeError(`activation bits must be in 2..16, got ${bits}`);
}

/** [min, max] extended to contain 0, made [−a, a] when symmetric. */
function gridRange(min: number, max: number, symmetric: boolean): ActivationRange {
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  if (!symmetric) return { min: lo, max: hi };
  const a = Math.max(-lo, hi);
  return { min: 0 - a, max: a };
}

/** Extremes and exact zeros of a batch; a NaN or infinity means a broken model, not data to clip. */
function scan(values: Float32Array): { min: number; max: number; zeros: number } {
  let min = Infinity;
  let max = -Infinity;
  let zeros = 0;
  // v − v is NaN exactly for NaN and ±infinity, which comparisons alone would skip.
  let poison = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    if (v === 0) zeros++;
    poison += v - v;
  }
  if (Number.isNaN(poison)) throw new QuantflowError('calibration met a NaN or infinite activation value');
  return { min, max, zeros };
}
