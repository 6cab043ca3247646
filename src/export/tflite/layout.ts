/**
 * quantflow's NCHW values in TFLite's NHWC layout: 4-D values are stored NHWC, every other
 * rank as it is (the importer's convention in import/tflite/layout.ts, run backwards).
 */

/** TFLite axis k of a 4-D value is NCHW axis NHWC_AXES[k]. */
export const NHWC_AXES = [0, 2, 3, 1] as const;
/** NCHW axis a of a 4-D value is TFLite axis NCHW_TO_TFLITE[a]. */
export const NCHW_TO_TFLITE = [0, 3, 1, 2] as const;

/** The TFLite shape of a value of NCHW (or other-rank) shape `shape`. */
export function tfliteShape(shape: readonly number[]): number[] {
  return shape.length === 4 ? NHWC_AXES.map((a) => shape[a]!) : [...shape];
}

/** The TFLite axis of ONNX axis `axis` (non-negative) of a value of rank `rank`. */
export function tfliteAxis(axis: number, rank: number): number {
  return rank === 4 ? NCHW_TO_TFLITE[axis]! : axis;
}

/**
 * Whether the NHWC and NCHW orders of a 4-D value list its elements alike, so that a reshape
 * to or from it needs no transpose: true when at most one of C and H·W exceeds 1.
 */
export function sameOrder(shape: readonly number[]): boolean {
  return shape.length !== 4 || shape[1] === 1 || shape[2]! * shape[3]! === 1;
}

/** The elements of an NCHW 4-D array in NHWC order. */
export function toNhwc<T extends { [i: number]: number }>(values: ArrayLike<number>, [n, c, h, w]: readonly number[], out: T): T {
  const o = out;
  for (let b = 0; b < n!; b++)
    for (let ch = 0; ch < c!; ch++) for (let p = 0; p < h! * w!; p++) o[(b * h! * w! + p) * c! + ch] = values[(b * c! + ch) * h! * w! + p]!;
  return out;
}
