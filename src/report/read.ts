import { readFileSync } from 'node:fs';
import { QuantflowError } from '../util/errors.js';
import type { QuantizeReportJson, ReportJson } from './types.js';

/**
 * Reads a `report.json` written by `quantflow quantize`. Checks the fields every reader
 * relies on, so a wrong or damaged file fails with one line naming it.
 */
export function readReportJson(path: string): QuantizeReportJson {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new QuantflowError(`${path}: cannot read the report (${code ?? (e as Error).message})`);
  }
  const r = json as (Omit<Partial<QuantizeReportJson>, 'kind'> & { kind?: ReportJson['kind'] }) | null;
  const problem =
    typeof r !== 'object' || r === null || Array.isArray(r)
      ? 'not a JSON object'
      : r.kind === 'tse'
        ? 'a TSE report (of quantflow tse or buffers), not a report.json of quantflow quantize'
        : typeof r.model !== 'string' || typeof r.profile?.name !== 'string'
          ? 'no model or profile: not a report.json of quantflow quantize'
          : !Array.isArray(r.layers) || r.layers.some((l) => typeof l?.name !== 'string' || !Array.isArray(l.weightScales))
            ? 'layers is not a list of layers with name and weightScales'
            : undefined;
  if (problem) throw new QuantflowError(`${path}: ${problem}`);
  return r as QuantizeReportJson;
}
