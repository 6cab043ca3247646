import { roundHalfToEven } from './fixedpoint.js';

/**
 * The one quantization grid of an activation, as calibration decides it, the QDQ model stores
 * it, the NPU package lowers it and the report shows it.
 */
export interface Grid {
  /** float32, as stored in the model. */
  scale: number;
  zeroPoint: number;
  /** The integer range: [0, 2^b − 1] asymmetric, [−2^(b−1), 2^(b−1) − 1] symmetric. */
  qmin: number;
  qmax: number;
}

/**
 * Float ↔ grid conversions with onnxruntime's float32 semantics, so that integers computed
 * here equal those of QuantizeLinear/DequantizeLinear in the QDQ simulation: x/scale is a
 * float32 division (a float64 quotient of two float32 values rounded once to float32 is the
 * correctly rounded float32 quotient), rounded half to even, plus the zero point, saturated.
 */

/** QuantizeLinear of one float32 value. */
export function quantizeValue(x: number, g: Grid): number {
  const q = roundHalfToEven(Math.fround(x / g.scale)) + g.zeroPoint;
  return q < g.qmin ? g.qmin : q > g.qmax ? g.qmax : q;
}

/** DequantizeLinear of one integer: (q − zeroPoint)·scale in float32. */
export function dequantizeValue(q: number, g: Grid): number {
  return Math.fround((q - g.zeroPoint) * g.scale);
}

/** A float tensor (an image) on grid `g`: what the package's input expects. */
export function quantizeTensor(x: Float32Array, g: Grid): Int32Array {
  const out = new Int32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = quantizeValue(x[i]!, g);
  return out;
}

/** DequantizeLinear of integers on grid `g`: the float tensor a QDQ model turns back into the same integers. */
export function dequantizeTensor(q: ArrayLike<number>, g: Grid): Float32Array {
  return Float32Array.from(q, (v) => dequantizeValue(v, g));
}

/** Every level of grid `g` dequantized, in order qmin..qmax (the inputs of a lookup table). */
export function gridLevels(g: Grid): Float32Array {
  const out = new Float32Array(g.qmax - g.qmin + 1);
  for (let i = 0; i < out.length; i++) out[i] = dequantizeValue(g.qmin + i, g);
  return out;
}
