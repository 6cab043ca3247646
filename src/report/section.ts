import type { QuantizeReportJson, ReportExtras, ReportJson } from './types.js';

/** What every section renders from: the report with the extras merged in. */
export interface ReportContext {
  report: ReportJson;
  extras: ReportExtras;
  accuracy: QuantizeReportJson['accuracy'];
  /** Short unique label of each quantized layer, by layer name (empty for a TSE report). */
  labels: Map<string, string>;
}

/**
 * One part of the HTML report. `render` returns undefined when the run has no data for it,
 * a quantization section for a TSE report say, and the section is left out (no
 * placeholders). New sections are a file in `sections/` plus one line in the list in `html.ts`.
 */
export interface ReportSection {
  id: string;
  title: string;
  render(ctx: ReportContext): string | undefined;
}
