import * as ort from 'onnxruntime-node';
import { imageBatches, imageFeeds, imageInputGeometry } from '../data/batches.js';
import type { Dataset, DatasetItem } from '../data/dataset.js';
import { resolvePreprocess, type Preprocess, type PreprocessRequest } from '../data/preprocess.js';
import type { Model } from '../graph/types.js';
import { isQdqModel, openSession, runSession } from '../runtime/session.js';
import { QuantflowError } from '../util/errors.js';
import { backgroundClass, topK } from './metrics.js';

export interface EvalOptions {
  /** Preprocessing: a preset and/or fields; the rest is chosen from the model (`resolvePreprocess`). */
  preprocess?: PreprocessRequest;
  /** Images per inference (default 32). Ignored when the model fixes its batch size. */
  batch?: number;
  /** Evaluate only the first `limit` images. */
  limit?: number;
  /** Record unreadable images in `skipped` instead of failing. */
  skipBadImages?: boolean;
  /**
   * For QDQ models: run QuantizeLinear/DequantizeLinear as the float fake-quant simulation
   * (the default, which is what accuracy numbers are reported on) or let onnxruntime fuse
   * them into its integer kernels (false).
   */
  simulate?: boolean;
  /** Called after each batch with images processed (skipped ones included) and the total. */
  onProgress?: (done: number, total: number) => void;
}

export interface EvalResult {
  /** Images scored (skipped ones excluded). */
  n: number;
  /** Whether the dataset has labels: without them top1 and top5 are 0 and mean nothing. */
  labelled: boolean;
  /** Fractions in 0..1. */
  top1: number;
  top5: number;
  /** End to end: decoding, preprocessing and inference. */
  imagesPerSecond: number;
  preprocess: Preprocess;
  /** Short name of `preprocess` (its preset's, when it is one). */
  preset: string;
  presetReason: string;
  /** 1 when the model's first output column is a background class, which is dropped. */
  labelOffset: number;
  /** Files that could not be decoded (only with `skipBadImages`). */
  skipped: string[];
  /** Top-5 class indices (label space, background removed), per scored image. */
  predictions: { file: string; label?: number; top5: number[] }[];
}

/**
 * Top-1/top-5 accuracy of `model` on `dataset` (predictions only, when it has no labels), run by onnxruntime. Decoding of the next
 * batch overlaps inference of the current one (double-buffered). A model with 1001 outputs
 * on labels below 1000 is taken to have a background class at index 0.
 */
export async function evaluate(model: Model, dataset: Dataset, options: EvalOptions = {}): Promise<EvalResult> {
  const geometry = imageInputGeometry(model);
  const { fixedBatch, channels, height, width, size } = geometry;
  const outputName = model.graph.outputs[0]?.name;
  if (!outputName) throw new QuantflowError(`model '${model.graph.name}' has no output`);
  const chosen = resolvePreprocess(model, options.preprocess, channels);
  const items = dataset.items.slice(0, options.limit ?? dataset.items.length);
  const batch = fixedBatch ?? options.batch ?? 32;
  if (!Number.isInteger(batch) || batch <= 0) throw new QuantflowError(`batch size must be a positive integer, got ${batch}`);
  const batches = imageBatches(items, { preprocess: chosen.spec, channels, height, width, batch, skipBadImages: options.skipBadImages });
  // The first batch decodes while the session is created (seconds for large models).
  const first = batches.next();
  first.catch(() => {});
  let session: ort.InferenceSession;
  try {
    session = await openSession(model, { simulate: options.simulate ?? isQdqModel(model) });
  } catch (e) {
    await batches.return(undefined);
    throw e;
  }
  const predictions: EvalResult['predictions'] = [];
  const skipped: string[] = [];
  let labelOffset: number | undefined;
  let top1 = 0;
  let top5 = 0;
  let done = 0;
  const started = performance.now();
  try {
    for (let r = await first; !r.done; r = await batches.next()) {
      const current = r.value;
      skipped.push(...current.skipped);
      const n = current.items.length;
      if (n > 0) {
        const fed = fixedBatch ?? n;
        const input = { dataType: 'float32' as const, dims: [fed, channels, height, width], data: current.data.subarray(0, fed * size) };
        const output = (await runSession(session, imageFeeds(geometry, input), [outputName]))[outputName]!;
        if (output.dataType !== 'float32')
          throw new QuantflowError(`output '${outputName}' is ${output.dataType}; evaluation needs float32 scores`);
        const scores = output.data as Float32Array;
        const classes = scores.length / fed;
        labelOffset ??= backgroundOffset(classes, items);
        current.items.forEach((item, i) => {
          const top = topK(scores, i * classes + labelOffset!, classes - labelOffset!, 5);
          const label = item.label;
          if (label !== undefined) {
            if (top[0] === label) top1++;
            if (top.includes(label)) top5++;
          }
          predictions.push({ file: item.file, ...(label !== undefined && { label }), top5: top });
        });
      }
      done += n + current.skipped.length;
      options.onProgress?.(done, items.length);
    }
  } finally {
    await Promise.all([session.release(), batches.return(undefined)]);
  }
  const seconds = (performance.now() - started) / 1000;
  const n = predictions.length;
  return {
    n,
    labelled: dataset.labelled,
    top1: n ? top1 / n : 0,
    top5: n ? top5 / n : 0,
    imagesPerSecond: seconds > 0 ? n / seconds : 0,
    preprocess: chosen.spec,
    preset: chosen.label,
    presetReason: chosen.reason,
    labelOffset: labelOffset ?? 0,
    skipped,
    predictions,
  };
}

/** `backgroundClass` for the dataset's labels; throws when some label has no score column. */
function backgroundOffset(classes: number, items: DatasetItem[]): number {
  const maxLabel = items.reduce((m, it) => Math.max(m, it.label ?? 0), 0);
  const offset = backgroundClass(classes, maxLabel);
  if (maxLabel >= classes - offset)
    throw new QuantflowError(`dataset label ${maxLabel} is out of range for a model with ${classes} output classes`);
  return offset;
}
