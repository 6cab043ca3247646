import { attrInt, normalizeAxis } from '../../graph/graph.js';
import type { GradContext, RuleTable } from '../rule.js';

/** The normalized axis (opset ≥ 13 semantics, which gradients require). */
function axesOf(ctx: GradContext): number[] {
  const rank = ctx.shape(ctx.node.inputs[0]!).length;
  const axis = attrInt(ctx.node, 'axis', -1);
  return [normalizeAxis(axis, rank, ctx.node)];
}

export const softmaxRules: RuleTable = {
  // dx = y·(dy − Σ dy·y)
  Softmax: {
    backward(ctx) {
      const { b, node, dy } = ctx;
      const y = node.outputs[0]!;
      const dot = b.reduceSum(b.op('Mul', [dy, y]), axesOf(ctx), true);
      return [b.op('Mul', [b.op('Sub', [dy, dot]), y], {}, `${node.name}_grad`)];
    },
  },
  // dx = dy − exp(y)·Σ dy
  LogSoftmax: {
    backward(ctx) {
      const { b, node, dy } = ctx;
      const total = b.reduceSum(dy, axesOf(ctx), true);
      return [b.op('Sub', [dy, b.op('Mul', [b.op('Exp', [node.outputs[0]!]), total])], {}, `${node.name}_grad`)];
    },
  },
};
