import { Trainer } from '../autodiff/train-step.js';
import type { Dataset } from '../data/dataset.js';
import type { QuantizationParams } from '../quantization/qdq.js';
import { floatTensor, toFloat32 } from '../graph/tensor.js';
import type { Model, TensorData } from '../graph/types.js';
import type { QuantizeResult } from '../quantization/quantize.js';
import { QuantflowError } from '../util/errors.js';
import { exportStudent, trainedShifts } from './export.js';
import { loadCheckpoint, saveCheckpoint, type QftProgress } from './checkpoint.js';
import { createHash } from 'node:crypto';
import { decodeImages, type ImageSet } from '../data/images.js';
import { buildStudent, TRAINED_GROUPS, type LossKind, type Student, type TrainedGroup } from './student.js';
import { TeacherTargets } from './teacher.js';
import { seededRandom } from '../util/random.js';

/** QFT's default schedule: docs/RESULTS.md has the runs that chose it. */
export const QFT_DEFAULTS = {
  epochs: 4,
  batch: 16,
  lrWeights: 0.0005,
  lrBiases: 0.03,
  lrScales: 0.00005,
  schedule: 'cosine',
  loss: 'auto',
} as const;

export interface FinetuneOptions {
  /** Passes over the calibration images (default 4). */
  epochs?: number;
  /** Images per step (default 16); the last partial batch of an epoch is skipped. */
  batch?: number;
  /** Peak Adam learning rate of weights, in PTQ quantization steps; default 0.0005. */
  lrWeights?: number;
  /** Peak Adam learning rate of biases, in steps of the layer's quantized output; default 0.03. */
  lrBiases?: number;
  /** Peak Adam learning rate of step sizes and equalization factors, relative to their PTQ values; default 0.00005. */
  lrScales?: number;
  /**
   * Learning-rate schedule over the planned steps: 'cosine' (default) warms up linearly over
   * the first 5% of steps, then decays to zero along a half cosine; 'constant' keeps it flat.
   */
  schedule?: LrSchedule;
  /** Which groups of quantities train (default: all); the others keep their PTQ values. */
  train?: Partial<Record<TrainedGroup, boolean>>;
  /**
   * Re-choose WESS shifts for the trained weights between epochs (default false: PTQ's are
   * kept; re-choosing re-rounds whole channels, which cost 2 points on MobileNetV2 and more on
   * MobileNetV3-Small, see docs/RESULTS.md).
   */
  rechooseShifts?: boolean;
  /** Distillation loss (default 'auto'). */
  loss?: LossKind;
  /** Values the L2 loss compares (default: the input of the last weighted layer). */
  lossLayers?: readonly string[];
  /** Stop after the step during which this many seconds have passed. */
  timeBudgetSeconds?: number;
  /** Seed of the per-epoch shuffling (default 0): equal seeds give equal results. */
  seed?: number;
  /** Intra-op threads of the training session (default: every core). */
  threads?: number;
  /**
   * Folder for a checkpoint, written every `checkpointSteps` steps and at each epoch's end; a
   * run started with the checkpoint of the same run there continues from it.
   */
  checkpoint?: string;
  /** Steps between checkpoints (default 25). */
  checkpointSteps?: number;
  /**
   * Stops training after the current step (Ctrl-C): the checkpoint, if any, is saved and a
   * QuantflowError says where.
   */
  signal?: AbortSignal;
  /** Called after every step with the batch's loss. */
  onProgress?: (step: number, total: number, loss: number) => void;
}

export interface FinetuneResult {
  /** The finetuned quantization, for buildQdqModel. */
  params: QuantizationParams;
  /** The float model with the finetuned biases: pass it with `params` to buildQdqModel. */
  model: Model;
  /** The trained float weights (equalization folded in) by weight name, in the model's layout. */
  trainedWeights: Map<string, Float32Array>;
  /** Mean distillation loss of each epoch's steps, during training. */
  losses: number[];
  /** The loss of every step, in order. */
  stepLosses: number[];
  /** Loss of the PTQ starting point on the first batch. */
  initialLoss: number;
  steps: number;
  /** Steps taken by this call (fewer than `steps` after resuming from a checkpoint). */
  stepsRun: number;
  seconds: number;
  /** Layer pairs whose equalization factors were trained. */
  equalizedPairs: number;
  /** Whether the teacher's values were cached (else the float model ran on every batch). */
  teacherCached: boolean;
}

