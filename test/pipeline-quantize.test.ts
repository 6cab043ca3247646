import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { writeOnnxFile } from '../src/onnx/write.js';
import { readNpuPackage } from '../src/npu/io.js';
import { runQuantize, type QuantizeStage } from '../src/pipeline/quantize-run.js';
import { TRAINED_GROUPS } from '../src/qft/student.js';
import { QuantflowError } from '../src/util/errors.js';
import { tinyCnn } from './fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'quantflow-pipeline-'));
const modelFile = join(root, 'tiny.onnx');
const data = join(root, 'data');
after(() => rmSync(root, { recursive: true, force: true }));

before(async () => {
  writeOnnxFile(tinyCnn(), modelFile);
  mkdirSync(data);
  // Solid colours, labelled by their index mod 3 (the tiny CNN has three outputs).
  const rows = ['file,label'];
  for (let i = 0; i < 12; i++) {
    await sharp({ create: { width: 9, height: 7, channels: 3, background: { r: (i * 70) % 256, g: (i * 130) % 256, b: (i * 40) % 256 } } })
      .png()
      .toFile(join(data, `${i}.png`));
    rows.push(`${i}.png,${i % 3}`);
  }
  writeFileSync(join(data, 'labels.csv'), rows.join('\n') + '\n');
});

test('runQuantize writes the QDQ model, the NPU package and both report files, and returns what it wrote', async () => {
  const output = join(root, 'out');
  const stages: [QuantizeStage, number][] = [];
  let stopped = 0;
  const run = await runQuantize({
    model: modelFile,
    calib: data,
    profile: 'w8a8-shift',
    output,
    calibLimit: 8,
    batch: 4,
    eval: data,
    evalLimit: 10,
    onStage: (stage, total) => {
      stages.push([stage, total]);
      return { update() {}, stop: () => stopped++ };
    },
  });
  assert.deepEqual(stages, [
    ['calibrate', 8],
    ['eval float', 10],
    ['eval quantized', 10],
  ]);
  assert.equal(stopped, 3);
  assert.deepEqual(run.files, {
    model: join(output, 'model.qdq.onnx'),
    npu: join(output, 'npu'),
    tflite: join(output, 'model.int8.tflite'),
    json: join(output, 'report.json'),
    html: join(output, 'report.html'),
  });
  assert.deepEqual(readdirSync(output).sort(), ['model.int8.tflite', 'model.qdq.onnx', 'npu', 'report.html', 'report.json']);
  assert.equal(run.tfliteProblem, undefined);
  assert.equal(readNpuPackage(run.files.npu!).layers.length > 0, true);
  assert.match(readFileSync(run.files.html, 'utf8'), /^<!doctype html>/i);
  assert.equal(run.npuProblem, undefined);
  assert.equal(run.quantization.calibrationImages, 8);
  assert.equal(run.accuracy?.quantized?.n, 10);
  assert.equal(run.accuracy?.float?.data, data);
  const json = JSON.parse(readFileSync(run.files.json, 'utf8'));
  assert.deepEqual(json, JSON.parse(JSON.stringify(run.report)));
  assert.equal(json.model, modelFile);
  assert.equal(json.manifest.options.evalLimit, 10);
  assert.equal(json.layers.length, 2);
});

test('a float accuracy measured already is reported instead of measured again; QFT runs when asked', async () => {
  const floatAccuracy = { data, n: 12, top1: 0.5, top5: 1 };
  const stages: QuantizeStage[] = [];
  const run = await runQuantize({
    model: modelFile,
    calib: data,
    profile: 'w8a8-shift',
    output: join(root, 'out-qft'),
    batch: 4,
    eval: data,
    floatAccuracy,
    qft: { epochs: 1 },
    onStage: (stage) => {
      stages.push(stage);
      return { update() {}, stop() {} };
    },
  });
  assert.deepEqual(stages, ['calibrate', 'qft', 'eval quantized']);
  assert.deepEqual(run.report.accuracy?.float, floatAccuracy);
  assert.equal(run.finetune?.steps, 3);
  assert.equal(run.report.qft?.steps, 3);
  assert.deepEqual(run.report.qft?.options.train, TRAINED_GROUPS);
});

