import { readFileSync } from 'node:fs';
import { QuantflowError } from '../util/errors.js';

/** One image's prediction, as `evaluate` reports it. */
export interface Prediction {
  file: string;
  label?: number;
  top5: number[];
}

/**
 * Top-1 agreement between our predictions and a reference runtime's CSV (`file,label,top5`
 * with top5 as space- or semicolon-separated class indices), over the files both contain.
 */
export function compareWithReference(predictions: Prediction[], csvPath: string): { n: number; top1Agreement: number } {
  const lines = readFileSync(csvPath, 'utf8').trim().split(/\r?\n/);
  const reference = new Map<string, number>();
  lines.slice(1).forEach((line, i) => {
    const m = /^([^,]+),([^,]*),"?\s*(-?\d+)/.exec(line);
    if (!m) throw new QuantflowError(`${csvPath}:${i + 2}: cannot read a top-5 prediction from '${line}'`);
    reference.set(m[1]!, Number(m[3]));
  });
  let n = 0;
  let agree = 0;
  for (const p of predictions) {
    const ref = reference.get(p.file);
    if (ref === undefined) continue;
    n++;
    if (ref === p.top5[0]) agree++;
  }
  return { n, top1Agreement: n ? agree / n : 0 };
}
