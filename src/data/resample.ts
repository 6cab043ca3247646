/**
 * Bilinear resizing that reproduces Pillow's `Image.resize(size, BILINEAR)` bit for bit:
 * the reference predictions in ../shared/reference and torchvision's ImageNet transforms
 * both resize with Pillow, and matching its integer arithmetic (fixed-point weights, an
 * 8-bit image between the horizontal and the vertical pass) is what makes our
 * predictions agree with theirs on every image. sharp's own linear resize places pixel
 * centres differently and agrees on only ~89%.
 */

/** An integer rectangle. */
export interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Per-channel `value * scale + bias`, applied to the final 8-bit values. */
export interface Normalization {
  scale: readonly number[];
  bias: readonly number[];
}

/** Pillow's PRECISION_BITS for 8-bit images: weights are fixed-point with 22 fraction bits. */
const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

/**
 * Pillow's clip8 without the clipping: bilinear weights are non-negative and each set sums
 * to ONE within rounding (at most n/2 over), so a sum of 8-bit values, with HALF added for
 * rounding, always shifts down into 0..255.
 */
function toByte(sum: number): number {
  return sum >> PRECISION_BITS;
}

/** For each output pixel of one axis: its first source index, tap count and integer weights. */
interface Taps {
  first: Int32Array;
  count: Int32Array;
  /** `stride` slots per output pixel. */
  weights: Int32Array;
  stride: number;
}

/**
 * Pillow's precompute_coeffs + normalize_coeffs_8bpc for the triangle (bilinear) filter,
 * resizing `inSize` pixels to `outSize` and keeping outputs `from .. from + count - 1`.
 * When shrinking, the filter widens by the scale factor (antialiasing).
 */
function computeTaps(inSize: number, outSize: number, from: number, count: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(count);
  const counts = new Int32Array(count);
  const weights = new Int32Array(count * stride);
  const w = new Float64Array(stride);
  const fixed = new Int32Array(stride);
  const ss = 1 / filterScale;
  for (let i = 0; i < count; i++) {
    const centre = (from + i + 0.5) * scale;
    // Math.trunc as C's (int) cast: rounds toward zero, also for the negative ones clamped below.
    const lo = Math.max(0, Math.trunc(centre - support + 0.5));
    const n = Math.min(inSize, Math.trunc(centre + support + 0.5)) - lo;
    let sum = 0;
    for (let k = 0; k < n; k++) {
      const t = Math.abs((k + lo - centre + 0.5) * ss);
      w[k] = t < 1 ? 1 - t : 0;
      sum += w[k]!;
    }
    for (let k = 0; k < n; k++) {
      const v = sum !== 0 ? w[k]! / sum : w[k]!;
      fixed[k] = Math.trunc(v < 0 ? -0.5 + v * ONE : 0.5 + v * ONE);
    }
    // Taps that round to zero add nothing: dropping those at either end keeps Pillow's result and saves work.
    let a = 0;
    let b = n;
    while (a < b && fixed[a] === 0) a++;
    while (b > a && fixed[b - 1] === 0) b--;
    first[i] = lo + a;
    counts[i] = b - a;
    weights.set(fixed.subarray(a, b), i * stride);
  }
  return { first, count: counts, weights, stride };
}

/**
 * Pillow's `image.crop(crop).resize(size, BILINEAR)` followed by taking `window` of the
 * result, on interleaved 8-bit RGB `src` (`srcW` wide). Writes the window normalized, as
 * planar (CHW) float32, into `out` at `offset`. Only the rows and columns the window needs
 * are computed.
 */
export function cropResize(
  src: Uint8Array,
  srcW: number,
  crop: Rect,
  size: { width: number; height: number },
  window: Rect,
  norm: Normalization,
  out: Float32Array,
  offset: number,
): void {
  const tx = computeTaps(crop.width, size.width, window.left, window.width);
  const ty = computeTaps(crop.height, size.height, window.top, window.height);
  const outW = window.width;
  const outH = window.height;
  // Horizontal pass over the crop rows the vertical pass reads, to 8-bit as Pillow does;
  // stored planar so that the vertical pass reads contiguous rows.
  const rowLo = ty.first[0]!;
  const rowHi = ty.first[outH - 1]! + ty.count[outH - 1]!;
  const planeLen = (rowHi - rowLo) * outW;
  const rows = new Uint8Array(3 * planeLen);
  for (let r = rowLo; r < rowHi; r++) {
    horizontalRow(src, ((crop.top + r) * srcW + crop.left) * 3, tx, rows, (r - rowLo) * outW, planeLen);
  }
  const plane = outW * outH;
  const lut = new Float32Array(256);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < 256; v++) lut[v] = v * norm.scale[c]! + norm.bias[c]!;
    for (let i = 0; i < outH; i++) {
      const o = offset + c * plane + i * outW;
      const wi = i * ty.stride;
      const row = c * planeLen + (ty.first[i]! - rowLo) * outW;
      const n = ty.count[i]!;
      if (n === 1) {
        // A single tap has weight ONE: the row passes through.
        for (let j = 0; j < outW; j++) out[o + j] = lut[rows[row + j]!]!;
      } else if (n === 2) {
        // Enlarging: always two taps. Worth its own loop, it is most of the work.
        const w0 = ty.weights[wi]!;
        const w1 = ty.weights[wi + 1]!;
        const next = row + outW;
        for (let j = 0; j < outW; j++) out[o + j] = lut[toByte(HALF + w0 * rows[row + j]! + w1 * rows[next + j]!)]!;
      } else {
        for (let j = 0; j < outW; j++) {
          let sum = HALF;
          for (let k = 0; k < n; k++) sum += ty.weights[wi + k]! * rows[row + k * outW + j]!;
          out[o + j] = lut[toByte(sum)]!;
        }
      }
    }
  }
}

/** Filters one interleaved RGB source row into one row of each of three planes. */
function horizontalRow(src: Uint8Array, from: number, tx: Taps, rows: Uint8Array, to: number, planeLen: number): void {
  const { first, count, weights, stride } = tx;
  for (let i = 0; i < first.length; i++) {
    const p = from + first[i]! * 3;
    const wi = i * stride;
    if (count[i] === 1) {
      // A single tap has weight ONE: the pixel passes through.
      rows[to + i] = src[p]!;
      rows[planeLen + to + i] = src[p + 1]!;
      rows[2 * planeLen + to + i] = src[p + 2]!;
      continue;
    }
    let red = HALF;
    let green = HALF;
    let blue = HALF;
    if (count[i] === 2) {
      const w0 = weights[wi]!;
      const w1 = weights[wi + 1]!;
      red += w0 * src[p]! + w1 * src[p + 3]!;
      green += w0 * src[p + 1]! + w1 * src[p + 4]!;
      blue += w0 * src[p + 2]! + w1 * src[p + 5]!;
    } else {
      for (let k = 0, q = p; k < count[i]!; k++, q += 3) {
        const w = weights[wi + k]!;
        red += w * src[q]!;
        green += w * src[q + 1]!;
        blue += w * src[q + 2]!;
      }
    }
    rows[to + i] = toByte(red);
    rows[planeLen + to + i] = toByte(green);
    rows[2 * planeLen + to + i] = toByte(blue);
  }
}
