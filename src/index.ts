/**
 * quantflow as a library: load a float CNN (TFLite or ONNX), quantize it for an integer NPU
 * (PTQ, then optionally QFT), evaluate and compare it with its float self, write the QDQ model,
 * the integer NPU package and the report, and verify the package; tile squeeze-and-excite
 * blocks (TSE) and measure their buffering.
 *
 * This module is the package's only entry point: everything it does not export is internal
 * and may change in any release. The functions here keep their signatures and documentation
 * in one place and delegate to the modules that do the work. User errors (unreadable files,
 * bad options, models quantflow cannot handle) are thrown as {@link QuantflowError}s, whose
 * one-line message names the file, node or line; any other error is a bug.
 *
 * @example
 * ```ts
 * import { loadDataset, loadModel, quantizeModel, compareModels } from 'quantflow';
 *
 * const float = await loadModel('mobilenet_v2.tflite');
 * const calib = await loadDataset('images/');
 * const q = await quantizeModel(float, calib, { profile: 'w8a8-channel', calibLimit: 64 });
 * const result = await compareModels(float, q.model, await loadDataset('other-images/'));
 * console.log(result.outputs[0]?.sqnrDb);
 * ```
 *
 * @packageDocumentation
 */
import { loadDataset as loadDatasetFolder, type Dataset as DatasetFolder, type DatasetItem as DatasetFolderItem } from './data/dataset.js';
import type {
  Channels as PreprocessChannels,
  Preprocess as PreprocessSpec,
  PreprocessRequest as PreprocessFields,
  PresetName as Preset,
  ResizeMode as PreprocessResize,
} from './data/preprocess.js';
import {
  compareModels as compareOutputs,
  type CompareOptions as CompareModelsOptions,
  type CompareResult as CompareModelsResult,
  type OutputComparison as OutputFigures,
} from './eval/compare.js';
import { evaluate as evaluateModel, type EvalOptions as EvaluateOptions, type EvalResult as EvaluateResult } from './eval/evaluate.js';
import type { BoxFormat as DetectionBoxFormat, Task as OutputTask } from './eval/tasks.js';
import type { Model as GraphModel } from './graph/types.js';
import { loadModel as readModelFile, loadModelBytes } from './import/load.js';
import { prepareModel } from './import/prepare.js';
import { exportTflite as writeTfliteBytes, type IoType as TfliteIoType } from './export/tflite/export.js';
import { writeNpuPackage as writeNpuFolder } from './npu/io.js';
import { buildNpuPackage as lowerQdqModel } from './npu/package.js';
import type { NpuPackage as IntegerPackage } from './npu/types.js';
import type { TensorAgreement as VerifiedTensor, VerifyReport as PackageAgreement } from './npu/verify.js';
import { writeOnnxFile } from './onnx/write.js';
import type { InputSize as ImageSize } from './passes/input-size.js';
import {
  applyFinetune,
  runQuantize as runQuantizePipeline,
  type QftRunOptions as PipelineQftOptions,
  type QuantizeRun as PipelineRun,
  type QuantizeRunFiles as PipelineFiles,
  type QuantizeRunOptions as PipelineOptions,
  type QuantizeStage as PipelineStage,
  type StageReporter as PipelineStageReporter,
} from './pipeline/quantize-run.js';
import { runVerify, type VerifyRun, type VerifyRunOptions } from './pipeline/verify-run.js';
import {
  finetune as finetunePtq,
  QFT_DEFAULTS as QFT_DEFAULT_VALUES,
  type FinetuneOptions as TrainingOptions,
  type FinetuneResult as TrainingResult,
  type LrSchedule as Schedule,
} from './qft/finetune.js';
import type { LossKind as DistillationLoss, TrainedGroup as TrainedQuantities } from './qft/student.js';
import type { RangeMethod as CalibrationMethod } from './quantization/calibration.js';
import { builtinProfiles as profileNames, loadProfile as readProfile, type TargetProfile as Profile } from './quantization/profile.js';
import {
  quantizeModel as quantizePtq,
  type LayerReport as QuantizedLayer,
  type OutputReport as QuantizedOutput,
  type QuantizeOptions as PtqOptions,
  type QuantizeResult as PtqResult,
} from './quantization/quantize.js';
import { reportFilesIn, writeReportFiles } from './report/files.js';
import type { QuantizeReportJson, ReportJson } from './report/types.js';
import type { BlockBuffer as SeBlockBuffer, BufferReport as SeBufferReport } from './tse/buffers.js';
import { detectSqueezeExcite, type NearMiss as SeNearMiss } from './tse/detect.js';
import { bufferReport } from './tse/buffers.js';
import { tileSqueezeExcite as tileBlocks } from './tse/rewrite.js';
import { checkTileOptions, type TileOptions as Tiles } from './tse/tile.js';

