/**
 * Lookup tables of unary layers as TFLite's int8 kernels compute them, for the profiles with
 * `requantization.rounding` "tflite" or "xnnpack": the integer executor then predicts a TFLite runtime on
 * HARD_SWISH and LOGISTIC too, not only on the requantizing layers. Other unary ops keep the
 * onnxruntime float tables of lut.ts.
 *
 * Grids are the package's: a uint8 grid is TFLite's int8 grid moved by 128, and every step
 * below works on q − z (input) and adds z (output), so the move changes nothing.
 */
import {
  ifXnnpackTakes,
  multiplyByQuantizedMultiplier,
  multiplyByQuantizedMultiplierTflite,
  quantizeMultiplierTflite,
  roundHalfToEven,
  roundingDivideByPOT,
  xnnpackConvertMultiplier,
} from '../quantization/fixedpoint.js';
import type { Grid } from '../quantization/grid.js';
import type { TableRequest } from './lut.js';

const INT16_MIN = -32768;
const INT16_MAX = 32767;

/** TFLite's fixed output grid of int8 LOGISTIC (the kernel refuses any other). */
export const TFLITE_LOGISTIC_SCALE = 1 / 256;
export const TFLITE_LOGISTIC_ZERO_POINT = -128;

/**
 * The TFLite table of a table request, or undefined when TFLite has no integer kernel of its
 * own for the op (the float table applies). A RangeError says why TFLite's kernel refuses
 * these grids.
 */
export function tfliteTable(r: TableRequest, rounding: 'tflite' | 'xnnpack' = 'tflite'): Int32Array | undefined {
  const constants = r.node.inputs.filter((i) => i && i !== r.input).length;
  if (constants) return undefined;
  switch (r.node.opType) {
    case 'HardSwish':
      // XNNPACK does not take int8 HARD_SWISH: TFLite's kernel runs either way.
      return hardSwishTable(r.inGrid, r.outGrid);
    case 'Sigmoid':
      return rounding === 'xnnpack' ? xnnpackLogisticTable(r.inGrid, r.outGrid) : logisticTable(r.inGrid, r.outGrid);
  }
  return undefined;
}

/** gemmlowp's SaturatingRoundingDoublingHighMul on int16: (a·b + nudge) / 2^15 truncated, ties toward +∞. */
export function saturatingRoundingDoublingHighMul16(a: number, b: number): number {
  if (a === INT16_MIN && b === INT16_MIN) return INT16_MAX;
  const ab = a * b;
  return Math.trunc((ab + (ab >= 0 ? 2 ** 14 : 1 - 2 ** 14)) / 2 ** 15);
}

/** TFLite's SaturatingDoublingHighMul (hard_swish.h): a·b / 2^15 truncated toward zero, no rounding. */
export function saturatingDoublingHighMul16(a: number, b: number): number {
  if (a === INT16_MIN && b === INT16_MIN) return INT16_MAX;
  return Math.trunc((a * b) / 2 ** 15);
}

function saturatingLeftShift16(x: number, amount: number): number {
  return Math.min(INT16_MAX, Math.max(INT16_MIN, x * 2 ** amount));
}

/** HardSwishPrepare's DownScaleInt32ToInt16Multiplier: a Q0.31 multiplier rounded to Q0.15, saturating. */
export function downScaleToInt16(multiplier: number): number {
  if (multiplier >= INT32_MAX_MINUS_OFFSET) return INT16_MAX;
  return Math.floor((multiplier + 2 ** 15) / 2 ** 16);
}
const INT32_MAX_MINUS_OFFSET = 2 ** 31 - 1 - 2 ** 15;

/** The multipliers HardSwishPrepare derives from float32 scales: Q0.15 values and TFLite exponents (left shifts). */
export function hardSwishParams(inScale: number, outScale: number) {
  const f = Math.fround;
  // Every quotient is a float32 operation in HardSwishPrepare, then widened to double.
  const hires = f(f(1 / 128) * f(inScale));
  const output = quantizeMultiplierTflite(f(hires / f(outScale)));
  const reluish = quantizeMultiplierTflite(f(hires / f(3 / 32768)));
  return {
    outputMultiplier: downScaleToInt16(output.multiplier),
    outputExponent: 31 - output.shift,
    reluishMultiplier: downScaleToInt16(reluish.multiplier),
    reluishExponent: 31 - reluish.shift,
  };
}

