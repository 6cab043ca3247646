/**
 * Comparison of two quantization reports (`quantflow diff`): which settings differ, how
 * accuracy and the QFT loss moved, and how each layer's SQNR moved, matched by layer name.
 */
import type { AccuracyReport, JsonDb, QuantizeReportJson, ReportLayer } from './types.js';

/** One setting that differs: a dotted path into profile, calibration, bias correction and QFT options. */
export interface SettingChange {
  key: string;
  a: unknown;
  b: unknown;
}

/** Accuracy of one model (float or quantized) in both runs, in percentage points for the delta. */
export interface AccuracyDelta {
  model: 'float' | 'quantized';
  a: AccuracyReport;
  b: AccuracyReport;
  /** b − a in percentage points. */
  top1: number;
  top5: number;
  /** Whether both were measured on the same folder and image count; deltas mean little otherwise. */
  comparable: boolean;
}

/** SQNRs in JSON convention: null is +Infinity. A delta is null when it is not a finite number. */
export interface LayerDelta {
  name: string;
  opType: string;
  /** "8-bit shift" in a and in b. */
  weights: { a: string; b: string };
  weightSqnrDb: { a: JsonDb; b: JsonDb; delta: number | null };
  outputSqnrDb?: { a: JsonDb; b: JsonDb; delta: number | null };
}

export interface ReportDiff {
  a: string;
  b: string;
  settings: SettingChange[];
  accuracy: AccuracyDelta[];
  /** QFT's final epoch loss in both runs, when both finetuned. */
  qft?: { a: number; b: number; delta: number };
  /** Layers in both, largest SQNR drop first (output SQNR where both have it, else weight SQNR). */
  layers: LayerDelta[];
  onlyInA: string[];
  onlyInB: string[];
}

/** Compares `b` against `a`; `names` label the two sides (usually their paths). */
export function diffReports(a: QuantizeReportJson, b: QuantizeReportJson, names: { a: string; b: string }): ReportDiff {
  const inB = new Map(b.layers.map((l) => [l.name, l]));
  const inA = new Set(a.layers.map((l) => l.name));
  const layers = a.layers.filter((l) => inB.has(l.name)).map((l) => layerDelta(l, inB.get(l.name)!));
  layers.sort((x, y) => sortKey(x) - sortKey(y));
  return {
    a: names.a,
    b: names.b,
    settings: settingChanges(settings(a), settings(b)),
    accuracy: (['float', 'quantized'] as const).flatMap((m) => {
      const [x, y] = [a.accuracy?.[m], b.accuracy?.[m]];
      if (!x || !y) return [];
      return [
        {
          model: m,
          a: x,
          b: y,
          top1: 100 * (y.top1 - x.top1),
          top5: 100 * (y.top5 - x.top5),
          comparable: x.data === y.data && x.n === y.n,
        },
      ];
    }),
    qft: qftDelta(a, b),
    layers,
    onlyInA: a.layers.filter((l) => !inB.has(l.name)).map((l) => l.name),
    onlyInB: b.layers.filter((l) => !inA.has(l.name)).map((l) => l.name),
  };
}

function qftDelta(a: QuantizeReportJson, b: QuantizeReportJson): ReportDiff['qft'] {
  const [x, y] = [a.qft?.epochLosses.at(-1), b.qft?.epochLosses.at(-1)];
  return x === undefined || y === undefined ? undefined : { a: x, b: y, delta: y - x };
}

const toNumber = (x: JsonDb) => (x === null ? Infinity : x);

function delta(a: JsonDb, b: JsonDb): number | null {
  const d = toNumber(b) - toNumber(a);
  return Number.isFinite(d) ? d : null;
}

function layerDelta(a: ReportLayer, b: ReportLayer): LayerDelta {
  const out: LayerDelta = {
    name: a.name,
    opType: a.opType,
    weights: { a: `${a.weightBits}-bit ${a.granularity}`, b: `${b.weightBits}-bit ${b.granularity}` },
    weightSqnrDb: { a: a.weightSqnrDb, b: b.weightSqnrDb, delta: delta(a.weightSqnrDb, b.weightSqnrDb) },
  };
  if (a.outputSqnrDb !== undefined && b.outputSqnrDb !== undefined) {
    out.outputSqnrDb = { a: a.outputSqnrDb, b: b.outputSqnrDb, delta: delta(a.outputSqnrDb, b.outputSqnrDb) };
  }
  return out;
}

/** Most negative finite delta first; layers whose delta is not finite go last. */
function sortKey(l: LayerDelta): number {
  return (l.outputSqnrDb ?? l.weightSqnrDb).delta ?? Infinity;
}

/** The settings that shape a run, flattened to dotted paths; `profile.source` is where it came from, not a setting. */
function settings(r: QuantizeReportJson): Map<string, unknown> {
  const { source: _source, ...profile } = r.profile;
  const flat = new Map<string, unknown>();
  const walk = (prefix: string, v: unknown) => {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) walk(`${prefix}.${k}`, x);
    else flat.set(prefix, v);
  };
  walk('profile', profile);
  walk('calibration', r.calibration);
  flat.set('biasCorrection', r.biasCorrection);
  if (r.qft) walk('qft', r.qft.options);
  return flat;
}

function settingChanges(a: Map<string, unknown>, b: Map<string, unknown>): SettingChange[] {
  return [...new Set([...a.keys(), ...b.keys()])]
    .filter((k) => JSON.stringify(a.get(k)) !== JSON.stringify(b.get(k)))
    .map((key) => ({ key, a: a.get(key), b: b.get(key) }));
}
