/**
 * A float model against its quantized (or tiled) version on the same images, no labels
 * needed: per output the error figures, and by output kind (see tasks.ts) classification,
 * segmentation, dense-map and detection figures.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { imageBatches, imageFeeds, imageInputGeometry } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import { resolvePreprocess, type Preprocess, type PreprocessRequest } from '../data/preprocess.js';
import { toFloat32, toNumbers } from '../graph/tensor.js';
import type { Model, TensorData } from '../graph/types.js';
import { isQdqModel, openSession, runSession } from '../runtime/session.js';
import { QuantflowError } from '../util/errors.js';
import {
  ClassifyAccumulator,
  DenseAccumulator,
  DetectAccumulator,
  ErrorAccumulator,
  SegmentAccumulator,
  argmax,
  backgroundClass,
  classMap,
  type ClassifyFigures,
  type DenseFigures,
  type Detection,
  type DetectFigures,
  type SegmentFigures,
} from './metrics.js';
import { planTasks, type BoxFormat, type DetectionSource, type OutputKind, type TaskOptions } from './tasks.js';

export const COMPARE_DEFAULTS = { scoreThreshold: 0.3, threshold: 0.3, iouThreshold: 0.5 };

export interface CompareOptions extends TaskOptions {
  /** Preprocessing: a preset and/or fields; the rest is chosen from the float model (`resolvePreprocess`). */
  preprocess?: PreprocessRequest;
  /** Images per inference (default 32); a model with a fixed batch size sets it. */
  batch?: number;
  limit?: number;
  skipBadImages?: boolean;
  /** QDQ models: fake-quant simulation (default) or onnxruntime's integer kernels (false). */
  simulate?: boolean;
  /** Detections scoring below this are dropped on both sides (default 0.3). */
  scoreThreshold?: number;
  /** Dense maps are compared as the sets of elements ≥ this (default 0.3). */
  threshold?: number;
  onProgress?: (done: number, total: number) => void;
}

/** One output's figures. The error figures are absent when its size differed between the models (NonMaxSuppression's indices). */
export interface OutputComparison {
  name: string;
  /** The matching output of the quantized model (by name, else by position). */
  quantizedName: string;
  kind: OutputKind;
  /** dB; null stands for +Infinity (identical outputs), as JSON has no Infinity. */
  sqnrDb?: number | null;
  cosine?: number;
  maxAbsError?: number;
  classify?: ClassifyFigures;
  segment?: SegmentFigures;
  dense?: DenseFigures;
}

export interface CompareResult {
  /** Images compared (skipped ones excluded). */
  n: number;
  preprocess: Preprocess;
  /** Short name of `preprocess` (its preset's, when it is one). */
  preset: string;
  presetReason: string;
  skipped: string[];
  simulate: boolean;
  outputs: OutputComparison[];
  detection?: DetectFigures & { source: DetectionSource['kind']; outputs: string[]; scoresAsLogits?: boolean };
}

/**
 * The model `compare` takes as the quantized side: a model file, or the output folder of
 * `quantize`, whose model.qdq.onnx it uses.
 */
export function quantizedModelFile(path: string): string {
  if (!existsSync(path) || !statSync(path).isDirectory()) return path;
  const file = join(path, 'model.qdq.onnx');
  if (!existsSync(file))
    throw new QuantflowError(`${path} is a folder without model.qdq.onnx: give a model file or a quantize output folder`);
  return file;
}

/** Index in `quantized`'s outputs of each of `float`'s: by name, else by position. */
function matchOutputs(float: Model, quantized: Model): number[] {
  const f = float.graph.outputs;
  const q = quantized.graph.outputs;
  if (f.length !== q.length)
    throw new QuantflowError(
      `the float model has ${f.length} output(s) and the quantized model ${q.length}: compare needs the same outputs`,
    );
  const byName = f.map((o) => q.findIndex((x) => x.name === o.name));
  return byName.every((i) => i >= 0) ? byName : f.map((_, i) => i);
}

/** What one batch of one model gave: its outputs by float-side position, and detections per image. */
interface BatchOutputs {
  values: TensorData[];
  detections?: Detection[][];
}

