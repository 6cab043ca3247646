/** The TFLite builtin operators the importer converts, by schema name. */
import type { ImportContext, Op } from '../context.js';
import { conv2d, depthwiseConv2d, fullyConnected } from './conv.js';
import { detectionPostProcess } from './detection.js';
import { add, dequantize, hardSwish, logistic, mul, quantize, relu, relu6, reluN1To1, softmax, sub } from './elementwise.js';
import { averagePool2d, maxPool2d, mean } from './pool.js';
import { concatenation, pad, reshape, squeeze } from './shape.js';

/** Converts one operator, adding its nodes to the context's graph. */
export type Converter = (ctx: ImportContext, op: Op) => void;

export const CONVERTERS: Readonly<Record<string, Converter>> = {
  ADD: add,
  AVERAGE_POOL_2D: averagePool2d,
  CONCATENATION: concatenation,
  CONV_2D: conv2d,
  DEPTHWISE_CONV_2D: depthwiseConv2d,
  DEQUANTIZE: dequantize,
  FULLY_CONNECTED: fullyConnected,
  HARD_SWISH: hardSwish,
  LOGISTIC: logistic,
  MAX_POOL_2D: maxPool2d,
  MEAN: mean,
  MUL: mul,
  PAD: pad,
  QUANTIZE: quantize,
  RELU: relu,
  RELU6: relu6,
  RELU_N1_TO_1: reluN1To1,
  RESHAPE: reshape,
  SOFTMAX: softmax,
  SQUEEZE: squeeze,
  SUB: sub,
};

/** The custom operators the importer converts, by custom code. */
export const CUSTOM_CONVERTERS: Readonly<Record<string, Converter>> = {
  TFLite_Detection_PostProcess: detectionPostProcess,
};
