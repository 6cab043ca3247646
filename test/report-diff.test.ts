import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadProfile } from '../src/quantization/profile.js';
import { diffReports, type ReportDiff } from '../src/report/diff.js';
import type { QftReport, QuantizeReportJson, ReportLayer } from '../src/report/types.js';
import { formatDiff } from '../src/cli/commands/diff.js';

const layer = (name: string, weightSqnrDb: number | null, outputSqnrDb?: number, granularity = 'shift'): ReportLayer => ({
  name,
  opType: 'Conv',
  weightBits: 8,
  granularity,
  weightScales: [0.01],
  weightSqnrDb,
  outputSqnrDb,
});

function report(profile: string, layers: ReportLayer[], top1?: number): QuantizeReportJson {
  return {
    model: 'net.tflite',
    profile: loadProfile(profile),
    calibration: { method: 'mse', images: 64, preset: 'inception', folder: 'calib' },
    biasCorrection: false,
    seconds: { calibration: 1 },
    layers,
    activations: {},
    accuracy: top1 === undefined ? undefined : { quantized: { data: 'val', n: 650, top1, top5: 0.9 } },
  };
}

const a = report('w8a8-shift', [layer('conv1', 40, 30), layer('conv2', 38, 20), layer('gone', 30, 10)], 0.754);
const b = report(
  'w8a8-channel',
  [layer('conv1', 45, 33, 'channel'), layer('conv2', null, 15, 'channel'), layer('new', 50, 40, 'channel')],
  0.783,
);

test('diffReports: settings, accuracy and per-layer SQNR deltas, largest drop first', () => {
  const d = diffReports(a, b, { a: 'a.json', b: 'b.json' });
  assert.deepEqual(
    d.settings.map((s) => [s.key, s.a, s.b]),
    [
      ['profile.name', 'w8a8-shift', 'w8a8-channel'],
      ['profile.description', a.profile.description, b.profile.description],
      ['profile.weights.granularity', 'shift', 'channel'],
    ],
  );
  assert.equal(d.accuracy.length, 1);
  assert.equal(d.accuracy[0]!.model, 'quantized');
  assert.ok(Math.abs(d.accuracy[0]!.top1 - 2.9) < 1e-9);
  assert.equal(d.accuracy[0]!.comparable, true);
  assert.deepEqual(
    d.layers.map((l) => [l.name, l.outputSqnrDb?.delta, l.weightSqnrDb.delta]),
    [
      ['conv2', -5, null],
      ['conv1', 3, 5],
    ],
  );
  assert.deepEqual(d.layers[0]!.weights, { a: '8-bit shift', b: '8-bit channel' });
  assert.deepEqual([d.onlyInA, d.onlyInB], [['gone'], ['new']]);
});

test('identical reports differ in nothing', () => {
  const d = diffReports(a, a, { a: 'x', b: 'x' });
  assert.deepEqual(d.settings, []);
  assert.ok(d.layers.every((l) => l.weightSqnrDb.delta === 0 && l.outputSqnrDb!.delta === 0));
});

test('diffReports: the QFT final epoch loss and QFT options, when both finetuned', () => {
  const qft = (lrWeights: number, epochLosses: number[]): QftReport => ({
    options: { epochs: 2, lrWeights },
    steps: 8,
    seconds: 4,
    initialLoss: 0.5,
    epochLosses,
    stepLosses: [],
  });
  const d = diffReports({ ...a, qft: qft(0.001, [0.4, 0.3]) }, { ...a, qft: qft(0.002, [0.35, 0.25]) }, { a: 'a', b: 'b' });
  assert.deepEqual(d.settings, [{ key: 'qft.lrWeights', a: 0.001, b: 0.002 }]);
  assert.equal(d.qft!.a, 0.3);
  assert.ok(Math.abs(d.qft!.delta + 0.05) < 1e-12);
  assert.match(formatDiff(d), /\nQFT final epoch loss: 0\.300 -> 0\.250 \(-0\.0500\)\n/);
  const one = diffReports(a, { ...a, qft: qft(0.001, [0.3]) }, { a: 'a', b: 'b' });
  assert.equal(one.qft, undefined);
  assert.deepEqual(
    one.settings.map((s) => [s.key, s.a, s.b]),
    [
      ['qft.epochs', undefined, 2],
      ['qft.lrWeights', undefined, 0.001],
    ],
  );
});

test('CLI: diff prints the tables and writes --json; a bad report is a one-line error', async () => {
  const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'diff-cli-'));
  try {
    writeFileSync(join(dir, 'a.json'), JSON.stringify(a));
    writeFileSync(join(dir, 'b.json'), JSON.stringify(b));
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, [main, 'diff', join(dir, 'a.json'), join(dir, 'b.json'), '--json', join(dir, 'd.json')]);
    assert.match(stdout, /  profile\.weights\.granularity: "shift" -> "channel"\n/);
    assert.match(stdout, /quantized\s+75\.4\s+78\.3\s+\+2\.9/);
    assert.match(stdout, /conv2\s+8-bit shift -> 8-bit channel\s+38\.0\s+inf\s+-\s+20\.0\s+15\.0\s+-5\.0/);
    assert.match(stdout, /only in a \(1\): gone/);
    const json = JSON.parse(readFileSync(join(dir, 'd.json'), 'utf8')) as ReportDiff;
    assert.equal(json.layers[0]!.weightSqnrDb.b, null);

    writeFileSync(join(dir, 'bad.json'), '{"layers": 3}');
    const failed = await run(process.execPath, [main, 'diff', join(dir, 'a.json'), join(dir, 'bad.json')]).then(
      () => assert.fail('should exit with an error'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(failed.code, 2);
    assert.match(failed.stderr, /^quantflow: .*bad\.json: no model or profile: not a report\.json of quantflow quantize\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
