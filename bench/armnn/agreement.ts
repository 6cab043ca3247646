/**
 * Agreement figures between two runtimes' outputs for the same input, used by
 * `npm run bench:armnn`: .npy reading, layout and dequantization, class maps, and detections.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QuantflowError } from '../../src/util/errors.js';
import { DetectAccumulator, type Detection } from '../../src/eval/metrics.js';
import { toNhwc } from '../../src/export/tflite/layout.js';

/** An array read from a .npy file (C order). */
export interface NpyArray {
  dtype: 'uint8' | 'int8' | 'int32' | 'int64' | 'float32' | 'bool';
  shape: number[];
  data: Float64Array;
}

const NPY_TYPES: Record<string, NpyArray['dtype']> = {
  '|u1': 'uint8',
  '|i1': 'int8',
  '<i4': 'int32',
  '<i8': 'int64',
  '<f4': 'float32',
  '|b1': 'bool',
};

/** Parses a .npy file (format versions 1–3) of the little-endian types numpy writes for Arm NN's tensors. */
export function parseNpy(bytes: Uint8Array, source: string): NpyArray {
  const magic = String.fromCharCode(...bytes.subarray(1, 6));
  if (bytes[0] !== 0x93 || magic !== 'NUMPY') throw new QuantflowError(`${source}: not a .npy file`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6]!;
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const dtype = descr === undefined ? undefined : NPY_TYPES[descr];
  if (!dtype) throw new QuantflowError(`${source}: .npy element type ${descr} is not handled`);
  if (/'fortran_order':\s*True/.test(header)) throw new QuantflowError(`${source}: Fortran-order .npy is not handled`);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '';
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  // A copy: node's Buffer.slice shares memory, often a pool whose offset 0 is not ours, and typed views need alignment.
  const body = new Uint8Array(bytes.subarray(headerStart + headerLength));
  const typed = {
    uint8: () => new Uint8Array(body.buffer, 0, count),
    bool: () => new Uint8Array(body.buffer, 0, count),
    int8: () => new Int8Array(body.buffer, 0, count),
    int32: () => new Int32Array(body.buffer, 0, count),
    int64: () => new BigInt64Array(body.buffer, 0, count),
    float32: () => new Float32Array(body.buffer, 0, count),
  }[dtype]();
  return { dtype, shape, data: Float64Array.from(typed as ArrayLike<number | bigint>, Number) };
}

/** Real values of a quantized tensor: scale·(q − zero point); a float or index tensor as it is. */
export function dequantize(values: Float64Array, scale: number, zeroPoint: number): Float64Array {
  return scale > 0 ? values.map((q) => scale * (q - zeroPoint)) : values;
}

/** An NCHW array in NHWC order, so quantflow's 4-D outputs line up with TFLite's. */
export function nchwToNhwc(values: ArrayLike<number>, shape: number[]): Float64Array {
  return toNhwc(values, shape, new Float64Array(shape.reduce((a, b) => a * b, 1)));
}

/** Index of the largest value along the last axis of rows of `size`; ties go to the first, as TFLite's ARG_MAX. */
export function argmaxLast(values: ArrayLike<number>, size: number): Int32Array {
  const out = new Int32Array(values.length / size);
  for (let r = 0; r < out.length; r++) {
    let best = 0;
    for (let k = 1; k < size; k++) if (values[r * size + k]! > values[r * size + best]!) best = k;
    out[r] = best;
  }
  return out;
}

/** Largest |a − b| divided by the range (max − min) of the reference `b`. */
export function relativeMaxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    lo = Math.min(lo, b[i]!);
    hi = Math.max(hi, b[i]!);
  }
  return hi > lo ? err / (hi - lo) : err;
}

/** Fraction of equal labels, and mean IoU over the classes present in either class map. */
export function classMapAgreement(a: ArrayLike<number>, b: ArrayLike<number>): { pixels: number; miou: number } {
  const inter = new Map<number, number>();
  const union = new Map<number, number>();
  let same = 0;
  const add = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) {
      same++;
      add(inter, a[i]!);
      add(union, a[i]!);
    } else {
      add(union, a[i]!);
      add(union, b[i]!);
    }
  }
  const ious = [...union].map(([k, u]) => (inter.get(k) ?? 0) / u);
  return { pixels: same / a.length, miou: ious.reduce((s, x) => s + x, 0) / ious.length };
}

/**
 * Detections of `test` matched to `reference` as `quantflow compare` matches them (same class,
 * IoU ≥ `iou`, greedily by test score), counting only scores ≥ `threshold`.
 */
