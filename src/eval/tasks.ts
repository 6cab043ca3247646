/**
 * What each output of a model is, for `compare`: read from output shapes and ops, or forced
 * with a task. Every output gets the error figures (SQNR, cosine, max abs error); its kind
 * adds task figures.
 */
import { attrInt } from '../graph/graph.js';
import type { Dim, Model, ValueInfo } from '../graph/types.js';
import { QuantflowError } from '../util/errors.js';

export const TASKS = ['classify', 'segment', 'detect', 'dense'] as const;
export type Task = (typeof TASKS)[number];

/** `values`: error figures only; `detect`: part of the model's detection outputs. */
export type OutputKind = 'classify' | 'segment' | 'dense' | 'detect' | 'values';

/** Layouts of raw per-anchor box outputs (`--box-format`); all are converted to [ymin, xmin, ymax, xmax]. */
export const BOX_FORMATS = ['yxyx', 'xyxy', 'cxcywh'] as const;
export type BoxFormat = (typeof BOX_FORMATS)[number];

/** Where a model's detections come from. Output positions index `model.graph.outputs`. */
export type DetectionSource =
  /** TFLite_Detection_PostProcess's four outputs: boxes [N, M, 4] (ymin, xmin, ymax, xmax), classes [N, M], scores [N, M], count [N]. */
  | { kind: 'postprocess'; boxes: number; classes: number; scores: number; count: number }
  /** An ONNX NonMaxSuppression node: its boxes [N, A, 4] and scores [N, C, A] inputs and selected indices [K, 3], by value name. */
  | { kind: 'nms'; node: string; boxes: string; scores: string; selected: string; centerPointBox: boolean }
  /** Raw per-anchor outputs named by the user: boxes [N, A, ≥4] and scores [N, A, C] or [N, A]. */
  | { kind: 'anchors'; boxes: number; scores: number; boxFormat: BoxFormat };

export interface OutputPlan {
  name: string;
  kind: OutputKind;
}

export interface TaskPlan {
  outputs: OutputPlan[];
  detection?: DetectionSource;
}

export interface TaskOptions {
  /** Forces a kind on every output it fits (`detect`: on the model's detection outputs). */
  task?: Task;
  /** Output names (or positions) of raw box and score outputs; implies `detect`. */
  boxes?: string;
  scores?: string;
  /** Layout of `boxes` (default cxcywh: raw regressions are usually centre offsets and sizes). */
  boxFormat?: BoxFormat;
}

const isInteger = (v: ValueInfo) => /int/.test(v.dataType);
/** A dimension that may be larger than one (unknown counts as such). */
const wide = (d: Dim | undefined) => d !== 1;

/** The kind an output's type and shape suggest. */
export function outputKind(v: ValueInfo): OutputKind {
  const s = v.shape;
  if (!s) return 'values';
  if (isInteger(v))
    return (s.length === 3 && (wide(s[1]) || wide(s[2]))) || (s.length === 4 && s[1] === 1 && (wide(s[2]) || wide(s[3])))
      ? 'segment'
      : 'values';
  if (fits('classify', v)) return wide(s[1]) ? 'classify' : 'values';
  if (s.length !== 4 || !(wide(s[2]) || wide(s[3]))) return 'values';
  // Rank-3 outputs are as often per-anchor values as maps, so only --task dense makes them maps.
  return wide(s[1]) ? 'segment' : 'dense';
}

/** Whether `task` can apply to the output `v`. */
function fits(task: Exclude<Task, 'detect'>, v: ValueInfo): boolean {
  const s = v.shape;
  if (!s) return false;
  switch (task) {
    case 'classify':
      return !isInteger(v) && (s.length === 2 || (s.length === 4 && s[2] === 1 && s[3] === 1));
    case 'segment':
      return isInteger(v) ? outputKind(v) === 'segment' : s.length === 4 && wide(s[1]);
    case 'dense':
      return !isInteger(v) && s.length >= 3 && s.slice(-2).some(wide);
  }
}

