import { barChart, COLORS } from '../charts.js';
import { esc, num, percent, shortLabels, table } from '../markup.js';
import type { ReportSection } from '../section.js';

/** TSE: activation buffering of each squeeze-and-excite block, whole map vs one band of tiles. */
export const buffersSection: ReportSection = {
  id: 'buffers',
  title: 'TSE: squeeze-and-excite buffering',
  render({ report, extras }) {
    const b = extras.buffers ?? (report.kind === 'tse' ? report.buffers : undefined);
    if (!b?.blocks.length) return undefined;
    const k = (n: number) => n / 1e3;
    const labels = shortLabels(b.blocks.map((x) => x.block));
    const chart = barChart({
      label: 'elements buffered per SE block',
      unit: 'k elements',
      series: [
        { name: 'SE (whole map)', color: COLORS.grey },
        { name: `TSE (${b.tiles})`, color: COLORS.green },
      ],
      rows: b.blocks.map((x, i) => ({ label: labels[i]!, title: x.block, values: [k(x.se), k(x.tse)] })),
    });
    const rows = b.blocks.map((x) => [
      `<code>${esc(x.block)}</code>`,
      { html: `${x.channels}×${x.height}×${x.width}`, numeric: true },
      { html: `${x.tile[0]}×${x.tile[1]}`, numeric: true },
      { html: num(x.se), numeric: true },
      { html: num(x.tse), numeric: true },
    ]);
    rows.push([
      '<b>total</b>',
      '',
      '',
      { html: num(b.se), numeric: true },
      { html: `${num(b.tse)} (−${percent(b.reduction)})`, numeric: true },
    ]);
    return (
      '<p class="note">On a row-streaming accelerator an SE block holds its whole input (C·H·W) until the global mean exists; ' +
      'tiled SE holds one band of tile rows (C·k·W).</p>' +
      chart +
      table(['SE block (Mul)', 'C × H × W', 'tile', 'SE buffer', 'TSE buffer'], rows)
    );
  },
};
