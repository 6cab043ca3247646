import { attrInt, attrInts, constantInput, normalizeAxis } from '../../graph/graph.js';
import type { GradContext, GradientRule, RuleTable } from '../rule.js';
import { isNumber, range } from './helpers.js';

/** The reduced axes (non-negative), or undefined for a no-op (empty axes with noop_with_empty_axes). */
function reducedAxes(ctx: GradContext, rank: number, axesInputSince: number): number[] | undefined {
  const { node } = ctx;
  const axes =
    ctx.opset < axesInputSince
      ? attrInts(node, 'axes')
      : constantInput(node, 1, { get: ctx.constant }, 'axes computed at run time have no gradient rule');
  if (!axes?.length) return attrInt(node, 'noop_with_empty_axes', 0) === 1 ? undefined : range(rank);
  return axes.map((a) => normalizeAxis(a, rank, node));
}

/** Broadcasts dy back over the reduced axes, scaled by `1/count` for a mean. */
function reduceRule(axesInputSince: number, mean: boolean): GradientRule {
  return {
    backward(ctx) {
      const { b, node } = ctx;
      const x = node.inputs[0]!;
      const shape = ctx.shape(x);
      const axes = reducedAxes(ctx, shape.length, axesInputSince);
      if (!axes) return [ctx.dy];
      let g = ctx.dy;
      if (mean) {
        const dims = axes.map((a) => shape[a]!);
        if (dims.every(isNumber)) g = b.op('Mul', [g, b.scalar(1 / dims.reduce((p, d) => p * d, 1))]);
        else {
          // A symbolic (batch) dim: the count is known at run time as size(x) / size(y).
          const count = b.op('Div', [b.op('Size', [x]), b.op('Size', [node.outputs[0]!])]);
          g = b.op('Div', [g, b.op('Cast', [count], { to: { type: 'int', value: 1 } })]);
        }
      }
      if (attrInt(node, 'keepdims', 1) === 0) g = b.op('Unsqueeze', [g, b.int64s(axes)]);
      return [b.op('Expand', [g, b.op('Shape', [x])], {}, `${node.name}_grad`)];
    },
  };
}

export const reduceRules: RuleTable = {
  ReduceMean: reduceRule(18, true),
  ReduceSum: reduceRule(13, false),
};