export { QuantflowError } from './util/errors.js';

// Models

/** A model as quantflow holds it: an ONNX-semantics graph in memory, whatever file it came from. */
export type Model = GraphModel;

/** Height and width of a model's image input, in pixels. */
export type InputSize = ImageSize;

/** How {@link loadModel} reads and prepares a model. */
export interface LoadModelOptions {
  /**
   * Height and width to prepare the model at: required when its image input leaves them
   * dynamic, allowed over fixed ones where the graph's shapes fit.
   */
  inputSize?: InputSize;
  /**
   * Load the model only up to this operator (TFLite builtin or custom op name, ONNX op type
   * or node name) or tensor: its inputs (or the tensor) become the model's outputs.
   */
  cutBefore?: string;
  /** What error messages call a model given as bytes (default `<bytes>`). */
  name?: string;
}

/**
 * Loads a float model (TFLite flatbuffer or ONNX, told apart by content) and prepares it for
 * every other function here: validated, its input size fixed, shapes inferred, constants and
 * batch norms folded. A quantized QDQ model (model.qdq.onnx) loads the same way.
 *
 * @param source - A model file's path, or its bytes (an ONNX model with external data must be given by path).
 * @param options - Input size and cut point.
 * @returns The prepared model.
 * @throws {@link QuantflowError} when the model cannot be read, is malformed, or needs `inputSize`.
 *
 * @example
 * ```ts
 * const model = await loadModel('ssd_mobilenet_v1.tflite', { cutBefore: 'TFLite_Detection_PostProcess' });
 * const yolo = await loadModel(readFileSync('yolo.onnx'), { inputSize: [320, 320], name: 'yolo.onnx' });
 * ```
 */
export async function loadModel(source: string | Uint8Array, options: LoadModelOptions = {}): Promise<Model> {
  const { inputSize, cutBefore, name } = options;
  const model =
    typeof source === 'string' ? readModelFile(source, { cutBefore }) : loadModelBytes(source, { cutBefore, source: name ?? '<bytes>' });
  return prepareModel(model, undefined, { inputSize });
}

/**
 * Writes a model as an ONNX file: a quantized model's QDQ form (`Quantization.model`), a
 * tiled model, or any loaded one.
 *
 * @param model - The model to write.
 * @param path - The .onnx file, replaced atomically.
 */
export function writeModel(model: Model, path: string): void {
  writeOnnxFile(model, path);
}

// Data

/** An image folder: its items in a stable order, with labels when the folder has them. */
export type Dataset = DatasetFolder;

/** One image (or .npy tensor) of a {@link Dataset}. */
export type DatasetItem = DatasetFolderItem;

/**
 * Lists an image folder: `labels.csv` (`file,label`) if it has one, else one subfolder per
 * class, else every image (jpg, png, webp) or .npy tensor at any depth, unlabelled.
 *
 * @param dir - The folder.
 * @returns The dataset; images are decoded only when a function reads them.
 * @throws {@link QuantflowError} for a missing folder, a malformed labels.csv or a folder without images.
 */
export function loadDataset(dir: string): Promise<Dataset> {
  return loadDatasetFolder(dir);
}

/**
 * How images become model inputs: colour order, resizing and normalization
 * (`(pixel - mean) / std`, per colour, in pixel units).
 */
