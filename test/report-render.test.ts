/**
 * Opens rendered reports (a quantization run, a TSE run) in headless Chromium and checks
 * what a reader would see: every chart laid out with visible marks, no errors, no console
 * output, no resource fetched.
 * The report has no scripts; the test adds two probes to its own copy (an error recorder
 * first in <head>, a measurement last in <body>) and reads the result from --dump-dom.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { loadProfile } from '../src/quantization/profile.js';
import { renderReportHtml } from '../src/report/html.js';
import { runManifest } from '../src/report/manifest.js';
import type { QuantizeReportJson, ReportExtras, TseReportJson } from '../src/report/types.js';

const CHROMIUM = '/usr/bin/chromium';

/** A report with data for every section, so that every chart kind is drawn. */
function fullReport(): { report: QuantizeReportJson; extras: ReportExtras } {
  const layers = Array.from({ length: 12 }, (_, i) => {
    const ranges = Array.from({ length: 32 }, (_, c) => 0.01 + ((c * 37 + i) % 29) / 7);
    const shifts = ranges.map((r) => Math.min(15, Math.max(0, Math.floor(Math.log2(4.2 / r)))));
    const s = Math.max(...ranges.map((r, c) => r * 2 ** shifts[c]!)) / 127;
    return {
      name: `Net/block_${i}/conv`,
      opType: 'Conv',
      weightBits: 8,
      granularity: 'shift',
      weightScales: shifts.map((k) => s / 2 ** k),
      shifts,
      weightSqnrDb: i === 3 ? null : 35 + i,
      outputSqnrDb: i === 5 ? -2 : 8 + 2 * i,
      outputActivation: { tensor: `t${i}`, scale: 0.02, zeroPoint: 0 },
      channelRanges: ranges,
      weightCount: 32 * 9,
    };
  });
  const report: QuantizeReportJson = {
    model: 'net.tflite',
    profile: loadProfile('w8a8-shift'),
    calibration: { method: 'mse', images: 64, preset: 'inception', folder: 'calib' },
    biasCorrection: true,
    seconds: { calibration: 21.6, weights: 4.9, export: 0.04, evaluation: 14.8 },
    layers,
    activations: { input: { scale: 0.0078, zeroPoint: 127, qmin: 0, qmax: 255 } },
    accuracy: { float: { data: 'val', n: 650, top1: 0.785, top5: 0.955 }, quantized: { data: 'val', n: 650, top1: 0.755, top5: 0.932 } },
    passes: [
      {
        pass: 'fold-batchnorm',
        seconds: 0.01,
        nodes: { before: 6, after: 5 },
        parameters: { before: 145, after: 129 },
        opDelta: { BatchNormalization: -1 },
        initializers: { added: 2, removed: 6, changed: 0 },
      },
    ],
    qft: {
      options: { epochs: 2, batch: 16, lrWeights: 0.001 },
      steps: 32,
      seconds: 52.1,
      initialLoss: 0.55,
      epochLosses: [0.31, 0.24],
      stepLosses: Array.from({ length: 32 }, (_, i) => 0.2 + 0.35 * Math.exp(-i / 6) + 0.02 * Math.sin(i)),
    },
  };
  const extras: ReportExtras = {
    manifest: runManifest({ options: { calibLimit: 64 }, inputs: [] }),
    buffers: {
      tiles: '7-row tiles',
      blocks: [
        { block: 'se1/mul', input: 'x1', channels: 16, height: 56, width: 56, tile: [7, 56], se: 50176, tse: 6272 },
        { block: 'se2/mul', input: 'x2', channels: 96, height: 14, width: 14, tile: [7, 14], se: 18816, tse: 9408 },
      ],
      se: 68992,
      tse: 15680,
      reduction: 0.773,
    },
  };
  return { report, extras };
}

/** A TSE run with every TSE section: blocks, a near miss, buffering, gate similarity. */
function tseReport(): TseReportJson {
  const geometry = [
    { block: 'Net/se1/mul', input: 'x1', channels: 16, height: 56, width: 56, tile: [7, 56] as [number, number], se: 50176, tse: 6272 },
    { block: 'Net/se2/mul', input: 'x2', channels: 96, height: 7, width: 7, tile: [7, 7] as [number, number], se: 4704, tse: 4704 },
  ];
  return {
    kind: 'tse',
    model: 'net.tflite',
    output: 'net-tse7.onnx',
    input: [1, 3, 224, 224],
    blocks: geometry.map((g) => ({ block: g.block, squeeze: 'AveragePool', excitation: ['Conv', 'Conv'], gate: 'hard-sigmoid' })),
    nearMisses: [{ node: 'Net/head/mul', reason: "'Net/head/pool' squeezes by GlobalMaxPool; tiling handles average pooling only" }],
    buffers: { tiles: '7-row tiles', blocks: geometry, se: 54880, tse: 10976, reduction: 0.8 },
    analysis: {
      tiles: '7-row tiles',
      images: 16,
      preset: 'inception',
      blocks: geometry.map((g, i) => ({
        block: g.block,
        channels: g.channels,
        height: g.height,
        width: g.width,
        tile: g.tile,
        grid: [i ? 1 : 8, 1] as [number, number],
        toGlobal: 0.97,
        neighbours: i ? null : 0.95,
      })),
    },
    manifest: runManifest({ options: { tiles: { tileRows: 7 } }, inputs: [] }),
  };
}

