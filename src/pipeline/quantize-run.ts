/**
 * The quantize pipeline end to end, as `quantflow quantize` and `quantflow demo` run it:
 * import → PTQ (→ QFT) → evaluate → integer NPU package → report, written into one folder.
 */
import { existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadDataset } from '../data/dataset.js';
import type { PreprocessRequest } from '../data/preprocess.js';
import { compareModels, type CompareOptions } from '../eval/compare.js';
import { evaluate } from '../eval/evaluate.js';
import type { Model } from '../graph/types.js';
import { loadModel, type LoadOptions } from '../import/load.js';
import { prepareModel } from '../import/prepare.js';
import type { InputSize } from '../passes/input-size.js';
import { exportTflite } from '../export/tflite/export.js';
import { accumulatorBound } from '../npu/accumulator.js';
import { tfliteArithmeticGap, type ArithmeticComparison } from '../npu/arithmetic.js';
import { writeNpuPackage } from '../npu/io.js';
import { buildNpuPackage } from '../npu/package.js';
import type { NpuPackage } from '../npu/types.js';
import { writeOnnxFile } from '../onnx/write.js';
import { PassLog } from '../passes/pass-log.js';
import { finetune, QFT_DEFAULTS, type FinetuneResult, type LrSchedule } from '../qft/finetune.js';
import { TRAINED_GROUPS, type LossKind, type TrainedGroup } from '../qft/student.js';
import type { RangeMethod } from '../quantization/calibration.js';
import type { Grid } from '../quantization/grid.js';
import { loadProfile, profileJson, tfliteKernels, type TargetProfile } from '../quantization/profile.js';
import {
  allocatedProfile,
  allocateGreedy,
  bitsPerElement,
  budgetBits,
  parseActivationBudget,
  parseBudget,
  widthChoices,
  type Allocation,
} from '../quantization/allocation.js';
import {
  activationCandidates,
  activationSensitivity,
  allocationLayers,
  raiseSensitivity,
  weightSensitivity,
} from '../quantization/sensitivity.js';
import { decodeImages } from '../data/images.js';
import { OutputErrorMeter } from '../eval/output-error.js';
import { writeFileAtomic } from '../util/fs.js';
import {
  buildQuantizedModel,
  calibrateModel,
  assembleQuantization,
  qdqOfLayers,
  quantizeLayer,
  quantizeModel,
  resolvePtqOptions,
  type Calibration,
  type QuantizedLayer,
  type QuantizeResult,
} from '../quantization/quantize.js';
import { runManifest } from '../report/manifest.js';
import type { AccuracyReport, AllocationReport, CompareReport, QftReport, QuantizeReportJson } from '../report/types.js';
import { layerWeightStats } from '../report/weight-stats.js';
import { QuantflowError } from '../util/errors.js';
import { reportFilesIn, writeReportFiles } from '../report/files.js';
import { TFLITE_FILE } from './export-run.js';

/** The stages of a run that take long enough to show progress for, in the order they run. */
export type QuantizeStage =
  'calibrate' | 'activation sensitivity' | 'sensitivity' | 'qft' | 'reallocation' | 'eval float' | 'eval quantized' | 'compare';

/** Receives one stage's progress; `stop` is called when the stage ends, also when it fails. */
export interface StageReporter {
  /** Work done so far (images, or QFT steps with the step's loss). */
  update(done: number, values?: { loss: number }): void;
  stop(): void;
}

/** QFT after PTQ; anything left out takes its value from `QFT_DEFAULTS` (seed 0, every group trained). */
export interface QftRunOptions {
  epochs?: number;
  lrWeights?: number;
  lrBiases?: number;
  lrScales?: number;
  schedule?: LrSchedule;
  loss?: LossKind;
  /** Values of the float model the L2 loss compares (default: the input of the last layer). */
  lossLayers?: string[];
  train?: readonly TrainedGroup[];
  /** Re-choose the WESS shifts between epochs instead of keeping PTQ's (default false). */
  rechooseShifts?: boolean;
  seed?: number;
  timeBudgetSeconds?: number;
  /** Folder for QFT checkpoints; a rerun of the same run continues from it. */
  checkpoint?: string;
  /** Ends QFT after the current step, saving the checkpoint if any; the run then fails with a QuantflowError. */
  signal?: AbortSignal;
  /**
   * After QFT, raise layers to wider weights within this budget (`parseBudget`; `true`: the
   * `weightBudget` again, spending what the first allocation left), by sensitivities measured
   * on the finetuned model (`raiseSensitivity`). Needs `weightBudget`.
   */
  reallocate?: string | true;
}

