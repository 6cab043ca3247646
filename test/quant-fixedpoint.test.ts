import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  multiplyByQuantizedMultiplier,
  powerOfTwoCeil,
  quantizeMultiplier,
  roundHalfToEven,
  roundingRightShift,
} from '../src/quantization/fixedpoint.js';
import { QuantflowError } from '../src/util/errors.js';
import { randomFloats } from './fixtures.js';

test('quantizeMultiplier: M normalized to the top of the signed range, relative error ≤ 2^−(B−1)', () => {
  for (const bits of [8, 16, 32]) {
    for (let e = -40; e <= 20; e += 0.37) {
      const real = 2 ** e;
      const { multiplier, shift } = quantizeMultiplier(real, bits);
      assert.ok(Number.isInteger(multiplier) && Number.isInteger(shift));
      assert.ok(multiplier >= 2 ** (bits - 2) && multiplier < 2 ** (bits - 1), `M=${multiplier} for ${real} at ${bits} bits`);
      assert.ok(Math.abs(multiplier * 2 ** -shift - real) / real <= 2 ** -(bits - 1));
    }
  }
});

test('quantizeMultiplier: hand-picked decompositions', () => {
  assert.deepEqual(quantizeMultiplier(0.5, 32), { multiplier: 2 ** 30, shift: 31 });
  assert.deepEqual(quantizeMultiplier(0.75, 16), { multiplier: 3 * 2 ** 13, shift: 15 });
  // rounds up to 2^15 = the top of the 16-bit range: renormalized to 2^14 with one shift less
  assert.deepEqual(quantizeMultiplier(1 - 2 ** -40, 16), { multiplier: 2 ** 14, shift: 14 });
  assert.deepEqual(quantizeMultiplier(3, 8), { multiplier: 96, shift: 5 }); // M ∈ [64, 128)
  assert.deepEqual(quantizeMultiplier(0, 16), { multiplier: 0, shift: 0 });
});

test('quantizeMultiplier: the target shift range', () => {
  // natural shift of 2^-30 at 16 bits is 44; with max 40 precision is lost, M = 2^10
  assert.deepEqual(quantizeMultiplier(2 ** -30, 16, [0, 40]), { multiplier: 2 ** 10, shift: 40 });
  assert.deepEqual(quantizeMultiplier(2 ** -60, 16, [0, 40]), { multiplier: 0, shift: 40 });
  assert.throws(() => quantizeMultiplier(2 ** 20, 16, [0, 40]), QuantflowError);
  assert.deepEqual(quantizeMultiplier(2 ** 20, 16, [-10, 40]), { multiplier: 2 ** 14, shift: -6 });
  assert.throws(() => quantizeMultiplier(-1, 16), RangeError);
  assert.throws(() => quantizeMultiplier(1, 33), RangeError);
});

test('roundingRightShift rounds half up, including negatives and ties', () => {
  const cases: [number, number, number][] = [
    [5, 1, 3], // 2.5
    [-5, 1, -2], // -2.5: ties go toward +inf
    [4, 1, 2],
    [6, 2, 2], // 1.5
    [-6, 2, -1], // -1.5
    [7, 2, 2], // 1.75
    [-7, 2, -2], // -1.75
    [-9, 2, -2], // -2.25
    [-10, 2, -2], // -2.5
    [0, 5, 0],
    [-1, 5, 0], // -1/32
    [-16, 5, 0], // -0.5
    [-17, 5, -1],
    [1234, 0, 1234],
    [3, -2, 12],
    [2 ** 52 + 1, 1, 2 ** 51 + 1],
    [-(2 ** 52) - 1, 1, -(2 ** 51)],
  ];
  for (const [x, n, want] of cases) assert.equal(roundingRightShift(x, n), want, `roundingRightShift(${x}, ${n})`);
});

test('multiplyByQuantizedMultiplier matches a BigInt reference bit for bit', () => {
  const r = randomFloats(3 * 3000, 11);
  const reference = (acc: number, m: number, shift: number): number => {
    const p = BigInt(acc) * BigInt(m);
    return Number(shift > 0 ? (p + (1n << BigInt(shift - 1))) >> BigInt(shift) : p << BigInt(-shift));
  };
  for (let i = 0; i < 3000; i++) {
    const acc = Math.floor(r[3 * i]! * 2 ** 31);
    const bits = i % 2 ? 32 : 16;
    const m = 2 ** (bits - 2) + Math.floor(Math.abs(r[3 * i + 1]!) * 2 ** (bits - 2));
    const shift = 10 + Math.floor(Math.abs(r[3 * i + 2]!) * 53);
    assert.equal(multiplyByQuantizedMultiplier(acc, m, shift), reference(acc, m, shift), `${acc}·${m}>>${shift}`);
  }
  for (const [acc, m, shift] of [
    [3, 2 ** 14, 15], // 1.5
    [-3, 2 ** 14, 15], // -1.5
    [-5, 2 ** 30, 32], // -1.25
    [12345, 3, 0],
    [-7, 1, -3],
    [2 ** 31 - 1, 2 ** 31 - 1, 16],
  ]) {
    assert.equal(multiplyByQuantizedMultiplier(acc!, m!, shift!), reference(acc!, m!, shift!), `${acc}·${m}>>${shift}`);
  }
});

test('roundHalfToEven and powerOfTwoCeil', () => {
  assert.deepEqual([2.5, 3.5, -2.5, -3.5, 0.5, 1.5, 1.49, -1.51].map(roundHalfToEven), [2, 4, -2, -4, 0, 2, 1, -2]);
  assert.deepEqual([1, 0.75, 0.5, 3, 2 ** -20 + 2 ** -40].map(powerOfTwoCeil), [1, 1, 0.5, 4, 2 ** -19]);
});
