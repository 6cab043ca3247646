import type { DataType, Dim, TensorData, TensorStorage } from './types.js';

/** A shape as one would write it in a message: `[N, 3, ?, 224]` (`?` for an unknown dim). */
export function formatShape(shape: readonly Dim[]): string {
  return `[${shape.map((d) => d ?? '?').join(', ')}]`;
}

/** Number of elements of a shape (1 for a scalar). */
export function sizeOf(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Allocates zeroed storage of the right typed-array class for `dataType`. */
export function allocStorage(dataType: DataType, length: number): TensorStorage {
  switch (dataType) {
    case 'float32':
      return new Float32Array(length);
    case 'float64':
      return new Float64Array(length);
    case 'float16':
    case 'uint16':
      return new Uint16Array(length);
    case 'int4':
    case 'int8':
      return new Int8Array(length);
    case 'uint4':
    case 'uint8':
    case 'bool':
      return new Uint8Array(length);
    case 'int16':
      return new Int16Array(length);
    case 'int32':
      return new Int32Array(length);
    case 'uint32':
      return new Uint32Array(length);
    case 'int64':
      return new BigInt64Array(length);
    case 'uint64':
      return new BigUint64Array(length);
  }
}

/** A float32 tensor. */
export function floatTensor(dims: number[], values?: ArrayLike<number>): TensorData {
  const data = new Float32Array(sizeOf(dims));
  if (values) data.set(values);
  return { dataType: 'float32', dims, data };
}

/** An int64 tensor (shapes, axes, pads). */
export function int64Tensor(dims: number[], values: readonly number[]): TensorData {
  return { dataType: 'int64', dims, data: BigInt64Array.from(values, (v) => BigInt(v)) };
}

/** Element values as plain numbers (int64 converted; fine for shapes and indices). */
export function toNumbers(t: TensorData): number[] {
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

/** Element values as float32, whatever the stored type (float16 is decoded). */
export function toFloat32(t: TensorData): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  if (t.dataType === 'float16') return Float32Array.from(t.data as Uint16Array, halfToFloat);
  return Float32Array.from(t.data as ArrayLike<number | bigint>, Number);
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}
