/**
 * The report of `quantflow tse` and `quantflow buffers`: what the page shows for a TSE run,
 * what the commands write and where, that a failed write leaves nothing, and that `diff`
 * refuses a TSE report with one line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import type { Model } from '../src/graph/types.js';
import { writeOnnxFile } from '../src/onnx/write.js';
import { renderReportHtml } from '../src/report/html.js';
import { runManifest } from '../src/report/manifest.js';
import { readReportJson } from '../src/report/read.js';
import { tseReport } from '../src/report/tse.js';
import type { TseReportJson } from '../src/report/types.js';
import { detectSqueezeExcite } from '../src/tse/detect.js';
import { QuantflowError } from '../src/util/errors.js';
import { randomTensor } from './fixtures.js';

const C = 4;

/**
 * x [N, 4, 8, 6] → SE 'se1' → strided Conv → SE 'se2' on [N, 8, 4, 3] → a Mul gated by a
 * max pool, which is a near miss, not a block.
 */
function seNet(): Model {
  const g = createGraph('se-net');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['N', C, 8, 6] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: ['N', 2 * C, 4, 3] });
  const block = (X: string, channels: number, pool: 'avg' | 'max', k: string) => {
    g.initializers.set(`${k}_w`, randomTensor([channels, channels, 1, 1], channels));
    g.nodes.push(
      pool === 'avg' ? makeNode('GlobalAveragePool', [X], [`${k}_s`]) : makeNode('GlobalMaxPool', [X], [`${k}_s`]),
      makeNode('Conv', [`${k}_s`, `${k}_w`], [`${k}_e`]),
      makeNode('Sigmoid', [`${k}_e`], [`${k}_g`]),
      makeNode('Mul', [X, `${k}_g`], [`${k}_y`], {}, `${k}/mul`),
    );
    return `${k}_y`;
  };
  g.initializers.set('down', randomTensor([2 * C, C, 3, 3], 5));
  g.nodes.push(
    makeNode('Conv', [block('x', C, 'avg', 'se1'), 'down'], ['d'], { strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 1, 1]) }),
  );
  g.nodes.push(makeNode('Identity', [block(block('d', 2 * C, 'avg', 'se2'), 2 * C, 'max', 'maxed')], ['y']));
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

/** The report of seNet with 2-row tiles (se2's 4 rows: two tiles) and a hand-made gate analysis. */
function sampleTseReport(): TseReportJson {
  const model = seNet();
  const report = tseReport({
    model: 'models/se-net.onnx',
    output: 'out/se-net.tse.onnx',
    input: model.graph.inputs[0]!.shape,
    detection: detectSqueezeExcite(model),
    tiles: { tileRows: 2 },
    manifest: runManifest({ options: { tiles: { tileRows: 2 } }, inputs: [] }),
  });
  report.analysis = {
    tiles: '2-row tiles',
    images: 8,
    preset: 'inception',
    blocks: [
      { block: 'se1/mul', channels: 4, height: 8, width: 6, tile: [2, 6], grid: [4, 1], toGlobal: 0.9731, neighbours: 0.9512 },
      { block: 'se2/mul', channels: 8, height: 4, width: 3, tile: [2, 3], grid: [2, 1], toGlobal: 0.9904, neighbours: null },
    ],
  };
  return report;
}

const sectionIds = (html: string) => [...html.matchAll(/<section id="([^"]+)"/g)].map((m) => m[1]);
const section = (html: string, id: string) => new RegExp(`<section id="${id}">[\\s\\S]*?</section>`).exec(html)?.[0] ?? '';

test('tseReport: the blocks as detected, their buffering, the near miss', () => {
  const r = sampleTseReport();
  assert.equal(r.kind, 'tse');
  assert.deepEqual(r.blocks, [
    { block: 'se1/mul', squeeze: 'GlobalAveragePool', excitation: ['Conv'], gate: 'sigmoid' },
    { block: 'se2/mul', squeeze: 'GlobalAveragePool', excitation: ['Conv'], gate: 'sigmoid' },
  ]);
  assert.deepEqual(
    r.buffers.blocks.map((b) => [b.block, b.se, b.tse]),
    [
      ['se1/mul', 4 * 8 * 6, 4 * 2 * 6],
      ['se2/mul', 8 * 4 * 3, 8 * 2 * 3],
    ],
  );
  assert.deepEqual(
    r.nearMisses.map((m) => m.node),
    ['maxed/mul'],
  );
});

