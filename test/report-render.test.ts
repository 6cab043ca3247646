/**
 * Opens a rendered report in headless Chromium and checks what a reader would see: every
 * chart laid out with visible bars, no errors, no console output, no resource fetched.
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
import type { QuantizeReportJson, ReportExtras } from '../src/report/types.js';

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
    passes: [{ pass: 'fold-batchnorm', seconds: 0.01, nodes: { before: 6, after: 5 }, parameters: { before: 145, after: 129 }, opDelta: { BatchNormalization: -1 }, initializers: { added: 2, removed: 6, changed: 0 } }],
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

/** Records errors of any kind, before the page's own content loads. */
const RECORDER = `<script>window.__errors=[];addEventListener('error',e=>__errors.push(String(e.message||e.target?.outerHTML)),true);
addEventListener('securitypolicyviolation',e=>__errors.push('csp '+e.blockedURI));</script>`;

/** Measures every chart and writes the result into the DOM, where --dump-dom shows it. */
const PROBE = `<script>{const charts=[...document.querySelectorAll('svg.chart')].map(s=>{const r=s.getBoundingClientRect();
const bars=[...s.querySelectorAll('.bar')].filter(b=>{const x=b.getBBox();return x.width>0&&x.height>0}).length;
return {label:s.getAttribute('aria-label'),width:r.width,height:r.height,bars}});
const p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify({charts,errors:__errors,
resources:performance.getEntriesByType('resource').map(e=>e.name),sections:[...document.querySelectorAll('section')].map(s=>s.id)});
document.body.append(p)}</script>`;

interface Probe {
  charts: { label: string; width: number; height: number; bars: number }[];
  errors: string[];
  resources: string[];
  sections: string[];
}

test('the report renders in headless Chromium: charts drawn, no errors', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} not installed (apt-get install chromium)` }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'report-render-'));
  try {
    const { report, extras } = fullReport();
    const html = renderReportHtml(report, extras).replace('<head>', `<head>${RECORDER}`).replace('</main>', `</main>${PROBE}`);
    const page = join(dir, 'report.html');
    writeFileSync(page, html);
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
    const probe = JSON.parse(json.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')) as Probe;
    assert.deepEqual(probe.sections, ['summary', 'sqnr', 'wess', 'layers', 'buffers', 'activations', 'passes', 'manifest']);
    assert.deepEqual(probe.errors, []);
    assert.deepEqual(probe.resources, [], 'the report fetches nothing');
    // Stacked time bar, SQNR bars, WESS panels, SE buffers, and a shift histogram per layer.
    assert.equal(probe.charts.length, 4 + report.layers.length);
    for (const c of probe.charts) {
      assert.ok(c.width > 0 && c.height > 0, `${c.label}: laid out (${c.width}x${c.height})`);
      assert.ok(c.bars > 0, `${c.label}: has visible bars`);
    }
    const sqnr = probe.charts.find((c) => /SQNR/.test(c.label))!;
    assert.equal(sqnr.bars, 2 * report.layers.length, 'a weight and an output bar per layer');
    assert.deepEqual(stderr.split('\n').filter((l) => /CONSOLE/.test(l)), [], 'no console output');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
