import type { OutputComparison } from '../../eval/compare.js';
import { db, esc, num, percent, table } from '../markup.js';
import type { ReportSection } from '../section.js';

/** The figures an output's kind adds, as one line of HTML. */
function taskFigures(o: OutputComparison): string {
  if (o.classify) {
    const l = o.classify.labels;
    return (
      `top-1 agreement ${percent(o.classify.top1Agreement)}` +
      (l
        ? `; against labels (${o.classify.labelled} images): top-1 float ${percent(l.float.top1)}, quantized ${percent(l.quantized.top1)}; top-5 float ${percent(l.float.top5)}, quantized ${percent(l.quantized.top5)}`
        : '')
    );
  }
  if (o.segment)
    return `pixel agreement ${percent(o.segment.pixelAgreement)}, mean IoU ${percent(o.segment.meanIou)} over ${Object.keys(o.segment.classIou).length} classes`;
  if (o.dense) return `IoU of the maps thresholded at ${o.dense.threshold}: ${percent(o.dense.iou)}`;
  return '';
}

/** `quantize --compare`: the quantized model's outputs against the float model's on the same images. */
export const compareSection: ReportSection = {
  id: 'compare',
  title: 'Float vs quantized outputs',
  render({ report }) {
    if (report.kind === 'tse' || !report.compare) return undefined;
    const c = report.compare;
    const rows = c.outputs.map((o) => [
      `<code>${esc(o.name)}</code>`,
      esc(o.kind),
      { html: o.sqnrDb === undefined ? '–' : db(o.sqnrDb), numeric: true },
      { html: o.cosine === undefined ? '–' : o.cosine.toFixed(4), numeric: true },
      { html: o.maxAbsError === undefined ? '–' : num(o.maxAbsError), numeric: true },
      esc(taskFigures(o)),
    ]);
    const d = c.detection;
    const detection = d
      ? `<h3>Detection</h3><p>Precision <b>${percent(d.precision)}</b>, recall <b>${percent(d.recall)}</b>: ${d.matched} of the quantized model's ${d.quantizedDetections} detections ` +
        `match one of the float model's ${d.floatDetections} (score ≥ ${d.scoreThreshold}, IoU ≥ ${d.iouThreshold}, same class where there are classes, greedily by score; ` +
        `${esc(d.source === 'anchors' ? `anchor by anchor${d.scoresAsLogits ? ', scores through a sigmoid' : ''}` : d.source === 'nms' ? 'from NonMaxSuppression' : 'from the post-processing outputs')}; outputs ${d.outputs.map((o) => `<code>${esc(o)}</code>`).join(', ')}).</p>`
      : '';
    return (
      `<p class="note">Both models on the same ${c.n} images of <code>${esc(c.data)}</code> (preset ${esc(c.preset)}${c.simulate ? ', quantized model as its fake-quant simulation' : ''}). ` +
      'SQNR is 10·log10(Σ float² / Σ (float − quantized)²) over all images; cosine treats each output as one vector; ' +
      'segmentation compares class maps (mean IoU from intersections and unions summed over images, classes present in either); ' +
      `dense maps compare the sets of elements at or above the threshold.${c.skipped.length ? ` ${c.skipped.length} unreadable image(s) skipped.` : ''}</p>` +
      table(['output', 'kind', 'SQNR dB', 'cosine', 'max abs error', 'figures of its kind'], rows) +
      detection
    );
  },
};
