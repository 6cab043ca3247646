/**
 * The shape of `report.json` as `quantflow quantize` writes it, read back for the HTML
 * report and `quantflow diff`. Optional fields are sections a run may or may not carry;
 * readers render what is there and omit the rest, so older reports stay readable.
 */
import type { TargetProfile } from '../quantization/profile.js';
import type { BufferReport } from '../tse/buffers.js';
import type { RunManifest } from './manifest.js';
import type { PassChange } from '../passes/pass-log.js';
import type { LayerReport } from '../quantization/quantize.js';

/**
 * SQNR in dB as stored in JSON. `null` stands for +Infinity (no error at all), because
 * JSON.stringify writes Infinity as null.
 */
export type JsonDb = number | null;

/**
 * One quantized layer as written to report.json: the quantizer's LayerReport, with SQNRs that
 * may be null (JSON has no Infinity), plus the float weights' per-channel ranges.
 */
export interface ReportLayer extends Omit<LayerReport, 'weightSqnrDb' | 'outputSqnrDb'> {
  weightSqnrDb: JsonDb;
  outputSqnrDb?: JsonDb;
  /** max|w| of each output channel of the float weights, before any shift (see `layerWeightStats`). */
  channelRanges?: number[];
  /** Number of weight elements. */
  weightCount?: number;
}

/** Accuracy of one model on one labelled folder (fractions in 0..1). */
export interface AccuracyReport {
  data: string;
  n: number;
  top1: number;
  top5: number;
}

/** An activation's per-tensor grid. */
export interface ReportActivation {
  scale: number;
  zeroPoint: number;
  qmin: number;
  qmax: number;
}

export interface QuantizeReportJson {
  /** Path of the float model as given on the command line. */
  model: string;
  profile: TargetProfile;
  calibration: { method: string; images: number; preset: string; folder: string };
  biasCorrection: boolean;
  /** Wall time per stage, in seconds. */
  seconds: Record<string, number>;
  layers: ReportLayer[];
  activations: Record<string, ReportActivation>;
  /** Float vs quantized accuracy, when the run measured them. */
  accuracy?: { float?: AccuracyReport; quantized?: AccuracyReport };
  manifest?: RunManifest;
  /** What each pass changed, in order. */
  passes?: PassChange[];
}

/** Sections that do not live in report.json (yet); each is rendered only when given. */
export interface ReportExtras {
  /** Overrides `report.accuracy`. */
  accuracy?: QuantizeReportJson['accuracy'];
  /** Overrides `report.manifest`. */
  manifest?: RunManifest;
  /** Overrides `report.passes`. */
  passes?: PassChange[];
  /** TSE: activation buffering of the model's squeeze-and-excite blocks. */
  buffers?: BufferReport;
  /** Layer whose per-channel weight ranges illustrate WESS; default: the widest spread. */
  wessLayer?: string;
}
