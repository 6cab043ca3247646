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

/**
 * TFLite's int8 requantization, as its reference kernels compute it
 * (tensorflow/lite/kernels/internal/common.h and quantization_util.cc). This is the default
 * build, which rounds twice: a rounding doubling high multiply by a Q0.31 multiplier, then a
 * rounding right shift. A TFLite built with TFLITE_SINGLE_ROUNDING rounds once (a 64-bit
 * product, one shift with round half up) and can differ by 1 at ties; it is not modelled.
 *
 * Multipliers keep this file's convention, real ≈ multiplier · 2^−shift: TFLite's own
 * `shift` (a left-shift exponent) is 31 − shift here.
 */

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * TFLite's QuantizeMultiplier: frexp splits the real multiplier into q·2^e with q in
 * [0.5, 1); q·2^31 rounded half away from zero is the Q0.31 multiplier, and a q that rounds
 * up to 2^31 carries into the exponent (2^30, e + 1). Multipliers below 2^−32 (e < −31)
 * flush to 0, as TFLite does to keep right shifts within 31 bits after the high multiply.
 * Returns the multiplier and the right shift 31 − e.
 */
export function quantizeMultiplierTflite(realMultiplier: number): FixedPointMultiplier {
  if (!(realMultiplier >= 0) || !Number.isFinite(realMultiplier)) {
    throw new RangeError(`real multiplier must be finite and non-negative, got ${realMultiplier}`);
  }
  if (realMultiplier === 0) return { multiplier: 0, shift: 31 };
  let e = floorLog2(realMultiplier) + 1;
  // std::round and Math.round agree on non-negative numbers: ties away from zero.
  let q = Math.round(realMultiplier * 2 ** (31 - e));
  if (q === 2 ** 31) {
    q = 2 ** 30;
    e += 1;
  }
  if (e < -31) return { multiplier: 0, shift: 31 };
  return { multiplier: q, shift: 31 - e };
}

/**
 * gemmlowp's SaturatingRoundingDoublingHighMul of two int32: the high 32 bits of 2·a·b, with
 * a nudge of 2^30 (1 − 2^30 for a negative product) before a division by 2^31 that truncates
 * toward zero, so ties round toward +∞. The one product that overflows,
 * INT32_MIN·INT32_MIN, saturates to INT32_MAX. Exact for all int32 inputs.
 */
export function saturatingRoundingDoublingHighMul(a: number, b: number): number {
  if (a === INT32_MIN && b === INT32_MIN) return INT32_MAX;
  const negative = a < 0 !== b < 0 && a !== 0 && b !== 0;
  // For a negative product, trunc((ab + 1 − 2^30) / 2^31) = −⌊(|ab| + 2^30 − 1) / 2^31⌋.
  const magnitude = floorHighMul(Math.abs(a), Math.abs(b), negative ? 2 ** 30 - 1 : 2 ** 30);
  return negative ? 0 - magnitude : magnitude;
}

/**
 * ⌊(a·b + c) / 2^31⌋ for 0 ≤ a, b ≤ 2^31 and 0 ≤ c < 2^31, exactly: b is split into 16-bit
 * halves so no partial product leaves float64's 53-bit mantissa.
 */
function floorHighMul(a: number, b: number, c: number): number {
  const hi = Math.floor(b / 65536);
  const carry = Math.floor((a * (b - hi * 65536) + c) / 65536);
  return Math.floor((a * hi + carry) / 32768);
}

/**
 * gemmlowp's RoundingDivideByPOT: x · 2^−exponent for an int32 x and exponent 0..31, rounded
 * half away from zero.
 */
export function roundingDivideByPOT(x: number, exponent: number): number {
  if (!Number.isInteger(exponent) || exponent < 0 || exponent > 31) {
    throw new RangeError(`RoundingDivideByPOT exponent must be an integer in 0..31, got ${exponent}`);
  }
  const d = 2 ** exponent;
  const q = Math.floor(x / d);
  const remainder = x - q * d;
  const threshold = Math.floor((d - 1) / 2) + (x < 0 ? 1 : 0);
  return remainder > threshold ? q + 1 : q;
}

/**
 * TFLite's MultiplyByQuantizedMultiplier(int32 x, multiplier, shift): with e = 31 − `shift`,
 * x is first shifted left by max(e, 0) in int32, then high-multiplied by the Q0.31
 * multiplier, then divided by 2^max(−e, 0) with rounding. `x` must be an int32 and stay one
 * after the left shift (TFLite's C++ would overflow); a right shift above 62 has no TFLite
 * form. Both are RangeErrors.
 */
