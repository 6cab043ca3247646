/**
 * The shape of `report.json` as `quantflow quantize`, `tse` and `buffers` write it, read
 * back for the HTML report and `quantflow diff`. Optional fields are sections a run may or
 * may not carry; readers render what is there and omit the rest, so older reports stay
 * readable.
 */
import type { Dim } from '../graph/types.js';
import type { Preprocess } from '../data/preprocess.js';
import type { AllocationLayer, AllocationStep } from '../quantization/allocation.js';
import type { TargetProfile } from '../quantization/profile.js';
import type { SimilarityReport } from '../tse/analyze.js';
import type { BufferReport } from '../tse/buffers.js';
import type { NearMiss } from '../tse/detect.js';
import type { RunManifest } from './manifest.js';
import type { PassChange } from '../passes/pass-log.js';
import type { ArithmeticComparison } from '../npu/arithmetic.js';
import type { LayerReport, OutputReport } from '../quantization/quantize.js';
import type { CompareResult } from '../eval/compare.js';
import type { HostNode } from '../npu/types.js';
import type { Grid } from '../quantization/grid.js';

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

/** Float vs quantized outputs on one image folder (`quantize --compare`), as `compareModels` measures them. */
export interface CompareReport extends CompareResult {
  /** The folder as given. */
  data: string;
}

/** One model output as written to report.json: OutputReport with an SQNR that may be null (+Infinity). */
export interface ReportOutput extends Omit<OutputReport, 'sqnrDb'> {
  sqnrDb?: JsonDb;
}

/** What the integer NPU package hands the host: its outputs and the host tail that reads them. */
export interface ReportNpu {
  outputs: string[];
  hostTail?: HostNode[];
}

/** What QFT (finetuning after PTQ) did, for the report. */
export interface QftReport {
  /** Options that took effect (epochs, batch, lrWeights, lrScales, loss, lossLayers, seed, schedule, trained groups...). */
  options: Record<string, unknown>;
  steps: number;
  seconds: number;
  /** Distillation loss of the PTQ starting point (first batch). */
  initialLoss: number;
  /** Mean loss of each epoch's steps. */
  epochLosses: number[];
  /** Loss of every step, in order. */
  stepLosses: number[];
}

/** The report of `quantflow quantize`. */
export interface QuantizeReportJson {
  /** Optional, so that quantize reports need not say so: absent means quantize. */
  kind?: 'quantize';
  /** Path of the float model as given on the command line. */
  model: string;
  profile: TargetProfile;
  calibration: {
    method: string;
    images: number;
    /** Short name of the preprocessing (its preset's, when it is one). */
    preset: string;
    folder: string;
    /** The preprocessing in full, and why it was chosen. */
    preprocess?: Preprocess & { reason: string };
    /** Calibration files that could not be decoded and were left out (--skip-bad-images). */
    skipped?: string[];
  };
  biasCorrection: boolean;
  /** Wall time per stage, in seconds. */
  seconds: Record<string, number>;
  layers: ReportLayer[];
  /** Every model output, in the model's order. */
  outputs?: ReportOutput[];
  /** The integer NPU package, when it was written. */
  npu?: ReportNpu;
  /** TFLite's int8 arithmetic against the profile's own, when model.int8.tflite was written for a profile that rounds otherwise. */
  tfliteArithmetic?: ArithmeticComparison;
  activations: Record<string, Grid>;
  /** Float vs quantized accuracy, when the run measured them. */
  accuracy?: { float?: AccuracyReport; quantized?: AccuracyReport };
  /** Float vs quantized output figures, when the run compared them. */
  compare?: CompareReport;
  manifest?: RunManifest;
  /** What each pass changed, in order. */
  passes?: PassChange[];
  /** QFT, when the run finetuned after PTQ. */
  qft?: QftReport;
  /** The weight allocation, when the run was given a weight budget. */
  allocation?: AllocationReport;
  /** The activation allocation, when the run was given an activation budget. */
  activationAllocation?: AllocationReport;
}