/** [ymin, xmin, ymax, xmax] from four values laid out as `format`. */
function toYxyx(v: ArrayLike<number>, at: number, format: BoxFormat): Detection['box'] {
  const [a, b, c, d] = [v[at]!, v[at + 1]!, v[at + 2]!, v[at + 3]!];
  if (format === 'yxyx') return [a, b, c, d];
  if (format === 'xyxy') return [b, a, d, c];
  return [b - d / 2, a - c / 2, b + d / 2, a + c / 2];
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * Detections of each of the first `n` images of a batch. Per-anchor scores become one per
 * anchor (the best class when there are several) and pass through a sigmoid when
 * `logits`; every anchor is a candidate, matched only against the same anchor.
 */
function detections(
  source: DetectionSource,
  values: TensorData[],
  extra: Record<string, TensorData>,
  n: number,
  logits: boolean,
): Detection[][] {
  const out: Detection[][] = Array.from({ length: n }, () => []);
  if (source.kind === 'postprocess') {
    const boxes = toFloat32(values[source.boxes]!);
    const classes = toFloat32(values[source.classes]!);
    const scores = toFloat32(values[source.scores]!);
    const count = toFloat32(values[source.count]!);
    const m = values[source.scores]!.dims[1]!;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < Math.min(m, count[i]!); j++)
        out[i]!.push({ box: toYxyx(boxes, (i * m + j) * 4, 'yxyx'), score: scores[i * m + j]!, cls: Math.round(classes[i * m + j]!) });
  } else if (source.kind === 'nms') {
    const boxes = toFloat32(extra[source.boxes]!);
    const scoreT = extra[source.scores]!;
    const scores = toFloat32(scoreT);
    const [, classes, anchors] = scoreT.dims as [number, number, number];
    const selected = toNumbers(extra[source.selected]!);
    for (let r = 0; r + 2 < selected.length; r += 3) {
      const [b, c, a] = [selected[r]!, selected[r + 1]!, selected[r + 2]!];
      if (b >= n) continue;
      const box = toYxyx(boxes, (b * anchors + a) * 4, source.centerPointBox ? 'cxcywh' : 'yxyx');
      out[b]!.push({ box, score: scores[(b * classes + c) * anchors + a]!, cls: c });
    }
  } else {
    const boxT = values[source.boxes]!;
    const scoreT = values[source.scores]!;
    const boxes = toFloat32(boxT);
    const scores = toFloat32(scoreT);
    const [, anchors, width] = boxT.dims as [number, number, number];
    const classes = scoreT.dims[2] ?? 1;
    for (let i = 0; i < n; i++)
      for (let a = 0; a < anchors; a++) {
        const at = (i * anchors + a) * classes;
        const cls = argmax(scores, at, classes);
        const raw = scores[at + cls]!;
        out[i]!.push({
          box: toYxyx(boxes, (i * anchors + a) * width, source.boxFormat),
          score: logits ? sigmoid(raw) : raw,
          anchor: a,
          ...(classes > 1 ? { cls } : {}),
        });
      }
  }
  return out;
}

/** Per-output accumulators, created on the first batch once the sizes are known. */
interface OutputState {
  errors: ErrorAccumulator;
  sizeMismatch: boolean;
  classify?: ClassifyAccumulator;
  segment?: SegmentAccumulator;
  dense?: DenseAccumulator;
}

/**
 * Runs `float` and `quantized` on the same images of `dataset` and compares their outputs.
 * Outputs are matched by name, else by position; the task of each comes from the float
 * model (`planTasks`). Labels are used only where images have them (classification top-1/top-5).
 */
