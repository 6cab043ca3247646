import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  dequantize,
  fitBiasScales,
  preserveKernelSums,
  quantizePerChannel,
  quantizePerTensor,
  quantizeWeights,
  quantizeWithShifts,
  shiftsForReference,
  shiftsForScale,
  sqnrDb,
  type QuantizedWeights,
} from '../src/quantization/weights.js';
import { randomFloats } from './fixtures.js';

/** Laplace(0, 1) samples: heavy tails, like trained weights. */
function laplace(n: number, seed: number): Float32Array {
  return randomFloats(n, seed).map((u) => -Math.sign(u) * Math.log(1 - Math.min(Math.abs(u), 1 - 1e-9)));
}

/** Mean over output channels of each channel's SQNR: a channel flushed to zero counts, however small. */
function meanChannelSqnr(w: Float32Array, channels: number, qw: QuantizedWeights): number {
  const n = w.length / channels;
  const r = dequantize(qw);
  let sum = 0;
  for (let c = 0; c < channels; c++) sum += sqnrDb(w.subarray(c * n, (c + 1) * n), r.subarray(c * n, (c + 1) * n));
  return sum / channels;
}

test('per-tensor minmax: hand-computed 4-bit case with ties to even', () => {
  const w = Float32Array.of(3.5, -1.2, 0.3, -3.5, 0.76, 0.25, 0.75);
  const qw = quantizePerTensor(w, { bits: 4, method: 'minmax' });
  // scale 3.5 / 7 = 0.5; 0.25/0.5 = 0.5 → 0 and 0.75/0.5 = 1.5 → 2 (ties to even)
  assert.deepEqual([...qw.scale], [0.5]);
  assert.equal(qw.layerScale, 0.5);
  assert.equal(qw.granularity, 'tensor');
  assert.deepEqual([...qw.q], [7, -2, 1, -7, 2, 0, 2]);
  assert.deepEqual([...dequantize(qw)], [3.5, -1, 0.5, -3.5, 1, 0, 1]);
  assert.equal(qw.shifts, undefined);
});

test('per-channel minmax: one scale per output channel', () => {
  const w = Float32Array.of(3.5, -1, 0.5, 0.4375, -0.21875, 0.0625);
  const qw = quantizePerChannel(w, 2, { bits: 4, method: 'minmax' });
  assert.deepEqual([...qw.scale], [0.5, 0.0625]);
  assert.equal(qw.layerScale, undefined);
  assert.deepEqual([...qw.q], [7, -2, 1, 7, -4, 1]); // -3.5 → -4
});

test('WESS: channel ranges 1.0 and 0.1 get shifts [0, 3] and one layer scale', () => {
  const w = Float32Array.of(1, -0.25, 0.1, -0.03);
  const qw = quantizeWithShifts(w, 2, { bits: 8, shiftBits: 4, method: 'minmax' });
  const s = Math.fround(1 / 127);
  assert.deepEqual([...qw.shifts!], [0, 3]); // 0.1·8 ≤ 1 < 0.1·16
  assert.equal(qw.layerScale, s);
  assert.deepEqual([...qw.scale], [s, s / 8]);
  // 0.1·8·127 = 101.6 → 102; -0.03·8·127 = -30.48 → -30; -0.25·127 = -31.75 → -32
  assert.deepEqual([...qw.q], [127, -32, 102, -30]);
  const perTensor = quantizePerTensor(w, { bits: 8, method: 'minmax' });
  assert.deepEqual([...perTensor.q], [127, -32, 13, -4]);
});

test('WESS: shifts stop at 2^shiftBits − 1; all-zero channels get shift 0 and scale 1 per channel', () => {
  const w = Float32Array.of(1, -1, 1e-9, 0, 0, 0);
  assert.deepEqual([...quantizeWithShifts(w, 3, { bits: 8, shiftBits: 4 }).shifts!], [0, 15, 0]);
  assert.deepEqual([...quantizeWithShifts(w, 3, { bits: 8, shiftBits: 2 }).shifts!], [0, 3, 0]);
  const perChannel = quantizePerChannel(w, 3, { bits: 8 });
  assert.equal(perChannel.scale[2], 1);
  assert.deepEqual([...perChannel.q.subarray(4)], [0, 0]);
  assert.deepEqual([...quantizePerTensor(new Float32Array(4), { bits: 8 }).scale], [1]);
});

