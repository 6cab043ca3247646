import { attr, attrInt, attrInts } from '../../graph/graph.js';
import { floatTensor, sizeOf } from '../../graph/tensor.js';
import type { GradContext, RuleTable } from '../rule.js';
import { masked, range, reshapeTo, spatialSize, transposedWindow, windowOf, type Window } from './helpers.js';

/**
 * Number of elements each output of an AveragePool averages, along one axis. Windows are
 * clipped to the padded input when pads count, to the input otherwise (ceil_mode windows
 * that run past the end average only what they cover).
 */
function divisors(w: Window, axis: number, countPads: boolean): number[] {
  const [k, s, begin, size] = [w.kernel[axis]!, w.strides[axis]!, w.begin[axis]!, w.inSize[axis]!];
  return range(w.outSize[axis]!).map((o) => {
    const start = o * s - begin;
    const end = start + k;
    return countPads ? Math.min(end, size + w.end[axis]!) - start : Math.min(end, size) - Math.max(start, 0);
  });
}

/** dy divided by each output's divisor: a scalar when all agree, else a constant map. */
function scaled(ctx: GradContext, w: Window, countPads: boolean): string {
  const { b } = ctx;
  const perAxis = w.kernel.map((_, i) => divisors(w, i, countPads));
  if (perAxis.every((d) => d.every((v) => v === d[0])) && perAxis.every((d) => d[0] === perAxis[0]![0])) {
    const product = perAxis.reduce((p, d) => p * d[0]!, 1);
    return b.op('Mul', [ctx.dy, b.scalar(1 / product)]);
  }
  const map = floatTensor([1, 1, ...w.outSize]);
  map.data.forEach((_, flat) => {
    let product = 1;
    let rest = flat;
    for (let i = w.outSize.length - 1; i >= 0; i--) {
      product *= perAxis[i]![rest % w.outSize[i]!]!;
      rest = Math.floor(rest / w.outSize[i]!);
    }
    map.data[flat] = 1 / product;
  });
  return b.op('Mul', [ctx.dy, b.tensor(map, `${ctx.node.name}_divisors`)]);
}

/**
 * Non-overlapping tiles (kernel = stride, no begin padding, as in tiled squeeze-excite):
 * each input element receives its tile's gradient, so broadcasting replaces a ConvTranspose.
 */
function spreadTiles(ctx: GradContext, w: Window, g: string): string {
  const { b } = ctx;
  const n = w.kernel.length;
  const split = b.reshape(g, [0, 0, ...w.outSize.flatMap((o) => [o, 1])]);
  const expanded = b.op('Expand', [split, b.int64s([1, 1, ...w.kernel.flatMap((k) => [1, k])])]);
  const covered = w.outSize.map((o, i) => o * w.kernel[i]!);
  const merged = b.reshape(expanded, [0, 0, ...covered]);
  if (covered.every((c, i) => c === w.inSize[i])) return merged;
  const spatial = range(n).map((i) => i + 2);
  const cut = b.op('Slice', [
    merged,
    b.int64s(spatial.map(() => 0)),
    b.int64s(covered.map((c, i) => Math.min(c, w.inSize[i]!))),
    b.int64s(spatial),
  ]);
  // Floor mode leaves trailing rows that no tile reads: their gradient is zero.
  const short = covered.map((c, i) => Math.max(0, w.inSize[i]! - c));
  if (short.every((s) => s === 0)) return cut;
  return b.op('Pad', [cut, b.int64s([0, 0, ...spatial.map(() => 0), 0, 0, ...short])]);
}

/** Overlapping windows: a ConvTranspose of every (image, channel) plane with a kernel of ones. */
function spreadWindows(ctx: GradContext, w: Window, g: string): string {
  const { b, node } = ctx;
  const planes = b.reshape(g, [-1, 1, ...w.outSize]);
  const ones = b.tensor(floatTensor([1, 1, ...w.kernel], new Array<number>(sizeOf(w.kernel)).fill(1)), `${node.name}_ones`);
  const t = transposedWindow(w);
  const attrs = {
    kernel_shape: attr.ints(w.kernel),
    strides: attr.ints(w.strides),
    pads: attr.ints(t.pads),
    output_padding: attr.ints(t.outputPadding),
  };
  return reshapeTo(ctx, b.op('ConvTranspose', [planes, ones], attrs), node.inputs[0]!);
}

export const poolingRules: RuleTable = {
  AveragePool: {
    backward(ctx) {
      const { node } = ctx;
      const kernel = attrInts(node, 'kernel_shape') ?? ctx.fail('missing kernel_shape');
      if (attrInts(node, 'dilations', []).some((d) => d !== 1)) ctx.fail('dilated AveragePool has no gradient rule');
      const w = windowOf(ctx, kernel);
      const g = scaled(ctx, w, attrInt(node, 'count_include_pad', 0) === 1);
      const tiles = w.kernel.every((k, i) => k === w.strides[i]) && w.begin.every((p) => p === 0);
      return [tiles ? spreadTiles(ctx, w, g) : spreadWindows(ctx, w, g)];
    },
  },
  MaxPool: {
    /**
     * Non-overlapping windows only (kernel = stride, no begin padding, BlazeFace's and most
     * detectors' 2x2/2): each input element that equals its window's maximum receives the
     * window's gradient; ties all receive it.
     */
    backward(ctx) {
      const { b, node } = ctx;
      const kernel = attrInts(node, 'kernel_shape') ?? ctx.fail('missing kernel_shape');
      if (attrInts(node, 'dilations', []).some((d) => d !== 1)) ctx.fail('dilated MaxPool has no gradient rule');
      const w = windowOf(ctx, kernel);
      if (!w.kernel.every((k, i) => k === w.strides[i]) || !w.begin.every((p) => p === 0))
        ctx.fail('only MaxPool with kernel = stride and no begin padding has a gradient rule');
      const maxima = spreadTiles(ctx, w, node.outputs[0]!);
      return [masked(ctx, b.op('Equal', [node.inputs[0]!, maxima]), spreadTiles(ctx, w, ctx.dy))];
    },
  },
  GlobalAveragePool: {
    backward(ctx) {
      const { b, node } = ctx;
      const x = node.inputs[0]!;
      const g = b.op('Mul', [ctx.dy, b.scalar(1 / sizeOf(spatialSize(ctx, x)))]);
      return [b.op('Expand', [g, b.op('Shape', [x])], {}, `${node.name}_grad`)];
    },
  },
};