export type Preprocess = PreprocessSpec;

/**
 * Preprocessing asked for: a preset and/or some fields of {@link Preprocess}; what is left
 * out is chosen from the model (its recorded preprocessing, else a preset fitting its input).
 */
export type PreprocessRequest = PreprocessFields;

/** Named preprocessing presets: `inception` ([-1, 1]), `unit` ([0, 1]), `raw` (0..255), `imagenet-torch`. */
export type PresetName = Preset;

/** How an image is fitted to the model input: `crop`, `resize-crop`, `stretch` or `letterbox`. */
export type ResizeMode = PreprocessResize;

/** Channel order of the model input: `rgb`, `bgr` or `gray`. */
export type Channels = PreprocessChannels;

// Quantization

/** A target NPU's integer constraints: weight and activation bits, granularity, requantization, nonlinearities. */
export type TargetProfile = Profile;

/**
 * Reads a target profile.
 *
 * @param nameOrPath - A built-in profile's name (see {@link builtinProfiles}) or a profile JSON file.
 * @returns The validated profile.
 * @throws {@link QuantflowError} for an unknown name or an unreadable or invalid file.
 */
export function loadProfile(nameOrPath: string): TargetProfile {
  return readProfile(nameOrPath);
}

/**
 * @returns The names of the profiles shipped with quantflow (w8a8-channel, w4a8-shift, ...).
 */
export function builtinProfiles(): string[] {
  return profileNames();
}

/** How activation ranges are calibrated: `mse` (default), `minmax` or `percentile`. */
export type RangeMethod = CalibrationMethod;

/** Options of {@link quantizeModel}; every field but `profile` has a default. */
export interface QuantizeOptions extends Omit<PtqOptions, 'profile'> {
  /** The target: a profile, a built-in profile's name or a profile JSON file. */
  profile: TargetProfile | string;
}

/** A quantized model and what was measured while quantizing it. */
export interface Quantization extends PtqResult {
  /** The profile it was quantized for. */
  profile: TargetProfile;
}

/** Per-layer facts of a {@link Quantization}: bits, scales, WESS shifts, weight and output SQNR. */
export type LayerReport = QuantizedLayer;

/** Per-output facts of a {@link Quantization}: how far quantizing moved each model output. */
export type OutputReport = QuantizedOutput;

/**
 * Post-training quantization (PTQ) of a loaded float model: calibrates activation ranges on
 * images, quantizes weights as the profile says per layer (bias correction and GPTQ rounding
 * by default) and builds the QDQ model (`model`), which onnxruntime runs as the fake-quant
 * simulation of the integer NPU.
 *
 * @param model - A model from {@link loadModel}.
 * @param calib - Calibration images (labels unused).
 * @param options - Profile and calibration options.
 * @returns The quantization, with its QDQ model and per-layer and per-output facts.
 * @throws {@link QuantflowError} when the model has nothing to quantize or an image cannot be read.
 *
 * @example
 * ```ts
 * const q = await quantizeModel(model, await loadDataset('calib/'), { profile: 'w4a8-shift', calibLimit: 256 });
 * writeModel(q.model, 'out/model.qdq.onnx');
 * ```
 */
export async function quantizeModel(model: Model, calib: Dataset, options: QuantizeOptions): Promise<Quantization> {
  const profile = typeof options.profile === 'string' ? readProfile(options.profile) : options.profile;
  return { ...(await quantizePtq(model, calib, { ...options, profile })), profile };
}

/** Options of {@link finetune}; the defaults are {@link QFT_DEFAULTS}. */
export interface FinetuneOptions extends TrainingOptions {
  /** Calibration images trained on (default: the ones PTQ used). */
  calibLimit?: number;
  /** Leave out unreadable images instead of failing on the first. */
  skipBadImages?: boolean;
}

/** What QFT did: losses per epoch and step, steps, seconds. */
export type FinetuneResult = TrainingResult;

/** The outcome of {@link finetune}. */
export interface Finetuned {
  /** The finetuned quantization, in place of the PTQ one it started from. */
  quantization: Quantization;
  finetune: FinetuneResult;
}

