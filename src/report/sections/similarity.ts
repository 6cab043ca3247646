import { esc, table } from '../markup.js';
import type { ReportSection } from '../section.js';

/** TSE `--analyze`: how close each tile's gate is to the global SE gate, and to its neighbours. */
export const similaritySection: ReportSection = {
  id: 'similarity',
  title: 'TSE: gate similarity',
  render({ report }) {
    if (report.kind !== 'tse' || !report.analysis?.blocks.length) return undefined;
    const a = report.analysis;
    const rows = a.blocks.map((b) => [
      `<code>${esc(b.block)}</code>`,
      { html: `${b.channels}×${b.height}×${b.width}`, numeric: true },
      { html: `${b.tile[0]}×${b.tile[1]}`, numeric: true },
      { html: `${b.grid[0]}×${b.grid[1]}`, numeric: true },
      { html: b.toGlobal.toFixed(4), numeric: true },
      { html: b.neighbours === null ? '–' : b.neighbours.toFixed(4), numeric: true },
    ]);
    return (
      `<p class="note">Mean cosine similarity of gate vectors over ${a.images} images (preset ${esc(a.preset)}, ${esc(a.tiles)}): ` +
      "of each tile's gate to the global SE gate of the same image, and of adjacent tiles to each other. Every block gets the " +
      'input the SE network gives it, so each is judged alone. Near 1, a tile sees what the whole map says; lower, its gate ' +
      'depends on where it is. A block that one tile covers has no neighbours.</p>' +
      table(['SE block (Mul)', 'C × H × W', 'tile', 'tiles', 'tile vs global', 'neighbours'], rows)
    );
  },
};
