/**
 * How far TFLite's int8 arithmetic is from a profile's own: the same QDQ model lowered once
 * with the profile's requantization and once with TFLite's (rounding 'tflite', 32-bit
 * multipliers), both packages run by the integer executor on the same integer inputs.
 */
import type { Model, TensorData } from '../graph/types.js';
import { quantizeTensor } from '../quantization/grid.js';
import type { TargetProfile } from '../quantization/profile.js';
import { argmax } from '../eval/metrics.js';
import { execute } from './executor.js';
import { buildNpuPackage } from './package.js';
import type { NpuPackage } from './types.js';
import { integerDifferences } from './verify.js';

/** One package output, compared element by element. */
export interface ArithmeticOutput {
  name: string;
  elements: number;
  /** Elements with the same integer in both packages. */
  equal: number;
  /** Largest difference, in steps of the output grid. */
  maxLsb: number;
  /** Images whose largest class is the same, for a classifier output ([N, K], K > 1). */
  top1Agreement?: number;
}

/** TFLite's arithmetic against the profile's own (`tfliteArithmetic` of the quantize report). */
export interface ArithmeticComparison {
  images: number;
  outputs: ArithmeticOutput[];
}

/**
 * `profile` with TFLite's requantization (its weights, activations and tables unchanged): the
 * reference kernels' rounding by default, or XNNPACK's (TFLite's CPU path).
 */
export function withTfliteArithmetic(profile: TargetProfile, rounding: 'tflite' | 'xnnpack' = 'tflite'): TargetProfile {
  return { ...profile, requantization: { ...profile.requantization, multiplierBits: 32, shiftRange: [0, 62], rounding } };
}

/**
 * Images of the sample the comparison runs on: the integer executor runs both packages in
 * JavaScript (about a second per MobileNetV2 image each), inside every quantize run.
 */
const MAX_IMAGES = 8;

/**
 * Runs `own` and `tflite` (two lowerings of one QDQ model) on the first images of `sample` (a
 * float batch as fed to the QDQ model, quantized onto the input grid; at most 8) and compares
 * their outputs.
 */
export function compareArithmetic(own: NpuPackage, tflite: NpuPackage, sample: TensorData): ArithmeticComparison {
  const input = own.inputs[0]!;
  const info = own.tensors[input]!;
  const size = info.shape.slice(1).reduce((a, b) => a * b, 1);
  const data = sample.data as Float32Array;
  const images = Math.min(MAX_IMAGES, data.length / size);
  const outputs: ArithmeticOutput[] = own.outputs.map((name) => ({ name, elements: 0, equal: 0, maxLsb: 0 }));
  for (let n = 0; n < images; n++) {
    const q = quantizeTensor(data.subarray(n * size, (n + 1) * size), info.grid);
    const a = execute(own, { [input]: q }).tensors;
    const b = execute(tflite, { [input]: q }).tensors;
    outputs.forEach((o) => {
      const x = a.get(o.name)!;
      const y = b.get(o.name)!;
      const d = integerDifferences(x, y);
      o.elements += x.length;
      o.equal += d.equal;
      o.maxLsb = Math.max(o.maxLsb, d.max);
      const shape = own.tensors[o.name]!.shape;
      if (shape.length === 2 && shape[1]! > 1) o.top1Agreement = (o.top1Agreement ?? 0) + (argmax(x) === argmax(y) ? 1 / images : 0);
    });
  }
  return { images, outputs };
}

/** Lowers `qdq` again with TFLite's arithmetic and compares it with `own`, its lowering for `profile`, on `sample`. */
export async function tfliteArithmeticGap(
  qdq: Model,
  profile: TargetProfile,
  own: NpuPackage,
  sample: TensorData,
): Promise<ArithmeticComparison> {
  const tflite = await buildNpuPackage(qdq, withTfliteArithmetic(profile));
  return compareArithmetic(own, tflite, sample);
}

/** One line: per output, the share of equal elements, the largest difference and top-1 agreement. */
export function arithmeticSummary(c: ArithmeticComparison): string {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const outputs = c.outputs.map(
    (o) =>
      `${o.name}: ${pct(o.equal / o.elements)} of elements equal, at most ${o.maxLsb} LSB apart` +
      (o.top1Agreement === undefined ? '' : `, top-1 agreement ${pct(o.top1Agreement)}`),
  );
  return `against the profile's own on ${c.images} calibration image${c.images === 1 ? '' : 's'}, ${outputs.join('; ')}`;
}