/** Learning-rate schedule of QFT: `cosine` or `constant`. */
export type LrSchedule = Schedule;

/** QFT's distillation loss: `auto` (default), `kl`, `l2` or `kl+l2`. */
export type LossKind = DistillationLoss;

/** Groups of quantities QFT trains: weights, biases, weight and activation scales, equalization factors. */
export type TrainedGroup = TrainedQuantities;

/** QFT's default schedule (epochs, batch, learning rates, loss). */
export const QFT_DEFAULTS = QFT_DEFAULT_VALUES;

/**
 * Quantization-aware finetuning (QFT): trains the weights, biases, step sizes and equalization
 * factors of a PTQ result by distillation from the float model on unlabelled images.
 *
 * @param ptq - A result of {@link quantizeModel}.
 * @param calib - Training images (usually the calibration images).
 * @param options - Schedule, loss and limits; defaults {@link QFT_DEFAULTS}.
 * @returns The finetuned quantization and the training's figures.
 * @throws {@link QuantflowError} when an image cannot be read, or when `signal` stopped training.
 *
 * @example
 * ```ts
 * const ptq = await quantizeModel(model, calib, { profile: 'w4a8-shift', calibLimit: 256 });
 * const { quantization } = await finetune(ptq, calib, { epochs: 1 });
 * ```
 */
export async function finetune(ptq: Quantization, calib: Dataset, options: FinetuneOptions = {}): Promise<Finetuned> {
  const calibLimit = options.calibLimit ?? ptq.calibrationImages + ptq.skipped.length;
  const tuned = await finetunePtq(ptq, calib, { ...options, calibLimit });
  return { quantization: { ...(await applyFinetune(ptq, tuned, ptq.profile)), profile: ptq.profile }, finetune: tuned };
}

// The whole pipeline

/** Options of {@link runQuantize}: model, images, profile and output folder, then what else to run. */
export type QuantizeRunOptions = PipelineOptions;

/** QFT after PTQ in {@link runQuantize}; left-out fields take {@link QFT_DEFAULTS}. */
export type QftRunOptions = PipelineQftOptions;

/** The outcome of {@link runQuantize}: the quantization, the report and the files written. */
export type QuantizeRun = PipelineRun;

/** Paths {@link runQuantize} wrote. */
export type QuantizeRunFiles = PipelineFiles;

/** The stages of {@link runQuantize} that report progress. */
export type QuantizeStage = PipelineStage;

/** Follows one stage's progress (see `QuantizeRunOptions.onStage`). */
export type StageReporter = PipelineStageReporter;

/** The content of a quantize run's report.json. */
export type QuantizeReport = QuantizeReportJson;

/** Any report.json quantflow writes (quantize, TSE); `kind` tells them apart. */
export type Report = ReportJson;

/**
 * `quantflow quantize` as a function: loads the model, runs PTQ (then QFT with `qft`),
 * measures accuracy (`eval`) and output agreement (`compare`) when asked, and writes
 * model.qdq.onnx, npu/ (the integer NPU package), report.json and report.html into `output`,
 * all or nothing.
 *
 * @param options - What to quantize, how, and where to write it.
 * @returns The quantization, the report and the files written.
 * @throws {@link QuantflowError} for unreadable inputs, bad options or an unwritable folder.
 *
 * @example
 * ```ts
 * const run = await runQuantize({ model: 'mobilenet_v2.tflite', calib: 'calib/', profile: 'w8a8-channel', output: 'out/', calibLimit: 64 });
 * console.log(run.files.html, run.npuProblem ?? 'NPU package written');
 * ```
 */
export function runQuantize(options: QuantizeRunOptions): Promise<QuantizeRun> {
  return runQuantizePipeline(options);
}

/**
 * Writes report.json and report.html (a self-contained page) into a folder.
 *
 * @param dir - The folder (created if needed).
 * @param report - A report, such as `QuantizeRun.report`.
 */
export function writeReport(dir: string, report: Report): void {
  writeReportFiles(reportFilesIn(dir), report);
}