/**
 * QFT (arXiv 2212.02634): finetunes a PTQ result by distillation from the float model on
 * unlabeled images. Weights, biases, weight and activation step sizes and cross-layer
 * equalization factors are all trained jointly through fake quantization with
 * straight-through rounding (see student.ts); WESS shifts stay PTQ's unless
 * `rechooseShifts` re-chooses them between epochs; zero points stay fixed. The loss compares the
 * float (teacher) and quantized (student) outputs (KL on class scores, normalized L2 on other
 * outputs) and/or chosen features by normalized L2 (see LossKind).
 *
 * `model` is the prepared float model PTQ quantized; `images` the decoded calibration
 * images; `biases` optional float starting biases (PTQ's bias-corrected ones).
 */
export async function finetuneImages(
  model: Model,
  params: QuantizationParams,
  images: ImageSet,
  options: FinetuneOptions & { biases?: ReadonlyMap<string, Float32Array> } = {},
): Promise<FinetuneResult> {
  const t0 = performance.now();
  const {
    epochs = QFT_DEFAULTS.epochs,
    lrWeights = QFT_DEFAULTS.lrWeights,
    lrBiases = QFT_DEFAULTS.lrBiases,
    lrScales = QFT_DEFAULTS.lrScales,
    seed = 0,
    checkpointSteps = 25,
  } = options;
  const batch = Math.min(options.batch ?? QFT_DEFAULTS.batch, images.count);
  if (!(lrWeights > 0) || !(lrBiases > 0) || !(lrScales > 0)) throw new QuantflowError('QFT learning rates must be positive');
  const student = buildStudent(withBatchInput(model, batch), params, {
    scaleRatio: lrScales / lrWeights,
    biasRatio: lrBiases / lrWeights,
    batch,
    biases: options.biases,
    loss: options.loss,
    lossLayers: options.lossLayers,
  });
  const trainedParams = TRAINED_GROUPS.filter((g) => options.train?.[g] ?? true).flatMap((g) => student.params[g]);
  if (!trainedParams.length) throw new QuantflowError('QFT has nothing to train: every group is frozen');
  const teacher = await TeacherTargets.create(
    withBatchInput(model, 'batch'),
    student.targets.map((t) => t.tensor),
    images,
    batch,
  );
  let trainer: Trainer | undefined;
  try {
    trainer = await Trainer.create(student.model, { loss: student.loss, params: trainedParams }, { threads: options.threads });
    const perEpoch = Math.floor(images.count / batch);
    const total = perEpoch * epochs;
    const rate = learningRate(options.schedule ?? QFT_DEFAULTS.schedule, total);
    const fingerprint = options.checkpoint
      ? runFingerprint(student, trainedParams, images, { ...options, epochs, batch, lrWeights, lrBiases, lrScales, seed })
      : '';
    const saved = options.checkpoint ? loadCheckpoint(options.checkpoint, fingerprint) : undefined;
    const progress: QftProgress = saved?.progress ?? {
      step: 0,
      stepLosses: [],
      epochLosses: [],
      shifts: Object.fromEntries(student.layers.filter((l) => l.shifts).map((l) => [l.layer.weight, [...l.ptq.shifts!]])),
    };
    if (saved) trainer.restore(saved.trainer);
    const save = () => options.checkpoint && saveCheckpoint(options.checkpoint, fingerprint, { progress, trainer: trainer!.state() });
    const startStep = progress.step;
    // Out of time: stop with the checkpoint saved. Interrupted: the same, then an error that says so.
    const stopping = () => {
      const interrupted = options.signal?.aborted ?? false;
      if (!interrupted && (options.timeBudgetSeconds === undefined || (performance.now() - t0) / 1000 < options.timeBudgetSeconds))
        return false;
      save();
      if (!interrupted) return true;
      const where = options.checkpoint ? `; progress saved in ${options.checkpoint}: rerun the same command to continue` : '';
      throw new QuantflowError(`QFT interrupted after step ${progress.step} of ${total}${where}`);
    };
    const input = new Float32Array(batch * images.size);
    training: while (progress.step < total) {
      const epoch = Math.floor(progress.step / perEpoch);
      const order = shuffled(images.count, seededRandom(epochSeed(seed, epoch)));
      const shiftFeeds = shiftInputs(student, progress.shifts);
      while (progress.step < (epoch + 1) * perEpoch) {
        const i = progress.step - epoch * perEpoch;
        const indices = order.slice(i * batch, (i + 1) * batch);
        const batchImages = images.gather(indices, input);
        const targets = await teacher.gather(indices, batchImages);
        const feeds: Record<string, TensorData> = { [student.input]: batchImages, ...shiftFeeds };
        for (const t of student.targets) feeds[t.input] = targets[t.tensor]!;
        const loss = await trainer.step(feeds, lrWeights * rate(progress.step));
        progress.stepLosses.push(loss);
        progress.step++;
        options.onProgress?.(progress.step, total, loss);
        if (progress.step % perEpoch === 0) break;
        if (stopping()) break training;
        if (progress.step % checkpointSteps === 0) save();
      }
      progress.epochLosses.push(mean(progress.stepLosses.slice(epoch * perEpoch)));
      // Shifts follow the weights between epochs; the last epoch's are the ones it trained with.
      if (progress.step < total && (options.rechooseShifts ?? false) && student.layers.some((l) => l.shifts)) {
        const current = trainedShifts(model, student, currentValues(student, trainer));
        progress.shifts = Object.fromEntries([...current].map(([w, k]) => [w, [...k]]));
      }
      if (stopping()) break;
      save();
    }
    // A run stopped mid-epoch reports that epoch's mean so far.
    if (progress.epochLosses.length * perEpoch < progress.step)
      progress.epochLosses.push(mean(progress.stepLosses.slice(progress.epochLosses.length * perEpoch)));
    const shifts = new Map(Object.entries(progress.shifts).map(([w, k]) => [w, Int32Array.from(k)]));
    const exported = exportStudent(model, params, student, currentValues(student, trainer), shifts);
    return {
      ...exported,
      losses: progress.epochLosses,
      stepLosses: progress.stepLosses,
      initialLoss: progress.stepLosses[0] ?? NaN,
      steps: progress.step,
      stepsRun: progress.step - startStep,
      seconds: (performance.now() - t0) / 1000,
      equalizedPairs: student.equalization.length,
      teacherCached: teacher.cached,
    };
  } finally {
    await trainer?.release();
    await teacher.release();
  }
}

