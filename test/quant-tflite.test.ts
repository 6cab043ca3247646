import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  multiplyByQuantizedMultiplierTflite,
  quantizeMultiplierTflite,
  roundedDivideTflite,
  requantizeFp32,
  roundingDivideByPOT,
  saturatingRoundingDoublingHighMul,
  roundingRightShift,
  xnnpackAddMultipliers,
  xnnpackConvertMultiplier,
  xnnpackScale,
} from '../src/quantization/fixedpoint.js';
import { loadProfile, parseProfile, tfliteKernels } from '../src/quantization/profile.js';
import { QuantflowError } from '../src/util/errors.js';

// Expected values are worked out by hand from TFLite's definitions (common.h, gemmlowp's
// fixedpoint.h, quantization_util.cc); shifts are right shifts, 31 − TFLite's exponent.

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

test('quantizeMultiplierTflite: frexp, Q0.31 rounded half away from zero, the 2^31 carry, flush below 2^−32', () => {
  assert.deepEqual(quantizeMultiplierTflite(0.5), { multiplier: 2 ** 30, shift: 31 });
  assert.deepEqual(quantizeMultiplierTflite(1), { multiplier: 2 ** 30, shift: 30 });
  // 3 = 0.75·2^2: a left shift of 2
  assert.deepEqual(quantizeMultiplierTflite(3), { multiplier: 0.75 * 2 ** 31, shift: 29 });
  // (2^30 + ½)·2^−31: the tie rounds away from zero
  assert.deepEqual(quantizeMultiplierTflite(0.5 + 2 ** -32), { multiplier: 2 ** 30 + 1, shift: 31 });
  // q·2^31 = 2^31 − ¼ rounds to 2^31, which carries: 2^30 with the exponent one higher
  assert.deepEqual(quantizeMultiplierTflite(1 - 2 ** -33), { multiplier: 2 ** 30, shift: 30 });
  // 2^−32 = 0.5·2^−31 is the smallest kept (right shift 62); 2^−33 flushes to zero
  assert.deepEqual(quantizeMultiplierTflite(2 ** -32), { multiplier: 2 ** 30, shift: 62 });
  assert.deepEqual(quantizeMultiplierTflite(2 ** -33), { multiplier: 0, shift: 31 });
  assert.deepEqual(quantizeMultiplierTflite(0), { multiplier: 0, shift: 31 });
  assert.throws(() => quantizeMultiplierTflite(-1), RangeError);
});

test('saturatingRoundingDoublingHighMul: ties toward +∞, truncation of negative products, INT32_MIN² saturates', () => {
  assert.equal(saturatingRoundingDoublingHighMul(2 ** 30, 2 ** 30), 2 ** 29);
  // 2·1·2^30 / 2^32 = 0.5 → 1; −0.5 → 0; 1.5 → 2; −1.5 → −1
  assert.equal(saturatingRoundingDoublingHighMul(1, 2 ** 30), 1);
  assert.equal(saturatingRoundingDoublingHighMul(-1, 2 ** 30), 0);
  assert.equal(saturatingRoundingDoublingHighMul(3, 2 ** 30), 2);
  assert.equal(saturatingRoundingDoublingHighMul(-3, 2 ** 30), -1);
  // (2^31 − 1)² / 2^31 = 2^31 − 2 + (1 + 2^30)/2^31 → 2^31 − 2
  assert.equal(saturatingRoundingDoublingHighMul(INT32_MAX, INT32_MAX), INT32_MAX - 1);
  // −2^31·(2^31 − 1) / 2^31 = −(2^31 − 1), exactly
  assert.equal(saturatingRoundingDoublingHighMul(INT32_MIN, INT32_MAX), -INT32_MAX);
  assert.equal(saturatingRoundingDoublingHighMul(INT32_MIN, INT32_MIN), INT32_MAX);
});

