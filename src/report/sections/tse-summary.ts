import { formatShape } from '../../graph/tensor.js';
import { count, esc, facts, percent, table } from '../markup.js';
import { isTiled } from '../tse.js';
import type { TseReportJson } from '../types.js';

/** The summary of a TSE report: model, tiling, the blocks found, what tiling saves, near misses. */
export function tseSummary(r: TseReportJson): string {
  const b = r.buffers;
  const tiled = b.blocks.filter(isTiled).length;
  const whole = b.blocks.length - tiled;
  const rows: [string, string][] = [['model', `<code>${esc(r.model)}</code>`]];
  if (r.output) rows.push(['tiled model', `<code>${esc(r.output)}</code>`]);
  rows.push(
    ['input', r.input ? esc(formatShape(r.input)) : 'unknown shape'],
    ['tiling', esc(b.tiles)],
    [
      'SE blocks',
      b.blocks.length
        ? `${b.blocks.length} found, ${tiled} tiled` + (whole ? `; ${whole} covered whole by one tile, left as SE` : '')
        : 'none found',
    ],
  );
  if (b.blocks.length) rows.push(['buffering', `SE ${count(b.se)} → TSE ${count(b.tse)} elements (−${percent(b.reduction)})`]);
  rows.push(['near misses', r.nearMisses.length ? `${r.nearMisses.length}, listed below` : 'none']);
  return facts(rows) + blockTable(r) + nearMissTable(r);
}

function blockTable(r: TseReportJson): string {
  if (!r.blocks.length) return '';
  const rows = r.blocks.map((x, i) => {
    const buffer = r.buffers.blocks[i]!;
    return [
      `<code>${esc(x.block)}</code>`,
      esc(x.squeeze),
      esc(x.excitation.join(' + ')),
      esc(x.gate),
      { html: isTiled(buffer) ? `${buffer.tile[0]}×${buffer.tile[1]}` : 'whole map', numeric: true },
    ];
  });
  return '<h3>Squeeze-and-excite blocks</h3>' + table(['SE block (Mul)', 'squeeze', 'excitation', 'gate', 'tile'], rows);
}

function nearMissTable(r: TseReportJson): string {
  if (!r.nearMisses.length) return '';
  return (
    '<h3>Near misses</h3>' +
    table(
      ['Mul', 'why it is not an SE block'],
      r.nearMisses.map((m) => [`<code>${esc(m.node)}</code>`, esc(m.reason)]),
    )
  );
}
