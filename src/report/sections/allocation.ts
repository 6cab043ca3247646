import { COLORS, lineChart } from '../charts.js';
import { count, esc, facts, num, table } from '../markup.js';
import type { BudgetUnit } from '../../quantization/allocation.js';
import type { ReportSection } from '../section.js';
import type { AllocationReport } from '../types.js';

/** The weight allocation under a budget: sensitivity per layer, the widths chosen, the error-vs-budget path. */
export const allocationSection: ReportSection = {
  id: 'allocation',
  title: 'Weight allocation under a budget',
  render({ report, labels }) {
    if (report.kind === 'tse' || !report.allocation) return undefined;
    return renderAllocation(report.allocation, labels, 'weight');
  },
};

/** The activation allocation under a budget, as the weight allocation. */
export const activationAllocationSection: ReportSection = {
  id: 'activation-allocation',
  title: 'Activation allocation under a budget',
  render({ report, labels }) {
    if (report.kind === 'tse' || !report.activationAllocation) return undefined;
    return renderAllocation(report.activationAllocation, labels, 'activation');
  },
};

function renderAllocation(a: AllocationReport, labels: ReadonlyMap<string, string>, unit: BudgetUnit): string {
  const [item, items, measured] = unit === 'weight' ? ['layer', 'layers', 'weights'] : ['activation', 'activations', 'elements per image'];
  const free = a.layers.filter((l) => l.widths.length > 1);
  const chart = lineChart({
    label: `Predicted held-out output error along the greedy path, against average bits per ${unit}`,
    xUnit: `bits per ${unit}`,
    yUnit: 'output error',
    logY: a.path.every((s) => s.predictedError > 0),
    series: [
      {
        name: 'greedy path (predicted)',
        color: COLORS.blue,
        style: 'line',
        points: a.path.map((s) => [s.bitsPerElement, s.predictedError]),
      },
      { name: 'chosen (measured)', color: COLORS.orange, style: 'dots', points: [[a.bitsPerElement, a.measuredError]] },
    ],
    lines: [{ value: a.baseError, label: `every ${item} at its highest width ${num(a.baseError)}` }],
  });
  const rows = a.layers.map((l) => [
    esc(labels.get(l.name) ?? l.name),
    { html: count(l.size), numeric: true },
    esc(l.widths.join(', ')),
    { html: l.widths.length > 1 ? num(l.errorGrowth[0]!) : '', numeric: true },
    { html: String(l.bits), numeric: true },
  ]);
  return (
    `<p class="note">Each ${item} with a choice of ${unit} widths was measured alone at its lowest width, the others at their highest, ` +
    `on ${a.heldOutImages} calibration images held apart from those that set the ranges; the growth of the output error ` +
    `(KL for a classifier, normalized L2 otherwise) is its sensitivity. Starting with every ${item} at its lowest width, the greedy ` +
    `allocation raises the ${item} with the largest error reduction per added bit while the budget allows. The allocation is written ` +
    'as profile.json beside the model: <code>--profile profile.json</code> reproduces it.</p>' +
    facts([
      ['budget', esc(a.budget)],
      [`bits per ${unit} used (${items} with a choice)`, num(a.bitsPerElement)],
      [`${items} raised`, `${free.filter((l) => l.bits === l.widths.at(-1)).length} of ${free.length}`],
      ['output error: chosen (measured)', num(a.measuredError)],
      ['output error: chosen (predicted)', num(a.predictedError)],
      [`output error: every ${item} at its highest width`, num(a.baseError)],
      ...(a.ends
        ? ([
            ['output error: greedy from every activation at its highest width (measured)', num(a.ends.fromHighest)],
            ['output error: greedy from every activation at its lowest width (measured)', num(a.ends.fromLowest)],
          ] as [string, string][])
        : []),
      ['sensitivity pass', `${num(a.seconds)} s`],
    ]) +
    (a.afterQft
      ? `<p>After QFT the allocation was re-run within ${esc(a.afterQft.budget)} on the finetuned model's sensitivities: ` +
        `${a.afterQft.raised.length} ${items} raised (${esc(a.afterQft.raised.join(', ') || 'none')}), ${num(a.afterQft.bitsPerElement)} bits per ${unit}, ` +
        `held-out output error ${num(a.afterQft.errorBefore)} → ${num(a.afterQft.measuredError)} (predicted ${num(a.afterQft.predictedError)}).</p>`
      : '') +
    chart +
    table(
      [
        unit === 'weight' ? 'layer' : 'activation (written by)',
        measured,
        'widths allowed',
        'error growth at the lowest width',
        'bits chosen',
      ],
      rows,
    )
  );
}