test('saturatingRoundingDoublingHighMul equals the 64-bit C expression on random int32 pairs', () => {
  let seed = 7;
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed;
  };
  for (let i = 0; i < 2000; i++) {
    const a = next() - (i % 2 ? 2 ** 31 : 0);
    const b = i % 3 ? next() : next() >> (i % 31);
    const ab = BigInt(a) * BigInt(b);
    // BigInt division truncates toward zero, like C's int64 division
    const want = Number((ab + (ab >= 0n ? 1n << 30n : 1n - (1n << 30n))) / (1n << 31n));
    assert.equal(saturatingRoundingDoublingHighMul(a, b), want, `${a}·${b}`);
  }
});

test('roundingDivideByPOT: ties away from zero, exponents 0..31', () => {
  const cases: [number, number, number][] = [
    [5, 1, 3],
    [-5, 1, -3],
    [3, 1, 2],
    [-3, 1, -2],
    [6, 2, 2],
    [-6, 2, -2],
    [-5, 2, -1],
    [-7, 2, -2],
    [-4, 2, -1],
    [7, 0, 7],
    [2 ** 30, 31, 1],
    [-(2 ** 30), 31, -1],
    [2 ** 30 - 1, 31, 0],
    [INT32_MIN, 31, -1],
    [INT32_MAX, 31, 1],
  ];
  for (const [x, e, want] of cases) assert.equal(roundingDivideByPOT(x, e), want, `${x} / 2^${e}`);
  assert.throws(() => roundingDivideByPOT(1, 32), RangeError);
});

test('multiplyByQuantizedMultiplierTflite: double rounding, left shifts for multipliers ≥ 1, right shifts up to 62', () => {
  // ×0.5 (M = 2^30, e = 0): 1.5 → 2 and −1.5 → −1 in the high multiply alone
  assert.equal(multiplyByQuantizedMultiplierTflite(3, 2 ** 30, 31), 2);
  assert.equal(multiplyByQuantizedMultiplierTflite(-3, 2 ** 30, 31), -1);
  // ×0.25 (M = 2^30, e = −1): the high multiply rounds 0.5 up to 1, then the shift rounds
  // 0.5 away from zero: 0.25 → 1, where one rounding gives 0; −0.5 → −1 (half up gives 0).
  assert.equal(multiplyByQuantizedMultiplierTflite(1, 2 ** 30, 32), 1);
  assert.equal(multiplyByQuantizedMultiplierTflite(-1, 2 ** 30, 32), 0);
  assert.equal(multiplyByQuantizedMultiplierTflite(-2, 2 ** 30, 32), -1);
  assert.equal(multiplyByQuantizedMultiplierTflite(3, 2 ** 30, 32), 1);
  // ×3 (M = 0.75·2^31, e = 2): x·4 first, then ×0.75
  assert.equal(multiplyByQuantizedMultiplierTflite(5, 0.75 * 2 ** 31, 29), 15);
  assert.equal(multiplyByQuantizedMultiplierTflite(-7, 0.75 * 2 ** 31, 29), -21);
  assert.throws(() => multiplyByQuantizedMultiplierTflite(2 ** 30, 0.75 * 2 ** 31, 29), RangeError);
  // ×2^−32 (right shift 62): (2^31 − 1)/2 = 2^30 − ½ → 2^30, then 2^30 / 2^31 = ½ → 1
  assert.equal(multiplyByQuantizedMultiplierTflite(INT32_MAX, 2 ** 30, 62), 1);
  assert.equal(multiplyByQuantizedMultiplierTflite(INT32_MIN, 2 ** 30, 62), -1);
  assert.equal(multiplyByQuantizedMultiplierTflite(2 ** 30, 2 ** 30, 62), 0);
  assert.throws(() => multiplyByQuantizedMultiplierTflite(1, 2 ** 30, 63), RangeError);
  // A typical convolution: acc −1000 × 0.0123 → −12.3 → −12; 1000 → 12
  const m = quantizeMultiplierTflite(0.0123);
  assert.equal(multiplyByQuantizedMultiplierTflite(-1000, m.multiplier, m.shift), -12);
  assert.equal(multiplyByQuantizedMultiplierTflite(1000, m.multiplier, m.shift), 12);
});