/** Records errors of any kind, before the page's own content loads. */
const RECORDER = `<script>window.__errors=[];addEventListener('error',e=>__errors.push(String(e.message||e.target?.outerHTML)),true);
addEventListener('securitypolicyviolation',e=>__errors.push('csp '+e.blockedURI));</script>`;

/** Measures every chart and its visible marks (bars, lines, dots) and writes the result into the DOM, where --dump-dom shows it. */
const PROBE = `<script>{const charts=[...document.querySelectorAll('svg.chart')].map(s=>{const r=s.getBoundingClientRect();
const marks=[...s.querySelectorAll('.bar,.line,.dot')].filter(b=>{const x=b.getBBox();return x.width>0&&x.height>0}).length;
return {label:s.getAttribute('aria-label'),width:r.width,height:r.height,marks}});
const p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify({charts,errors:__errors,
resources:performance.getEntriesByType('resource').map(e=>e.name),sections:[...document.querySelectorAll('section')].map(s=>s.id)});
document.body.append(p)}</script>`;

interface Probe {
  charts: { label: string; width: number; height: number; marks: number }[];
  errors: string[];
  resources: string[];
  sections: string[];
}

const SKIP = existsSync(CHROMIUM) ? false : `${CHROMIUM} not installed (apt-get install chromium)`;

/** Opens `html` with the probes in headless Chromium; the probe's findings and Chromium's stderr. */
async function renderInChromium(html: string): Promise<{ probe: Probe; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'report-render-'));
  try {
    const page = join(dir, 'report.html');
    writeFileSync(page, html.replace('<head>', `<head>${RECORDER}`).replace('</main>', `</main>${PROBE}`));
    const { stdout, stderr } = await promisify(execFile)(
      CHROMIUM,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        `--user-data-dir=${join(dir, 'profile')}`,
        '--enable-logging=stderr',
        '--v=0',
        '--window-size=1280,2400',
        '--dump-dom',
        pathToFileURL(page).href,
      ],
      { timeout: 60_000, maxBuffer: 64 << 20 },
    );
    const json = /<pre id="probe">([^<]*)<\/pre>/.exec(stdout)?.[1];
    assert.ok(json, 'the probe ran (JavaScript executed after the page loaded)');
    const probe = JSON.parse(
      json
        .replace(/&quot;/g, '"')
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&amp;/g, '&'),
    ) as Probe;
    return { probe, stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What every page must satisfy: no errors, nothing fetched, no console output, every chart drawn. */
function assertClean({ probe, stderr }: { probe: Probe; stderr: string }): void {
  assert.deepEqual(probe.errors, []);
  assert.deepEqual(probe.resources, [], 'the report fetches nothing');
  for (const c of probe.charts) {
    assert.ok(c.width > 0 && c.height > 0, `${c.label}: laid out (${c.width}x${c.height})`);
    assert.ok(c.marks > 0, `${c.label}: has visible marks`);
  }
  assert.deepEqual(
    stderr.split('\n').filter((l) => /CONSOLE/.test(l)),
    [],
    'no console output',
  );
}

test('the quantization report renders in headless Chromium: charts drawn, no errors', { skip: SKIP }, async () => {
  const { report, extras } = fullReport();
  const rendered = await renderInChromium(renderReportHtml(report, extras));
  const { probe } = rendered;
  assert.deepEqual(probe.sections, ['summary', 'qft', 'sqnr', 'wess', 'layers', 'buffers', 'activations', 'passes', 'manifest']);
  assertClean(rendered);
  // Stacked time bar, QFT loss curve, SQNR bars, WESS panels, SE buffers, and a shift histogram per layer.
  assert.equal(probe.charts.length, 5 + report.layers.length);
  const sqnr = probe.charts.find((c) => /SQNR/.test(c.label))!;
  assert.equal(sqnr.marks, 2 * report.layers.length, 'a weight and an output bar per layer');
  const qft = probe.charts.find((c) => /QFT/.test(c.label))!;
  assert.equal(qft.marks, 1 + report.qft!.epochLosses.length, 'the loss line and a dot per epoch');
});

test('the TSE report renders in headless Chromium: buffering chart drawn, no errors', { skip: SKIP }, async () => {
  const report = tseReport();
  const rendered = await renderInChromium(renderReportHtml(report));
  assert.deepEqual(rendered.probe.sections, ['summary', 'buffers', 'similarity', 'manifest']);
  assertClean(rendered);
  assert.deepEqual(
    rendered.probe.charts.map((c) => [c.label, c.marks]),
    [['elements buffered per SE block', 2 * report.buffers.blocks.length]],
  );
});