/**
 * QFT on a PTQ result (see `finetuneImages`): decodes the first `calibLimit` images of
 * `calib` once, with PTQ's preprocessing, and starts from the float model PTQ quantized
 * (equalized if it was) with PTQ's (bias-corrected) biases.
 */
export async function finetune(
  ptq: QuantizeResult,
  calib: Dataset,
  options: FinetuneOptions & { calibLimit: number; skipBadImages?: boolean },
): Promise<FinetuneResult> {
  const images = await decodeImages(ptq.float, calib, {
    limit: options.calibLimit,
    preprocess: ptq.preprocess.spec,
    batch: options.batch ?? QFT_DEFAULTS.batch,
    skipBadImages: options.skipBadImages,
  });
  return finetuneImages(ptq.float, ptq.params, images, { ...options, biases: qdqBiases(ptq) });
}

/**
 * The float biases the QDQ model of a PTQ result applies (bias correction included):
 * int32 biases dequantized, biases left float as they are.
 */
export function qdqBiases(ptq: Pick<QuantizeResult, 'model' | 'params'>): Map<string, Float32Array> {
  const g = ptq.model.graph;
  const nodes = new Map(g.nodes.map((n) => [n.name, n]));
  const out = new Map<string, Float32Array>();
  for (const { layer } of ptq.params.weights) {
    const name = nodes.get(layer.node.name)?.inputs[2];
    if (!layer.bias || !name) continue;
    const direct = g.initializers.get(name);
    const dq = g.nodes.find((n) => n.opType === 'DequantizeLinear' && n.outputs[0] === name);
    if (direct) out.set(layer.bias, toFloat32(direct));
    else if (dq) {
      const q = toFloat32(g.initializers.get(dq.inputs[0]!)!);
      const s = toFloat32(g.initializers.get(dq.inputs[1]!)!);
      out.set(
        layer.bias,
        q.map((v, c) => v * s[s.length === 1 ? 0 : c]!),
      );
    }
  }
  return out;
}

