/** The TFLite builtin operators the importer converts, by schema name. */
import type { TfliteBuiltin } from '../builtins.js';
import type { ImportContext, Op } from '../context.js';
import { conv2d, depthwiseConv2d, fullyConnected, transposeConv } from './conv.js';
import { detectionPostProcess } from './detection.js';
import { add, dequantize, div, hardSwish, logistic, mul, quantize, relu, relu6, reluN1To1, softmax, sub } from './elementwise.js';
import { argMax, argMin, cast, exp, floorDiv, leakyRelu, maximum, minimum, prelu, rsqrt, sqrt, squaredDifference, tanh } from './math.js';
import { averagePool2d, maxPool2d, mean, reduceMax, sum } from './pool.js';
import { depthToSpace, resizeBilinear, resizeNearestNeighbor, spaceToDepth } from './resize.js';
import { gather, gatherNd, pack, split, splitV, stridedSlice, transpose, unpack } from './select.js';
import { concatenation, pad, reshape, squeeze } from './shape.js';

/** Converts one operator, adding its nodes to the context's graph. */
export type Converter = (ctx: ImportContext, op: Op) => void;

export const CONVERTERS: Readonly<Partial<Record<TfliteBuiltin, Converter>>> = {
  ADD: add,
  ARG_MAX: argMax,
  ARG_MIN: argMin,
  AVERAGE_POOL_2D: averagePool2d,
  CAST: cast,
  CONCATENATION: concatenation,
  CONV_2D: conv2d,
  DEPTHWISE_CONV_2D: depthwiseConv2d,
  DEPTH_TO_SPACE: depthToSpace,
  DEQUANTIZE: dequantize,
  DIV: div,
  EXP: exp,
  FLOOR_DIV: floorDiv,
  FULLY_CONNECTED: fullyConnected,
  GATHER: gather,
  GATHER_ND: gatherNd,
  HARD_SWISH: hardSwish,
  LEAKY_RELU: leakyRelu,
  LOGISTIC: logistic,
  MAXIMUM: maximum,
  MAX_POOL_2D: maxPool2d,
  MEAN: mean,
  MINIMUM: minimum,
  MUL: mul,
  PACK: pack,
  PAD: pad,
  PRELU: prelu,
  QUANTIZE: quantize,
  REDUCE_MAX: reduceMax,
  RELU: relu,
  RELU6: relu6,
  RELU_N1_TO_1: reluN1To1,
  RESHAPE: reshape,
  RESIZE_BILINEAR: resizeBilinear,
  RESIZE_NEAREST_NEIGHBOR: resizeNearestNeighbor,
  RSQRT: rsqrt,
  SOFTMAX: softmax,
  SPACE_TO_DEPTH: spaceToDepth,
  SPLIT: split,
  SPLIT_V: splitV,
  SQRT: sqrt,
  SQUARED_DIFFERENCE: squaredDifference,
  SQUEEZE: squeeze,
  STRIDED_SLICE: stridedSlice,
  SUB: sub,
  SUM: sum,
  TANH: tanh,
  TRANSPOSE: transpose,
  TRANSPOSE_CONV: transposeConv,
  UNPACK: unpack,
};

/** The custom operators the importer converts, by custom code. */
export const CUSTOM_CONVERTERS: Readonly<Record<string, Converter>> = {
  TFLite_Detection_PostProcess: detectionPostProcess,
};
