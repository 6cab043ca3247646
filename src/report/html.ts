/**
 * The human-readable report of a quantization or TSE run: one self-contained HTML file
 * (inline CSS, charts as inline SVG, no scripts, no network), so it can be mailed, archived
 * or opened offline.
 */
import { basename } from 'node:path';
import { esc, shortLabels } from './markup.js';
import type { ReportContext, ReportSection } from './section.js';
import { activationsSection } from './sections/activations.js';
import { activationAllocationSection, allocationSection } from './sections/allocation.js';
import { buffersSection } from './sections/buffers.js';
import { compareSection } from './sections/compare.js';
import { layersSection } from './sections/layers.js';
import { manifestSection } from './sections/manifest.js';
import { outputsSection } from './sections/outputs.js';
import { passesSection } from './sections/passes.js';
import { qftSection } from './sections/qft.js';
import { similaritySection } from './sections/similarity.js';
import { sqnrSection } from './sections/sqnr.js';
import { summarySection } from './sections/summary.js';
import { wessSection } from './sections/wess.js';
import type { ReportExtras, ReportJson } from './types.js';

/** In page order. */
const SECTIONS: ReportSection[] = [
  summarySection,
  compareSection,
  qftSection,
  allocationSection,
  activationAllocationSection,
  outputsSection,
  sqnrSection,
  wessSection,
  layersSection,
  buffersSection,
  similaritySection,
  activationsSection,
  passesSection,
  manifestSection,
];

const CSS = `
body{font:14px/1.45 system-ui,sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:1040px;margin:0 auto;padding:20px 24px 60px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}
nav{font-size:13px;margin-bottom:12px}nav a{margin-right:14px;color:#4e79a7}
.dim,.note{color:#666}.note{font-size:13px;max-width:900px}
code{font:12px ui-monospace,monospace;word-break:break-all}
dl.facts{display:grid;grid-template-columns:150px 1fr;gap:4px 12px;margin:0}
dl.facts dt{color:#666}dl.facts dd{margin:0}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
th{background:#f3f3f3;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.layers td{white-space:nowrap}
svg.chart{display:block;max-width:100%;height:auto;margin:6px 0}td svg.chart{display:inline-block;vertical-align:middle;margin:0}
details summary{cursor:pointer;color:#4e79a7}
`;

/**
 * Renders `report` (the `report.json` of `quantflow quantize`, `tse` or `buffers`) and any
 * `extras` as one HTML page. Sections without data are left out.
 */
export function renderReportHtml(report: ReportJson, extras: ReportExtras = {}): string {
  const names = report.kind === 'tse' ? [] : report.layers.map((l) => l.name);
  const labels = shortLabels(names);
  const ctx: ReportContext = {
    report,
    extras,
    accuracy: extras.accuracy ?? (report.kind === 'tse' ? undefined : report.accuracy),
    labels: new Map(names.map((n, i) => [n, labels[i]!])),
  };
  const rendered = SECTIONS.map((s) => ({ s, html: s.render(ctx) })).filter((r) => r.html !== undefined);
  const title = `${basename(report.model)} — ${report.kind === 'tse' ? `TSE, ${report.buffers.tiles}` : report.profile.name}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>quantflow report: ${esc(title)}</title><style>${CSS}</style></head>
<body><main>
<h1>quantflow report: ${esc(title)}</h1>
<nav>${rendered.map(({ s }) => `<a href="#${s.id}">${esc(s.title)}</a>`).join('')}</nav>
${rendered.map(({ s, html }) => `<section id="${s.id}"><h2>${esc(s.title)}</h2>\n${html}</section>`).join('\n')}
</main></body></html>
`;
}