// Evaluation

/** Options of {@link evaluate}. */
export type EvalOptions = EvaluateOptions;

/** Top-1/top-5 accuracy and predictions of {@link evaluate}. */
export type EvalResult = EvaluateResult;

/**
 * Top-1/top-5 accuracy of a classifier (float or QDQ) on a labelled folder, run by
 * onnxruntime; on an unlabelled folder, only its predictions.
 *
 * @param model - A model from {@link loadModel}, or `Quantization.model`.
 * @param dataset - The images.
 * @param options - Preprocessing, batch, limit.
 * @returns Accuracy, throughput and the preprocessing used.
 */
export function evaluate(model: Model, dataset: Dataset, options: EvalOptions = {}): Promise<EvalResult> {
  return evaluateModel(model, dataset, options);
}

/** Options of {@link compareModels}: preprocessing, limits, and what the outputs are (task, boxes, thresholds). */
export type CompareOptions = CompareModelsOptions;

/** Per-output figures of {@link compareModels}, and detection figures for detectors. */
export type CompareResult = CompareModelsResult;

/** One output's figures: SQNR, cosine, max error, and the task's own (top-1 agreement, mIoU, ...). */
export type OutputComparison = OutputFigures;

/** What a model's outputs are, for {@link compareModels}: `classify`, `segment`, `detect` or `dense`. */
export type Task = OutputTask;

/** How a detector's boxes are written: `yxyx`, `xyxy` or `cxcywh`. */
export type BoxFormat = DetectionBoxFormat;

/**
 * Runs a float model and its quantized version on the same images and compares their
 * outputs, with figures fitting each output (class agreement, segmentation IoU, detection
 * matches, SQNR); no labels needed.
 *
 * @param float - The float model.
 * @param quantized - Its quantized version (`Quantization.model`, or a QDQ model loaded from file).
 * @param dataset - The images.
 * @param options - Preprocessing (default: the float model's), limits, task and thresholds.
 * @returns The figures per output.
 *
 * @example
 * ```ts
 * const result = await compareModels(float, q.model, await loadDataset('photos/'), { limit: 50 });
 * for (const o of result.outputs) console.log(o.name, o.sqnrDb);
 * ```
 */
export function compareModels(float: Model, quantized: Model, dataset: Dataset, options: CompareOptions = {}): Promise<CompareResult> {
  return compareOutputs(float, quantized, dataset, options);
}

// The integer NPU package

/** The integer NPU package: integer layers, tensors, requantization and profile, as `quantflow verify` reads it. */
export type NpuPackage = IntegerPackage;

/**
 * Lowers a quantization to the integer NPU package of its profile.
 *
 * @param quantization - A result of {@link quantizeModel} or {@link finetune}.
 * @returns The package.
 * @throws {@link QuantflowError} naming the first node the package cannot express.
 */
export function buildNpuPackage(quantization: Quantization): Promise<NpuPackage> {
  return lowerQdqModel(quantization.model, quantization.profile, { preset: quantization.preprocess.label });
}

/**
 * Writes an NPU package as manifest.json and weights.bin.
 *
 * @param dir - The folder (created if needed).
 * @param pkg - The package.
 */
export function writeNpuPackage(dir: string, pkg: NpuPackage): void {
  writeNpuFolder(dir, pkg);
}

// Fully-integer TFLite

/** Element type of an exported TFLite model's inputs and outputs. */
export type IoType = TfliteIoType;

/**
 * Writes a quantization as a fully-integer TFLite flatbuffer, the format of Vela (Ethos-U),
 * the Edge TPU compiler and TFLite Micro: builtin operators in NHWC, int8 asymmetric
 * per-tensor activations, int8 symmetric weights per tensor or per output channel (4-bit
 * weights as int8 values on their grid, WESS as per-channel scales), int32 biases; host
 * post-processing (ARG_MAX, SSD's TFLite_Detection_PostProcess) as the original's
 * operators; metadata with the input normalization (TFLITE_METADATA), the minimum runtime
 * version and quantflow's per-layer weight widths.
 *
 * @param quantization - A result of {@link quantizeModel} or {@link finetune}.
 * @param options - `ioType`: the graph inputs' and outputs' type (default int8; uint8 and
 *   float32 add QUANTIZE/DEQUANTIZE at the boundary).
 * @returns The .tflite file's bytes.
 * @throws {@link QuantflowError} naming the layer TFLite's int8 scheme cannot express
 *   (16-bit activations, an operator without a builtin).
 */
