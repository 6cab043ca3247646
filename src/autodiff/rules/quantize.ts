import { attrFloat, attrInt, normalizeAxis } from '../../graph/graph.js';
import { emitFakeQuant } from '../fake-quant.js';
import type { GradContext, MarkerRuleTable } from '../rule.js';
import { masked, range } from './helpers.js';

/**
 * Σ a·b per scale: one value for a per-tensor scale, one per channel otherwise. Mul +
 * ReduceSum, although it writes the product first: onnxruntime runs a MatMul of flattened
 * operands ([1, N]·[N, 1], a GEMV with one output) 3-5x slower.
 */
function dot(ctx: GradContext, a: string, b: string, axis: number | undefined, rank: number): string {
  return ctx.b.reduceSum(
    ctx.b.op('Mul', [a, b]),
    range(rank).filter((i) => i !== axis),
    false,
  );
}

export const quantizeRules: MarkerRuleTable = {
  /**
   * y = s·r with t = x/s, r = round(clamp(t, qmin − z, qmax − z)). Straight-through:
   * dx = dy inside the clamp range, 0 outside. LSQ: ∂y/∂s = r − t inside and r (the clamp
   * bound) outside, so ds = Σ dy·r − Σ dx·t, times grad_scale.
   */
  FakeQuant: {
    forward(ctx) {
      const rank = ctx.shape(ctx.node.inputs[0]!).length;
      return emitFakeQuant(ctx.b, ctx.node, rank);
    },
    backward(ctx) {
      const { b, node, dy, saved } = ctx;
      const [x, scale] = node.inputs as [string, string];
      const inside = b.op('Equal', [saved.t!, saved.clipped!]);
      const dx = masked(ctx, inside, dy, `${node.name}_dx`);
      if (!ctx.needs(1)) return [dx];
      const rank = ctx.shape(x).length;
      const axis = node.attributes.axis ? normalizeAxis(attrInt(node, 'axis', 0), rank, node) : undefined;
      let ds = b.op('Sub', [dot(ctx, dy, saved.rounded!, axis, rank), dot(ctx, dx, saved.t!, axis, rank)]);
      const gradScale = attrFloat(node, 'grad_scale', 1);
      if (gradScale !== 1) ds = b.op('Mul', [ds, b.scalar(gradScale)]);
      return [ctx.needs(0) ? dx : undefined, b.reshape(ds, ctx.dims(scale, 'scale shape'), `${node.name}_ds`)];
    },
  },
};