export async function compareModels(
  float: Model,
  quantized: Model,
  dataset: Dataset,
  options: CompareOptions = {},
): Promise<CompareResult> {
  const fg = imageInputGeometry(float);
  const qg = imageInputGeometry(quantized);
  if (fg.height !== qg.height || fg.width !== qg.width || fg.channels !== qg.channels)
    throw new QuantflowError(
      `the float model takes ${fg.height}x${fg.width} images and the quantized model ${qg.height}x${qg.width}: compare needs the same input size`,
    );
  if (fg.fixedBatch !== null && qg.fixedBatch !== null && fg.fixedBatch !== qg.fixedBatch)
    throw new QuantflowError(`the float model fixes its batch at ${fg.fixedBatch} and the quantized model at ${qg.fixedBatch}`);
  const fixedBatch = fg.fixedBatch ?? qg.fixedBatch;
  const batch = fixedBatch ?? options.batch ?? 32;
  if (!Number.isInteger(batch) || batch <= 0) throw new QuantflowError(`batch size must be a positive integer, got ${batch}`);
  const matched = matchOutputs(float, quantized);
  const plan = planTasks(float, options);
  const source = plan.detection;
  // NonMaxSuppression's inputs and indices are fetched as extra outputs, found in each model by its own node.
  const qSource = source?.kind === 'nms' ? planTasks(quantized).detection : source;
  if (source?.kind === 'nms' && qSource?.kind !== 'nms')
    throw new QuantflowError('the float model ends in NonMaxSuppression and the quantized model does not');
  const withFetches = (m: Model, s: DetectionSource | undefined): { model: Model; extra: string[] } => {
    if (s?.kind !== 'nms') return { model: m, extra: [] };
    const extra = [s.boxes, s.scores, s.selected];
    const missing = extra.filter((name) => !m.graph.outputs.some((o) => o.name === name));
    const type = (name: string) => (name === s.selected ? 'int64' : 'float32') as 'int64' | 'float32';
    return {
      model: { ...m, graph: { ...m.graph, outputs: [...m.graph.outputs, ...missing.map((name) => ({ name, dataType: type(name) }))] } },
      extra,
    };
  };
  const fRun = withFetches(float, source);
  const qRun = withFetches(quantized, qSource);
  const fNames = float.graph.outputs.map((o) => o.name);
  const qNames = matched.map((i) => quantized.graph.outputs[i]!.name);

  const chosen = resolvePreprocess(float, options.preprocess, fg.channels);
  const simulate = options.simulate ?? isQdqModel(quantized);
  const items = dataset.items.slice(0, options.limit ?? dataset.items.length);
  const labels = items.map((it) => it.label).filter((l): l is number => l !== undefined);
  const maxLabel = labels.reduce((m, l) => Math.max(m, l), -1);
  const batches = imageBatches(items, {
    preprocess: chosen.spec,
    channels: fg.channels,
    height: fg.height,
    width: fg.width,
    batch,
    skipBadImages: options.skipBadImages,
  });
  const first = batches.next();
  first.catch(() => {});
  const sessions: ort.InferenceSession[] = [];
  const states: OutputState[] = fNames.map(() => ({ errors: new ErrorAccumulator(), sizeMismatch: false }));
  const scoreThreshold = options.scoreThreshold ?? COMPARE_DEFAULTS.scoreThreshold;
  const detect = source ? new DetectAccumulator(scoreThreshold, COMPARE_DEFAULTS.iouThreshold) : undefined;
  let logits: boolean | undefined;
  const skipped: string[] = [];
  let n = 0;
  let done = 0;
  try {
    sessions.push(await openSession(fRun.model, { simulate: false }), await openSession(qRun.model, { simulate }));
    const [fSession, qSession] = sessions as [ort.InferenceSession, ort.InferenceSession];
    const run = async (
      session: ort.InferenceSession,
      names: string[],
      extra: string[],
      feed: TensorData,
    ): Promise<BatchOutputs & { extra: Record<string, TensorData> }> => {
      const out = await runSession(session, imageFeeds(fg, feed), [...new Set([...names, ...extra])]);
      return { values: names.map((name) => out[name]!), extra: out };
    };
    for (let r = await first; !r.done; r = await batches.next()) {
      const current = r.value;
      skipped.push(...current.skipped);
      const count = current.items.length;
      if (count > 0) {
        const fed = fixedBatch ?? count;
        const feed: TensorData = {
          dataType: 'float32',
          dims: [fed, fg.channels, fg.height, fg.width],
          data: current.data.subarray(0, fed * fg.size),
        };
        const f = await run(fSession, fNames, fRun.extra, feed);
        const q = await run(qSession, qNames, qRun.extra, feed);
        plan.outputs.forEach((p, o) =>
          compareOutput(
            p.name,
            p.kind,
            states[o]!,
            f.values[o]!,
            q.values[o]!,
            fed,
            current.items.map((it) => it.label),
            maxLabel,
          ),
        );
        if (source && detect && qSource) {
          if (logits === undefined) logits = source.kind === 'anchors' && scoresOutsideUnit(f.values[source.scores]!);
          const fd = detections(source, f.values, f.extra, count, logits);
          const qd = detections(qSource, q.values, q.extra, count, logits);
          fd.forEach((d, i) => detect.add(d, qd[i]!));
        }
        n += count;
      }
      done += count + current.skipped.length;
      options.onProgress?.(done, items.length);
    }
  } finally {
    await Promise.all([...sessions.map((s) => s.release()), batches.return(undefined)]);
  }
  const outputs = plan.outputs.map((p, o): OutputComparison => {
    const s = states[o]!;
    const e = s.errors.result();
    return {
      name: p.name,
      quantizedName: qNames[o]!,
      kind: p.kind,
      ...(s.sizeMismatch || n === 0
        ? {}
        : { sqnrDb: Number.isFinite(e.sqnrDb) ? e.sqnrDb : null, cosine: e.cosine, maxAbsError: e.maxAbsError }),
      ...(s.classify ? { classify: s.classify.result() } : {}),
      ...(s.segment ? { segment: s.segment.result() } : {}),
      ...(s.dense ? { dense: s.dense.result() } : {}),
    };
  });
  const detectOutputs =
    source?.kind === 'nms'
      ? [source.boxes, source.scores, source.selected]
      : plan.outputs.filter((p) => p.kind === 'detect').map((p) => p.name);
  return {
    n,
    preprocess: chosen.spec,
    preset: chosen.label,
    presetReason: chosen.reason,
    skipped,
    simulate,
    outputs,
    ...(detect && source
      ? {
          detection: {
            ...detect.result(),
            source: source.kind,
            outputs: detectOutputs,
            ...(source.kind === 'anchors' ? { scoresAsLogits: !!logits } : {}),
          },
        }
      : {}),
  };

  /** Adds one batch of one output to its figures: `fed` images in the tensors, the first `labels.length` real. */
  function compareOutput(
    name: string,
    kind: OutputKind,
    s: OutputState,
    f: TensorData,
    q: TensorData,
    fed: number,
    itemLabels: (number | undefined)[],
    maxLabel: number,
  ): void {
    const real = itemLabels.length;
    const fv = toFloat32(f);
    const qv = toFloat32(q);
    if (fv.length !== qv.length) {
      s.sizeMismatch = true;
      return;
    }
    // Outputs without a batch axis (a detection count, NMS indices) are compared whole.
    const perImage = f.dims[0] === fed ? fv.length / fed : 0;
    if (!perImage) return void s.errors.add(fv, qv);
    s.errors.add(fv.subarray(0, real * perImage), qv.subarray(0, real * perImage));
    for (let i = 0; i < real; i++) {
      const a = fv.subarray(i * perImage, (i + 1) * perImage);
      const b = qv.subarray(i * perImage, (i + 1) * perImage);
      if (kind === 'classify') {
        if (!s.classify) {
          if (maxLabel >= perImage)
            throw new QuantflowError(`dataset label ${maxLabel} is out of range for output '${name}' with ${perImage} classes`);
          s.classify = new ClassifyAccumulator(perImage, backgroundClass(perImage, maxLabel));
        }
        s.classify.add(a, b, itemLabels[i]);
      } else if (kind === 'segment') {
        s.segment ??= new SegmentAccumulator();
        const classes = /int/.test(f.dataType) || f.dims.length !== 4 ? 1 : f.dims[1]!;
        if (classes === 1) s.segment.add(a, b);
        else s.segment.add(classMap(a, classes, perImage / classes), classMap(b, classes, perImage / classes));
      } else if (kind === 'dense') {
        s.dense ??= new DenseAccumulator(options.threshold ?? COMPARE_DEFAULTS.threshold);
        s.dense.add(a, b);
      }
    }
  }
}

/** True when some score lies outside [0, 1]: the scores are logits, not probabilities. */
function scoresOutsideUnit(t: TensorData): boolean {
  return toFloat32(t).some((v) => v < 0 || v > 1);
}
