import { channelPanels, COLORS } from '../charts.js';
import { esc, num, table } from '../markup.js';
import type { ReportContext, ReportSection } from '../section.js';
import type { ReportLayer } from '../types.js';

/** A WESS layer with what the picture needs: float ranges and shifts per channel. */
interface ShiftedLayer extends ReportLayer {
  shifts: number[];
  channelRanges: number[];
}

const isShifted = (l: ReportLayer): l is ShiftedLayer =>
  !!l.shifts?.length &&
  l.channelRanges?.length === l.shifts.length &&
  l.weightScales.length === l.shifts.length &&
  // An all-zero layer has nothing to show on a log axis.
  l.channelRanges.some((r) => r > 0);

/** Ratio of the largest to the smallest non-zero value: how unequal the channels are. */
function spread(values: number[]): number {
  const nz = values.filter((v) => v > 0);
  return nz.length ? Math.max(...nz) / Math.min(...nz) : 1;
}

/** The one scale WESS shares across the layer: s = s_eff[c] · 2^k[c] for every c. */
const layerScale = (l: ShiftedLayer) => l.weightScales[0]! * 2 ** l.shifts[0]!;

const shifted = (l: ShiftedLayer) => l.channelRanges.map((r, c) => r * 2 ** l.shifts[c]!);

/** Channels whose largest weight is below 8 steps: fewer than 16 of the grid's levels in use. */
const coarse = (ranges: number[], scale: number) => ranges.filter((r) => r / scale < 8).length;

/** Fraction of channels that shifting lifts to 16 levels or more: how much WESS does for a layer. */
const gain = (l: ShiftedLayer) => (coarse(l.channelRanges, layerScale(l)) - coarse(shifted(l), layerScale(l))) / l.shifts.length;

/**
 * Per-channel weight ranges of one layer before and after its WESS shifts: the picture
 * behind the method. Needs `channelRanges` in the report; without them the section is left out.
 */
export const wessSection: ReportSection = {
  id: 'wess',
  title: 'WESS: per-channel weight ranges',
  render(ctx: ReportContext) {
    if (ctx.report.kind === 'tse') return undefined;
    const layers = ctx.report.layers.filter(isShifted);
    if (!layers.length) return undefined;
    const ranked = [...layers].sort((a, b) => gain(b) - gain(a) || spread(b.channelRanges) - spread(a.channelRanges));
    const chosen = layers.find((l) => l.name === ctx.extras.wessLayer) ?? ranked[0]!;
    const s = layerScale(chosen);
    const qmax = 2 ** (chosen.weightBits - 1) - 1;
    const after = shifted(chosen);
    const grid = [{ value: qmax * s, label: `grid maximum ${qmax}·s = ${num(qmax * s)}` }];
    const chart = channelPanels({
      label: `per-channel max |w| of ${chosen.name} before and after WESS shifts`,
      unit: 'max |w| per channel',
      panels: [
        { title: 'before shifting: max |w[c]|', values: chosen.channelRanges, color: COLORS.grey, lines: grid },
        { title: 'after shifting: max |w[c]| · 2^k[c]', values: after, color: COLORS.blue, lines: grid },
      ],
    });
    const c = chosen.channelRanges.length;
    const dead = chosen.channelRanges.filter((r) => r === 0).length;
    const intro =
      `<p class="note">Layer <code title="${esc(chosen.name)}">${esc(ctx.labels.get(chosen.name)!)}</code> (${c} output channels, ${chosen.weightBits}-bit): ` +
      `one scale s = ${num(s)} serves the whole layer. Before shifting, ${coarse(chosen.channelRanges, s)} of ${c} channels would use fewer than 16 of its levels; ` +
      `multiplying channel c by 2^k[c] (undone in the requantization) brings that to ${coarse(after, s)}, and the spread of ranges from ` +
      `${num(spread(chosen.channelRanges))}× to ${num(spread(after))}×` +
      (dead ? `; ${dead} channel${dead > 1 ? 's are' : ' is'} all zero and stay${dead > 1 ? '' : 's'} so` : '') +
      '.</p>';
    const rows = ranked
      .slice(0, 12)
      .map((l) => [
        `<span title="${esc(l.name)}">${esc(ctx.labels.get(l.name)!)}</span>`,
        { html: String(l.shifts.length), numeric: true },
        { html: `${num(spread(l.channelRanges))}×`, numeric: true },
        { html: `${num(spread(shifted(l)))}×`, numeric: true },
        { html: `${coarse(l.channelRanges, layerScale(l))} → ${coarse(shifted(l), layerScale(l))}`, numeric: true },
        { html: `${Math.min(...l.shifts)}..${Math.max(...l.shifts)}`, numeric: true },
      ]);
    return (
      intro +
      chart +
      `<h3>Layers where shifting helps most</h3>` +
      table(['layer', 'channels', 'range spread before', 'after', 'channels < 16 levels', 'shifts k'], rows)
    );
  },
};
