import { Trainer } from '../autodiff/train-step.js';
import type { Dataset } from '../data/dataset.js';
import type { QuantizationParams } from '../export/qdq.js';
import { toFloat32 } from '../graph/tensor.js';
import type { Model, TensorData } from '../graph/types.js';
import type { QuantizeResult } from '../quantization/quantize.js';
import { QuantflowError } from '../util/errors.js';
import { exportStudent } from './export.js';
import { decodeImages, type ImageSet } from './images.js';
import { buildStudent, logitsOf } from './student.js';
import { teacherLogits } from './teacher.js';
import { seededRandom } from '../util/random.js';

export interface FinetuneOptions {
  /** Passes over the calibration images (default 1). */
  epochs?: number;
  /** Images per step (default 16); the last partial batch of an epoch is skipped. */
  batch?: number;
  /** Adam learning rate of weights (in PTQ quantization steps) and biases (in output steps); default 0.001. */
  lrWeights?: number;
  /** Adam learning rate of step sizes, relative to their PTQ values; default 0.001. */
  lrScales?: number;
  /** Stop after the step during which this many seconds have passed. */
  timeBudgetSeconds?: number;
  /** Seed of the per-epoch shuffling (default 0): equal seeds give equal results. */
  seed?: number;
  /** Intra-op threads of the training session (default: every core). */
  threads?: number;
  /** Called after every step with the batch's loss. */
  onProgress?: (step: number, total: number, loss: number) => void;
}

export interface FinetuneResult {
  /** The finetuned quantization, for buildQdqModel. */
  params: QuantizationParams;
  /** The float model with the finetuned biases: pass it with `params` to buildQdqModel. */
  model: Model;
  /** Mean distillation loss (KL divergence, nats) of each epoch's steps, during training. */
  losses: number[];
  /** Mean KL divergence of the PTQ starting point over the first epoch's first batch. */
  initialLoss: number;
  steps: number;
  seconds: number;
}

/**
 * QFT (arXiv 2212.02634): finetunes a PTQ result by distillation from the float model on
 * unlabeled images. Weights, biases, weight step sizes and activation step sizes are all
 * trained jointly through fake quantization with straight-through rounding (see student.ts);
 * WESS shifts and zero points stay fixed. The loss is the KL divergence between the float
 * (teacher) and quantized (student) softmax over the logits.
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
  const { epochs = 1, lrWeights = 0.001, lrScales = 0.001, seed = 0 } = options;
  const batch = Math.min(options.batch ?? 16, images.count);
  if (!(lrWeights > 0) || !(lrScales > 0)) throw new QuantflowError('QFT learning rates must be positive');
  const logits = logitsOf(model);
  const floatModel = withBatchInput(model, 'batch');
  const teacher = await teacherLogits(floatModel, logits, images, batch);
  const student = buildStudent(withBatchInput(model, batch), params, logits, {
    scaleRatio: lrScales / lrWeights,
    batch,
    biases: options.biases,
  });
  const trainer = await Trainer.create(student.model, { loss: student.loss, params: student.params }, { threads: options.threads });
  const perEpoch = Math.floor(images.count / batch);
  const total = perEpoch * epochs;
  const losses: number[] = [];
  let initialLoss = NaN;
  let step = 0;
  const input = new Float32Array(batch * images.size);
  const target = new Float32Array(batch * teacher.size);
  const random = seededRandom(seed);
  try {
    training: for (let epoch = 0; epoch < epochs; epoch++) {
      const order = shuffled(images.count, random);
      let sum = 0;
      let count = 0;
      for (let i = 0; i < perEpoch; i++) {
        const indices = order.slice(i * batch, (i + 1) * batch);
        indices.forEach((img, j) => target.set(teacher.data.subarray(img * teacher.size, (img + 1) * teacher.size), j * teacher.size));
        const feeds: Record<string, TensorData> = {
          [student.input]: images.gather(indices, input),
          [student.teacher]: { dataType: 'float32', dims: [batch, teacher.size], data: target },
        };
        const loss = await trainer.step(feeds, lrWeights);
        if (step === 0) initialLoss = loss;
        step++;
        sum += loss;
        count++;
        options.onProgress?.(step, total, loss);
        if (options.timeBudgetSeconds !== undefined && (performance.now() - t0) / 1000 >= options.timeBudgetSeconds) {
          losses.push(sum / count);
          break training;
        }
      }
      losses.push(sum / count);
    }
    const exported = exportStudent(model, params, student, trainer.parameters());
    return { ...exported, losses, initialLoss, steps: step, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await trainer.release();
  }
}

/**
 * QFT on a PTQ result (see `finetuneImages`): decodes the first `calibLimit` images of
 * `calib` once, with PTQ's preprocessing, and starts from PTQ's (bias-corrected) biases.
 */
export async function finetune(
  model: Model,
  ptq: QuantizeResult,
  calib: Dataset,
  options: FinetuneOptions & { calibLimit: number },
): Promise<FinetuneResult> {
  const images = await decodeImages(model, calib, { limit: options.calibLimit, preset: ptq.preset, batch: options.batch ?? 16 });
  return finetuneImages(model, ptq.params, images, { ...options, biases: qdqBiases(ptq) });
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
      out.set(layer.bias, q.map((v, c) => v * s[s.length === 1 ? 0 : c]!));
    }
  }
  return out;
}

/** `model` whose (single image) input has batch dimension `batch`. */
function withBatchInput(model: Model, batch: number | string): Model {
  const inputs = model.graph.inputs.map((v, i) => (i === 0 && v.shape ? { ...v, shape: [batch, ...v.shape.slice(1)] } : v));
  return { ...model, graph: { ...model.graph, inputs } };
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
