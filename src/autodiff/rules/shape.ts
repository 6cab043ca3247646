import { attrInt, attrInts, attrString, constantInput, normalizeAxis } from '../../graph/graph.js';
import { resizeBroadcastAxes } from '../../graph/resize.js';
import type { GradContext, GradientRule, RuleTable } from '../rule.js';
import { isNumber, range, reshapeTo } from './helpers.js';

/** Slice end meaning "to the end of the axis". */
const TO_END = 2 ** 31 - 1;

/** Ops that only relabel the elements: the gradient takes the input's shape back. */
const reshapeLike: GradientRule = { backward: (ctx) => [reshapeTo(ctx, ctx.dy, ctx.node.inputs[0]!)] };

function concatGrad(ctx: GradContext): (string | undefined)[] {
  const { b, node } = ctx;
  const rank = ctx.shape(node.inputs[0]!).length;
  const axis = normalizeAxis(attrInt(node, 'axis', 0), rank, node);
  const sizes = node.inputs.map((i) => ctx.shape(i)[axis]!);
  if (!sizes.every(isNumber)) ctx.fail(`Concat inputs need static sizes along axis ${axis} for gradients`);
  const parts = b.nodeN('Split', [ctx.dy, b.int64s(sizes)], { axis: { type: 'int', value: axis } }, sizes.length, `${node.name}_grad`);
  return parts;
}

/** Pad's gradient crops what padding added and zero-pads what negative pads cropped. */
function padGrad(ctx: GradContext): (string | undefined)[] {
  const { b, node } = ctx;
  if (attrString(node, 'mode', 'constant') !== 'constant') ctx.fail('only constant padding has a gradient rule');
  const rank = ctx.shape(node.inputs[0]!).length;
  const pads = constantInts(ctx, 1)!;
  const axes = (constantInts(ctx, 3) ?? range(rank)).map((a) => normalizeAxis(a, rank, node));
  const n = axes.length;
  let g = ctx.dy;
  if (pads.some((p) => p < 0)) {
    const restore = new Array<number>(2 * rank).fill(0);
    axes.forEach((a, i) => {
      restore[a] = Math.max(0, -pads[i]!);
      restore[rank + a] = Math.max(0, -pads[n + i]!);
    });
    g = b.op('Pad', [g, b.int64s(restore)]);
  }
  const starts = axes.map((_, i) => Math.max(0, pads[i]!));
  const ends = axes.map((_, i) => (pads[n + i]! > 0 ? -pads[n + i]! : TO_END));
  return [b.op('Slice', [g, b.int64s(starts), b.int64s(ends), b.int64s(axes)], {}, `${node.name}_grad`)];
}

/** The constant int64 input `i` of the node, or undefined when absent. */
function constantInts(ctx: GradContext, i: number): number[] | undefined {
  return constantInput(ctx.node, i, { get: ctx.constant }, `input ${i} computed at run time has no gradient rule`);
}

/** Slice (opset 10+, step 1): the gradient is dy zero-padded back to the input's extent. */
function sliceGrad(ctx: GradContext): (string | undefined)[] {
  const { b, node } = ctx;
  const shape = ctx.shape(node.inputs[0]!);
  const rank = shape.length;
  const starts = constantInts(ctx, 1)!;
  const ends = constantInts(ctx, 2)!;
  const axes = (constantInts(ctx, 3) ?? range(starts.length)).map((a) => normalizeAxis(a, rank, node));
  if ((constantInts(ctx, 4) ?? []).some((step) => step !== 1)) ctx.fail('only Slice with step 1 has a gradient rule');
  const pads = new Array<number>(2 * rank).fill(0);
  axes.forEach((a, i) => {
    const dim = shape[a];
    if (!isNumber(dim)) ctx.fail(`Slice along axis ${a} needs a static size for gradients`);
    const clamp = (v: number) => Math.max(0, Math.min(dim, v < 0 ? v + dim : v));
    const start = clamp(starts[i]!);
    pads[a] = start;
    pads[rank + a] = dim - Math.max(start, clamp(ends[i]!));
  });
  return [b.op('Pad', [ctx.dy, b.int64s(pads)], {}, `${node.name}_grad`)];
}

/**
 * Nearest-neighbour Resize by integer factors (asymmetric coordinates, floor rounding: every
 * input pixel becomes an f×f block): each input pixel's gradient is the sum over its block.
 */
function resizeGrad(ctx: GradContext): (string | undefined)[] {
  const { b, node } = ctx;
  const mode = (name: string, fallback: string) => attrString(node, name, fallback);
  const broadcast = resizeBroadcastAxes(node, ctx.shape(node.inputs[0]!), ctx.shape(node.outputs[0]!));
  if (broadcast) return [b.reduceSum(ctx.dy, broadcast, true, `${node.name}_grad`)];
  if (
    mode('mode', 'nearest') !== 'nearest' ||
    mode('coordinate_transformation_mode', 'half_pixel') !== 'asymmetric' ||
    mode('nearest_mode', 'round_prefer_floor') !== 'floor'
  )
    ctx.fail('only nearest-neighbour Resize with asymmetric coordinates and floor rounding has a gradient rule');
  const x = node.inputs[0]!;
  const inShape = ctx.shape(x);
  const outShape = ctx.shape(node.outputs[0]!);
  if (inShape.length !== 4) ctx.fail('Resize gradients need a 4-D (NCHW) input');
  const [, , h, w] = inShape;
  const factors = [2, 3].map((a) => {
    const f = Number(outShape[a]) / Number(inShape[a]);
    if (!Number.isInteger(f) || f < 1) ctx.fail('Resize gradients need static spatial sizes enlarged by integer factors');
    return f;
  });
  if (inShape[0] !== outShape[0] || inShape[1] !== outShape[1]) ctx.fail('Resize gradients need unchanged batch and channel dims');
  const blocks = b.reshape(ctx.dy, [0, 0, Number(h), factors[0]!, Number(w), factors[1]!]);
  return [b.reduceSum(blocks, [3, 5], false, `${node.name}_grad`)];
}

export const shapeRules: RuleTable = {
  Identity: { backward: (ctx) => [ctx.dy] },
  Reshape: reshapeLike,
  Flatten: reshapeLike,
  Squeeze: reshapeLike,
  Unsqueeze: reshapeLike,
  Transpose: {
    backward(ctx) {
      const rank = ctx.shape(ctx.node.inputs[0]!).length;
      const perm = attrInts(ctx.node, 'perm', range(rank).reverse());
      const inverse = new Array<number>(rank);
      perm.forEach((p, i) => (inverse[p] = i));
      return [ctx.b.transpose(ctx.dy, inverse, `${ctx.node.name}_grad`)];
    },
  },
  Concat: { backward: concatGrad },
  Pad: { backward: padGrad },
  Slice: { backward: sliceGrad },
  Resize: { backward: resizeGrad },
};
