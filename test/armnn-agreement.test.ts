import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import {
  argmaxLast,
  classMapAgreement,
  dequantize,
  detections,
  matchDetections,
  nchwToNhwc,
  parseNpy,
  relativeMaxError,
} from '../bench/armnn/agreement.js';
import { importTflite } from '../src/import/tflite/import.js';
import { runModel } from '../src/runtime/session.js';
import { QuantflowError } from '../src/util/errors.js';
import { OP, options, TfliteBuilder } from './tflite-builder.js';

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
  assert.throws(
    () => parseNpy(Buffer.from('not numpy at all'), 'x.npy'),
    (e: Error) => e instanceof QuantflowError && /x\.npy/.test(e.message),
  );
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

test('matchDetections: same class, IoU ≥ 0.5, score ≥ threshold, each reference once', () => {
  const reference = detections([0, 0, 1, 1, 0, 0, 0.5, 0.5], [1, 2], [0.9, 0.8], 2);
  // A match, a duplicate of it, a box on the second reference with the wrong class, and one under the threshold.
  const test = detections([0, 0, 1, 1, 0, 0, 0.9, 1, 0, 0, 0.5, 0.5, 0, 0, 0.5, 0.5], [1, 1, 3, 2], [0.95, 0.7, 0.6, 0.1], 4);
  assert.deepEqual(matchDetections(test, reference, 0.3), { matched: 1, test: 3, reference: 2 });
  assert.deepEqual(matchDetections(test, reference, 0.05), { matched: 2, test: 4, reference: 2 });
});

const PYTHON = '/usr/bin/python3';
const SCRIPT = new URL('../../bench/armnn/run_tflite.py', import.meta.url).pathname;
const armnnMissing =
  spawnSync(PYTHON, ['-c', 'import pyarmnn, PIL, numpy'], { stdio: 'ignore' }).status === 0
    ? false
    : `${PYTHON} has no pyarmnn/PIL/numpy (Debian python3-pyarmnn, python3-pil)`;

/** run_tflite.py's cut_model on `bytes`, keeping the tensors named in `outputs`. */
function cut(bytes: Uint8Array, outputs: string[]): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'qf-cut-'));
  try {
    writeFileSync(join(dir, 'in.tflite'), bytes);
    const code = [
      'import sys',
      `sys.path.insert(0, ${JSON.stringify(dirname(SCRIPT))})`,
      'import run_tflite',
      `data = open(${JSON.stringify(join(dir, 'in.tflite'))}, 'rb').read()`,
      `open(${JSON.stringify(join(dir, 'out.tflite'))}, 'wb').write(run_tflite.cut_model(data, ${JSON.stringify(outputs)}, 'in.tflite'))`,
    ].join('\n');
    const r = spawnSync(PYTHON, ['-c', code], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(join(dir, 'out.tflite'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test(
  'run_tflite.py cuts a model before an operator: the cut copy imports and computes the named tensors',
  { skip: armnnMissing },
  async () => {
    // x → ADD 1,2 → a → MUL 10 → m → custom op → z: the custom op makes the whole model unimportable.
    const b = new TfliteBuilder();
    const x = b.activation('x', [1, 1, 1, 2]);
    const a = b.activation('a', [1, 1, 1, 2]);
    const m = b.activation('m', [1, 1, 1, 2]);
    const z = b.activation('z', [1, 1, 1, 2]);
    b.op(OP.ADD, [x, b.constant('one_two', [2], [1, 2])], [a], options.add());
    b.op(OP.MUL, [a, b.constant('ten', [1], [10])], [m], options.mul());
    b.custom('SomethingCustom', [m], [z]);
    const whole = b.build([x], [z]);
    assert.throws(() => importTflite(whole, 'whole.tflite'), /custom operator "SomethingCustom"/);

    const model = importTflite(cut(whole, ['m', 'a']), 'cut.tflite');
    assert.deepEqual(
      model.graph.nodes.map((n) => n.opType).filter((op) => op === 'Add' || op === 'Mul'),
      ['Add', 'Mul'],
    );
    const x0 = model.graph.inputs[0]!.name;
    const out = await runModel(model, { [x0]: { dataType: 'float32', dims: [1, 2, 1, 1], data: Float32Array.of(1, 1) } });
    const [mOut, aOut] = model.graph.outputs.map((o) => [...(out[o.name]!.data as Float32Array)]);
    assert.deepEqual(mOut, [20, 30]);
    assert.deepEqual(aOut, [2, 3]);

    const addOnly = importTflite(cut(whole, ['a']), 'cut-a.tflite');
    assert.ok(!addOnly.graph.nodes.some((n) => n.opType === 'Mul'), 'MUL is not needed for a');
  },
);