test('MSE clipping beats minmax on heavy-tailed weights, and is never worse', () => {
  const w = laplace(4096, 3);
  const heavier = w.map((x) => x * Math.abs(x));
  for (const weights of [w, heavier]) {
    const minmax = quantizePerTensor(weights, { bits: 4, method: 'minmax' });
    const mse = quantizePerTensor(weights, { bits: 4 });
    assert.ok(mse.scale[0]! < 0.7 * minmax.scale[0]!, 'MSE clips the tails');
    assert.ok(mse.sqnrDb > minmax.sqnrDb + 1.5, `mse ${mse.sqnrDb} dB vs minmax ${minmax.sqnrDb} dB`);
    assert.equal(mse.sqnrDb, sqnrDb(weights, dequantize(mse)));
    // at 8 bits the tails carry most of the error budget: the optimum is near the max, never worse
    assert.ok(quantizePerTensor(weights, { bits: 8 }).sqnrDb >= quantizePerTensor(weights, { bits: 8, method: 'minmax' }).sqnrDb);
  }
});

test('WESS is close to per-channel and far above per-tensor when channel ranges span 1000x', () => {
  const channels = 16;
  const n = 72;
  const w = randomFloats(channels * n, 5);
  for (let c = 0; c < channels; c++) {
    const range = 10 ** (-3 * (c / (channels - 1))); // 1 … 0.001
    for (let i = c * n; i < (c + 1) * n; i++) w[i] = w[i]! * range;
  }
  const perTensor = meanChannelSqnr(w, channels, quantizePerTensor(w, { bits: 8 }));
  const perChannel = meanChannelSqnr(w, channels, quantizePerChannel(w, channels, { bits: 8 }));
  const wess = meanChannelSqnr(w, channels, quantizeWithShifts(w, channels, { bits: 8, shiftBits: 4 }));
  assert.ok(perChannel - perTensor > 25, `per-channel ${perChannel} dB vs per-tensor ${perTensor} dB`);
  // each shifted channel spans more than half the layer range: at most ~6 dB below per-channel
  assert.ok(perChannel - wess < 6.1, `WESS ${wess} dB vs per-channel ${perChannel} dB`);
  assert.ok(wess - perTensor > 20, `WESS ${wess} dB vs per-tensor ${perTensor} dB`);
});

test('quantizeWeights follows the resolved layer; power-of-two scales', () => {
  const w = laplace(8 * 9, 7);
  const shift = quantizeWeights(w, 8, { bits: 4, granularity: 'shift', shiftBits: 4 });
  assert.equal(shift.granularity, 'shift');
  assert.equal(shift.bits, 4);
  assert.ok(shift.q.every((q) => q >= -7 && q <= 7));
  assert.equal(quantizeWeights(w, 8, { bits: 8, granularity: 'channel', shiftBits: 0 }).scale.length, 8);
  const p2 = quantizeWeights(w, 8, { bits: 8, granularity: 'tensor', shiftBits: 0 }, { powerOfTwo: true });
  assert.ok(Number.isInteger(Math.log2(p2.scale[0]!)));
  const p2minmax = quantizePerTensor(w, { bits: 8, method: 'minmax', powerOfTwo: true });
  const maxAbs = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  assert.ok(p2minmax.scale[0]! * 127 >= maxAbs && p2minmax.scale[0]! * 63.5 < maxAbs, 'smallest power of two covering the range');
  assert.throws(() => quantizePerChannel(w, 5, { bits: 8 }), RangeError);
  assert.equal(sqnrDb(w, w), Infinity);
});