/**
 * HARD_SWISH on every input level as tensorflow/lite/kernels/internal/reference/hard_swish.h
 * computes it with the parameters of HardSwishPrepare (activations.cc): the input at 2^7 times
 * its scale in int16, the output product before its shift, the "relu-ish" factor of x on
 * [−3, 3] mapped to a Q0.15 value in [0, 1], a truncating doubling high multiply of the two,
 * then the output shift with ties away from zero. TFLite's default kernel is the optimized one,
 * which the kernel tests hold bit-exact to this reference.
 */
export function hardSwishTable(inGrid: Grid, outGrid: Grid): Int32Array {
  const p = hardSwishParams(inGrid.scale, outGrid.scale);
  if (p.outputExponent > 0)
    throw new RangeError(
      `TFLite's HARD_SWISH needs an output scale above 1/128 of the input scale (input ${inGrid.scale}, output ${outGrid.scale})`,
    );
  const table = new Int32Array(inGrid.qmax - inGrid.qmin + 1);
  for (let i = 0; i < table.length; i++) {
    const hires = (inGrid.qmin + i - inGrid.zeroPoint) * 128;
    const preshiftOutput = saturatingRoundingDoublingHighMul16(hires, p.outputMultiplier);
    let reluish = hires;
    if (p.reluishExponent > 0) reluish = saturatingLeftShift16(reluish, p.reluishExponent - 1);
    reluish = saturatingRoundingDoublingHighMul16(reluish, p.reluishMultiplier);
    if (p.reluishExponent > 0) reluish = saturatingLeftShift16(reluish, 1);
    if (p.reluishExponent < 0) reluish = roundingDivideByPOT(reluish, -p.reluishExponent);
    reluish = Math.floor((reluish + 2 ** 15) / 2);
    const output = roundingDivideByPOT(saturatingDoublingHighMul16(reluish, preshiftOutput), -p.outputExponent);
    table[i] = Math.min(outGrid.qmax, Math.max(outGrid.qmin, output + outGrid.zeroPoint));
  }
  return table;
}

/**
 * LOGISTIC on every input level as the default TFLite interpreter computes int8 LOGISTIC:
 * Register_LOGISTIC is the generic optimized kernel, whose Prepare fills a 256-entry table with
 * PopulateLookupTable (activations.cc) and whose Eval only looks values up; the fixed-point
 * reference_integer_ops::Logistic runs only in the reference and fixed-point-optimized
 * registrations. Each entry is float32 arithmetic: the dequantized input, 1/(1 + exp(−x)), times
 * 256, rounded half away from zero, onto TFLite's fixed grid 1/256, −128. exp is float64's
 * rounded to float32 where TFLite calls expf; glibc's expf is within 0.502 ULP, and a one-ULP
 * difference moves an entry only when x·256 sits that close to a tie.
 *
 * When the package's output grid is not that fixed grid, the exporter follows LOGISTIC with a
 * QUANTIZE, TFLite's int8 → int8 requantization (MultiplyByQuantizedMultiplier of the centred
 * value by the scale ratio); the table includes that step.
 */
export function logisticTable(inGrid: Grid, outGrid: Grid): Int32Array {
  const f = Math.fround;
  const offset = outGrid.qmin === 0 ? 128 : 0;
  const direct = outGrid.scale === TFLITE_LOGISTIC_SCALE && outGrid.zeroPoint - offset === TFLITE_LOGISTIC_ZERO_POINT;
  const regrid = quantizeMultiplierTflite(TFLITE_LOGISTIC_SCALE / outGrid.scale);
  const table = new Int32Array(inGrid.qmax - inGrid.qmin + 1);
  for (let i = 0; i < table.length; i++) {
    const x = f(f(inGrid.scale) * (inGrid.qmin + i - inGrid.zeroPoint));
    const y = f(1 / f(1 + f(Math.exp(-x))));
    const level = Math.min(127, Math.max(-128, roundHalfAwayFromZero(f(y * 256)) + TFLITE_LOGISTIC_ZERO_POINT));
    const q = direct
      ? level + offset
      : multiplyByQuantizedMultiplierTflite(level - TFLITE_LOGISTIC_ZERO_POINT, regrid.multiplier, regrid.shift) + outGrid.zeroPoint;
    table[i] = Math.min(outGrid.qmax, Math.max(outGrid.qmin, q));
  }
  return table;
}