test('a run that cannot write leaves nothing behind', async () => {
  const file = join(root, 'a-file');
  writeFileSync(file, 'mine');
  await assert.rejects(runQuantize({ model: modelFile, calib: data, profile: 'w8a8-shift', output: file }), (e: unknown) => {
    assert.ok(e instanceof QuantflowError);
    assert.equal(e.message, `${file}: the output folder is a file`);
    return true;
  });
  assert.equal(readFileSync(file, 'utf8'), 'mine');

  // The last file fails after the model, the package and report.json are written: they go again.
  const output = join(root, 'blocked');
  mkdirSync(join(output, 'report.html'), { recursive: true });
  await assert.rejects(runQuantize({ model: modelFile, calib: data, profile: 'w8a8-shift', output, batch: 4 }), (e: unknown) => {
    assert.ok(e instanceof QuantflowError);
    assert.match(e.message, /^cannot write .*report\.html: /);
    return true;
  });
  assert.deepEqual(readdirSync(output), ['report.html']);
  assert.ok(!existsSync(join(output, 'npu')));
});

test('quantflow quantize prints its summary over the pipeline and exits with 2 when it cannot write', async () => {
  const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const output = join(root, 'cli');
  const run = promisify(execFile);
  const { stdout } = await run(process.execPath, [
    main,
    'quantize',
    modelFile,
    '--calib',
    data,
    '--calib-limit',
    '8',
    '--eval',
    data,
    '-o',
    output,
  ]);
  const lines = stdout.trim().split('\n');
  assert.match(lines[0]!, /^layer \(worst output SQNR first\)\s+op\s+bits\s+weights\s+weight SQNR dB\s+output SQNR dB$/);
  assert.match(
    lines[4]!,
    /^2 layers, 4 activations quantized for profile w8a8-shift; calibrated on 8 images \(mse, preset \S+\) in \d+\.\d s$/,
  );
  assert.match(lines[5]!, /^preprocessing: \S+ \(.+\)$/);
  assert.match(lines[6]!, new RegExp(`^top-1 on ${data}: float \\d+\\.\\d%, quantized \\d+\\.\\d% \\(n = 12\\)$`));
  assert.match(
    lines[7]!,
    /^model\.int8\.tflite computes with TFLite's reference-kernel arithmetic: against the profile's own on 8 calibration images, y: \d+\.\d+% of elements equal, at most \d+ LSB apart, top-1 agreement \d+\.\d+%$/,
  );
  assert.equal(
    lines[8],
    `wrote ${join(output, 'model.qdq.onnx')}, ${join(output, 'npu')}/ (integer NPU package), ${join(output, 'model.int8.tflite')}, ${join(output, 'report.json')} and ${join(output, 'report.html')}`,
  );
  assert.equal(lines.length, 9);

  const file = join(root, 'cli-file');
  writeFileSync(file, '');
  const failed = await run(process.execPath, [main, 'quantize', modelFile, '--calib', data, '-o', file]).then(
    () => assert.fail('quantize into a file succeeded'),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(failed.code, 2);
  assert.equal(failed.stderr, `quantflow: ${file}: the output folder is a file\n`);
});

test('runQuantize --compare measures the quantized outputs against the float ones into the report', async () => {
  const output = join(root, 'compare');
  const { compare, report } = await runQuantize({
    model: modelFile,
    calib: data,
    calibLimit: 8,
    profile: 'w8a8-shift',
    output,
    compare: data,
    compareLimit: 6,
  });
  assert.equal(compare!.n, 6);
  assert.equal(compare!.data, data);
  const out = compare!.outputs[0]!;
  assert.equal(out.kind, 'classify');
  assert.ok(out.sqnrDb! > 15, `SQNR ${out.sqnrDb}`);
  assert.equal(out.classify!.labelled, 6);
  assert.deepEqual(report.compare, compare);
  const written = JSON.parse(readFileSync(join(output, 'report.json'), 'utf8'));
  assert.equal(written.compare.outputs[0].name, 'y');
  assert.equal(written.manifest.options.compare, data);
  assert.match(readFileSync(join(output, 'report.html'), 'utf8'), /<section id="compare">/);
});
