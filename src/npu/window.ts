import { attrInt, attrInts, attrString, nodeError } from '../graph/graph.js';
import { toNumbers } from '../graph/tensor.js';
import type { Node, TensorData } from '../graph/types.js';
import type { Window } from './types.js';

/** Constant input `i` of `node` (an initializer) as numbers; undefined when absent, an error naming it when computed. */
export function constantInput(node: Node, i: number, constants: ReadonlyMap<string, TensorData>): number[] | undefined {
  const name = node.inputs[i];
  if (!name) return undefined;
  const t = constants.get(name);
  if (!t) throw nodeError(node, `input '${name}' must be a constant`);
  return toNumbers(t);
}

/**
 * The 2-D window of a Conv or pooling node over an NCHW input of spatial size [h, w], with
 * auto_pad resolved into explicit pads, and the output size it gives.
 */
export function windowOf(node: Node, spatial: number[], kernel: number[]): { window: Window; out: [number, number] } {
  if (spatial.length !== 2 || kernel.length !== 2) throw nodeError(node, 'only 2-D windows over NCHW tensors are supported');
  if (attrInt(node, 'ceil_mode', 0)) throw nodeError(node, 'ceil_mode=1 is not supported');
  const strides = attrInts(node, 'strides', [1, 1]);
  const dilations = attrInts(node, 'dilations', [1, 1]);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  let pads = attrInts(node, 'pads', [0, 0, 0, 0]);
  if (autoPad === 'VALID') pads = [0, 0, 0, 0];
  else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    const begin: number[] = [];
    const end: number[] = [];
    for (let i = 0; i < 2; i++) {
      const out = Math.ceil(spatial[i]! / strides[i]!);
      const total = Math.max(0, (out - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1 - spatial[i]!);
      const first = autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
      begin.push(first);
      end.push(total - first);
    }
    pads = [...begin, ...end];
  } else if (autoPad !== 'NOTSET') throw nodeError(node, `auto_pad '${autoPad}' is not supported`);
  const window: Window = {
    kernel: [kernel[0]!, kernel[1]!],
    strides: [strides[0]!, strides[1]!],
    pads: [pads[0]!, pads[1]!, pads[2]!, pads[3]!],
    dilations: [dilations[0]!, dilations[1]!],
  };
  const out = windowOutput(window, spatial[0]!, spatial[1]!);
  if (out[0] < 1 || out[1] < 1) throw nodeError(node, `window larger than its ${spatial.join('x')} input`);
  return { window, out };
}

/** Output [height, width] of a window over an [h, w] input (floor mode). */
export function windowOutput(w: Window, h: number, wd: number): [number, number] {
  const size = (n: number, i: 0 | 1) => Math.floor((n + w.pads[i] + w.pads[i + 2]! - ((w.kernel[i] - 1) * w.dilations[i] + 1)) / w.strides[i]) + 1;
  return [size(h, 0), size(wd, 1)];
}

/**
 * The taps [first, end) of a window along one axis (0: height, 1: width) that fall inside
 * an input of `size` for output position `o`; the others read padding.
 */
export function tapRange(w: Window, axis: 0 | 1, o: number, size: number): [number, number] {
  const start = o * w.strides[axis] - w.pads[axis];
  const d = w.dilations[axis];
  let first = 0;
  while (first < w.kernel[axis] && start + first * d < 0) first++;
  let end = w.kernel[axis];
  while (end > first && start + (end - 1) * d >= size) end--;
  return [first, end];
}

/** How many elements an average-pooling window divides by at output position (oy, ox). */
export function windowCount(w: Window, includePad: boolean, oy: number, ox: number, h: number, wd: number): number {
  if (includePad) return w.kernel[0] * w.kernel[1];
  const [y0, y1] = tapRange(w, 0, oy, h);
  const [x0, x1] = tapRange(w, 1, ox, wd);
  return (y1 - y0) * (x1 - x0);
}

/** numpy broadcasting of two shapes (the result of Add/Mul). */
export function broadcastShape(node: Node, a: number[], b: number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw nodeError(node, `shapes [${a}] and [${b}] do not broadcast`);
    out.push(Math.max(x, y));
  }
  return out;
}