export type LrSchedule = 'cosine' | 'constant';

/** Multiplier of the base learning rate at step s (0-based) of `total` planned steps. */
export function learningRate(schedule: LrSchedule, total: number): (step: number) => number {
  if (schedule === 'constant') return () => 1;
  const warmup = Math.max(1, Math.round(0.05 * total));
  return (s) => (s < warmup ? (s + 1) / warmup : 0.5 * (1 + Math.cos((Math.PI * (s - warmup)) / Math.max(1, total - warmup))));
}

/** `model` whose (single image) input has batch dimension `batch`. */
function withBatchInput(model: Model, batch: number | string): Model {
  const inputs = model.graph.inputs.map((v, i) => (i === 0 && v.shape ? { ...v, shape: [batch, ...v.shape.slice(1)] } : v));
  return { ...model, graph: { ...model.graph, inputs } };
}

/** Every θ of the student: trained ones from the trainer, frozen ones at their initial 0. */
function currentValues(student: Student, trainer: Trainer): Map<string, TensorData> {
  const values = new Map(TRAINED_GROUPS.flatMap((g) => student.params[g]).map((p) => [p, student.model.graph.initializers.get(p)!]));
  for (const [p, v] of trainer.parameters()) values.set(p, v);
  return values;
}

/** The graph inputs that carry each WESS layer's per-channel factors 2^−k. */
function shiftInputs(student: Student, shifts: Record<string, number[]>): Record<string, TensorData> {
  const feeds: Record<string, TensorData> = {};
  for (const { layer, shifts: input } of student.layers)
    if (input)
      feeds[input] = floatTensor(
        [shifts[layer.weight]!.length],
        shifts[layer.weight]!.map((k) => 2 ** -k),
      );
  return feeds;
}

/** Each epoch shuffles with its own seed, so a resumed run shuffles as an uninterrupted one. */
function epochSeed(seed: number, epoch: number): number {
  return (seed ^ Math.imul(epoch + 1, 0x9e3779b9)) >>> 0;
}

/** Identifies a run for its checkpoint: what is trained, on which images, with which options. */
function runFingerprint(student: Student, trained: string[], images: ImageSet, options: FinetuneOptions): string {
  const hash = createHash('sha256');
  const shapes = trained.map((p) => [p, student.model.graph.initializers.get(p)!.dims]);
  const { epochs, batch, lrWeights, lrBiases, lrScales, seed, schedule, loss, lossLayers, train, rechooseShifts } = options;
  hash.update(
    JSON.stringify({ shapes, epochs, batch, lrWeights, lrBiases, lrScales, seed, schedule, loss, lossLayers, train, rechooseShifts }),
  );
  hash.update(new Uint8Array(images.data.buffer, images.data.byteOffset, images.data.byteLength));
  return hash.digest('hex');
}

function mean(values: readonly number[]): number {
  return values.reduce((s, v) => s + v, 0) / values.length;
}

/** 0..n−1 in the order of a Fisher–Yates shuffle driven by `random`. */
function shuffled(n: number, random: () => number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}
