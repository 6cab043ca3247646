import type { Command } from 'commander';
import { readReportJson } from '../../report/read.js';
import { diffReports, type ReportDiff } from '../../report/diff.js';
import type { JsonDb } from '../../report/types.js';
import { shortLabels } from '../../report/markup.js';
import { formatTable } from '../table.js';
import { writeJsonResult } from '../../util/fs.js';

interface DiffOptions {
  json?: string;
}

/** One decimal, without the "-0.0" that rounding a tiny negative gives. */
const fixed = (x: number) => (Math.abs(x) < 0.05 ? 0 : x).toFixed(1);
const dbText = (x: JsonDb) => (x === null ? 'inf' : fixed(x));
const signed = (x: number | null) => (x === null ? '-' : `${x >= 0.05 ? '+' : ''}${fixed(x)}`);
const show = (v: unknown) => (v === undefined ? '(absent)' : JSON.stringify(v));

/** The diff as the plain-text tables the command prints. */
export function formatDiff(d: ReportDiff): string {
  const out: string[] = [`a: ${d.a}`, `b: ${d.b}`, ''];
  if (d.settings.length)
    out.push('settings that differ (a -> b):', ...d.settings.map((s) => `  ${s.key}: ${show(s.a)} -> ${show(s.b)}`), '');
  else out.push('settings: identical', '');
  if (d.accuracy.length) {
    out.push(
      formatTable([
        ['accuracy', 'top-1 a', 'top-1 b', 'delta pt', 'top-5 a', 'top-5 b', 'delta pt'],
        ...d.accuracy.map((x) => [
          x.model + (x.comparable ? '' : ' (different images)'),
          (100 * x.a.top1).toFixed(1),
          (100 * x.b.top1).toFixed(1),
          signed(x.top1),
          (100 * x.a.top5).toFixed(1),
          (100 * x.b.top5).toFixed(1),
          signed(x.top5),
        ]),
      ]),
      '',
    );
  }
  if (d.qft)
    out.push(
      `QFT final epoch loss: ${d.qft.a.toPrecision(3)} -> ${d.qft.b.toPrecision(3)} (${d.qft.delta >= 0 ? '+' : ''}${d.qft.delta.toPrecision(3)})`,
      '',
    );
  if (d.layers.length) {
    const labels = shortLabels(d.layers.map((l) => l.name));
    out.push(
      formatTable([
        ['layer (largest SQNR drop first)', 'weights a -> b', 'weight dB a', 'b', 'delta', 'output dB a', 'b', 'delta'],
        ...d.layers.map((l, i) => [
          labels[i]!,
          l.weights.a === l.weights.b ? l.weights.a : `${l.weights.a} -> ${l.weights.b}`,
          dbText(l.weightSqnrDb.a),
          dbText(l.weightSqnrDb.b),
          signed(l.weightSqnrDb.delta),
          l.outputSqnrDb ? dbText(l.outputSqnrDb.a) : '-',
          l.outputSqnrDb ? dbText(l.outputSqnrDb.b) : '-',
          signed(l.outputSqnrDb?.delta ?? null),
        ]),
      ]),
    );
  }
  if (d.onlyInA.length) out.push(`only in a (${d.onlyInA.length}): ${d.onlyInA.join(', ')}`);
  if (d.onlyInB.length) out.push(`only in b (${d.onlyInB.length}): ${d.onlyInB.join(', ')}`);
  return out.join('\n');
}

export function registerDiff(program: Command): void {
  program
    .command('diff')
    .description('Compare two quantization reports: settings, accuracy and per-layer SQNR.')
    .argument('<a>', 'report.json of the baseline run')
    .argument('<b>', 'report.json of the run to compare')
    .option('--json <file>', 'write the comparison as JSON (SQNR null means infinite, as in report.json)')
    .addHelpText(
      'after',
      '\nDeltas are b − a: negative SQNR deltas are regressions.\n\nExample:\n  quantflow diff out/w8a8-shift/report.json out/w8a8-channel/report.json',
    )
    .action((a: string, b: string, opts: DiffOptions) => {
      const diff = diffReports(readReportJson(a), readReportJson(b), { a, b });
      console.log(formatDiff(diff));
      if (opts.json) writeJsonResult(opts.json, diff);
    });
}
