import { barChart, COLORS } from '../charts.js';
import type { ReportSection } from '../section.js';
import type { JsonDb } from '../types.js';

/** null in report.json is +Infinity (no error). */
const fromJson = (x: JsonDb | undefined) => (x === null ? Infinity : x);

/** Per-layer SQNR of weights and outputs, worst output first: where the accuracy goes. */
export const sqnrSection: ReportSection = {
  id: 'sqnr',
  title: 'Layer SQNR',
  render({ report, labels }) {
    if (report.kind === 'tse' || !report.layers.length) return undefined;
    const key = (x: JsonDb | undefined) => fromJson(x) ?? Infinity;
    const layers = [...report.layers].sort(
      (a, b) => key(a.outputSqnrDb) - key(b.outputSqnrDb) || key(a.weightSqnrDb) - key(b.weightSqnrDb),
    );
    const hasOutputs = layers.some((l) => l.outputSqnrDb !== undefined);
    const series = [...(hasOutputs ? [{ name: 'output SQNR', color: COLORS.orange }] : []), { name: 'weight SQNR', color: COLORS.blue }];
    const chart = barChart({
      label: 'per-layer SQNR in dB, worst output first',
      unit: 'dB',
      series,
      rows: layers.map((l) => ({
        label: labels.get(l.name)!,
        title: `${l.name} (${l.opType}, ${l.weightBits}-bit ${l.granularity})`,
        values: [...(hasOutputs ? [fromJson(l.outputSqnrDb)] : []), fromJson(l.weightSqnrDb)],
      })),
    });
    return (
      '<p class="note">Signal-to-quantization-noise ratio (higher is better; +6 dB per bit). ' +
      "<b>Weight SQNR</b> compares each layer's quantized weights with its float weights. " +
      (hasOutputs
        ? "<b>Output SQNR</b> compares the layer's output in the quantized simulation with the float model on one calibration batch, so it includes the error of every layer before it. "
        : '') +
      'Layers are sorted worst first.</p>' +
      chart
    );
  },
};
