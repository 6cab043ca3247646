/**
 * TFLite lays 4-D activations out as NHWC; the imported ONNX graph keeps every 4-D value
 * NCHW. These helpers translate shapes, axes, paddings and constant data between the two.
 */

/** Transpose permutation taking NHWC data to NCHW. */
export const NHWC_TO_NCHW = [0, 3, 1, 2];
/** Transpose permutation taking NCHW data to NHWC. */
export const NCHW_TO_NHWC = [0, 2, 3, 1];

/** The ONNX position of TFLite axis `axis` (negative counts from the end) of a rank-`rank` tensor. */
export function onnxAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  return rank === 4 ? NCHW_TO_NHWC[a]! : a;
}

/** Applies a permutation to a shape: result[i] = dims[perm[i]]. */
export function permute<T>(dims: readonly T[], perm: readonly number[]): T[] {
  return perm.map((p) => dims[p]!);
}

/** The ONNX shape of a value whose TFLite shape is `dims` (4-D becomes NCHW). */
export function onnxShape<T>(dims: readonly T[]): T[] {
  return dims.length === 4 ? permute(dims, NHWC_TO_NCHW) : [...dims];
}

/**
 * Whether a 4-D NHWC tensor's elements sit in the same order when stored NCHW. True when C
 * or H·W is 1: a Reshape of the NCHW value then equals the Reshape of the NHWC one, and no
 * Transpose is needed.
 */
export function sameOrderAsNchw(dims: readonly number[]): boolean {
  return dims.length !== 4 || dims[3] === 1 || dims[1]! * dims[2]! === 1;
}

/** Reorders dense row-major `data` of shape `dims` by `perm` (result dims = permute(dims, perm)). */
export function transposeData(data: Float32Array, dims: readonly number[], perm: readonly number[]): Float32Array {
  const rank = dims.length;
  const outDims = permute(dims, perm);
  const inStrides = new Array<number>(rank);
  for (let i = rank - 1, s = 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= dims[i]!;
  }
  // Stride in the input of each output axis, so the walk below is a plain odometer.
  const strides = perm.map((p) => inStrides[p]!);
  const out = new Float32Array(data.length);
  const index = new Array<number>(rank).fill(0);
  let from = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = data[from]!;
    for (let a = rank - 1; a >= 0; a--) {
      index[a]!++;
      from += strides[a]!;
      if (index[a]! < outDims[a]!) break;
      from -= strides[a]! * outDims[a]!;
      index[a] = 0;
    }
  }
  return out;
}

/**
 * Explicit begin/end padding of one spatial axis for TFLite's SAME or VALID padding.
 * SAME keeps ceil(in/stride) outputs and, like TensorFlow, puts an odd extra pixel at the end.
 */
export function spatialPadding(
  padding: 'SAME' | 'VALID',
  size: number,
  kernel: number,
  stride: number,
  dilation: number,
): [number, number] {
  if (padding === 'VALID') return [0, 0];
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0);
  const begin = Math.floor(total / 2);
  return [begin, total - begin];
}