/**
 * LOGISTIC as TFLite's XNNPACK delegate computes it: XNNPACK's own 256-entry table, each entry
 * lrintf(σ(x)·256) − 128 in float32 (σ as 1/(1 + e^−x) for x < 0 and 1 − 1/(1 + e^x) above,
 * ties to even), then XNNPACK's int8 → int8 conversion onto the package's grid when it is not
 * TFLite's fixed 1/256, −128.
 */
export function xnnpackLogisticTable(inGrid: Grid, outGrid: Grid): Int32Array {
  const f = Math.fround;
  const offset = outGrid.qmin === 0 ? 128 : 0;
  const direct = outGrid.scale === TFLITE_LOGISTIC_SCALE && outGrid.zeroPoint - offset === TFLITE_LOGISTIC_ZERO_POINT;
  const convert = direct ? undefined : xnnpackConvertMultiplier(TFLITE_LOGISTIC_SCALE, outGrid.scale);
  const table = new Int32Array(inGrid.qmax - inGrid.qmin + 1);
  for (let i = 0; i < table.length; i++) {
    const x = f(f(inGrid.scale) * (inGrid.qmin + i - inGrid.zeroPoint));
    const y = x < 0 ? f(1 / f(1 + f(Math.exp(-x)))) : f(1 - f(1 / f(1 + f(Math.exp(x)))));
    const level = Math.min(127, Math.max(-128, roundHalfToEven(f(y * 256)) + TFLITE_LOGISTIC_ZERO_POINT));
    const q = convert
      ? multiplyByQuantizedMultiplier(level - TFLITE_LOGISTIC_ZERO_POINT, convert.multiplier, convert.shift) + outGrid.zeroPoint
      : level + offset;
    table[i] = Math.min(outGrid.qmax, Math.max(outGrid.qmin, q));
  }
  return table;
}

/**
 * An int8 → int8 QUANTIZE on every input level, as the exporter writes one where TFLite ties a
 * grid (CONCATENATION's inputs): XNNPACK's conversion with rounding 'xnnpack' (where it takes
 * the scale ratio), TFLite's Requantize (MultiplyByQuantizedMultiplier of q − z_in) otherwise.
 */
export function tfliteRegridTable(inGrid: Grid, outGrid: Grid, rounding: 'tflite' | 'xnnpack'): Int32Array {
  const offset = (g: Grid) => (g.qmin === 0 ? 128 : 0);
  const same = inGrid.scale === outGrid.scale && inGrid.zeroPoint - offset(inGrid) === outGrid.zeroPoint - offset(outGrid);
  let rescale = (x: number) => x;
  if (!same) {
    const xnnpack = rounding === 'xnnpack' ? ifXnnpackTakes(() => xnnpackConvertMultiplier(inGrid.scale, outGrid.scale)) : undefined;
    const m = xnnpack ?? quantizeMultiplierTflite(inGrid.scale / outGrid.scale);
    rescale = xnnpack
      ? (x) => multiplyByQuantizedMultiplier(x, m.multiplier, m.shift)
      : (x) => multiplyByQuantizedMultiplierTflite(x, m.multiplier, m.shift);
  }
  const table = new Int32Array(inGrid.qmax - inGrid.qmin + 1);
  for (let i = 0; i < table.length; i++) {
    const q = rescale(inGrid.qmin + i - inGrid.zeroPoint) + outGrid.zeroPoint;
    table[i] = Math.min(outGrid.qmax, Math.max(outGrid.qmin, q));
  }
  return table;
}

/** std::round: ties away from zero. */
function roundHalfAwayFromZero(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}
