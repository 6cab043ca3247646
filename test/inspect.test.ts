import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { writeOnnxFile } from '../src/onnx/write.js';
import { builtinProfiles } from '../src/quantization/profile.js';
import { inspectModel, type InspectReport } from '../src/report/inspect.js';
import { QuantflowError } from '../src/util/errors.js';
import { tinyCnn } from './fixtures.js';
import { sharedPath } from './shared.js';

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'inspect-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('inspect: operators, parameters, shapes and the plan of every built-in profile', () =>
  withTempDir(async (dir) => {
    writeOnnxFile(tinyCnn(), join(dir, 'tiny.onnx'));
    const r = await inspectModel(join(dir, 'tiny.onnx'));
    assert.equal(r.format, 'onnx');
    assert.equal(r.prepared, true);
    // Batch norm is folded into the conv: what quantflow quantizes.
    assert.deepEqual(r.operators, { Conv: 1, GlobalAveragePool: 1, Gemm: 1, Relu: 1, Reshape: 1 });
    assert.equal(r.parameters, 4 * 27 + 4 + 3 * 4 + 3);
    assert.deepEqual(r.inputs, [{ name: 'x', dataType: 'float32', shape: '[batch, 3, 5, 5]' }]);
    assert.deepEqual(r.outputs, [{ name: 'y', dataType: 'float32', shape: '[batch, 3]' }]);
    assert.deepEqual(r.squeezeExcite, { blocks: [], nearMisses: [] });
    assert.deepEqual(r.problems, []);
    assert.deepEqual(
      r.profiles!.map((p) => p.profile),
      builtinProfiles(),
    );
    const w4 = r.profiles!.find((p) => p.profile === 'w4a8-shift')!;
    // The 4-bit profiles keep the first and last layer at 8 bits; here those are the only two.
    assert.deepEqual(
      w4.layers.map((l) => [l.opType, l.bits, l.granularity, l.shiftBits]),
      [
        ['Conv', 8, 'shift', 4],
        ['Gemm', 8, 'shift', 4],
      ],
    );
    assert.deepEqual(
      w4.groups.map((g) => [g.bits, g.layers.length]),
      [[8, 2]],
    );
    assert.equal(w4.activations, 4);
  }));

test('inspect reports unsupported operators and invalid graphs instead of failing', () =>
  withTempDir(async (dir) => {
    const m = tinyCnn();
    m.graph.nodes[2]!.opType = 'Gelu';
    m.graph.nodes[3]!.opType = 'FancyPool';
    writeOnnxFile(m, join(dir, 'odd.onnx'));
    const r = await inspectModel(join(dir, 'odd.onnx'));
    assert.equal(r.prepared, false);
    assert.deepEqual(r.problems, [
      'operator Gelu is not supported by quantflow (1 node)',
      'operator FancyPool is not supported by quantflow (1 node)',
    ]);
    assert.equal(r.operators.Gelu, 1);
    assert.equal(r.profiles, undefined);

    const cyclic = tinyCnn();
    cyclic.graph.nodes[0]!.inputs[0] = 'relu';
    writeOnnxFile(cyclic, join(dir, 'cyclic.onnx'));
    await assert.rejects(inspectModel(join(dir, 'cyclic.onnx')), QuantflowError, 'a file that cannot be read as a model is still an error');

    const broken = tinyCnn();
    broken.graph.outputs[0]!.shape = ['batch', 7];
    writeOnnxFile(broken, join(dir, 'broken.onnx'));
    const b = await inspectModel(join(dir, 'broken.onnx'));
    assert.equal(b.prepared, false);
    assert.match(b.problems[0]!, /graph output 'y' is declared \[batch, 7\]/);
  }));

const mnv3 = sharedPath('models', 'mobilenet_v3_small_1.0_224_uint8.tflite');
test('inspect finds the squeeze-and-excite blocks of MobileNetV3', { skip: mnv3.skip }, async () => {
  const r = await inspectModel(mnv3.path);
  assert.equal(r.format, 'tflite');
  assert.equal(r.squeezeExcite!.blocks.length, 9);
  assert.deepEqual(r.squeezeExcite!.blocks[0], {
    mul: 'MobilenetV3/expanded_conv/squeeze_excite/mul_unclamped',
    input: r.squeezeExcite!.blocks[0]!.input,
    channels: 16,
    height: 56,
    width: 56,
    gate: 'hard-sigmoid-arithmetic',
  });
  assert.equal(r.operators.HardSwish, 19);
});

test('CLI: inspect prints a summary and writes --json', () =>
  withTempDir(async (dir) => {
    writeOnnxFile(tinyCnn(), join(dir, 'tiny.onnx'));
    const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [
      main,
      'inspect',
      join(dir, 'tiny.onnx'),
      '--layers',
      '--json',
      join(dir, 'i.json'),
    ]);
    assert.match(stdout, /5 nodes, 127 parameters \(after constant and batch-norm folding\)/);
    assert.match(stdout, /operators: Conv 1, Gemm 1, GlobalAveragePool 1, Relu 1, Reshape 1/);
    assert.match(stdout, /w8a8-shift\s+2 x 8-bit shift \(k: 4 bits\)/);
    assert.match(stdout, /layer\s+op\s+tflite-int8\s+tflite-int8-xnnpack\s+w4a8-channel/);
    const json = JSON.parse(readFileSync(join(dir, 'i.json'), 'utf8')) as InspectReport;
    assert.equal(json.profiles!.length, builtinProfiles().length);

    writeFileSync(join(dir, 'junk.onnx'), 'not a model');
    const failed = await promisify(execFile)(process.execPath, [main, 'inspect', join(dir, 'junk.onnx')]).then(
      () => assert.fail('should exit with an error'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(failed.code, 2);
  }));
