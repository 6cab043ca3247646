import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { QuantflowError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import type { IntTensor, NpuPackage } from './types.js';

/**
 * The package on disk: `manifest.json` is the NpuPackage with each IntTensor replaced by
 * `{ "dtype", "shape", "offset", "byteLength" }`, a slice of `weights.bin`. Tensors are
 * little-endian, each starting at a multiple of 16 bytes; int4 is packed two values per
 * byte, low nibble first (as ONNX stores int4).
 */
export const MANIFEST_FILE = 'manifest.json';
export const WEIGHTS_FILE = 'weights.bin';

const ALIGN = 16;
const DTYPES = ['int4', 'int8', 'uint8', 'int32'] as const;

interface TensorRef {
  dtype: IntTensor['dtype'];
  shape: number[];
  offset: number;
  byteLength: number;
}

/** Writes `pkg` into folder `dir` (created if needed), each file atomically. */
export function writeNpuPackage(dir: string, pkg: NpuPackage): void {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const manifest = JSON.stringify(
    pkg,
    (_key, value: unknown) => {
      if (!isIntTensor(value)) return value;
      const bytes = encode(value);
      const ref: TensorRef = { dtype: value.dtype, shape: value.shape, offset: size, byteLength: bytes.length };
      const padded = Math.ceil(bytes.length / ALIGN) * ALIGN;
      chunks.push(bytes, new Uint8Array(padded - bytes.length));
      size += padded;
      return ref;
    },
    1,
  );
  const bin = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bin.set(c, at);
    at += c.length;
  }
  writeFileAtomic(join(dir, WEIGHTS_FILE), bin);
  writeFileAtomic(join(dir, MANIFEST_FILE), manifest + '\n');
}

/** Reads a package folder written by `writeNpuPackage`; a QuantflowError names what is wrong. */
export function readNpuPackage(dir: string): NpuPackage {
  const manifestPath = join(dir, MANIFEST_FILE);
  const binPath = join(dir, WEIGHTS_FILE);
  for (const p of [manifestPath, binPath]) if (!existsSync(p)) throw new QuantflowError(`NPU package '${dir}': missing ${p}`);
  // A copy at offset 0 of its own buffer, so that 16-byte aligned slices can be Int32Array views.
  const bin = new Uint8Array(readFileSync(binPath));
  let pkg: NpuPackage;
  try {
    pkg = JSON.parse(readFileSync(manifestPath, 'utf8'), (_key, value: unknown) =>
      isTensorRef(value) ? decode(value, bin, binPath) : value,
    );
  } catch (e) {
    if (e instanceof QuantflowError) throw e;
    throw new QuantflowError(`${manifestPath}: invalid JSON (${(e as Error).message})`, { cause: e });
  }
  if (pkg.format !== 'quantflow-npu' || pkg.version !== 1) {
    throw new QuantflowError(
      `${manifestPath}: not a quantflow NPU package of version 1 (format ${JSON.stringify(pkg.format)}, version ${JSON.stringify(pkg.version)})`,
    );
  }
  return pkg;
}

function isIntTensor(v: unknown): v is IntTensor {
  return typeof v === 'object' && v !== null && 'dtype' in v && 'shape' in v && 'data' in v && ArrayBuffer.isView((v as IntTensor).data);
}

function isTensorRef(v: unknown): v is TensorRef {
  return typeof v === 'object' && v !== null && 'dtype' in v && 'offset' in v && 'byteLength' in v && 'shape' in v;
}

function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function encode(t: IntTensor): Uint8Array {
  if (t.dtype !== 'int4') return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Uint8Array(Math.ceil(t.data.length / 2));
  for (let i = 0; i < t.data.length; i++) out[i >> 1]! |= (t.data[i]! & 0xf) << ((i & 1) * 4);
  return out;
}

function decode(ref: TensorRef, bin: Uint8Array, binPath: string): IntTensor {
  const n = elementCount(ref.shape);
  const expected = ref.dtype === 'int4' ? Math.ceil(n / 2) : ref.dtype === 'int32' ? 4 * n : n;
  if (
    !DTYPES.includes(ref.dtype) ||
    ref.byteLength !== expected ||
    ref.offset < 0 ||
    ref.offset % ALIGN !== 0 ||
    ref.offset + ref.byteLength > bin.length
  ) {
    throw new QuantflowError(`${binPath}: tensor ${JSON.stringify(ref)} does not fit the file (${bin.length} bytes)`);
  }
  const bytes = bin.subarray(ref.offset, ref.offset + ref.byteLength);
  switch (ref.dtype) {
    case 'int32':
      return { dtype: ref.dtype, shape: ref.shape, data: new Int32Array(bytes.buffer, bytes.byteOffset, n) };
    case 'int8':
      return { dtype: ref.dtype, shape: ref.shape, data: new Int8Array(bytes.buffer, bytes.byteOffset, n) };
    case 'uint8':
      return { dtype: ref.dtype, shape: ref.shape, data: bytes };
    case 'int4': {
      const data = new Int8Array(n);
      for (let i = 0; i < n; i++) data[i] = ((bytes[i >> 1]! >> ((i & 1) * 4)) << 28) >> 28;
      return { dtype: ref.dtype, shape: ref.shape, data };
    }
  }
}
