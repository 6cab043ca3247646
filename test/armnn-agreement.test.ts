import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  argmaxLast,
  boxIou,
  classMapAgreement,
  dequantize,
  detections,
  matchDetections,
  nchwToNhwc,
  parseNpy,
  relativeMaxError,
} from '../bench/armnn/agreement.js';
import { QuantflowError } from '../src/util/errors.js';

/** A version-1 .npy file as numpy writes it: header padded with spaces to a multiple of 64. */
function npy(descr: string, shape: string, body: Uint8Array): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const head = Buffer.alloc(10);
  head.set([0x93, ...Buffer.from('NUMPY'), 1, 0]);
  head.writeUInt16LE(header.length, 8);
  // Buffer.concat of small buffers lands in node's shared pool, like readFileSync of a small file.
  return Buffer.concat([head, Buffer.from(header), body]);
}

test('parseNpy reads float32 and uint8 arrays, also from a pooled Buffer', () => {
  const f = parseNpy(npy('<f4', '(2, 3)', new Uint8Array(Float32Array.of(1, -2, 3.5, 0, 5, 6).buffer)), 'a.npy');
  assert.deepEqual(f.shape, [2, 3]);
  assert.equal(f.dtype, 'float32');
  assert.deepEqual([...f.data], [1, -2, 3.5, 0, 5, 6]);
  const u = parseNpy(npy('|u1', '(3,)', Uint8Array.of(0, 128, 255)), 'b.npy');
  assert.deepEqual(u.shape, [3]);
  assert.deepEqual([...u.data], [0, 128, 255]);
  const i = parseNpy(npy('|i1', '(2,)', Uint8Array.of(0x80, 0x7f)), 'c.npy');
  assert.deepEqual([...i.data], [-128, 127]);
});

test('parseNpy refuses other files and types with the file name', () => {
  assert.throws(() => parseNpy(Buffer.from('not numpy at all'), 'x.npy'), (e: Error) => e instanceof QuantflowError && /x\.npy/.test(e.message));
  assert.throws(() => parseNpy(npy('<c8', '(1,)', new Uint8Array(8)), 'y.npy'), /y\.npy: .npy element type <c8/);
});

test('dequantize maps q to scale·(q − zero point) and leaves unquantized values alone', () => {
  assert.deepEqual([...dequantize(Float64Array.of(0, 128, 255), 0.5, 128)], [-64, 0, 63.5]);
  assert.deepEqual([...dequantize(Float64Array.of(0.25, 7), 0, 0)], [0.25, 7]);
});

test('nchwToNhwc interleaves channels', () => {
  // N=1, C=2, H=1, W=2: channel 0 = [1, 2], channel 1 = [3, 4].
  assert.deepEqual([...nchwToNhwc([1, 2, 3, 4], [1, 2, 1, 2])], [1, 3, 2, 4]);
});

test('argmaxLast gives ties to the first index, as TFLite ARG_MAX', () => {
  assert.deepEqual([...argmaxLast([1, 3, 3, 5, 0, 1], 3)], [1, 0]);
});

test('relativeMaxError divides by the reference range', () => {
  assert.equal(relativeMaxError([0, 1, 2], [0, 0, 4]), 0.5);
});

test('classMapAgreement: pixel agreement and mean IoU of the classes present', () => {
  // Class 0: 1 pixel in both, 2 in either (1/2); class 1: 2 in both, 3 in either (2/3).
  const r = classMapAgreement([0, 0, 1, 1], [0, 1, 1, 1]);
  assert.equal(r.pixels, 0.75);
  assert.ok(Math.abs(r.miou - (1 / 2 + 2 / 3) / 2) < 1e-12);
});

test('boxIou of two overlapping [ymin, xmin, ymax, xmax] boxes', () => {
  assert.ok(Math.abs(boxIou([0, 0, 2, 2], [1, 1, 3, 3]) - 1 / 7) < 1e-12);
  assert.equal(boxIou([0, 0, 1, 1], [2, 2, 3, 3]), 0);
});

test('matchDetections: same class, IoU ≥ 0.5, score ≥ threshold, each reference once', () => {
  const reference = detections([0, 0, 1, 1, 0, 0, 0.5, 0.5], [1, 2], [0.9, 0.8], 2);
  // A match, a duplicate of it, a box on the second reference with the wrong class, and one under the threshold.
  const test = detections([0, 0, 1, 1, 0, 0, 0.9, 1, 0, 0, 0.5, 0.5, 0, 0, 0.5, 0.5], [1, 1, 3, 2], [0.95, 0.7, 0.6, 0.1], 4);
  assert.deepEqual(matchDetections(test, reference, 0.3), { matched: 1, test: 3, reference: 2 });
  assert.deepEqual(matchDetections(test, reference, 0.05), { matched: 2, test: 4, reference: 2 });
});
