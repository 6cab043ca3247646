import { readFileSync } from 'node:fs';
import { QuantflowError } from '../util/errors.js';

/** A tensor read from a .npy file, as float32. */
export interface NpyArray {
  dims: number[];
  data: Float32Array;
}

const DTYPES: Record<string, { bytes: number; read: (view: DataView, at: number) => number }> = {
  '<f4': { bytes: 4, read: (v, at) => v.getFloat32(at, true) },
  '<f8': { bytes: 8, read: (v, at) => v.getFloat64(at, true) },
  '|u1': { bytes: 1, read: (v, at) => v.getUint8(at) },
};

/**
 * Reads a NumPy .npy file (format versions 1 to 3) holding float32, float64 or uint8 in
 * C order, little-endian: the forms `numpy.save` writes for model inputs. Anything else is
 * a one-line QuantflowError naming the file.
 */
export function readNpy(path: string): NpyArray {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new QuantflowError(`cannot read '${path}': ${(e as NodeJS.ErrnoException).code ?? e}`, { cause: e });
  }
  const fail = (what: string): never => {
    throw new QuantflowError(`'${path}' is not a readable .npy file: ${what}`);
  };
  if (bytes.length < 10 || bytes.toString('latin1', 0, 6) !== '\x93NUMPY') fail('no NumPy magic string');
  const major = bytes[6]!;
  if (major < 1 || major > 3) fail(`format version ${major} is not supported`);
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = bytes.toString(major === 3 ? 'utf8' : 'latin1', start, start + headerLength);
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) fail('malformed header');
  if (fortran === 'True') fail('Fortran order (save a C-ordered array)');
  const dtype = DTYPES[descr!] ?? fail(`dtype '${descr}' (expected float32, float64 or uint8, little-endian)`);
  const dims = shapeText!
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '')
    .map(Number);
  const count = dims.reduce((p, d) => p * d, 1);
  const offset = start + headerLength;
  if (bytes.length - offset < count * dtype.bytes) fail(`${count} values of ${descr} expected, the file is shorter`);
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, count * dtype.bytes);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = dtype.read(view, i * dtype.bytes);
  return { dims, data };
}
