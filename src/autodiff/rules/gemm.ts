import { attr, attrFloat, attrInt } from '../../graph/graph.js';
import type { Dim } from '../../graph/types.js';
import type { GradContext, RuleTable } from '../rule.js';
import { range, sumTo, sumToShape } from './helpers.js';

/** Gemm(a, b, {transA, transB, alpha}) as one node. */
function gemm(ctx: GradContext, a: string, b: string, transA: boolean, transB: boolean, alpha: number, hint: string): string {
  const attrs = { transA: attr.int(transA ? 1 : 0), transB: attr.int(transB ? 1 : 0), alpha: attr.float(alpha) };
  return ctx.b.op('Gemm', [a, b], attrs, `${ctx.node.name}_${hint}`);
}

function swapLastTwo(ctx: GradContext, x: string, rank: number): string {
  return ctx.b.transpose(x, [...range(rank - 2), rank - 1, rank - 2]);
}

export const gemmRules: RuleTable = {
  // Y = alpha·A'·B' + beta·C with A' = transA ? Aᵀ : A and B' likewise.
  Gemm: {
    backward(ctx) {
      const { node, dy } = ctx;
      const [a, b, c] = node.inputs as [string, string, string | undefined];
      const alpha = attrFloat(node, 'alpha', 1);
      const beta = attrFloat(node, 'beta', 1);
      const ta = attrInt(node, 'transA', 0) === 1;
      const tb = attrInt(node, 'transB', 0) === 1;
      let dc: string | undefined;
      if (c && ctx.needs(2)) {
        dc = sumToShape(ctx, dy, c);
        if (beta !== 1) dc = ctx.b.op('Mul', [dc, ctx.b.scalar(beta)]);
      }
      return [
        ctx.needs(0) ? (ta ? gemm(ctx, b, dy, tb, true, alpha, 'da') : gemm(ctx, dy, b, false, !tb, alpha, 'da')) : undefined,
        ctx.needs(1) ? (tb ? gemm(ctx, dy, a, true, ta, alpha, 'db') : gemm(ctx, a, dy, !ta, false, alpha, 'db')) : undefined,
        dc,
      ];
    },
  },
  // numpy matmul: 1-D operands gain a unit axis, batch axes broadcast.
  MatMul: {
    backward(ctx) {
      const { node, b } = ctx;
      const [a, w] = node.inputs as [string, string];
      const aShape = ctx.shape(a);
      const bShape = ctx.shape(w);
      const aVector = aShape.length === 1;
      const bVector = bShape.length === 1;
      let dy = ctx.dy;
      if (aVector && bVector) dy = b.reshape(dy, [1, 1]);
      else if (aVector) dy = b.op('Unsqueeze', [dy, b.int64s([-2])]);
      else if (bVector) dy = b.op('Unsqueeze', [dy, b.int64s([-1])]);
      const a2: Dim[] = aVector ? [1, aShape[0]!] : aShape;
      const b2: Dim[] = bVector ? [bShape[0]!, 1] : bShape;
      const yShape = ctx.shape(node.outputs[0]!);
      const batch = yShape.slice(0, Math.max(a2.length, b2.length) - 2);
      const [n, k] = a2.slice(-2) as [Dim, Dim];
      const m = b2[b2.length - 1]!;
      let da: string | undefined;
      let db: string | undefined;
      if (ctx.needs(0)) {
        const bm = bVector ? b.reshape(w, [-1, 1]) : w;
        const full = b.op('MatMul', [dy, swapLastTwo(ctx, bm, b2.length)], {}, `${node.name}_da`);
        da = sumTo(ctx, full, [...batch, n, k], a2, a);
      }
      if (ctx.needs(1)) {
        const am = aVector ? b.reshape(a, [1, -1]) : a;
        const full = b.op('MatMul', [swapLastTwo(ctx, am, a2.length), dy], {}, `${node.name}_db`);
        db = sumTo(ctx, full, [...batch, k, m], b2, w);
      }
      return [da, db];
    },
  },
};