test('WESS fits shifted channels to the reference that maximizes their mean resolution', () => {
  // With the layer max (1.0) as reference, the three 0.7 channels cannot shift and fill 70% of
  // the grid; with reference 1.4 they shift by one and fill it entirely, and the 1.0 channel fills 71%.
  const w = Float32Array.from([1.0, 0.7, 0.7, 0.7]);
  const q = quantizeWithShifts(w, 4, { bits: 8, method: 'minmax', shiftBits: 4 });
  assert.deepEqual([...q.shifts!], [0, 1, 1, 1]);
  assert.deepEqual([...q.q], [91, 127, 127, 127]);
});

test('shiftsForReference: the largest shift that keeps each channel within the reference', () => {
  // Reference 1: max 1.0 → k = 0; 0.25 → k = 2 (exactly 1); 0.06 → k = 4 (0.96); all-zero → 0.
  const w = Float32Array.from([1, -0.5, 0.25, 0.1, 0.06, -0.02, 0, 0]);
  assert.deepEqual([...shiftsForReference(w, 4, 1, 15)], [0, 2, 4, 0]);
  assert.deepEqual([...shiftsForReference(w, 4, 1.9, 15)], [0, 2, 4, 0], 'within an octave nothing moves');
  assert.deepEqual([...shiftsForReference(w, 4, 2, 15)], [1, 3, 5, 0], 'a doubled reference shifts every channel once more');
  assert.deepEqual([...shiftsForReference(w, 4, 1, 1)], [0, 1, 1, 0], 'bounded by maxShift');
  // PTQ's own shifts come out of the same rule with its reference.
  const q = quantizeWithShifts(Float32Array.from([3, 1, 0.4, 0.2, 0.05, 0.01]), 3, { bits: 4, shiftBits: 4, method: 'minmax' });
  assert.deepEqual(shiftsForReference(Float32Array.from([3, 1, 0.4, 0.2, 0.05, 0.01]), 3, q.shiftReference!, 15), q.shifts);
});

test('shiftsForScale: a channel takes the finer grid and clips its outlier where that costs less', () => {
  // Layer scale 1/7 (4 bits). Channel 2 peaks at 0.55: the paper's rule keeps it on the grid
  // of 1/7 (0.55·2 > 1); the grid of 1/14 clips 0.55 to 0.5 but rounds the rest finely —
  // squared error 0.0042 against 0.0083.
  const w = Float32Array.of(1, -0.5, 0.25, 0.75, 0.1, 0.55, 0.1, 0.2, -0.3, 0.05);
  assert.deepEqual([...shiftsForReference(w, 2, 1, 15)], [0, 0]);
  assert.deepEqual([...shiftsForScale(w, 2, 1 / 7, { bits: 4, maxShift: 15 })], [0, 1]);
  assert.deepEqual([...shiftsForScale(w, 2, 1 / 7, { bits: 4, maxShift: 0 })], [0, 0], 'bounded by maxShift');
  // PTQ's MSE shifts come out of the same rule with its layer scale.
  const laplaceChannels = laplace(32 * 9, 11).map((x, i) => x * 2 ** -((i * 7) % 9));
  const q = quantizeWithShifts(laplaceChannels, 32, { bits: 4, shiftBits: 4 });
  assert.deepEqual(shiftsForScale(laplaceChannels, 32, q.layerScale!, { bits: 4, maxShift: 15 }), q.shifts);
  assert.equal(q.shiftReference, undefined, 'no reference range with MSE scales');
});

test('WESS with MSE scales: within 3 dB of per-channel scales at 4 bits, and above the paper rule', () => {
  const channels = 64;
  const n = 9;
  const w = laplace(channels * n, 13);
  for (let c = 0; c < channels; c++)
    for (let i = c * n; i < (c + 1) * n; i++) w[i] = w[i]! * 10 ** ((-2 * ((c * 37) % channels)) / channels);
  const perChannel = meanChannelSqnr(w, channels, quantizePerChannel(w, channels, { bits: 4 }));
  const mse = meanChannelSqnr(w, channels, quantizeWithShifts(w, channels, { bits: 4, shiftBits: 4 }));
  const paper = meanChannelSqnr(w, channels, quantizeWithShifts(w, channels, { bits: 4, shiftBits: 4, method: 'minmax' }));
  assert.ok(perChannel - mse < 3, `MSE WESS ${mse} dB vs per-channel ${perChannel} dB`);
  assert.ok(mse > paper + 0.5, `MSE WESS ${mse} dB vs the paper's rule ${paper} dB`);
});