export function exportTflite(quantization: Quantization, options: { ioType?: IoType } = {}): Promise<Uint8Array> {
  return writeTfliteBytes(quantization.model, quantization.profile, { ioType: options.ioType, preprocess: quantization.preprocess.spec });
}

/** Options of {@link verify}. */
export type VerifyOptions = VerifyRunOptions;

/** The outcome of {@link verify}. */
export type VerifyResult = VerifyRun;

/** Agreement of the integer executor with the fake-quant simulation, end to end and per layer. */
export type VerifyReport = PackageAgreement;

/** Agreement on one tensor: elements, exact ones, largest difference in steps. */
export type TensorAgreement = VerifiedTensor;

/**
 * `quantflow verify` as a function: runs the integer NPU package of a quantize output folder
 * and its QDQ model's fake-quant simulation on the same images and compares their integers.
 *
 * @param options - The folder (`dir`), the images (`data`), and how many.
 * @returns The agreement figures and the package verified.
 * @throws {@link QuantflowError} when the folder has no QDQ model, or no package and no profile to build one.
 *
 * @example
 * ```ts
 * const { report } = await verify({ dir: 'out/', data: 'images/', limit: 2 });
 * console.log(report.outputs.map((a) => a.exact / a.elements));
 * ```
 */
export function verify(options: VerifyOptions): Promise<VerifyResult> {
  return runVerify(options);
}

// Tiled squeeze-and-excite (TSE)

/** Exactly one of `tileRows`, `tileCols` or `tile` ([rows, columns]). */
export type TileOptions = Tiles;

/** SE and TSE buffering of every block, and the totals, in elements. */
export type BufferReport = SeBufferReport;

/** Buffering of one SE block. */
export type BlockBuffer = SeBlockBuffer;

/** A Mul that looks like a squeeze-and-excite block but is not one, and why. */
export type NearMiss = SeNearMiss;

/** What {@link measureBuffers} found. */
export interface BufferMeasurement {
  buffers: BufferReport;
  nearMisses: NearMiss[];
}

/**
 * Finds a model's squeeze-and-excite blocks and measures the activation buffering each needs
 * on a streaming accelerator, whole (SE) and tiled (TSE).
 *
 * @param model - A model from {@link loadModel} (at the input size that matters).
 * @param tiles - The tiling.
 * @returns Per-block and total buffering, and the Muls that were not SE blocks.
 * @throws {@link QuantflowError} for a tiling that is not exactly one positive size.
 *
 * @example
 * ```ts
 * const { buffers } = measureBuffers(await loadModel('mnv3.tflite', { inputSize: [512, 512] }), { tileRows: 7 });
 * console.log(`${buffers.se} → ${buffers.tse} elements`);
 * ```
 */
export function measureBuffers(model: Model, tiles: TileOptions): BufferMeasurement {
  checkTileOptions(tiles);
  const { blocks, nearMisses } = detectSqueezeExcite(model);
  return { buffers: bufferReport(blocks, tiles), nearMisses };
}

/**
 * Tiles the squeeze-and-excite blocks of a model (TSE): each block's gate is computed per tile
 * instead of from the global mean, without retraining. Blocks whose map fits in one tile stay.
 *
 * @param model - A model from {@link loadModel}; it is not changed.
 * @param tiles - The tiling.
 * @returns The tiled model, a standard ONNX model for every other function here.
 * @throws {@link QuantflowError} for a tiling that is not exactly one positive size.
 */
export function tileSqueezeExcite(model: Model, tiles: TileOptions): Model {
  return tileBlocks(model, tiles);
}
