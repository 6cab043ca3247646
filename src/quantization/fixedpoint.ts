import { QuantflowError } from '../util/errors.js';

/**
 * Integer arithmetic of the NPU's requantization step,
 *
 *   q_y[c] = clamp(roundingRightShift(acc[c] · M, n + k[c]) + z_y),
 *
 * shared by the bit-exact integer executor and everything that predicts it.
 *
 * Rounding convention: **round half up** (ties go toward +∞). It is what an "add 2^(s−1),
 * then arithmetic shift right" datapath computes, and it has a one-line float equivalent,
 * `floor(x · 2^−s + 0.5)` (ONNX `Floor(Add(Mul(x, 2^−s), 0.5))`). ONNX `Round` rounds ties
 * to even and must not be used to simulate it. The float form is exact only while the
 * product |acc · M| stays below 2^53 in float64 (e.g. 31-bit accumulators with multipliers of
 * at most 22 bits); beyond that only the integer path here is bit-exact.
 */

/** A real multiplier as `multiplier · 2^−shift`; a negative shift is a left shift. */
export interface FixedPointMultiplier {
  multiplier: number;
  shift: number;
}

/**
 * Decomposes a non-negative real multiplier (s_x · s_w / s_y) into an integer M and a right
 * shift, M · 2^−shift ≈ real, with M normalized into [2^(B−2), 2^(B−1)) for B =
 * `multiplierBits` — the top of the signed B-bit range, as in gemmlowp/TFLite — so the
 * relative error is at most 2^−(B−1).
 *
 * `shiftRange` is the target's [min, max] right shift. A multiplier too small for the
 * maximum shift keeps that shift and loses precision (M is denormalized, possibly to 0); one
 * too large for the minimum is not representable on the target and throws a QuantflowError.
 */
export function quantizeMultiplier(
  realMultiplier: number,
  multiplierBits: number,
  shiftRange?: readonly [number, number],
): FixedPointMultiplier {
  if (!Number.isInteger(multiplierBits) || multiplierBits < 2 || multiplierBits > 32) {
    throw new RangeError(`multiplierBits must be an integer in 2..32, got ${multiplierBits}`);
  }
  if (!(realMultiplier >= 0) || !Number.isFinite(realMultiplier)) {
    throw new RangeError(`real multiplier must be finite and non-negative, got ${realMultiplier}`);
  }
  if (realMultiplier === 0) return { multiplier: 0, shift: shiftRange ? shiftRange[0] : 0 };
  const top = 2 ** (multiplierBits - 1);
  let shift = multiplierBits - 2 - floorLog2(realMultiplier);
  let multiplier = Math.round(realMultiplier * 2 ** shift);
  if (multiplier === top) {
    multiplier /= 2;
    shift -= 1;
  }
  if (shiftRange) {
    const [minShift, maxShift] = shiftRange;
    if (shift < minShift) {
      throw new QuantflowError(
        `requantization multiplier ${realMultiplier} needs a right shift of ${shift}, below the target's minimum ${minShift}`,
      );
    }
    if (shift > maxShift) {
      multiplier = Math.round(realMultiplier * 2 ** maxShift);
      shift = maxShift;
    }
  }
  return { multiplier, shift };
}

/** ⌊log2 x⌋ for x > 0, corrected where Math.log2 rounds across a power of two. */
function floorLog2(x: number): number {
  let e = Math.floor(Math.log2(x));
  if (2 ** e > x) e -= 1;
  else if (2 ** (e + 1) <= x) e += 1;
  return e;
}

/**
 * x · 2^−n rounded half up, exactly, for a safe integer x. n ≤ 0 shifts left (exact while the
 * result is a safe integer).
 */
export function roundingRightShift(x: number, n: number): number {
  if (n <= 0) return x * 2 ** -n;
  const d = 2 ** n;
  const q = Math.floor(x / d);
  return x - q * d >= d / 2 ? q + 1 : q;
}

/**
 * acc · M · 2^−shift rounded half up: the requantization product before the zero point and
 * clamp. Exact for any safe integer acc and integer M in [0, 2^32) whenever the result is a
 * safe integer. For |acc| < 2^36 the product is never formed: M is split into 16-bit halves
 * so every partial product fits a float64 mantissa; wider accumulators (16-bit activations
 * with a wide accumulator) take the slower BigInt path. `shift` is the total right shift
 * (n + k[c] with WESS).
 */
export function multiplyByQuantizedMultiplier(acc: number, multiplier: number, shift: number): number {
  if (Math.abs(acc) >= 2 ** 36) {
    const p = BigInt(acc) * BigInt(multiplier);
    // >> on a BigInt is an arithmetic shift, i.e. floor division, so adding half first rounds half up.
    return Number(shift <= 0 ? p << BigInt(-shift) : (p + (1n << BigInt(shift - 1))) >> BigInt(shift));
  }
  const hi = Math.floor(multiplier / 65536);
  const a = acc * hi;
  const b = acc * (multiplier - hi * 65536);
  // acc·M = a·2^16 + b; for shift > 16, ⌊(a·2^16 + b + 2^(shift−1)) / 2^shift⌋ equals
  // roundingRightShift(a + ⌊b / 2^16⌋, shift − 16), so only the low 16 bits of b are dropped
  // (they cannot change the result) and nothing exceeds 2^53.
  if (shift > 16) return roundingRightShift(a + Math.floor(b / 65536), shift - 16);
  return a * 2 ** (16 - shift) + roundingRightShift(b, shift);
}

/**
 * Nearest integer with ties to even: how every float is turned into an integer offline
 * (weights, zero points). It is ONNX QuantizeLinear's rounding, so a QDQ graph that
 * re-quantizes a float in onnxruntime gets the same integers.
 */
export function roundHalfToEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The smallest power of two ≥ x > 0: a power-of-two scale that still covers the range. */
export function powerOfTwoCeil(x: number): number {
  const p = 2 ** floorLog2(x);
  return p < x ? p * 2 : p;
}