export function multiplyByQuantizedMultiplierTflite(x: number, multiplier: number, shift: number): number {
  const e = 31 - shift;
  const shifted = e > 0 ? x * 2 ** e : x;
  if (shifted < INT32_MIN || shifted > INT32_MAX) {
    throw new RangeError(`${x}·2^${Math.max(e, 0)} leaves int32 before TFLite's requantization`);
  }
  return roundingDivideByPOT(saturatingRoundingDoublingHighMul(shifted, multiplier), e < 0 ? -e : 0);
}

/**
 * XNNPACK's requantization scale of a convolution, fully connected layer or multiplication
 * (TFLite's CPU path through its XNNPACK delegate): s_a·s_b/s_y with each step rounded to
 * float32, held exactly as M·2^−shift with M the 24-bit significand. Float32 ops are emulated
 * in float64 and rounded: a product of float32s is exact in float64 and a quotient rounds to
 * the same float32, so the bits are XNNPACK's.
 */
export function xnnpackScale(a: number, b: number, y: number): FixedPointMultiplier {
  const scale = Math.fround(Math.fround(Math.fround(a) * Math.fround(b)) / Math.fround(y));
  if (scale === 0) return { multiplier: 0, shift: 0 };
  const e = floorLog2(scale);
  return { multiplier: scale * 2 ** (23 - e), shift: 23 - e };
}

/**
 * XNNPACK's int8 → int8 conversion (TFLite QUANTIZE between two int8 grids, delegated):
 * M = lrintf(256·s_in/s_out) in float32, then q_out = z_out + ⌊((q_in − z_in)·M + 128) / 256⌋,
 * i.e. the half-up product of M·2^−8. XNNPACK takes scale ratios in [1/256, 128] only (a
 * RangeError otherwise: TFLite's own kernel would run).
 */
export function xnnpackConvertMultiplier(inputScale: number, outputScale: number): FixedPointMultiplier {
  const ratio = inputScale / outputScale;
  if (!(ratio >= 1 / 256 && ratio <= 128)) throw new RangeError(`scale ratio ${ratio} is outside XNNPACK's [1/256, 128] for int8 QUANTIZE`);
  return { multiplier: roundHalfToEven(Math.fround(Math.fround(256 * Math.fround(inputScale)) / Math.fround(outputScale))), shift: 8 };
}

/**
 * XNNPACK's parameters from `params`, or undefined where it refuses them with a RangeError:
 * the TFLite delegate then leaves the op to TFLite's own kernel.
 */
export function ifXnnpackTakes<T>(params: () => T): T | undefined {
  try {
    return params();
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

/**
 * XNNPACK's int8 ADD: the ratios s_a/s_y and s_b/s_y in float32, shift = 20 − ⌊log2⌋ of the
 * larger, each multiplier lrintf(ratio·2^shift); the output is the sum of the centred inputs
 * times their multipliers, rounded half up by the shift (its bias adds 2^(shift−1) before an
 * arithmetic shift). XNNPACK takes ratios in [1/1024, 256) only (a RangeError otherwise:
 * TFLite's own ADD runs).
 */
export function xnnpackAddMultipliers(a: number, b: number, y: number): { multipliers: [number, number]; shift: number } {
  const f = Math.fround;
  const [ra, rb] = [f(f(a) / f(y)), f(f(b) / f(y))];
  for (const r of [ra, rb])
    if (!(r >= 1 / 1024 && r < 256)) throw new RangeError(`ADD scale ratio ${r} is outside XNNPACK's [1/1024, 256)`);
  const shift = 20 - floorLog2(Math.max(ra, rb));
  return { multipliers: [roundHalfToEven(ra * 2 ** shift), roundHalfToEven(rb * 2 ** shift)], shift };
}

/**
 * XNNPACK's fp32 requantization of an integer accumulator: float32(acc)·scale in float32,
 * rounded half to even (its magic-bias add); the zero point and clamp follow.
 */
export function requantizeFp32(acc: number, scale: number): number {
  return roundHalfToEven(Math.fround(Math.fround(acc) * scale));
}

/**
 * acc / n rounded half away from zero as TFLite's integer AVERAGE_POOL_2D and MEAN compute
 * it: (acc ± ⌊n/2⌋) / n with C's truncating division.
 */
export function roundedDivideTflite(acc: number, n: number): number {
  const half = Math.floor(n / 2);
  return acc > 0 ? Math.floor((acc + half) / n) : 0 - Math.floor((half - acc) / n);
}
