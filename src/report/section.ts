import type { QuantizeReportJson, ReportExtras } from './types.js';

/** What every section renders from: the report with the extras merged in. */
export interface ReportContext {
  report: QuantizeReportJson;
  extras: ReportExtras;
  accuracy: QuantizeReportJson['accuracy'];
  /** Short unique label of each layer, by layer name. */
  labels: Map<string, string>;
}

/**
 * One part of the HTML report. `render` returns undefined when the run has no data for it,
 * and the section is left out (no placeholders). New sections (a QFT loss curve, say) are
 * a file in `sections/` plus one line in the list in `html.ts`.
 */
export interface ReportSection {
  id: string;
  title: string;
  render(ctx: ReportContext): string | undefined;
}