test('kernel sums: hand-computed 3-tap kernels re-round the cheapest weight, clipped weights stay', () => {
  // Scale 1, grid ±7. Kernel 1: 0.6 + 0.6 + 0.6 = 1.8, nearest gives 3 (excess 1.2): the
  // three ties cost the same, the first goes down → [0, 1, 1] = 2. Kernel 2: 0.2 + 0.3 + 0.4
  // = 0.9, nearest gives 0: the 0.4 (cheapest to round up) becomes 1. Kernel 3: 9 + 0.6 + 0.6
  // = 10.2, nearest gives 7 + 1 + 1 = 9 with the 9 clipped: a 0.6 goes up to make up for it.
  const w = Float32Array.of(0.6, 0.6, 0.6, 0.2, 0.3, 0.4, 9, 0.6, 0.6);
  const q = Int8Array.of(1, 1, 1, 0, 0, 0, 7, 1, 1);
  preserveKernelSums(w, q, Float32Array.of(1), 3, 7);
  assert.deepEqual([...q], [0, 1, 1, 0, 0, 1, 7, 2, 1]);
  assert.throws(() => preserveKernelSums(w, q, Float32Array.of(1, 1, 1), 2, 7), /kernels of 2/);
});

test('kernel sums: 4-bit 3x3 kernels keep their sums within half a step, at a small cost in weight error', () => {
  const taps = 9;
  const w = laplace(64 * taps, 21);
  const nearest = quantizePerChannel(w, 64, { bits: 4 });
  const kept = quantizePerChannel(w, 64, { bits: 4, kernelTaps: taps });
  assert.deepEqual(kept.scale, nearest.scale, 'the same scales');
  let before = 0;
  for (let k = 0; k < 64; k++) {
    const s = kept.scale[k]!;
    let fl = 0;
    let qNearest = 0;
    let qKept = 0;
    for (let i = k * taps; i < (k + 1) * taps; i++) {
      fl += w[i]! / s;
      qNearest += nearest.q[i]!;
      qKept += kept.q[i]!;
    }
    before = Math.max(before, Math.abs(qNearest - fl));
    const room = kept.q.slice(k * taps, (k + 1) * taps).some((v) => Math.abs(v) < 7);
    assert.ok(Math.abs(qKept - fl) <= 0.5 + 1e-6 || !room, `kernel ${k}: ${qKept} vs ${fl}`);
  }
  assert.ok(before > 1, 'round to nearest leaves kernel sums more than a step off');
  assert.ok(kept.sqnrDb > nearest.sqnrDb - 1.5 && kept.sqnrDb <= nearest.sqnrDb, `weight SQNR ${kept.sqnrDb} vs ${nearest.sqnrDb} dB`);
});

test('fitBiasScales: a near-zero channel with a bias gets a scale that holds its bias within 2^30; others unchanged', () => {
  const w = quantizePerChannel(Float32Array.from([1, -0.5, 1e-30, 0]), 2, { bits: 8, method: 'minmax' });
  const bias = Float32Array.from([0.1, 0.25]);
  const inputScale = 0.01;
  const fitted = fitBiasScales(w, bias, inputScale);
  assert.equal(fitted.scale[0], w.scale[0]);
  assert.deepEqual(Array.from(fitted.q.subarray(0, 2)), Array.from(w.q.subarray(0, 2)));
  // 0.25 / (0.01·2^30) ≈ 2.3e-8, far above the channel's own 1e-30/127
  assert.ok(fitted.scale[1]! >= 0.25 / (inputScale * 2 ** 30));
  assert.ok(Math.abs(0.25 / (inputScale * fitted.scale[1]!)) <= 2 ** 30);
  assert.deepEqual(Array.from(fitted.q.subarray(2)), [0, 0]);
  assert.equal(fitBiasScales(w, Float32Array.from([0.1, 0]), inputScale), w);
});
