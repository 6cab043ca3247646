import { attrInt, normalizeAxis, producerMap } from '../graph/graph.js';
import { hostTail, networkOutputs } from '../graph/host-tail.js';
import { valueShapes } from '../graph/shapes.js';
import type { Model, TensorData } from '../graph/types.js';
import type { ImageSet } from '../data/images.js';
import { openSession, runSession } from '../runtime/session.js';

/**
 * One value of a model that "the model's output error" compares between the float model and
 * its quantized version, and how.
 * - 'kl': KL(float ‖ quantized) of the softmax over rows of `classes` values (the last axis),
 *   summed over rows: class scores, or the logits of a probability output;
 * - 'l2': ‖q − f‖² / ‖f‖² per image, a normalized L2 that weighs outputs of different scale alike.
 */
export interface OutputTerm {
  tensor: string;
  kind: 'kl' | 'l2';
  /** 'kl' only: the length of a row. */
  classes?: number;
}

/**
 * What QFT's `--loss auto` distils and `outputError` measures: the float values the model
 * hands out, i.e. its outputs, and where the host tail (graph/host-tail.ts) reads the network
 * instead, the tail's inputs. A probability output (a Softmax over the last axis) is compared
 * by KL on its logits; a model with one [N, K] output (a classifier) by KL on it; any other
 * value by normalized L2. Index outputs have no gradient and are left to their inputs.
 */
export function outputTerms(model: Model): OutputTerm[] {
  const g = model.graph;
  const tail = hostTail(g);
  const values = networkOutputs(g, tail);
  const shapes = valueShapes(model);
  const producers = producerMap(g);
  const floats = values.filter((v) => (shapes.get(v)?.dataType ?? 'float32') === 'float32');
  return floats.map((tensor): OutputTerm => {
    const producer = producers.get(tensor);
    if (producer?.opType === 'Softmax') {
      const logits = producer.inputs[0]!;
      const shape = shapes.get(logits)?.shape;
      const rank = shape?.length ?? 0;
      const axis = normalizeAxis(attrInt(producer, 'axis', model.opset >= 13 ? -1 : 1), rank, producer);
      // Before opset 13 Softmax normalizes everything from `axis` on as one row.
      const row = shape && (model.opset >= 13 ? (axis === rank - 1 ? shape.slice(axis) : undefined) : shape.slice(axis));
      const classes = row?.every((d): d is number => typeof d === 'number') ? row.reduce((p, d) => p * d, 1) : undefined;
      if (classes !== undefined) return { tensor: logits, kind: 'kl', classes };
    }
    const shape = shapes.get(tensor)?.shape;
    if (floats.length === 1 && shape?.length === 2 && typeof shape[1] === 'number') return { tensor, kind: 'kl', classes: shape[1] };
    return { tensor, kind: 'l2' };
  });
}

/**
 * The model's output error: mean over the first `limit` images of `images` of the sum over
 * `outputTerms(float)` of each term's KL or normalized L2, the quantized (QDQ) model run as its
 * fake-quant simulation. KL for a classifier, normalized L2 summed over the outputs otherwise:
 * how far quantization moved what the model hands out, labels not needed.
 */
export async function outputError(
  float: Model,
  quantized: Model,
  images: ImageSet,
  options: { batch: number; limit?: number },
): Promise<number> {
  const meter = await OutputErrorMeter.create(float, images, options);
  return meter.measure(quantized);
}

/**
 * `outputError` of many quantized versions of one float model on the same images: the float
 * model runs once, its outputs are kept, and each `measure` only runs the quantized model.
 */
export class OutputErrorMeter {
  private constructor(
    private readonly terms: OutputTerm[],
    private readonly images: ImageSet,
    private readonly count: number,
    private readonly batch: number,
    /** Per batch, the float values of each term. */
    private readonly reference: Float32Array[][],
  ) {}

  static async create(float: Model, images: ImageSet, options: { batch: number; limit?: number }): Promise<OutputErrorMeter> {
    const n = Math.min(options.limit ?? images.count, images.count);
    const terms = outputTerms(float);
    const session = await openSession(withTermOutputs(float, terms));
    try {
      const reference: Float32Array[][] = [];
      for (let i = 0; i < n; i += options.batch) {
        const f = await runSession(session, { [images.input]: images.slice(i, Math.min(options.batch, n - i)) });
        reference.push(terms.map((t) => f[t.tensor]!.data as Float32Array));
      }
      return new OutputErrorMeter(terms, images, n, options.batch, reference);
    } finally {
      await session.release();
    }
  }

  /** The output error of `quantized` (a QDQ model of the float model, run as its simulation). */
  async measure(quantized: Model): Promise<number> {
    const open = await this.open(quantized);
    try {
      return await open.measure({});
    } finally {
      await open.release();
    }
  }

  /**
   * A session of `quantized` kept open for many measurements, each feeding its own values of
   * the model's other inputs (weights made inputs, so that one session serves many versions).
   */
  async open(quantized: Model): Promise<{ measure(feeds: Record<string, TensorData>): Promise<number>; release(): Promise<void> }> {
    const session = await openSession(withTermOutputs(quantized, this.terms), { simulate: true });
    return {
      measure: async (feeds) => {
        let total = 0;
        for (let i = 0, b = 0; i < this.count; i += this.batch, b++) {
          const count = Math.min(this.batch, this.count - i);
          const q = await runSession(session, { ...feeds, [this.images.input]: this.images.slice(i, count) });
          this.terms.forEach((t, j) => (total += termError(t, this.reference[b]![j]!, q[t.tensor]!.data as Float32Array, count)));
        }
        return total / this.count;
      },
      release: () => session.release(),
    };
  }
}

function withTermOutputs(model: Model, terms: OutputTerm[]): Model {
  const outputs = terms.map((t) => ({ name: t.tensor, dataType: 'float32' as const }));
  return { ...model, graph: { ...model.graph, outputs } };
}

/** A term's error summed over the `count` images of a batch (see OutputTerm). */
export function termError(term: OutputTerm, float: Float32Array, quantized: Float32Array, count: number): number {
  let sum = 0;
  if (term.kind === 'kl') {
    const k = term.classes!;
    for (let r = 0; r < float.length; r += k) sum += klOfLogits(float.subarray(r, r + k), quantized.subarray(r, r + k));
    return sum;
  }
  const size = float.length / count;
  for (let img = 0; img < count; img++) {
    let error = 0;
    let energy = 0;
    for (let i = img * size; i < (img + 1) * size; i++) {
      error += (quantized[i]! - float[i]!) ** 2;
      energy += float[i]! ** 2;
    }
    sum += error / (energy + 1e-12);
  }
  return sum;
}

/** KL(softmax(t) ‖ softmax(s)), computed in log space. */
function klOfLogits(t: Float32Array, s: Float32Array): number {
  const lt = logSoftmax(t);
  const ls = logSoftmax(s);
  let kl = 0;
  for (let i = 0; i < lt.length; i++) kl += Math.exp(lt[i]!) * (lt[i]! - ls[i]!);
  return kl;
}

function logSoftmax(x: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of x) max = Math.max(max, v);
  let sum = 0;
  for (const v of x) sum += Math.exp(v - max);
  const log = max + Math.log(sum);
  return Float64Array.from(x, (v) => v - log);
}
