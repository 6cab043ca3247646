import { attrFloat, attrInt } from '../../graph/graph.js';
import type { RuleTable } from '../rule.js';
import { once, range } from './helpers.js';

export const normalizationRules: RuleTable = {
  // Inference-mode y = (x − mean)·a + bias with a = scale/√(var + ε), per channel (axis 1).
  BatchNormalization: {
    backward(ctx) {
      const { b, node, dy } = ctx;
      if (attrInt(node, 'training_mode', 0) === 1 || node.outputs.filter(Boolean).length > 1)
        ctx.fail('training-mode BatchNormalization has no gradient rule (fold it or use inference mode)');
      const [x, scale, , mean, variance] = node.inputs as [string, string, string, string, string];
      const rank = ctx.shape(x).length;
      const others = [0, ...range(rank - 2).map((i) => i + 2)];
      const perChannel = (v: string) => b.reshape(v, [-1, ...new Array<number>(rank - 2).fill(1)]);
      const eps = attrFloat(node, 'epsilon', 1e-5);
      const invStd = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [variance, b.scalar(eps)])])]);
      const a = b.op('Mul', [scale, invStd]);
      const sumDy = once(() => b.reduceSum(dy, others, false));
      // Σ dy·(x − mean), which the scale and variance gradients share.
      const centered = once(() => b.op('Sub', [b.reduceSum(b.op('Mul', [dy, x]), others, false), b.op('Mul', [mean, sumDy()])]));
      return [
        ctx.needs(0) ? b.op('Mul', [dy, perChannel(a)], {}, `${node.name}_dx`) : undefined,
        ctx.needs(1) ? b.op('Mul', [centered(), invStd]) : undefined,
        ctx.needs(2) ? sumDy() : undefined,
        ctx.needs(3) ? b.op('Neg', [b.op('Mul', [sumDy(), a])]) : undefined,
        ctx.needs(4)
          ? b.op('Mul', [centered(), b.op('Mul', [b.op('Mul', [a, b.op('Mul', [invStd, invStd])]), b.scalar(-0.5)])])
          : undefined,
      ];
    },
  },
};
