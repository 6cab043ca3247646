/** Decoding TFLite constant buffers and quantization parameters into real values. */
import { sizeOf, toFloat32 } from '../../graph/tensor.js';
import type { Quantization } from './schema.js';

/** Bytes per element of the TFLite element types a constant may have here. */
const ELEMENT_SIZE: Record<string, number> = {
  float32: 4,
  float16: 2,
  float64: 8,
  int8: 1,
  uint8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
};

/** Integer range of the quantized element types. */
const INT_RANGE: Record<string, [number, number]> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  int32: [-(2 ** 31), 2 ** 31 - 1],
};

/** Whether constants of this TFLite element type can be decoded. */
export function isDecodable(type: string): boolean {
  return type in ELEMENT_SIZE;
}

/** Byte size a dense constant of this type and shape must have. */
export function expectedBytes(type: string, dims: readonly number[]): number {
  return ELEMENT_SIZE[type]! * sizeOf(dims);
}

/** The raw (still quantized) values of a little-endian buffer, as numbers. */
export function rawValues(bytes: Uint8Array, type: string): Float32Array | Float64Array {
  // A copy: buffer data in the file need not be aligned for a typed-array view.
  const buf = new Uint8Array(bytes).buffer;
  switch (type) {
    case 'float32':
      return new Float32Array(buf);
    case 'float16':
      return toFloat32({ dataType: 'float16', dims: [bytes.length / 2], data: new Uint16Array(buf) });
    case 'float64':
      return new Float64Array(buf);
    case 'int8':
      return Float64Array.from(new Int8Array(buf));
    case 'uint8':
      return Float64Array.from(new Uint8Array(buf));
    case 'int16':
      return Float64Array.from(new Int16Array(buf));
    case 'int32':
      return Float64Array.from(new Int32Array(buf));
    case 'int64':
      return Float64Array.from(new BigInt64Array(buf), Number);
    default:
      throw new Error(`no decoder for ${type}`);
  }
}

/**
 * Real values of a constant: scale * (q - zero_point), per channel along `q.axis` when the
 * quantization has several scales; the raw values when `q` is null.
 */
export function dequantize(raw: Float32Array | Float64Array, dims: readonly number[], q: Quantization | null): Float32Array {
  if (!q) return raw instanceof Float32Array ? raw : Float32Array.from(raw);
  const out = new Float32Array(raw.length);
  const channels = q.scale.length;
  const inner = channels > 1 ? sizeOf(dims.slice(q.axis + 1)) : raw.length;
  for (let i = 0; i < raw.length; i++) {
    const c = channels > 1 ? Math.floor(i / inner) % channels : 0;
    out[i] = q.scale[c]! * (raw[i]! - (q.zeroPoint[c] ?? q.zeroPoint[0]!));
  }
  return out;
}

/**
 * The real interval a per-tensor quantized activation can represent,
 * [scale·(qmin−zp), scale·(qmax−zp)]; null for float or per-channel tensors.
 */
export function representableRange(type: string, q: Quantization | null): [number, number] | null {
  const range = INT_RANGE[type];
  if (!range || !q || q.scale.length !== 1) return null;
  const s = q.scale[0]!;
  const z = q.zeroPoint[0]!;
  return [s * (range[0] - z), s * (range[1] - z)];
}
