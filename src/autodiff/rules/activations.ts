import { attrFloat } from '../../graph/graph.js';
import type { GradContext, RuleTable } from '../rule.js';
import { masked, range } from './helpers.js';

/** dy where `mask` holds, else 0. */
const where = (ctx: GradContext, mask: string): string => masked(ctx, mask, ctx.dy);

/** Σ over all elements of dy where `mask` holds: the gradient of a scalar clip bound. */
function boundGrad(ctx: GradContext, mask: string): string {
  const rank = ctx.shape(ctx.node.inputs[0]!).length;
  return ctx.b.reduceSum(where(ctx, mask), range(rank), false);
}

export const activationRules: RuleTable = {
  Relu: {
    backward: (ctx) => [where(ctx, ctx.b.op('Greater', [ctx.node.outputs[0]!, ctx.b.scalar(0)]))],
  },
  // Inside the bounds the output equals the input: one comparison finds the pass-through set.
  Clip: {
    backward(ctx) {
      const { b, node } = ctx;
      const [x, min, max] = node.inputs as [string, string | undefined, string | undefined];
      return [
        ctx.needs(0) ? where(ctx, b.op('Equal', [x, node.outputs[0]!])) : undefined,
        min && ctx.needs(1) ? boundGrad(ctx, b.op('Less', [x, min])) : undefined,
        max && ctx.needs(2) ? boundGrad(ctx, b.op('Greater', [x, max])) : undefined,
      ];
    },
  },
  // y = clamp(αx + β, 0, 1): slope α strictly inside.
  HardSigmoid: {
    backward(ctx) {
      const { b, node } = ctx;
      const y = node.outputs[0]!;
      const alpha = attrFloat(node, 'alpha', 0.2);
      const inside = b.op('And', [b.op('Greater', [y, b.scalar(0)]), b.op('Less', [y, b.scalar(1)])]);
      return [b.op('Mul', [where(ctx, inside), b.scalar(alpha)])];
    },
  },
  // y = x·clamp(x/6 + 1/2, 0, 1): slope 0 below -3, 1 above 3, x/3 + 1/2 between.
  HardSwish: {
    backward(ctx) {
      const { b, node } = ctx;
      const x = node.inputs[0]!;
      const ramp = b.op('Add', [b.op('Mul', [x, b.scalar(1 / 3)]), b.scalar(0.5)]);
      const upper = b.op('Where', [b.op('Greater', [x, b.scalar(3)]), b.scalar(1), ramp]);
      const slope = b.op('Where', [b.op('Less', [x, b.scalar(-3)]), b.scalar(0), upper]);
      return [b.op('Mul', [ctx.dy, slope], {}, `${node.name}_grad`)];
    },
  },
  Sigmoid: {
    backward(ctx) {
      const { b, node } = ctx;
      const y = node.outputs[0]!;
      const slope = b.op('Mul', [y, b.op('Sub', [b.scalar(1), y])]);
      return [b.op('Mul', [ctx.dy, slope], {}, `${node.name}_grad`)];
    },
  },
  Tanh: {
    backward(ctx) {
      const { b, node } = ctx;
      const y = node.outputs[0]!;
      const slope = b.op('Sub', [b.scalar(1), b.op('Mul', [y, y])]);
      return [b.op('Mul', [ctx.dy, slope], {}, `${node.name}_grad`)];
    },
  },
};
