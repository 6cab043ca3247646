import { esc, num, table } from '../markup.js';
import type { ReportSection } from '../section.js';
import { arithmeticSummary } from '../../npu/arithmetic.js';

/** Each model output's error after quantization, and where the NPU package leaves off. */
export const outputsSection: ReportSection = {
  id: 'outputs',
  title: 'Outputs',
  render({ report }) {
    if (report.kind === 'tse' || !report.outputs?.length) return undefined;
    const rows = report.outputs.map((o) => [
      `<code>${esc(o.name)}</code>`,
      esc(o.dataType),
      { html: o.sqnrDb === undefined ? '' : o.sqnrDb === null ? '∞' : o.sqnrDb.toFixed(1), numeric: true },
      { html: o.agreement === undefined ? '' : `${(100 * o.agreement).toFixed(2)}%`, numeric: true },
      o.activation ? `scale ${num(o.activation.scale)}, zero point ${o.activation.zeroPoint}` : 'not quantized',
    ]);
    const npu = report.npu;
    const tail = npu?.hostTail?.length
      ? `<p>Host tail (runs on the host, unquantized, on the package outputs): ${npu.hostTail.map((n) => `${esc(n.opType)} (<code>${esc(n.name)}</code>)`).join(', ')}.</p>`
      : '';
    const handed = npu ? `<p>NPU package outputs: ${npu.outputs.map((o) => `<code>${esc(o)}</code>`).join(', ')}.</p>` : '';
    const tflite = report.tfliteArithmetic
      ? `<p>model.int8.tflite computes with TFLite's int8 arithmetic (32-bit multipliers and the reference kernels' rounding; the tflite-int8 and tflite-int8-xnnpack profiles predict a TFLite runtime exactly), ${esc(arithmeticSummary(report.tfliteArithmetic))}.</p>`
      : '';
    return (
      table(['output', 'type', 'SQNR dB', 'agreement', 'grid'], rows) +
      '<p class="note">SQNR of the quantized simulation against the float model on the first calibration batch; agreement: equal elements of an index output.</p>' +
      handed +
      tail +
      tflite
    );
  },
};
