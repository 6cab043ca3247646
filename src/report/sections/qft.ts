import { COLORS, lineChart } from '../charts.js';
import { esc, num, table } from '../markup.js';
import type { ReportSection } from '../section.js';
import type { QftReport } from '../types.js';

/** QFT: the distillation loss step by step and per epoch, and the options it trained with. */
export const qftSection: ReportSection = {
  id: 'qft',
  title: 'QFT: finetuning loss',
  render({ report }) {
    if (report.kind === 'tse' || !report.qft) return undefined;
    const q = report.qft;
    const final = q.epochLosses.at(-1);
    const change = final !== undefined && q.initialLoss > 0 ? final / q.initialLoss - 1 : undefined;
    const summary = table(
      ['initial loss (PTQ, first batch)', 'final epoch loss', 'change', 'epochs', 'steps', 'seconds', 's per step'],
      [
        [
          { html: num(q.initialLoss), numeric: true },
          { html: final === undefined ? '' : num(final), numeric: true },
          {
            html:
              change === undefined || !Number.isFinite(change) ? '' : `${change < 0 ? '−' : '+'}${(100 * Math.abs(change)).toFixed(1)}%`,
            numeric: true,
          },
          { html: String(q.epochLosses.length), numeric: true },
          { html: String(q.steps), numeric: true },
          { html: num(q.seconds), numeric: true },
          { html: q.steps ? num(q.seconds / q.steps) : '', numeric: true },
        ],
      ],
    );
    const options = Object.entries(q.options)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [esc(k), `<code>${esc(typeof v === 'string' ? v : JSON.stringify(v))}</code>`]);
    return (
      '<p class="note">Distillation loss between the float model (teacher) and the quantized model (student) while QFT trains ' +
      "weights, biases, step sizes and equalization factors (as its options say); lower is closer to the float model. Each step's loss is measured on its batch before the update.</p>" +
      lossChart(q) +
      summary +
      (options.length ? `<h3>Options</h3>` + table(['option', 'value'], options) : '')
    );
  },
};

/** Per-step losses as a line, epoch means as dots at the middle of their epoch; '' without steps. */
function lossChart(q: QftReport): string {
  const steps = q.stepLosses;
  if (!steps.some(Number.isFinite)) return '';
  const perEpoch = stepsPerEpoch(steps, q.epochLosses);
  const positive = steps.filter((l) => Number.isFinite(l) && l > 0);
  // A loss that falls by more than a decade is only readable on a log axis.
  const logY = positive.length === steps.length && Math.max(...positive) > 10 * Math.min(...positive);
  return lineChart({
    label: 'QFT distillation loss per training step, with the mean of each epoch',
    xUnit: 'step',
    yUnit: 'loss',
    logY,
    series: [
      { name: 'loss per step', color: COLORS.blue, style: 'line', points: steps.map((l, i) => [i + 1, l]) },
      {
        name: 'mean of each epoch',
        color: COLORS.orange,
        style: 'dots',
        points: q.epochLosses.map((l, k) => [(k * perEpoch + 1 + Math.min((k + 1) * perEpoch, steps.length)) / 2, l]),
      },
    ],
    lines: [{ value: q.initialLoss, label: `PTQ start ${num(q.initialLoss)}` }],
  });
}

/**
 * Steps in each epoch. Every epoch but the last has the same count, and the last is shorter
 * when a time budget stopped training, so the total alone does not tell; the count is the
 * one whose first steps average to the first epoch's mean (summed in the same order, so
 * the true count matches exactly).
 */
export function stepsPerEpoch(steps: readonly number[], epochMeans: readonly number[]): number {
  const epochs = epochMeans.length;
  if (epochs <= 1) return steps.length;
  const lo = Math.ceil(steps.length / epochs);
  const hi = Math.floor((steps.length - 1) / (epochs - 1));
  let best = lo;
  let bestError = Infinity;
  let sum = 0;
  for (let n = 1; n <= hi; n++) {
    sum += steps[n - 1]!;
    const error = Math.abs(sum / n - epochMeans[0]!);
    if (n >= lo && error < bestError) [best, bestError] = [n, error];
  }
  return best;
}