/**
 * A weight or activation allocation under a budget (`quantize --weight-budget`,
 * `--activation-budget`); for activations, "layers" are the activations, named by the layer
 * that writes each, and sizes are elements per image.
 */
export interface AllocationReport {
  /** As given: bits per element or a size. */
  budget: string;
  budgetBits: number;
  /** Average bits per element (weight or activation) the allocation uses, over those with a choice. */
  bitsPerElement: number;
  heldOutImages: number;
  /** Held-out output error with every layer at its highest allowed width. */
  baseError: number;
  /** Held-out output error of the allocation, predicted by adding per-layer growths, and measured. */
  predictedError: number;
  measuredError: number;
  /**
   * Activations only: held-out output error of the greedy allocation from each end of the
   * measurements (every activation at its highest width with one lowered, or at its lowest with
   * one raised); the lower one is kept.
   */
  ends?: { fromHighest: number; fromLowest: number };
  /** Wall time of the sensitivity pass. */
  seconds: number;
  /** Per layer: allowed widths, error growth at each, and the chosen width. */
  layers: (AllocationLayer & { bits: number })[];
  /** The greedy path: error against bits per weight. */
  path: AllocationStep[];
  /** The weight allocation re-run after QFT (`--reallocate`): layers raised on the finetuned model's sensitivities. */
  afterQft?: {
    budget: string;
    budgetBits: number;
    bitsPerElement: number;
    /** Held-out output error of the finetuned model before raising, predicted after, and measured after. */
    errorBefore: number;
    predictedError: number;
    measuredError: number;
    raised: string[];
    seconds: number;
  };
}

/** One squeeze-and-excite block as detected; its geometry and buffering are in `buffers`. */
export interface ReportSeBlock {
  /** The block's Mul node. */
  block: string;
  /** Op type of the squeeze: GlobalAveragePool, ReduceMean or a whole-map AveragePool. */
  squeeze: string;
  /** Op types of the excitation's layers (Conv, Gemm, MatMul), in order. */
  excitation: string[];
  /** The gate as recognized: sigmoid, hard-sigmoid, ... */
  gate: string;
}

/** The report of `quantflow tse` (which also writes the tiled model) and `quantflow buffers`. */
export interface TseReportJson {
  kind: 'tse';
  /** Path of the model as given on the command line. */
  model: string;
  /** The tiled ONNX model `tse` wrote; absent for `buffers`. */
  output?: string;
  /** Shape of the model input the blocks were measured at. */
  input?: Dim[];
  /** In graph order, the same order as `buffers.blocks`. */
  blocks: ReportSeBlock[];
  /** Muls that look like SE blocks but are not, and why. */
  nearMisses: NearMiss[];
  /** The tiling, each block's geometry and tile, and SE vs TSE buffering. */
  buffers: BufferReport;
  /** Gate similarity of tiles to the global gate, when `tse --analyze` ran. */
  analysis?: SimilarityReport;
  manifest: RunManifest;
  /** What each pass changed while preparing the model, in order. */
  passes?: PassChange[];
}

/** Any report.json; `kind` tells them apart. */
export type ReportJson = QuantizeReportJson | TseReportJson;

/** Sections given beside report.json; each is rendered only when given. */
export interface ReportExtras {
  /** Overrides `report.accuracy`. */
  accuracy?: QuantizeReportJson['accuracy'];
  /** Overrides `report.manifest`. */
  manifest?: RunManifest;
  /** Overrides `report.passes`. */
  passes?: PassChange[];
  /** TSE: activation buffering of the model's squeeze-and-excite blocks; overrides a TSE report's. */
  buffers?: BufferReport;
  /** Layer whose per-channel weight ranges illustrate WESS; default: the widest spread. */
  wessLayer?: string;
}