test('roundedDivideTflite: (acc ± ⌊n/2⌋) / n truncated, ties away from zero', () => {
  const cases: [number, number, number][] = [
    [5, 2, 3],
    [-5, 2, -3],
    [6, 4, 2],
    [-6, 4, -2],
    [7, 4, 2],
    [-5, 4, -1],
    [4, 3, 1],
    [-4, 3, -1],
    [0, 4, 0],
  ];
  for (const [acc, n, want] of cases) assert.equal(roundedDivideTflite(acc, n), want, `${acc} / ${n}`);
});

test('tflite-int8 profile: per-channel int8 weights, uint8-equivalent activations, TFLite rounding', () => {
  const p = loadProfile('tflite-int8');
  assert.deepEqual(p.weights, { bits: 8, allowed: [8], granularity: 'channel', shiftBits: 4, symmetric: true });
  assert.deepEqual(p.activations, { bits: 8, allowed: [8], symmetric: false });
  assert.deepEqual(p.requantization, { multiplierBits: 32, shiftRange: [0, 62], rounding: 'tflite' });
  assert.equal(loadProfile('w8a8-channel').requantization.rounding, 'half-up');
});

test('xnnpackScale: s_a·s_b/s_y in float32 steps, held exactly as a 24-bit significand and a shift', () => {
  // 0.5·0.25/2 = 2^−4 exactly: M = 2^23, shift 27
  assert.deepEqual(xnnpackScale(0.5, 0.25, 2), { multiplier: 2 ** 23, shift: 27 });
  // 1/3 is not a float32: the quotient rounds to float32's 1/3, whose significand is 11184811·2^−25
  const third = xnnpackScale(1, 1, 3);
  assert.deepEqual(third, { multiplier: 11184811, shift: 25 });
  assert.equal(third.multiplier * 2 ** -third.shift, Math.fround(1 / 3));
  // The product is rounded to float32 before the division: (1 + 2^−12)² = 1 + 2^−11 + 2^−24 rounds to 1 + 2^−11 (ties to even).
  const a = 1 + 2 ** -12;
  assert.equal(xnnpackScale(a, a, 1).multiplier * 2 ** -xnnpackScale(a, a, 1).shift, 1 + 2 ** -11);
  assert.deepEqual(xnnpackScale(0, 1, 1), { multiplier: 0, shift: 0 });
});

test('requantizeFp32: float32(acc)·scale in float32, ties to even, negative values', () => {
  assert.equal(requantizeFp32(5, 0.5), 2);
  assert.equal(requantizeFp32(7, 0.5), 4);
  assert.equal(requantizeFp32(-5, 0.5), -2);
  assert.equal(requantizeFp32(-7, 0.5), -4);
  assert.equal(requantizeFp32(3, 0.25), 1);
  // 2^24 + 1 is no float32: it converts to 2^24 (ties to even), so ·2^−25 is exactly ½ and rounds to 0.
  assert.equal(requantizeFp32(2 ** 24 + 1, 2 ** -25), 0);
  // The float32 product of 3 and float32(0.1·5/3) is 0.5 after rounding, where the exact product is above it.
  const s = Math.fround(0.5 / 3);
  assert.ok(3 * s !== 0.5 && Math.fround(3 * s) === 0.5);
  assert.equal(requantizeFp32(3, s), 0);
});