export function matchDetections(
  test: Detection[],
  reference: Detection[],
  threshold: number,
  iou = 0.5,
): { matched: number; test: number; reference: number } {
  const acc = new DetectAccumulator(threshold, iou);
  acc.add(reference, test);
  const r = acc.result();
  return { matched: r.matched, test: r.quantizedDetections, reference: r.floatDetections };
}

/** The detections of TFLite_Detection_PostProcess's four outputs (boxes, classes, scores, count) for image 0. */
export function detections(boxes: ArrayLike<number>, classes: ArrayLike<number>, scores: ArrayLike<number>, count: number): Detection[] {
  return Array.from({ length: count }, (_, i) => ({
    box: [boxes[4 * i]!, boxes[4 * i + 1]!, boxes[4 * i + 2]!, boxes[4 * i + 3]!],
    cls: Math.round(classes[i]!),
    score: scores[i]!,
  }));
}

/** A version-1 .npy file of an int8, uint8, int32 or float32 array (C order). */
export function npyBytes(dtype: 'int8' | 'uint8' | 'int32' | 'float32', shape: number[], values: ArrayLike<number>): Uint8Array {
  const descr = { int8: '|i1', uint8: '|u1', int32: '<i4', float32: '<f4' }[dtype];
  const body = { int8: Int8Array, uint8: Uint8Array, int32: Int32Array, float32: Float32Array }[dtype].from(values);
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const out = new Uint8Array(10 + header.length + body.byteLength);
  out.set([0x93, ...new TextEncoder().encode('NUMPY'), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(body.buffer), 10 + header.length);
  return out;
}

/**
 * Integers `q` of an NCHW tensor on `grid` as an exported TFLite model takes them: NHWC, and
 * moved by 128 where the grid's type and the file's input type (int8, or uint8 from
 * `--io-type uint8`) differ.
 */
export function tfliteInput(q: ArrayLike<number>, shape: number[], grid: { qmin: number }, type: 'int8' | 'uint8' = 'int8'): Float64Array {
  const offset = (grid.qmin === 0 ? 128 : 0) - (type === 'uint8' ? 128 : 0);
  return nchwToNhwc(q, shape).map((v) => v - offset);
}

/** The .npy an exported int8 TFLite model takes for integers `q` of an NCHW tensor on `grid`. */
export function int8NpyInput(q: ArrayLike<number>, shape: number[], grid: { qmin: number }): Uint8Array {
  return npyBytes('int8', [shape[0]!, shape[2]!, shape[3]!, shape[1]!], tfliteInput(q, shape, grid));
}

/** Why Arm NN cannot run here (pyarmnn missing), or false when it can. */
export function armnnMissing(python = '/usr/bin/python3'): string | false {
  const r = spawnSync(python, ['-c', 'import pyarmnn'], { encoding: 'utf8' });
  return r.status === 0
    ? false
    : `pyarmnn is not installed for ${python} (apt-get install python3-pyarmnn libarmnn-cpuref-backend22 libarmnntfliteparser22)`;
}

/** One Arm NN run of bench/armnn/run_npy.py: a model, one .npy file per input, a folder for the outputs. */
export interface ArmnnJob {
  model: string;
  inputs: string[];
  out: string;
  /** Tensors to fetch instead of the model outputs (the model is cut there: Arm NN 22 refuses ARG_MAX). */
  outputs?: string[];
}

/** What run_npy.py writes beside a job's outputs. */
export interface ArmnnJobManifest {
  armnn: { library: string; debian: string | null; backend: string };
  outputs: { name: string; dtype: string; shape: number[]; scale: number; zeroPoint: number }[];
  seconds: number;
}

/** Runs the jobs with Arm NN (CpuRef) in one Python process; returns each job's outputs and manifest. */
export function runArmnnJobs(
  jobs: ArmnnJob[],
  jobsFile: string,
  python = '/usr/bin/python3',
): { manifest: ArmnnJobManifest; outputs: NpyArray[] }[] {
  writeFileSync(jobsFile, JSON.stringify(jobs));
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bench', 'armnn', 'run_npy.py');
  const r = spawnSync(python, [script, '--jobs', jobsFile], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new QuantflowError(`Arm NN run failed: ${(r.stderr || r.stdout || String(r.error)).trim().split('\n').at(-1)}`);
  return jobs.map((job) => {
    const manifest = JSON.parse(readFileSync(join(job.out, 'manifest.json'), 'utf8')) as ArmnnJobManifest;
    const outputs = manifest.outputs.map((_, j) => {
      const path = join(job.out, `output${j}.npy`);
      return parseNpy(readFileSync(path), path);
    });
    return { manifest, outputs };
  });
}
