import { attrInt, nodeError } from '../graph/graph.js';
import { outputSize, resolveWindow, tapRange, windowAttributes, type WindowAxis } from '../graph/window.js';
import type { Node } from '../graph/types.js';
import type { Window } from './types.js';

/**
 * The 2-D window of a Conv or pooling node over an NCHW input of spatial size [h, w], with
 * auto_pad resolved into explicit pads, and the output size it gives.
 */
export function windowOf(node: Node, spatial: number[], kernel: number[]): { window: Window; out: [number, number] } {
  if (spatial.length !== 2 || kernel.length !== 2) throw nodeError(node, 'only 2-D windows over NCHW tensors are supported');
  if (attrInt(node, 'ceil_mode', 0)) throw nodeError(node, 'ceil_mode=1 is not supported');
  const [y, x] = resolveWindow(windowAttributes(node, 2), kernel, spatial) as [WindowAxis, WindowAxis];
  const window: Window = {
    kernel: [y.kernel, x.kernel],
    strides: [y.stride, x.stride],
    pads: [y.begin, x.begin, y.end, x.end],
    dilations: [y.dilation, x.dilation],
  };
  const out = windowOutput(window, spatial[0]!, spatial[1]!);
  if (out[0] < 1 || out[1] < 1) throw nodeError(node, `window larger than its ${spatial.join('x')} input`);
  return { window, out };
}

/** Axis i (0: height, 1: width) of an NPU window, as graph/window.ts computes with it. */
export function windowAxis(w: Window, i: 0 | 1): WindowAxis {
  return { kernel: w.kernel[i], stride: w.strides[i], dilation: w.dilations[i], begin: w.pads[i], end: w.pads[i + 2]! };
}

/** Output [height, width] of a window over an [h, w] input (floor mode). */
export function windowOutput(w: Window, h: number, wd: number): [number, number] {
  return [outputSize(h, windowAxis(w, 0)), outputSize(wd, windowAxis(w, 1))];
}

/** How many elements an average-pooling window divides by at output position (oy, ox). */
export function windowCount(w: Window, includePad: boolean, oy: number, ox: number, h: number, wd: number): number {
  if (includePad) return w.kernel[0] * w.kernel[1];
  const [y0, y1] = tapRange(windowAxis(w, 0), oy, h);
  const [x0, x1] = tapRange(windowAxis(w, 1), ox, wd);
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
