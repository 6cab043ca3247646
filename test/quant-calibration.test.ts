import { test } from 'node:test';
import assert from 'node:assert/strict';
import { activationQuantParams, HistogramObserver, MinMaxObserver, type ActivationRange } from '../src/quantization/calibration.js';
import { QuantflowError } from '../src/util/errors.js';
import { randomFloats } from './fixtures.js';

function laplace(n: number, seed: number): Float32Array {
  return randomFloats(n, seed).map((u) => -Math.sign(u) * Math.log(1 - Math.min(Math.abs(u), 1 - 1e-9)));
}

/** Mean squared error of fake-quantizing `x` on the grid `activationQuantParams` builds for `range`. */
function fakeQuantMse(x: Float32Array, range: ActivationRange, bits: number, symmetric: boolean): number {
  const { scale, zeroPoint, qmin, qmax } = activationQuantParams(range, bits, symmetric);
  let sum = 0;
  for (const v of x) {
    const q = Math.min(qmax, Math.max(qmin, Math.round(v / scale) + zeroPoint));
    sum += (v - (q - zeroPoint) * scale) ** 2;
  }
  return sum / x.length;
}

test('minmax ranges are the exact extremes, extended to 0, symmetric on request', () => {
  for (const observer of [new MinMaxObserver(), new HistogramObserver()]) {
    observer.observe(Float32Array.of(-1.5, 2));
    observer.observe(Float32Array.of(0.5, 3.25));
    assert.deepEqual(observer.range('minmax', 8, false), { min: -1.5, max: 3.25 });
    assert.deepEqual(observer.range('minmax', 8, true), { min: -3.25, max: 3.25 });
  }
  const relu = new MinMaxObserver();
  relu.observe(Float32Array.of(0.5, 2));
  assert.deepEqual(relu.range('minmax', 8, false), { min: 0, max: 2 });
  assert.throws(() => relu.range('mse', 8, false), /HistogramObserver/);
  assert.throws(() => new MinMaxObserver().range('minmax', 8, false), /no values/);
});

test('percentile of a uniform sample is right within one bin, also after the range grew', () => {
  const n = 100_000;
  const x = Float32Array.from({ length: n }, (_, i) => i / n);
  const whole = new HistogramObserver();
  whole.observe(x);
  const split = new HistogramObserver();
  split.observe(x.subarray(0, n / 2));
  split.observe(x.subarray(n / 2));
  for (const observer of [whole, split]) {
    const width = observer.histogram().width;
    for (const p of [1, 25, 50, 90, 99.9]) {
      assert.ok(Math.abs(observer.percentile(p) - p / 100) <= width, `p${p} = ${observer.percentile(p)}`);
    }
    assert.equal(observer.percentile(0), 0);
    assert.equal(observer.percentile(100), x[n - 1]);
  }
  const r = whole.range('percentile', 8, false);
  assert.equal(r.min, 0);
  assert.ok(Math.abs(r.max - 0.9999) <= whole.histogram().width);
});

test('MSE clipping of a Laplace sample is inside its max and beats minmax on real error', () => {
  const x = laplace(200_000, 9);
  const observer = new HistogramObserver();
  for (let i = 0; i < x.length; i += 10_000) observer.observe(x.subarray(i, i + 10_000));
  const amax = Math.max(-observer.min, observer.max);
  for (const bits of [4, 8]) {
    for (const symmetric of [true, false]) {
      const mse = observer.range('mse', bits, symmetric);
      const minmax = observer.range('minmax', bits, symmetric);
      assert.ok(mse.max < observer.max && mse.min > observer.min, `${bits}-bit ${JSON.stringify(mse)}`);
      assert.ok(fakeQuantMse(x, mse, bits, symmetric) < fakeQuantMse(x, minmax, bits, symmetric));
    }
  }
  // Laplace(1) optimum (Banner et al.): about 5 at 4 bits against an observed max near 12
  const clip4 = observer.range('mse', 4, true).max;
  assert.ok(clip4 > 3.5 && clip4 < 6.5 && clip4 < 0.6 * amax, `4-bit clip ${clip4} of ${amax}`);
});

