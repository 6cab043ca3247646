import { attrInts, attrString, nodeError } from './graph.js';
import { formatShape } from './tensor.js';
import type { Node } from './types.js';

/**
 * Sliding-window geometry of Conv, ConvTranspose and the pools: the one place that reads
 * strides, dilations, pads and auto_pad, resolves auto_pad into explicit pads and sizes the
 * output. Shape inference, the gradient rules and the NPU lowering all compute with it, so
 * the three never disagree about where a window reads.
 */

const AUTO_PADS: ReadonlySet<string> = new Set(['NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID']);

/** The window attributes as a node writes them, over `strides.length` spatial axes. */
export interface WindowAttributes {
  strides: number[];
  dilations: number[];
  /** Begin pads of every spatial axis, then end pads. */
  pads: number[];
  autoPad: string;
}

/** One spatial axis of a window with its padding resolved. */
export interface WindowAxis {
  kernel: number;
  stride: number;
  dilation: number;
  /** Padding before and after the input along this axis. */
  begin: number;
  end: number;
}

/** The window attributes of `node` over `n` spatial axes, checked; errors name the node. */
export function windowAttributes(node: Node, n: number): WindowAttributes {
  const strides = attrInts(node, 'strides', new Array<number>(n).fill(1));
  const dilations = attrInts(node, 'dilations', new Array<number>(n).fill(1));
  const pads = attrInts(node, 'pads', new Array<number>(2 * n).fill(0));
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  if (!AUTO_PADS.has(autoPad)) throw nodeError(node, `auto_pad '${autoPad}' is not one of ${[...AUTO_PADS].join(', ')}`);
  if (strides.length !== n || strides.some((s) => s < 1))
    throw nodeError(node, `strides ${formatShape(strides)} should be ${n} values ≥ 1`);
  if (dilations.length !== n || dilations.some((d) => d < 1))
    throw nodeError(node, `dilations ${formatShape(dilations)} should be ${n} values ≥ 1`);
  if (pads.length !== 2 * n || pads.some((p) => p < 0)) throw nodeError(node, `pads ${formatShape(pads)} should be ${2 * n} values ≥ 0`);
  return { strides, dilations, pads, autoPad };
}

/** SAME_UPPER and SAME_LOWER pad so that the output is ceil(input / stride), whatever the kernel. */
export function isSamePadding(w: WindowAttributes): boolean {
  return w.autoPad === 'SAME_UPPER' || w.autoPad === 'SAME_LOWER';
}

/** [begin, end] of the pads attribute on spatial axis i (VALID ignores it); SAME padding needs `resolveWindow`. */
export function explicitPads(w: WindowAttributes, i: number): [number, number] {
  const n = w.strides.length;
  return w.autoPad === 'VALID' ? [0, 0] : [w.pads[i]!, w.pads[i + n]!];
}

/** Positions one window spans along an axis. */
export function windowExtent(kernel: number, dilation: number): number {
  return (kernel - 1) * dilation + 1;
}

/**
 * Every spatial axis of a window of `kernel` over an input of `inSize`, auto_pad resolved:
 * SAME pads the total that gives ceil(input / stride) outputs, its odd unit at the end
 * (SAME_UPPER) or at the beginning (SAME_LOWER).
 */
export function resolveWindow(w: WindowAttributes, kernel: readonly number[], inSize: readonly number[]): WindowAxis[] {
  return kernel.map((k, i) => {
    const axis = { kernel: k, stride: w.strides[i]!, dilation: w.dilations[i]! };
    if (!isSamePadding(w)) {
      const [begin, end] = explicitPads(w, i);
      return { ...axis, begin, end };
    }
    const out = Math.ceil(inSize[i]! / axis.stride);
    const total = Math.max(0, (out - 1) * axis.stride + windowExtent(k, axis.dilation) - inSize[i]!);
    const begin = w.autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
    return { ...axis, begin, end: total - begin };
  });
}

/**
 * Output size along one axis over an input of `size`; below 1 when the window does not fit.
 * In ceil mode a last window that would start in the end padding is dropped (PyTorch, ONNX
 * shape inference since 1.16).
 */
export function outputSize(size: number, a: WindowAxis, ceilMode = false): number {
  const span = size + a.begin + a.end - windowExtent(a.kernel, a.dilation);
  if (!ceilMode) return Math.floor(span / a.stride) + 1;
  const out = Math.ceil(span / a.stride) + 1;
  return (out - 1) * a.stride >= size + a.begin ? out - 1 : out;
}

/**
 * The taps [first, end) of the window at output position `o` that fall inside an input of
 * `size`; the others read padding.
 */
export function tapRange(a: WindowAxis, o: number, size: number): [number, number] {
  const start = o * a.stride - a.begin;
  let first = 0;
  while (first < a.kernel && start + first * a.dilation < 0) first++;
  let end = a.kernel;
  while (end > first && start + (end - 1) * a.dilation >= size) end--;
  return [first, end];
}
