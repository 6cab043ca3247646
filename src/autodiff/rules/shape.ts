import { attrInt, attrInts, attrString } from '../../graph/graph.js';
import { toNumbers } from '../../graph/tensor.js';
import type { GradContext, GradientRule, RuleTable } from '../rule.js';
import { isNumber, range, reshapeTo } from './helpers.js';

/** Slice end meaning "to the end of the axis". */
const TO_END = 2 ** 31 - 1;

/** Ops that only relabel the elements: the gradient takes the input's shape back. */
const reshapeLike: GradientRule = { backward: (ctx) => [reshapeTo(ctx, ctx.dy, ctx.node.inputs[0]!)] };

function concatGrad(ctx: GradContext): (string | undefined)[] {
  const { b, node } = ctx;
  const rank = ctx.shape(node.inputs[0]!).length;
  const axis = (attrInt(node, 'axis', 0) + rank) % rank;
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
  const constant = (i: number) => {
    const name = node.inputs[i];
    return name ? toNumbers(ctx.constant(name) ?? ctx.fail(`input ${i} computed at run time has no gradient rule`)) : undefined;
  };
  const pads = constant(1)!;
  const axes = (constant(3) ?? range(rank)).map((a) => (a < 0 ? a + rank : a));
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
};
