import type { RuleTable } from '../rule.js';
import { sumToShape } from './helpers.js';

/** Binary arithmetic with numpy broadcasting: each gradient is summed back to its input's shape. */
export const elementwiseRules: RuleTable = {
  Add: {
    backward(ctx) {
      const [a, b] = ctx.node.inputs as [string, string];
      return [ctx.needs(0) ? sumToShape(ctx, ctx.dy, a) : undefined, ctx.needs(1) ? sumToShape(ctx, ctx.dy, b) : undefined];
    },
  },
  Sub: {
    backward(ctx) {
      const [a, b] = ctx.node.inputs as [string, string];
      // Negate after summing: the reduced tensor is never larger.
      return [
        ctx.needs(0) ? sumToShape(ctx, ctx.dy, a) : undefined,
        ctx.needs(1) ? ctx.b.op('Neg', [sumToShape(ctx, ctx.dy, b)]) : undefined,
      ];
    },
  },
  Mul: {
    backward(ctx) {
      const { b, dy } = ctx;
      const [x, y] = ctx.node.inputs as [string, string];
      return [
        ctx.needs(0) ? sumToShape(ctx, b.op('Mul', [dy, y]), x) : undefined,
        ctx.needs(1) ? sumToShape(ctx, b.op('Mul', [dy, x]), y) : undefined,
      ];
    },
  },
  // y = a / b: da = dy / b; db = -Σ dy·y / b. b is constant along the summed axes (that is
  // what broadcasting means), so the division can follow the sum on the small tensor.
  Div: {
    backward(ctx) {
      const { b, dy, node } = ctx;
      const [x, d] = node.inputs as [string, string];
      const dd = () => {
        const summed = sumToShape(ctx, b.op('Mul', [dy, node.outputs[0]!]), d);
        return b.op('Neg', [b.op('Div', [summed, d])]);
      };
      return [ctx.needs(0) ? sumToShape(ctx, b.op('Div', [dy, d]), x) : undefined, ctx.needs(1) ? dd() : undefined];
    },
  },
  Neg: { backward: (ctx) => [ctx.b.op('Neg', [ctx.dy])] },
};