/** Finds an output by name or by 0-based position. */
function outputIndex(model: Model, ref: string, option: string): number {
  const outputs = model.graph.outputs;
  const byName = outputs.findIndex((o) => o.name === ref);
  if (byName >= 0) return byName;
  if (/^\d+$/.test(ref) && Number(ref) < outputs.length) return Number(ref);
  throw new QuantflowError(`${option} '${ref}' is not an output of the model (outputs: ${outputs.map((o) => o.name).join(', ')})`);
}

/** TFLite_Detection_PostProcess's outputs as the importer leaves them: boxes [N, M, 4], classes [N, M], scores [N, M], count [N]. */
function postprocessOutputs(outputs: ValueInfo[]): boolean {
  if (outputs.length !== 4) return false;
  const [boxes, classes, scores, count] = outputs.map((o) => o.shape);
  return boxes?.length === 3 && boxes[2] === 4 && classes?.length === 2 && scores?.length === 2 && count?.length === 1;
}

/**
 * The kind of each output of `model` and where its detections come from. Detection is
 * found from TFLite_Detection_PostProcess's four outputs or a NonMaxSuppression node, or
 * named with `boxes` and `scores`. A task that fits no output is a QuantflowError.
 */
export function planTasks(model: Model, options: TaskOptions = {}): TaskPlan {
  const outputs = model.graph.outputs;
  const plan: OutputPlan[] = outputs.map((o) => ({ name: o.name, kind: outputKind(o) }));
  let detection: DetectionSource | undefined;
  if (options.boxes || options.scores) {
    if (!options.boxes || !options.scores)
      throw new QuantflowError('detection from raw outputs needs both --boxes <output> and --scores <output>');
    if (options.task && options.task !== 'detect')
      throw new QuantflowError(`--boxes and --scores name detection outputs; they do not go with --task ${options.task}`);
    const boxes = outputIndex(model, options.boxes, '--boxes');
    const scores = outputIndex(model, options.scores, '--scores');
    const b = outputs[boxes]!.shape;
    const s = outputs[scores]!.shape;
    if (b?.length !== 3 || (typeof b[2] === 'number' && b[2] < 4))
      throw new QuantflowError(`--boxes '${outputs[boxes]!.name}' must have shape [N, anchors, 4 or more]`);
    if (!s || (s.length !== 2 && s.length !== 3) || (typeof s[1] === 'number' && typeof b[1] === 'number' && s[1] !== b[1]))
      throw new QuantflowError(
        `--scores '${outputs[scores]!.name}' must have shape [N, anchors] or [N, anchors, classes], with as many anchors as --boxes`,
      );
    detection = { kind: 'anchors', boxes, scores, boxFormat: options.boxFormat ?? 'cxcywh' };
    plan[boxes]!.kind = plan[scores]!.kind = 'detect';
  } else if (postprocessOutputs(outputs)) {
    detection = { kind: 'postprocess', boxes: 0, classes: 1, scores: 2, count: 3 };
    for (const p of plan) p.kind = 'detect';
  } else {
    const nms = model.graph.nodes.find((n) => n.opType === 'NonMaxSuppression');
    if (nms) {
      detection = {
        kind: 'nms',
        node: nms.name,
        boxes: nms.inputs[0]!,
        scores: nms.inputs[1]!,
        selected: nms.outputs[0]!,
        centerPointBox: attrInt(nms, 'center_point_box', 0) === 1,
      };
      plan.forEach((p) => {
        if (p.name === nms.outputs[0]) p.kind = 'detect';
      });
    }
  }
  const task = options.task;
  if (task === 'detect' && !detection)
    throw new QuantflowError(
      'no detection outputs found (neither TFLite_Detection_PostProcess outputs nor NonMaxSuppression): name raw outputs with --boxes <output> --scores <output>',
    );
  if (task && task !== 'detect') {
    const fitting = plan.filter((p, i) => p.kind !== 'detect' && fits(task, outputs[i]!));
    if (!fitting.length)
      throw new QuantflowError(
        `--task ${task} fits no output of the model (${outputs.map((o) => `${o.name} ${o.dataType} [${o.shape?.map((d) => d ?? '?').join(', ') ?? '?'}]`).join('; ')})`,
      );
    for (const p of fitting) p.kind = task;
  }
  return { outputs: plan, ...(detection ? { detection } : {}) };
}