test('xnnpackConvertMultiplier: M = lrintf(256·s_in/s_out), shift 8; outside [1/256, 128] XNNPACK does not take it', () => {
  assert.deepEqual(xnnpackConvertMultiplier(0.5, 0.25), { multiplier: 512, shift: 8 });
  // 256/3 = 85.33 → 85
  assert.deepEqual(xnnpackConvertMultiplier(1, 3), { multiplier: 85, shift: 8 });
  // 256·0.0107421875/0.0859375 = 32 exactly
  assert.deepEqual(xnnpackConvertMultiplier(0.0107421875, 0.0859375), { multiplier: 32, shift: 8 });
  assert.throws(() => xnnpackConvertMultiplier(1, 257), RangeError);
  assert.throws(() => xnnpackConvertMultiplier(129, 1), RangeError);
});

test('xnnpackAddMultipliers: float32 ratios, shift 20 − ⌊log2 max⌋, multipliers lrintf(ratio·2^shift); ratios outside [1/1024, 256) refused', () => {
  // s_a/s_y = 0.5, s_b/s_y = 0.25: ⌊log2 0.5⌋ = −1, shift 21, multipliers 2^20 and 2^19
  const x = xnnpackAddMultipliers(0.5, 0.25, 1);
  assert.deepEqual(x, { multipliers: [2 ** 20, 2 ** 19], shift: 21 });
  // centred 1 + 1: 0.5 + 0.25 = 0.75 → 1; 1 + (−2): 0.5 − 0.5 = 0; −1 + 0: −0.5 rounds half up to 0
  const add = (a: number, b: number) => roundingRightShift(a * x.multipliers[0] + b * x.multipliers[1], x.shift);
  assert.deepEqual([add(1, 1), add(1, -2), add(-1, 0)], [1, 0, 0]);
  // 1/3 in float32 is 0.3333333432674408: shift 22, 0.3333333432674408·2^22 = 1398101.375 → 1398101
  assert.deepEqual(xnnpackAddMultipliers(1, 1, 3), { multipliers: [1398101, 1398101], shift: 22 });
  assert.throws(() => xnnpackAddMultipliers(1, 1, 2000), RangeError);
  assert.throws(() => xnnpackAddMultipliers(256, 1, 1), RangeError);
});

test('tflite-int8-xnnpack profile: tflite-int8 with XNNPACK rounding; both are TFLite kernels', () => {
  const ref = loadProfile('tflite-int8');
  const x = loadProfile('tflite-int8-xnnpack');
  assert.deepEqual(x.weights, ref.weights);
  assert.deepEqual(x.activations, ref.activations);
  assert.deepEqual(x.requantization, { multiplierBits: 32, shiftRange: [0, 62], rounding: 'xnnpack' });
  assert.ok(tfliteKernels(x) && tfliteKernels(ref) && !tfliteKernels(loadProfile('w8a8-shift')));
});

test('requantization.rounding is validated', () => {
  const base = {
    name: 'p',
    weights: { bits: 8, granularity: 'channel' },
    activations: { bits: 8, symmetric: false },
    requantization: { multiplierBits: 32, shiftRange: [0, 62], rounding: 'tflite' },
  };
  assert.equal(parseProfile(base, 'p.json').requantization.rounding, 'tflite');
  const bad = (requantization: object, activations: object = base.activations) =>
    assert.throws(
      () => parseProfile({ ...base, requantization, activations }, 'p.json'),
      (e: unknown) => e instanceof QuantflowError && e.message.startsWith('p.json: requantization.'),
    );
  bad({ multiplierBits: 32, shiftRange: [0, 62], rounding: 'even' });
  bad({ multiplierBits: 16, shiftRange: [0, 47], rounding: 'tflite' });
  bad({ multiplierBits: 32, shiftRange: [0, 63], rounding: 'tflite' });
  bad({ multiplierBits: 32, shiftRange: [-2, 62], rounding: 'tflite' });
  bad(base.requantization, { bits: [8, 16], symmetric: false });
  bad({ multiplierBits: 24, shiftRange: [0, 62], rounding: 'xnnpack' });
});