test('MSE range of ReLU-like data keeps min at 0; all-zero tensors', () => {
  const x = laplace(50_000, 4).map((v) => Math.max(0, v));
  const observer = new HistogramObserver();
  observer.observe(x);
  const r = observer.range('mse', 8, false);
  assert.equal(r.min, 0);
  assert.ok(r.max > 0 && r.max <= observer.max);
  const zeros = new HistogramObserver();
  zeros.observe(new Float32Array(100));
  assert.deepEqual(zeros.range('mse', 8, false), { min: 0, max: 0 });
  assert.equal(zeros.percentile(50), 0);
  zeros.observe(Float32Array.of(1, 2));
  assert.equal(
    zeros.histogram().counts.reduce((a, b) => a + b),
    102,
    'zeros seen before the first non-zero are kept',
  );
});

test('memory is bounded: state does not grow with 1e6 observed values', () => {
  const observer = new HistogramObserver();
  const stateBytes = (): number => Object.values(observer).reduce((sum: number, v) => sum + (ArrayBuffer.isView(v) ? v.byteLength : 8), 0);
  const base = randomFloats(50_000, 3);
  observer.observe(base);
  const initial = stateBytes();
  for (let k = 1; k < 20; k++) observer.observe(base.map((v) => v * 1.5 ** k - k));
  assert.equal(observer.count, 1_000_000);
  assert.equal(stateBytes(), initial);
  const h = observer.histogram();
  assert.equal(h.counts.length, 2048);
  assert.equal(
    h.counts.reduce((a, b) => a + b),
    1_000_000,
  );
});

test('re-binning keeps every count in an aligned bin', () => {
  const observer = new HistogramObserver({ bins: 64 });
  observer.observe(Float32Array.from({ length: 1000 }, (_, i) => i / 1000));
  const before = observer.histogram();
  observer.observe(Float32Array.of(-7.9, 12.3));
  const after = observer.histogram();
  const factor = after.width / before.width;
  assert.ok(Number.isInteger(Math.log2(factor)), `width grew by ${factor}`);
  const offset = (before.lo - after.lo) / before.width;
  assert.ok(Math.abs(offset - Math.round(offset)) < 1e-9, 'old bin edges are new bin edges');
  assert.equal(
    after.counts.reduce((a, b) => a + b),
    1002,
  );
  // the first 1000 values span [0, 1): they stay in the bins over that interval
  let inUnit = 0;
  after.counts.forEach((n, i) => {
    const lo = after.lo + i * after.width;
    if (lo < 1 && lo + after.width > 0) inUnit += n;
  });
  assert.equal(inUnit, 1000);
});

test('activationQuantParams: asymmetric uint grid with exact zero, symmetric int grid', () => {
  const relu6 = activationQuantParams({ min: 0, max: 6 }, 8, false);
  assert.deepEqual(relu6, { scale: Math.fround(6 / 255), zeroPoint: 0, qmin: 0, qmax: 255 });
  const shifted = activationQuantParams({ min: -1, max: 3 }, 8, false);
  assert.equal(shifted.scale, Math.fround(4 / 255));
  assert.equal(shifted.zeroPoint, 64); // 1 / (4/255) = 63.75
  assert.deepEqual(activationQuantParams({ min: 2, max: 6 }, 8, false), relu6, 'ranges are extended to contain 0');
  assert.deepEqual(activationQuantParams({ min: -2, max: 1 }, 8, true), {
    scale: Math.fround(2 / 127),
    zeroPoint: 0,
    qmin: -128,
    qmax: 127,
  });
  assert.deepEqual(activationQuantParams({ min: -1, max: 1 }, 16, true).qmin, -32768);
  assert.equal(activationQuantParams({ min: 0, max: 0 }, 8, false).scale, 1);
  assert.equal(activationQuantParams({ min: 0, max: 6 }, 8, false, { powerOfTwo: true }).scale, 2 ** -5);
  assert.equal(activationQuantParams({ min: -10, max: 0.01 }, 8, false).zeroPoint, 255);
});

test('non-finite activations are a user-facing error', () => {
  assert.throws(() => new HistogramObserver().observe(Float32Array.of(1, NaN)), QuantflowError);
  assert.throws(() => new MinMaxObserver().observe(Float32Array.of(Infinity)), QuantflowError);
});