/** What to quantize, how, and where to write it. Paths are recorded in the report as given. */
export interface QuantizeRunOptions {
  /** Float model (.tflite or .onnx). */
  model: string;
  /** How to load it (`cutBefore`). */
  load?: LoadOptions;
  /** Calibration images (labels.csv or class folders; labels unused). */
  calib: string;
  /** Height and width the model is prepared at (`PrepareOptions.inputSize`). */
  inputSize?: InputSize;
  /** Built-in profile name or a profile JSON file. */
  profile: string;
  /** Output folder for model.qdq.onnx, npu/, report.json and report.html. */
  output: string;
  /** Activation range method. Options left out here take their value from `PTQ_DEFAULTS`. */
  calibration?: RangeMethod;
  /** Calibration images used. */
  calibLimit?: number;
  /** Images per calibration and QFT batch. */
  batch?: number;
  /** Preprocessing: a preset and/or fields; the rest is chosen from the model. */
  preprocess?: PreprocessRequest;
  /** Leave out unreadable calibration images (listed in the report) instead of failing on the first. */
  skipBadImages?: boolean;
  /** Bias correction (see `QuantizeOptions.biasCorrection`). */
  biasCorrection?: boolean;
  /** GPTQ rounding of convolutions without groups below 8 bits (see `QuantizeOptions.gptq`). */
  gptq?: boolean;
  equalize?: boolean;
  /** Labelled folder on which float and quantized top-1/top-5 are measured. */
  eval?: string;
  /** Only the first `evalLimit` images of `eval`. */
  evalLimit?: number;
  /**
   * The float model's accuracy on `eval` (same preset and limit) when the caller has measured
   * it already: it goes into the report instead of being measured again.
   */
  floatAccuracy?: AccuracyReport;
  /** Folder (labels optional) on which the quantized model is compared with the float one (`compareModels`). */
  compare?: string;
  /** Only the first `compareLimit` images of `compare`. */
  compareLimit?: number;
  /** What the outputs are and the thresholds of their figures (see `compareModels`). */
  compareOptions?: Pick<CompareOptions, 'task' | 'boxes' | 'scores' | 'boxFormat' | 'scoreThreshold' | 'threshold'>;
  qft?: QftRunOptions;
  /**
   * Weight budget (`parseBudget`: average bits per weight such as `4.5`, or a size such as
   * `2.1MB`): each layer's width is chosen among those the profile allows by measured
   * sensitivity (`weightSensitivity`, `allocateGreedy`), and the allocation is written as
   * `<output>/profile.json`.
   */
  weightBudget?: string;
  /**
   * Activation budget: average bits per activation element (8 to 16, e.g. `9`) over the
   * activations with a choice; each activation's grid width is chosen among those the profile
   * allows (`"activations": { "bits": [8, 16] }`) by measured sensitivity
   * (`activationSensitivity`), before any weight allocation, and written into the same profile.
   */
  activationBudget?: string;
  /** Called as each stage starts, with the amount of work; the reporter it returns follows that stage. */
  onStage?: (stage: QuantizeStage, total: number) => StageReporter;
}

/** Where a run's outputs are. */
export interface QuantizeRunFiles {
  model: string;
  /** The integer NPU package folder; absent when the model has a layer the package cannot express. */
  npu?: string;
  json: string;
  html: string;
  /** The chosen allocation as a profile, when a budget was given. */
  profile?: string;
  /** The fully-integer TFLite model; absent when the run does not fit TFLite's int8 scheme (see `tfliteProblem`). */
  tflite?: string;
}

