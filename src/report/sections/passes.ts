import { count, esc, num, table } from '../markup.js';
import type { ReportSection } from '../section.js';

/** What each graph pass changed, in the order they ran. */
export const passesSection: ReportSection = {
  id: 'passes',
  title: 'Passes',
  render({ report, extras }) {
    const passes = extras.passes ?? report.passes;
    if (!passes?.length) return undefined;
    const signed = (d: number) => (d > 0 ? `+${d}` : `−${-d}`);
    const rows = passes.map((p) => [
      esc(p.pass),
      { html: num(p.seconds), numeric: true },
      { html: `${p.nodes.before} → ${p.nodes.after}`, numeric: true },
      esc(
        Object.entries(p.opDelta)
          .map(([op, d]) => `${op} ${signed(d)}`)
          .join(', '),
      ),
      { html: `${count(p.parameters.before)} → ${count(p.parameters.after)}`, numeric: true },
      { html: `+${p.initializers.added} −${p.initializers.removed} ~${p.initializers.changed}`, numeric: true },
    ]);
    return table(['pass', 'seconds', 'nodes', 'ops added/removed', 'parameters', 'initializers added/removed/changed'], rows);
  },
};
