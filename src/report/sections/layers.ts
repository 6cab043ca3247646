import { COLORS, sparkHistogram } from '../charts.js';
import { db, esc, num, table } from '../markup.js';
import type { ReportSection } from '../section.js';
import type { ReportLayer } from '../types.js';

function scaleText(l: ReportLayer): string {
  const s = l.weightScales;
  if (s.length === 1) return num(s[0]!);
  return `${num(Math.min(...s))} – ${num(Math.max(...s))}`;
}

function shiftCell(l: ReportLayer): string {
  if (!l.shifts?.length) return '';
  const max = Math.max(...l.shifts);
  const counts = new Array<number>(max + 1).fill(0);
  for (const k of l.shifts) counts[k] = counts[k]! + 1;
  const spark = sparkHistogram({ label: `shifts k of ${l.name}: channels per k = 0..${max}`, counts, color: COLORS.teal });
  return `${spark} <span class="dim">0..${max}</span>`;
}

/** Every layer in graph order: bits, granularity, scales, shifts and SQNR. */
export const layersSection: ReportSection = {
  id: 'layers',
  title: 'Layers',
  render({ report, labels }) {
    if (report.kind === 'tse' || !report.layers.length) return undefined;
    const withShifts = report.layers.some((l) => l.shifts?.length);
    const rows = report.layers.map((l, i) => [
      { html: String(i), numeric: true },
      `<span title="${esc(l.name)}">${esc(labels.get(l.name)!)}</span>`,
      esc(l.opType),
      esc(`${l.weightBits}-bit ${l.granularity}`),
      { html: String(l.weightScales.length > 1 ? l.weightScales.length : (l.channelRanges?.length ?? '')), numeric: true },
      {
        html: scaleText(l),
        numeric: true,
        title: l.weightScales.length > 1 ? 'smallest – largest effective per-channel scale' : undefined,
      },
      ...(withShifts ? [shiftCell(l)] : []),
      { html: db(l.weightSqnrDb), numeric: true },
      { html: db(l.outputSqnrDb), numeric: true },
      {
        html: l.outputActivation ? `${num(l.outputActivation.scale)} / ${l.outputActivation.zeroPoint}` : '',
        numeric: true,
        title: l.outputActivation?.tensor,
      },
    ]);
    const header = [
      '#',
      'layer',
      'op',
      'weights',
      'channels',
      'weight scale',
      ...(withShifts ? ['WESS shifts k (histogram)'] : []),
      'weight SQNR dB',
      'output SQNR dB',
      'output scale / zero point',
    ];
    return table(header, rows, 'layers');
  },
};