/** The outcome of `runQuantize`. */
export interface QuantizeRun {
  /** The quantization that was written (after QFT when it ran). */
  quantization: QuantizeResult;
  profile: TargetProfile;
  /** The content of report.json. */
  report: QuantizeReportJson;
  files: QuantizeRunFiles;
  /** Float and quantized accuracy when `eval` was given (as in `report`). */
  accuracy?: QuantizeReportJson['accuracy'];
  /** Float vs quantized output figures when `compare` was given (as in `report`). */
  compare?: CompareReport;
  /** Why the integer NPU package was not written, when it was not. */
  npuProblem?: string;
  /** Why `model.int8.tflite` was not written (one line naming the layer), when it was not. */
  tfliteProblem?: string;
  /**
   * Layers whose worst-case accumulator passes the profile's accumulatorBits, which a TFLite
   * profile lowers anyway (TFLite's kernels accumulate in int32 with no such bound): one line.
   */
  accumulatorWarning?: string;
  /** What QFT did, when it ran. */
  finetune?: FinetuneResult;
}

/**
 * Throws a QuantflowError when `dir` exists and is not a folder: checked up front, so that a
 * run does not calibrate for minutes only to find it cannot write there.
 */
export function checkOutputFolder(dir: string): void {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new QuantflowError(`${dir}: the output folder is a file`);
}

/** `ptq` with QFT's result in place of its own: the QDQ model, parameters and per-layer facts rebuilt from `tuned`. */
export async function applyFinetune(ptq: QuantizeResult, tuned: FinetuneResult, profile: TargetProfile): Promise<QuantizeResult> {
  const built = await buildQuantizedModel(tuned.model, tuned.params, profile, ptq.sample, ptq.float);
  return { ...ptq, model: built.model, params: tuned.params, layers: built.layers, outputs: built.outputs };
}

/** Calibration images at the end of the folder on which a weight allocation measures output error, never used to set ranges. */
const HELD_OUT = 32;

const SILENT: StageReporter = { update() {}, stop() {} };

/**
 * Quantizes a float model for a target profile and writes `<output>/model.qdq.onnx`,
 * `<output>/npu/` (the integer NPU package, unless a layer cannot be lowered: see
 * `npuProblem`), `<output>/report.json` and `<output>/report.html`. PTQ runs first; with
 * `qft`, finetuning by distillation follows; with `eval`, float and quantized accuracy are
 * measured; with `compare`, the quantized model's outputs against the float model's.
 * Writing is all or nothing: when any output fails, those already written are removed.
 * User errors (unreadable inputs, bad options, an unwritable folder) are
 * QuantflowErrors.
 */
