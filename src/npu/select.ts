import { attrInts, attrString, constantInput, nodeError, normalizeAxis } from '../graph/graph.js';
import { resizeBroadcastAxes } from '../graph/resize.js';
import type { Node, TensorData } from '../graph/types.js';

/**
 * Resize (nearest neighbour) and Slice as per-axis index maps: output element
 * (o_0, …, o_n) copies input element (index[0][o_0], …, index[n][o_n]). Both only move
 * integers, so on the NPU they keep their input's grid.
 */
export interface Selection {
  index: number[][];
  shape: number[];
}

/** ONNX Resize with mode 'nearest' (or any mode that only broadcasts length-1 axes) on an input of shape `inShape` (opset 10 and 11+ input forms). */
export function resizeSelection(node: Node, inShape: readonly number[], constants: ReadonlyMap<string, TensorData>): Selection {
  const interpolating = attrString(node, 'mode', 'nearest') !== 'nearest';
  const transform = attrString(node, 'coordinate_transformation_mode', 'half_pixel');
  const rounding = attrString(node, 'nearest_mode', 'round_prefer_floor');
  if (attrString(node, 'keep_aspect_ratio_policy', 'stretch') !== 'stretch')
    throw nodeError(node, 'keep_aspect_ratio_policy other than stretch is not supported');
  const rank = inShape.length;
  const axes = attrInts(node, 'axes', [...inShape.keys()]).map((a) => normalizeAxis(a, rank, node));
  // Opset 10: [X, scales]; opset 11 on: [X, roi, scales, sizes].
  const [scalesAt, sizesAt] = node.inputs.length === 2 ? [1, -1] : [2, 3];
  const sizes = sizesAt > 0 ? constantInput(node, sizesAt, constants) : undefined;
  const scales = sizes?.length ? undefined : constantInput(node, scalesAt, constants);
  if (!sizes?.length && !scales?.length) throw nodeError(node, 'needs constant scales or sizes');
  const given = (sizes?.length ? sizes : scales)!;
  if (given.length !== axes.length) throw nodeError(node, `has ${given.length} scales or sizes for ${axes.length} axes`);
  const shape = [...inShape];
  const scale = inShape.map(() => 1);
  axes.forEach((axis, i) => {
    const n = inShape[axis]!;
    if (sizes?.length) {
      shape[axis] = sizes[i]!;
      scale[axis] = sizes[i]! / n;
    } else {
      scale[axis] = scales![i]!;
      shape[axis] = Math.floor(Math.fround(n * scales![i]!));
    }
  });
  if (interpolating && !resizeBroadcastAxes(node, inShape, shape))
    throw nodeError(
      node,
      `mode '${attrString(node, 'mode', 'nearest')}' is supported only where it broadcasts single rows or columns (otherwise only nearest)`,
    );
  const index = shape.map((out, axis) => {
    const n = inShape[axis]!;
    if (interpolating) return Array.from({ length: out }, (_, o) => (n === 1 ? 0 : o));
    return Array.from({ length: out }, (_, o) => {
      const x = sourceCoordinate(node, transform, o, scale[axis]!, n, out);
      return Math.min(n - 1, Math.max(0, nearest(node, rounding, x)));
    });
  });
  return { index, shape };
}

/**
 * Where output coordinate o of an axis of length `out` lies on the input axis of length n,
 * in float32 arithmetic as onnxruntime computes it (a coordinate that lands just off a half
 * rounds the way the simulation does).
 */
function sourceCoordinate(node: Node, mode: string, o: number, scale: number, n: number, out: number): number {
  const f = Math.fround;
  const s = f(scale);
  switch (mode) {
    case 'half_pixel':
      return f(f(f(o + 0.5) / s) - 0.5);
    case 'pytorch_half_pixel':
      return out > 1 ? f(f(f(o + 0.5) / s) - 0.5) : 0;
    case 'align_corners':
      return out > 1 ? f((o * (n - 1)) / (out - 1)) : 0;
    case 'asymmetric':
      return f(o / s);
    default:
      throw nodeError(node, `coordinate_transformation_mode '${mode}' is not supported`);
  }
}

function nearest(node: Node, mode: string, x: number): number {
  switch (mode) {
    case 'round_prefer_floor':
      return x === Math.floor(x) + 0.5 ? Math.floor(x) : Math.round(x);
    case 'round_prefer_ceil':
      return Math.round(x);
    case 'floor':
      return Math.floor(x);
    case 'ceil':
      return Math.ceil(x);
    default:
      throw nodeError(node, `nearest_mode '${mode}' is not supported`);
  }
}

/** ONNX Slice (inputs of opset 10 on, or the attributes of opset 1) on an input of shape `inShape`. */
export function sliceSelection(node: Node, inShape: readonly number[], constants: ReadonlyMap<string, TensorData>): Selection {
  const rank = inShape.length;
  const fromInputs = node.inputs.length > 1;
  const starts = fromInputs ? constantInput(node, 1, constants)! : attrInts(node, 'starts', []);
  const ends = fromInputs ? constantInput(node, 2, constants)! : attrInts(node, 'ends', []);
  const axes = ((fromInputs ? constantInput(node, 3, constants) : attrInts(node, 'axes')) ?? starts.map((_, i) => i)).map((a) =>
    normalizeAxis(a, rank, node),
  );
  const steps = (fromInputs ? constantInput(node, 4, constants) : undefined) ?? starts.map(() => 1);
  if (ends.length !== starts.length || axes.length !== starts.length || steps.length !== starts.length)
    throw nodeError(node, 'starts, ends, axes and steps differ in length');
  const index = inShape.map((n) => Array.from({ length: n }, (_, i) => i));
  axes.forEach((axis, i) => {
    const n = inShape[axis]!;
    const step = steps[i]!;
    if (step === 0) throw nodeError(node, 'a step of 0 is not allowed');
    const wrap = (v: number) => (v < 0 ? v + n : v);
    const [lo, hi] = step > 0 ? [0, n] : [-1, n - 1];
    const start = Math.min(step > 0 ? n : n - 1, Math.max(0, wrap(starts[i]!)));
    const end = Math.min(hi, Math.max(lo, wrap(ends[i]!)));
    const picked: number[] = [];
    for (let v = start; step > 0 ? v < end : v > end; v += step) picked.push(v);
    index[axis] = picked;
  });
  return { index, shape: index.map((a) => a.length) };
}
