import type { Dim } from '../../graph/types.js';
import { resolveWindow, windowAttributes } from '../../graph/window.js';
import type { GradContext } from '../rule.js';

/**
 * Sums a gradient `g` shaped like the node's output back to the shape of `input`, which
 * the output broadcast (numpy rules).
 */
export function sumToShape(ctx: GradContext, g: string, input: string): string {
  const shape = ctx.shape(input);
  return sumTo(ctx, g, ctx.shape(ctx.node.outputs[0]!), shape, input);
}

/**
 * Sums `g` (shape `gShape`) over the leading axes `target` lacks and the axes where
 * `target` has size 1, then reshapes it like forward value `like` when the rank differs.
 */
export function sumTo(ctx: GradContext, g: string, gShape: Dim[], target: Dim[], like: string): string {
  const lead = gShape.length - target.length;
  const axes: number[] = [];
  gShape.forEach((d, i) => {
    const j = i - lead;
    if (j < 0) axes.push(i);
    else if (target[j] === 1 && d !== 1) axes.push(i);
    else if (target[j] === null) ctx.fail(`cannot tell whether '${like}' is broadcast along axis ${j}`);
  });
  const summed = axes.length ? ctx.b.reduceSum(g, axes, true, `${ctx.node.name}_sum`) : g;
  return gShape.length !== ctx.shape(like).length ? reshapeTo(ctx, summed, like) : summed;
}

/** Reshapes `g` to the shape of forward value `like`, statically when every dim is known. */
export function reshapeTo(ctx: GradContext, g: string, like: string): string {
  const shape = ctx.shape(like);
  return shape.every((d): d is number => typeof d === 'number')
    ? ctx.b.reshape(g, shape, `${ctx.node.name}_grad`)
    : ctx.b.reshapeLike(g, like, `${ctx.node.name}_grad`);
}

/**
 * `g` where boolean `mask` holds, else 0. A Mul by the mask as 0/1 floats: onnxruntime's
 * Where against a broadcast scalar 0 runs at about half the speed of Cast + Mul on
 * activation-sized tensors, and Where is what the backward pass of every clamp and fake
 * quantization runs on. (A non-finite `g` outside the mask gives NaN instead of 0.)
 */
export function masked(ctx: GradContext, mask: string, g: string, hint = `${ctx.node.name}_grad`): string {
  const { b } = ctx;
  return b.op('Mul', [g, b.op('Cast', [mask], { to: { type: 'int', value: 1 } })], {}, hint);
}

/** Calls `make` on first use only, so a shared intermediate is emitted once. */
export function once<T>(make: () => T): () => T {
  let value: T | undefined;
  return () => (value ??= make());
}

export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Sliding window of a Conv or pool with auto_pad resolved to explicit pads (graph/window.ts), per spatial axis. */
export interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** Begin pads of each spatial axis. */
  begin: number[];
  /** End pads of each spatial axis. */
  end: number[];
  /** Spatial input and output sizes. */
  inSize: number[];
  outSize: number[];
}

/** The spatial dims (all but batch and channels) of a value; they must be static. */
export function spatialSize(ctx: GradContext, name: string): number[] {
  const spatial = ctx.shape(name).slice(2);
  if (!spatial.every(isNumber)) ctx.fail(`the spatial size of '${name}' must be static for gradients`);
  return spatial;
}

/** Resolves the window of `ctx.node` over input 0 whose kernel has spatial size `kernel`. */
export function windowOf(ctx: GradContext, kernel: number[]): Window {
  const { node } = ctx;
  const n = kernel.length;
  const inSize = spatialSize(ctx, node.inputs[0]!);
  const outSize = spatialSize(ctx, node.outputs[0]!);
  const axes = resolveWindow(windowAttributes(node, n), kernel, inSize);
  return {
    kernel,
    strides: axes.map((a) => a.stride),
    dilations: axes.map((a) => a.dilation),
    begin: axes.map((a) => a.begin),
    end: axes.map((a) => a.end),
    inSize,
    outSize,
  };
}

/**
 * ConvTranspose attributes that map a window's output back onto exactly its input: the
 * transposed window spans `(out-1)·stride + dilation·(k-1) + 1` positions starting at
 * `-begin`; cropping the surplus at the end uses the end pad, a shortfall (input rows no
 * window reached) becomes output_padding.
 */
export function transposedWindow(w: Window): { pads: number[]; outputPadding: number[] } {
  const ends: number[] = [];
  const outputPadding: number[] = [];
  w.kernel.forEach((k, i) => {
    const span = (w.outSize[i]! - 1) * w.strides[i]! + w.dilations[i]! * (k - 1) + 1;
    const surplus = span - w.begin[i]! - w.inSize[i]!;
    ends.push(Math.max(0, surplus));
    outputPadding.push(Math.max(0, -surplus));
  });
  return { pads: [...w.begin, ...ends], outputPadding };
}

export function isNumber(d: Dim): d is number {
  return typeof d === 'number';
}