export async function runQuantize(options: QuantizeRunOptions): Promise<QuantizeRun> {
  let profile = loadProfile(options.profile);
  checkOutputFolder(options.output);
  const { calibration, calibLimit, batch, biasCorrection, gptq, equalize } = resolvePtqOptions(options);
  const manifest = runManifest({
    options: {
      calibration,
      calibLimit,
      batch,
      inputSize: options.inputSize ?? null,
      preprocess: options.preprocess ?? null,
      skipBadImages: !!options.skipBadImages,
      biasCorrection,
      gptq,
      equalize,
      ...(options.weightBudget !== undefined ? { weightBudget: options.weightBudget } : {}),
      ...(options.activationBudget !== undefined ? { activationBudget: options.activationBudget } : {}),
      eval: options.eval ?? null,
      ...(options.evalLimit ? { evalLimit: options.evalLimit } : {}),
      ...(options.compare
        ? { compare: options.compare, ...(options.compareLimit ? { compareLimit: options.compareLimit } : {}), ...options.compareOptions }
        : {}),
    },
    profile,
    inputs: [options.model, options.calib, ...(/[/\\]|\.json$/.test(options.profile) ? [options.profile] : [])],
  });
  const passes = new PassLog();
  const model = await prepareModel(loadModel(options.model, options.load), passes, { inputSize: options.inputSize });
  const calib = await loadDataset(options.calib);
  const evalData = options.eval ? await loadDataset(options.eval) : undefined;
  if (evalData && !evalData.labelled)
    throw new QuantflowError(
      `--eval measures top-1 against labels, and '${options.eval}' has none: give a folder with labels.csv or one subfolder per class`,
    );
  const compareData = options.compare ? await loadDataset(options.compare) : undefined;
  const stage = async <T>(name: QuantizeStage, total: number, work: (reporter: StageReporter) => Promise<T>): Promise<T> => {
    const reporter = options.onStage?.(name, total) ?? SILENT;
    try {
      return await work(reporter);
    } finally {
      reporter.stop();
    }
  };

  const ptqOptions = {
    profile,
    calibration,
    calibLimit,
    batch,
    preprocess: options.preprocess,
    skipBadImages: options.skipBadImages,
    biasCorrection,
    gptq,
    equalize,
  };
  let result: QuantizeResult;
  let allocation: AllocationReport | undefined;
  let activationAllocation: AllocationReport | undefined;
  // What re-running the weight allocation after QFT needs from the first one.
  let allocated: { cal: Calibration; meter: OutputErrorMeter } | undefined;
  if (options.weightBudget !== undefined || options.activationBudget !== undefined) {
    const weightBudget = options.weightBudget === undefined ? undefined : parseBudget(options.weightBudget, '--weight-budget');
    const activationBudget = options.activationBudget === undefined ? undefined : parseActivationBudget(options.activationBudget);
    const flag = weightBudget ? '--weight-budget' : '--activation-budget';
    if (weightBudget && profile.weights.allowed.length < 2)
      throw new QuantflowError(
        `--weight-budget chooses among the weight widths a profile allows, and ${profile.source} allows only ${profile.weights.bits}: give a profile with "weights": { "bits": [4, 8], ... }`,
      );
    if (activationBudget && profile.activations.allowed.length < 2)
      throw new QuantflowError(
        `--activation-budget chooses among the activation widths a profile allows, and ${profile.source} allows only ${profile.activations.bits}: give a profile with "activations": { "bits": [8, 16], ... } (such as w8a8a16-channel)`,
      );
    if (calib.items.length < calibLimit + HELD_OUT)
      throw new QuantflowError(
        `${flag} measures on the last ${HELD_OUT} images of '${options.calib}', held apart from calibration: use --calib-limit ${Math.max(0, calib.items.length - HELD_OUT)} or less (it has ${calib.items.length} images)`,
      );
    const cal = await stage('calibrate', Math.min(calibLimit, calib.items.length), (r) =>
      calibrateModel(model, calib, { ...ptqOptions, onProgress: (done) => r.update(done) }),
    );
    // Both budgets are checked against the model before anything is measured.
    const weightBits = weightBudget && budgetBits(weightBudget, allocationLayers(cal), profile.source);
    const activationLayers = activationBudget && activationCandidates(cal);
    const activationBits = activationLayers && budgetBits(activationBudget, activationLayers, profile.source, 'activation');
    const held = await decodeImages(
      cal.model,
      { ...calib, items: calib.items.slice(-HELD_OUT) },
      { limit: HELD_OUT, preprocess: cal.preprocess.spec, batch, skipBadImages: options.skipBadImages },
    );
    const meter = await OutputErrorMeter.create(cal.model, held, { batch });
    const name = [
      profile.name,
      ...(options.activationBudget !== undefined ? [`ab${options.activationBudget.trim()}`] : []),
      ...(options.weightBudget !== undefined ? [`wb${options.weightBudget.trim()}`] : []),
    ].join('-');
    let current = cal;
    // Activations are allocated first, with every layer's weights at the width the profile gives it.
    let layers: QuantizedLayer[] | undefined;
    if (activationBits !== undefined) {
      const atProfileWidths = cal.specs.map((spec, i) => quantizeLayer(cal, i, spec));
      layers = atProfileWidths;
      const measurements = 2 * activationLayers!.reduce((s, l) => s + l.widths.length - 1, 0);
      const sens = await stage('activation sensitivity', measurements, (r) =>
        activationSensitivity(cal, atProfileWidths, meter, { onProgress: (done) => r.update(done) }),
      );
      // Greedy from each end of the measurements; the allocation with the lower measured error is kept.
      const tried: { chosen: Allocation; activations: Map<string, Grid>; measured: number }[] = [];
      for (const chosen of [
        allocateGreedy(sens.layers, activationBits, sens.baseError),
        allocateGreedy(sens.fromLowest.layers, activationBits, sens.fromLowest.baseError),
      ]) {
        const activations = new Map(cal.activations);
        sens.tensors.forEach((t, i) => activations.set(t, cal.activationGrids.get(t)!.get(chosen.widths[i] as 8 | 16)!));
        tried.push({ chosen, activations, measured: await meter.measure(qdqOfLayers({ ...cal, activations }, atProfileWidths)) });
      }
      const { chosen, activations, measured } = tried[1]!.measured < tried[0]!.measured ? tried[1]! : tried[0]!;
      const choices = widthChoices<8 | 16>(sens.layers, chosen.widths);
      current = { ...cal, activations, profile: allocatedProfile(profile, name, { activations: choices }) };
      activationAllocation = {
        budget: options.activationBudget!,
        budgetBits: activationBits,
        bitsPerElement: chosen.bitsPerElement,
        heldOutImages: held.count,
        baseError: sens.baseError,
        predictedError: chosen.predictedError,
        measuredError: measured,
        ends: { fromHighest: tried[0]!.measured, fromLowest: tried[1]!.measured },
        seconds: sens.seconds,
        layers: sens.layers.map((l, i) => ({ ...l, bits: chosen.widths[i]! })),
        path: chosen.path,
      };
    }
    const weightsFree = current.profile;
    if (weightBits !== undefined) {
      const measurements = allocationLayers(current).reduce((s, l) => s + l.widths.length - 1, 0);
      const sens = await stage('sensitivity', measurements, (r) =>
        weightSensitivity(current, meter, { onProgress: (done) => r.update(done) }),
      );
      const chosen = allocateGreedy(sens.layers, weightBits, sens.baseError);
      const choices = widthChoices<4 | 8>(sens.layers, chosen.widths);
      current = { ...current, profile: allocatedProfile(current.profile, name, { weights: choices }) };
      // The sensitivity pass quantized every layer at every width it may take.
      layers = sens.quantized.map((widths, i) => widths.get(chosen.widths[i] as 4 | 8)!);
      allocation = {
        budget: options.weightBudget!,
        budgetBits: weightBits,
        bitsPerElement: chosen.bitsPerElement,
        heldOutImages: held.count,
        baseError: sens.baseError,
        predictedError: chosen.predictedError,
        measuredError: await meter.measure(qdqOfLayers(current, layers)),
        seconds: sens.seconds,
        layers: sens.layers.map((l, i) => ({ ...l, bits: chosen.widths[i]! })),
        path: chosen.path,
      };
    }
    // One of the two budgets was given, so one of the two passes chose the layers.
    result = await assembleQuantization(current, layers!);
    profile = current.profile;
    // With the weight widths free, as before the allocation fixed them, for a re-run after QFT.
    allocated = { cal: { ...current, profile: weightsFree }, meter };
  } else {
    result = await stage('calibrate', Math.min(calibLimit, calib.items.length), (r) =>
      quantizeModel(model, calib, { ...ptqOptions, onProgress: (done) => r.update(done) }),
    );
  }
  let tuned: FinetuneResult | undefined;
  let qft: QftReport | undefined;
  if (options.qft) {
    const q = options.qft;
    const train = q.train ?? TRAINED_GROUPS;
    const qftOptions = {
      epochs: q.epochs ?? QFT_DEFAULTS.epochs,
      batch,
      lrWeights: q.lrWeights ?? QFT_DEFAULTS.lrWeights,
      lrBiases: q.lrBiases ?? QFT_DEFAULTS.lrBiases,
      lrScales: q.lrScales ?? QFT_DEFAULTS.lrScales,
      schedule: q.schedule ?? QFT_DEFAULTS.schedule,
      loss: q.loss ?? QFT_DEFAULTS.loss,
      lossLayers: q.lossLayers,
      train: Object.fromEntries(TRAINED_GROUPS.map((g) => [g, train.includes(g)])),
      rechooseShifts: !!q.rechooseShifts,
      seed: q.seed ?? 0,
    };
    // Steps per epoch as finetune counts them: whole batches of the decoded images.
    const images = result.calibrationImages;
    tuned = await stage('qft', qftOptions.epochs * Math.floor(images / Math.min(batch, images)), (r) =>
      finetune(result, calib, {
        ...qftOptions,
        timeBudgetSeconds: q.timeBudgetSeconds,
        calibLimit,
        skipBadImages: options.skipBadImages,
        checkpoint: q.checkpoint,
        signal: q.signal,
        onProgress: (step, _total, loss) => r.update(step, { loss }),
      }),
    );
    if (q.reallocate !== undefined) {
      if (!allocation || !allocated)
        throw new QuantflowError('--reallocate re-runs the weight allocation after QFT: give --weight-budget too');
      const budget =
        q.reallocate === true ? parseBudget(options.weightBudget!, '--weight-budget') : parseBudget(q.reallocate, '--reallocate');
      const { cal, meter } = allocated;
      const initializers = new Map(tuned.model.graph.initializers);
      for (const [name, data] of tuned.trainedWeights) initializers.set(name, { ...initializers.get(name)!, dataType: 'float32', data });
      const finetuned: Calibration = {
        ...cal,
        model: { ...tuned.model, graph: { ...tuned.model.graph, initializers } },
        activations: tuned.params.activations,
        means: new Map(),
        moments: new Map(),
      };
      const candidates = allocationLayers(cal);
      const bits = budgetBits(budget, candidates, profile.source);
      const current = tuned.params.weights.map((w) => ({ ...w }));
      const rising = current.filter((l, i) => candidates[i]!.widths.some((b) => b > l.quantized.bits)).length;
      const sens = await stage('reallocation', rising, (r) =>
        raiseSensitivity(finetuned, current, meter, { onProgress: (done) => r.update(done) }),
      );
      const chosen = allocateGreedy(sens.layers, bits, sens.baseError);
      const raised = sens.layers.flatMap((l, i) => (chosen.widths[i] !== l.widths[0] ? [i] : []));
      const weights = current.map((l, i) => (raised.includes(i) ? sens.raised.get(i)! : l));
      profile = allocatedProfile(profile, profile.name, {
        weights: raised.map((i) => ({ layer: sens.layers[i]!.name, bits: chosen.widths[i] as 4 | 8 })),
      });
      tuned = { ...tuned, params: { ...tuned.params, weights: weights.map(({ layer, quantized }) => ({ layer, quantized })) } };
      allocation.afterQft = {
        budget: q.reallocate === true ? options.weightBudget! : q.reallocate,
        budgetBits: bits,
        bitsPerElement: bitsPerElement(candidates, chosen.widths),
        errorBefore: sens.errorBefore,
        predictedError: chosen.predictedError,
        measuredError: await meter.measure(qdqOfLayers(finetuned, weights)),
        raised: raised.map((i) => sens.layers[i]!.name),
        seconds: sens.seconds,
      };
    }
    result = await applyFinetune(result, tuned, profile);
    qft = {
      options: { ...qftOptions, train, equalizedPairs: tuned.equalizedPairs, teacherCached: tuned.teacherCached },
      steps: tuned.steps,
      seconds: tuned.seconds,
      initialLoss: tuned.initialLoss,
      epochLosses: tuned.losses,
      stepLosses: tuned.stepLosses,
    };
  }

  let accuracy: QuantizeReportJson['accuracy'];
  if (evalData) {
    const measure = (m: Model, name: QuantizeStage): Promise<AccuracyReport> =>
      stage(name, Math.min(options.evalLimit ?? Infinity, evalData.items.length), async (r) => {
        const e = await evaluate(m, evalData, {
          preprocess: result.preprocess.spec,
          limit: options.evalLimit,
          onProgress: (d) => r.update(d),
        });
        return { data: options.eval!, n: e.n, top1: e.top1, top5: e.top5 };
      });
    accuracy = {
      float: options.floatAccuracy ?? (await measure(model, 'eval float')),
      quantized: await measure(result.model, 'eval quantized'),
    };
  }

  let compare: CompareReport | undefined;
  if (compareData) {
    const r = await stage('compare', Math.min(options.compareLimit ?? Infinity, compareData.items.length), (rep) =>
      compareModels(model, result.model, compareData, {
        ...options.compareOptions,
        preprocess: result.preprocess.spec,
        skipBadImages: options.skipBadImages,
        batch,
        limit: options.compareLimit,
        onProgress: (d) => rep.update(d),
      }),
    );
    compare = { data: options.compare!, ...r };
  }

  // The QDQ model is useful on its own; a layer the integer package cannot express yet
  // costs only the package.
  let npu: NpuPackage | undefined;
  let npuProblem: string | undefined;
  try {
    npu = await buildNpuPackage(result.model, profile, { preset: result.preprocess.label });
  } catch (e) {
    if (!(e instanceof QuantflowError)) throw e;
    npuProblem = e.message;
  }
  // Only TFLite profiles lower such layers (the others refuse them while building the package).
  const unbounded =
    npu && tfliteKernels(profile) ? npu.layers.filter((l) => accumulatorBound(l, npu.tensors) >= 2 ** (profile.accumulatorBits - 1)) : [];
  const accumulatorWarning = unbounded.length
    ? `${unbounded.length} layer(s) (${unbounded[0]!.name}${unbounded.length > 1 ? ', …' : ''}) could reach an accumulator beyond ${profile.accumulatorBits} bits on worst-case inputs; TFLite's kernels do not check that bound either (quantflow verify reports the largest one reached)`
    : undefined;
  let tflite: Uint8Array | undefined;
  let tfliteProblem: string | undefined;
  let tfliteArithmetic: ArithmeticComparison | undefined;
  if (npu) {
    try {
      tflite = await exportTflite(result.model, profile, { npu, preprocess: result.preprocess.spec });
      if (!tfliteKernels(profile)) tfliteArithmetic = await tfliteArithmeticGap(result.model, profile, npu, result.sample);
    } catch (e) {
      if (!(e instanceof QuantflowError)) throw e;
      tfliteProblem = e.message;
    }
  } else tfliteProblem = 'the model has no integer NPU package, which the TFLite export is written from';
  const reportFiles = reportFilesIn(options.output);
  const npuDir = join(options.output, 'npu');
  const files: QuantizeRunFiles = {
    model: join(options.output, 'model.qdq.onnx'),
    ...(npu ? { npu: npuDir } : {}),
    ...reportFiles,
    ...(allocation || activationAllocation ? { profile: join(options.output, 'profile.json') } : {}),
    ...(tflite ? { tflite: join(options.output, TFLITE_FILE) } : {}),
  };
  const stats = layerWeightStats(model, result.plan);
  const report: QuantizeReportJson = {
    model: options.model,
    profile,
    calibration: {
      method: calibration,
      images: result.calibrationImages,
      preset: result.preprocess.label,
      folder: options.calib,
      preprocess: { ...result.preprocess.spec, reason: result.preprocess.reason },
      skipped: result.skipped,
    },
    biasCorrection,
    seconds: { ...result.seconds, ...(qft ? { qft: qft.seconds } : {}) },
    accuracy,
    ...(compare ? { compare } : {}),
    layers: result.layers.map((l) => ({ ...l, ...stats.get(l.name) })),
    outputs: result.outputs,
    ...(npu && { npu: { outputs: npu.outputs, ...(npu.hostTail && { hostTail: npu.hostTail }) } }),
    ...(tfliteArithmetic && { tfliteArithmetic }),
    activations: Object.fromEntries(result.params.activations),
    manifest,
    passes: passes.changes,
    ...(qft ? { qft } : {}),
    ...(allocation ? { allocation } : {}),
    ...(activationAllocation ? { activationAllocation } : {}),
  };
  // Everything in a folder this run creates is its own, so the folder goes too when writing fails.
  const createdOutput = !existsSync(options.output);
  try {
    writeOnnxFile(result.model, files.model);
    if (npu) writeNpuPackage(npuDir, npu);
    if (tflite && files.tflite) writeFileAtomic(files.tflite, tflite);
    if (files.profile) writeFileAtomic(files.profile, profileJson(profile));
    writeReportFiles(reportFiles, report);
  } catch (e) {
    // Only paths that exist: below a file nothing was written, and rm would fail there, hiding `e`.
    for (const path of createdOutput
      ? [options.output]
      : [files.model, npuDir, ...(files.profile ? [files.profile] : []), ...(files.tflite ? [files.tflite] : [])])
      if (existsSync(path)) rmSync(path, { recursive: true, force: true });
    throw e;
  }
  return {
    quantization: result,
    profile,
    report,
    files,
    accuracy,
    compare,
    npuProblem,
    tfliteProblem,
    accumulatorWarning,
    finetune: tuned,
  };
}