test('a TSE report shows summary, buffering, gate similarity and manifest, and no quantization section', () => {
  const html = renderReportHtml(sampleTseReport());
  assert.deepEqual(sectionIds(html), ['summary', 'buffers', 'similarity', 'manifest']);
  assert.match(html, /<title>quantflow report: se-net\.onnx — TSE, 2-row tiles<\/title>/);
  const summary = section(html, 'summary');
  assert.match(summary, /<dt>tiled model<\/dt><dd><code>out\/se-net\.tse\.onnx<\/code>/);
  assert.match(summary, /<dt>input<\/dt><dd>\[N, 4, 8, 6\]/);
  assert.match(summary, /2 found, 2 tiled/);
  assert.match(summary, /SE 288 → TSE 96 elements \(−66\.7%\)/);
  assert.match(
    summary,
    /<dt>near misses<\/dt><dd>1, listed below[\s\S]*<code>maxed\/mul<\/code><\/td><td>&#39;maxed_s&#39; squeezes by GlobalMaxPool/,
  );
  const buffers = section(html, 'buffers');
  assert.equal(buffers.match(/<svg/g)?.length, 1);
  assert.equal(buffers.match(/<rect class="bar"/g)?.length, 4, 'an SE and a TSE bar per block');
  assert.match(section(html, 'similarity'), /0\.9731<\/td><td class="n">0\.9512<\/td>[\s\S]*0\.9904<\/td><td class="n">–/);
  assert.ok(!/NaN|undefined/.test(html), 'no NaN or undefined leaks into the page');
  assert.doesNotMatch(html, /<script|<link|src=|url\(/);
});

test('a model without SE blocks still gets a summary, and nothing else empty', () => {
  const r = sampleTseReport();
  r.blocks = [];
  r.nearMisses = [];
  r.buffers = { tiles: '2-row tiles', blocks: [], se: 0, tse: 0, reduction: 0 };
  delete r.analysis;
  const html = renderReportHtml(r);
  assert.deepEqual(sectionIds(html), ['summary', 'manifest']);
  assert.match(html, /<dt>SE blocks<\/dt><dd>none found/);
  assert.doesNotMatch(html, /buffering|<h3>/);
});

test('readReportJson refuses a TSE report with one line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'report-tse-'));
  try {
    writeFileSync(join(dir, 'report.json'), JSON.stringify(sampleTseReport()));
    assert.throws(
      () => readReportJson(join(dir, 'report.json')),
      (e: unknown) => e instanceof QuantflowError && /a TSE report .*not a report\.json of quantflow quantize$/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const cli = (...args: string[]) => promisify(execFile)(process.execPath, [main, ...args]);
const failure = (p: Promise<unknown>) =>
  p.then(
    () => assert.fail('should exit with an error'),
    (e: { code: number; stderr: string }) => e,
  );

test('CLI: tse writes its report beside the model or into --report; diff refuses it; a failed write leaves nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'report-tse-cli-'));
  try {
    const model = join(dir, 'se.onnx');
    writeOnnxFile(seNet(), model);
    const { stdout } = await cli('tse', model, '--tile-rows', '2', '-o', join(dir, 'se-tse.onnx'));
    assert.match(stdout, /2 of 2 SE blocks tiled; report .*se-tse\.report\.html\n/);
    assert.deepEqual(readdirSync(dir).sort(), ['se-tse.onnx', 'se-tse.report.html', 'se-tse.report.json', 'se.onnx']);
    const json = JSON.parse(readFileSync(join(dir, 'se-tse.report.json'), 'utf8')) as TseReportJson;
    assert.equal(json.kind, 'tse');
    assert.equal(json.output, join(dir, 'se-tse.onnx'));
    assert.equal(json.buffers.tse, 96);
    assert.deepEqual(Object.keys(json.manifest.inputHashes), [model]);
    assert.deepEqual(json.manifest.options, {
      tiles: { tileRows: 2 },
      inputSize: null,
      analyze: false,
      limit: null,
      preprocess: null,
      skipBadImages: false,
    });
    const html = readFileSync(join(dir, 'se-tse.report.html'), 'utf8');
    assert.deepEqual(sectionIds(html), ['summary', 'buffers', 'passes', 'manifest']);

    await cli('tse', model, '--tile', '2x2', '-o', join(dir, 'sq.onnx'), '--report', join(dir, 'sq-report'));
    assert.deepEqual(readdirSync(join(dir, 'sq-report')).sort(), ['report.html', 'report.json']);

    const refused = await failure(cli('diff', join(dir, 'se-tse.report.json'), join(dir, 'se-tse.report.json')));
    assert.equal(refused.code, 2);
    assert.match(
      refused.stderr,
      /^quantflow: .*se-tse\.report\.json: a TSE report \(of quantflow tse or buffers\), not a report\.json of quantflow quantize\n$/,
    );

    // A file where the report folder should be: the model is written first, then removed.
    writeFileSync(join(dir, 'blocked'), '');
    const failed = await failure(
      cli('tse', model, '-o', join(dir, 'no.onnx'), '--json', join(dir, 'no.json'), '--report', join(dir, 'blocked')),
    );
    assert.notEqual(failed.code, 0);
    assert.ok(!existsSync(join(dir, 'no.onnx')) && !existsSync(join(dir, 'no.json')));
    assert.deepEqual(
      readdirSync(dir).filter((f) => /^no\.|report\.json\.tmp/.test(f)),
      [],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI: buffers writes report.html and report.json only with --report', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'report-buffers-cli-'));
  try {
    const model = join(dir, 'se.onnx');
    writeOnnxFile(seNet(), model);
    await cli('buffers', model, '--tile-rows', '2');
    assert.deepEqual(readdirSync(dir), ['se.onnx']);
    const { stdout } = await cli('buffers', model, '--input', '16x12', '--tile-rows', '2', '--report', join(dir, 'r'));
    assert.match(stdout, /wrote .*report\.html and .*report\.json\n$/);
    const json = JSON.parse(readFileSync(join(dir, 'r', 'report.json'), 'utf8')) as TseReportJson;
    assert.equal(json.output, undefined);
    assert.deepEqual(json.input, ['N', C, 16, 12]);
    assert.equal(json.buffers.se, 4 * 16 * 12 + 8 * 8 * 6);
    const html = readFileSync(join(dir, 'r', 'report.html'), 'utf8');
    assert.deepEqual(sectionIds(html), ['summary', 'buffers', 'passes', 'manifest']);
    assert.doesNotMatch(html, /tiled model/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
