import { esc, num, table } from '../markup.js';
import type { ReportSection } from '../section.js';

/** Every quantized activation's grid and the real range it covers; collapsed, as it is long. */
export const activationsSection: ReportSection = {
  id: 'activations',
  title: 'Activations',
  render({ report }) {
    if (report.kind === 'tse') return undefined;
    const entries = Object.entries(report.activations);
    if (!entries.length) return undefined;
    const rows = entries.map(([name, a]) => [
      `<code>${esc(name)}</code>`,
      { html: num(a.scale), numeric: true },
      { html: String(a.zeroPoint), numeric: true },
      { html: `${a.qmin}..${a.qmax}`, numeric: true },
      { html: `${num(a.scale * (a.qmin - a.zeroPoint))} .. ${num(a.scale * (a.qmax - a.zeroPoint))}`, numeric: true },
    ]);
    return `<details><summary>${entries.length} per-tensor activation grids</summary>${table(['tensor', 'scale', 'zero point', 'integer range', 'real range'], rows)}</details>`;
  },
};
