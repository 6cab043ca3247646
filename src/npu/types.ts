import type { FixedPointMultiplier } from '../quantization/fixedpoint.js';
import type { Grid } from '../quantization/grid.js';
import type { TargetProfile } from '../quantization/profile.js';

/**
 * The integer NPU package: a quantized network lowered to the integer operations an NPU
 * executes, with nothing left in floating point. Written as a folder, `manifest.json` (this
 * structure, with every `IntTensor` replaced by a reference into the binary file) plus
 * `weights.bin` (see io.ts). Shapes are static and the batch is 1: an NPU is compiled for
 * fixed shapes, and a batch is a loop over images.
 *
 * Arithmetic (what the executor implements and a hardware target must match):
 * - An activation is integers q on a per-tensor grid, real value (q − zeroPoint)·scale.
 * - Requantization turns an exact integer accumulator into the output grid:
 *   `q = clamp(roundHalfUp(acc · M · 2^−s) + z_y, lo, hi)`, M and s from the layer (see
 *   `Requantization`), rounding and the 2^53-safe product as in quantization/fixedpoint.ts.
 *   With a profile whose `requantization.rounding` is 'tflite', the executor rounds as
 *   TFLite's reference int8 kernels do instead (`multiplyByQuantizedMultiplierTflite`), and
 *   Add/Sub, AveragePool and the spatial mean lower to the `tflite-*` layers below.
 * - Accumulators must stay within the profile's `accumulatorBits` (signed); the executor
 *   refuses to continue past an overflow, since its result would be target-defined.
 */
export interface NpuPackage {
  format: 'quantflow-npu';
  version: 1;
  /** Graph name of the source model. */
  model: string;
  /** The target profile the package was lowered for (multiplier width, shifts, accumulator). */
  profile: TargetProfile;
  /** Preprocessing preset of the float images the input grid expects, when known. */
  preset?: string;
  /** Tensors fed to the package: integer images on their grid. */
  inputs: string[];
  /**
   * Tensors the package produces. A model that ends in a float Softmax outputs its integer
   * input (the logits): the host applies Softmax, which changes no ranking.
   */
  outputs: string[];
  /**
   * Index and post-processing nodes of the model (ArgMax, TopK, NonMaxSuppression, Cast and
   * what follows them; see graph/host-tail.ts) that the host runs, as in the
   * QDQ model, on the package outputs they read. Absent when the package computes every output.
   */
  hostTail?: HostNode[];
  /** Every tensor the layers read or write: static shape (NCHW, batch 1) and grid. */
  tensors: Record<string, TensorInfo>;
  /** Layers in execution order. */
  layers: NpuLayer[];
}

/** A node of the host tail, as named in the QDQ model. */
export interface HostNode {
  name: string;
  opType: string;
}

export interface TensorInfo {
  shape: number[];
  grid: Grid;
}

/**
 * A constant integer tensor. int4 is held unpacked (one value per byte) in memory and
 * packed two per byte, low nibble first, in `weights.bin`.
 */
export interface IntTensor {
  dtype: 'int4' | 'int8' | 'uint8' | 'int32';
  shape: number[];
  data: Int8Array | Uint8Array | Int32Array;
}

/**
 * Fixed-point requantization of a layer with per-channel accumulators: channel c uses
 * multiplier M = multiplier[c] and total right shift s = shift[c] + channelShift[c]
 * (tensors of length 1 apply to every channel). Per-tensor weights give one M and one
 * shift; per-channel weights one of each per channel; WESS one M and shift per layer plus
 * the per-channel power-of-two shift k[c] in `channelShift`.
 */
export interface Requantization {
  /** int32, [1] or [C]: M, normalized to the profile's multiplierBits. */
  multiplier: IntTensor;
  /** int32, [1] or [C]: n, the right shift of the layer (or channel). */
  shift: IntTensor;
  /** uint8 [C]: WESS shifts k[c]. */
  channelShift?: IntTensor;
}

interface LayerBase {
  /** Name of the source node (for messages and per-layer reports). */
  name: string;
  inputs: string[];
  output: string;
}

/** Window geometry of Conv and pooling: [height, width] pairs, pads [top, left, bottom, right]. */
export interface Window {
  kernel: [number, number];
  strides: [number, number];
  pads: [number, number, number, number];
  dilations: [number, number];
}

/**
 * Conv (grouped and depthwise included): acc[c] = Σ q_w[c,·]·(q_x − z_x) + bias[c], then
 * requantization into [clamp[0], clamp[1]] (the output grid, narrowed by a fused ReLU/Clip).
 */
export interface ConvLayer extends LayerBase, Window {
  op: 'conv';
  group: number;
  /** int8 or int4, [C_out, C_in/group, kh, kw]. */
  weights: IntTensor;
  /** int32 [C_out], at scale s_x·s_w[c]. */
  bias?: IntTensor;
  requant: Requantization;
  clamp: [number, number];
}

/** Gemm/MatMul with constant weights over the last axis of the input: as Conv, 1x1. */
export interface FullyConnectedLayer extends LayerBase {
  op: 'fc';
  /** int8 or int4, [C_out, K]. */
  weights: IntTensor;
  bias?: IntTensor;
  requant: Requantization;
  clamp: [number, number];
}

/**
 * Elementwise sum of two tensors on different grids (numpy broadcasting): both inputs are
 * rescaled onto the output grid with one shared shift and rounded once,
 * acc = (q_a − z_a)·M_a + (q_b − z_b)·M_b, q = clamp(roundHalfUp(acc·2^−shift) + z_y).
 */
export interface AddLayer extends LayerBase {
  op: 'add';
  multipliers: [number, number];
  shift: number;
  clamp: [number, number];
}

/** Elementwise product (SE gating): acc = (q_a − z_a)·(q_b − z_b), then M·2^−shift. */
export interface MulLayer extends LayerBase {
  op: 'mul';
  multiplier: number;
  shift: number;
  clamp: [number, number];
}

/**
 * AveragePool, GlobalAveragePool and spatial ReduceMean: acc = Σ (q_x − z_x) over the
 * window, requantized with the multiplier of the window's element count (edge windows
 * without count_include_pad average fewer elements, so each count has its own M and shift).
 */
export interface AvgPoolLayer extends LayerBase, Window {
  op: 'avgpool';
  countIncludePad: boolean;
  windows: { count: number; multiplier: number; shift: number }[];
  clamp: [number, number];
}

/** MaxPool on the integer grid (max commutes with quantization, so the grid is unchanged). */
export interface MaxPoolLayer extends LayerBase, Window {
  op: 'maxpool';
}

/**
 * An elementwise function of one tensor as a table: q_y = table[q_x − qmin_x]. Every unary
 * op on a grid of at most 2^16 levels runs this way (HardSwish, Sigmoid, a standalone
 * ReLU/Clip, Add/Mul by a constant, and a change of grid).
 */
export interface LutLayer extends LayerBase {
  op: 'lut';
  /** int32 [qmax_x − qmin_x + 1]. */
  table: IntTensor;
}

/** Reshape, Flatten, Squeeze, Unsqueeze, Identity: same integers, new shape. */
export interface ReshapeLayer extends LayerBase {
  op: 'reshape';
}

export interface TransposeLayer extends LayerBase {
  op: 'transpose';
  perm: number[];
}

/**
 * Resize (nearest neighbour) and Slice: output element (o_0, …, o_n) copies input element
 * (index[0][o_0], …, index[n][o_n]); same integers, same grid.
 */
export interface SelectLayer extends LayerBase {
  op: 'select';
  /** Per axis, the input coordinate of each output coordinate. */
  index: number[][];
}

/** Pad with zeros: the input surrounded by its grid's zero point; same grid. */
export interface PadLayer extends LayerBase {
  op: 'pad';
  /** ONNX order: the start of every axis, then the end of every axis. */
  pads: number[];
}

/** Concat: each input is mapped onto the output grid by its own table, as in `LutLayer`. */
export interface ConcatLayer extends LayerBase {
  op: 'concat';
  axis: number;
  tables: IntTensor[];
}

/**
 * TFLite's int8 ADD/SUB (profile rounding 'tflite'): each input, centered and shifted left by
 * `leftShift` (20 for int8), is rescaled by its own multiplier; the sum (the difference for
 * SUB) is rescaled by the output multiplier and offset by z_y. Every rescale is TFLite's
 * MultiplyByQuantizedMultiplier, so each rounds on its own.
 */
export interface TfliteAddLayer extends LayerBase {
  op: 'tflite-add';
  leftShift: number;
  /** s_a / (2·max(s_a, s_b)) and s_b / (2·max(s_a, s_b)) as M·2^−shift. */
  inputScales: [FixedPointMultiplier, FixedPointMultiplier];
  /** 2·max(s_a, s_b) / (2^leftShift · s_y) as M·2^−shift. */
  outputScale: FixedPointMultiplier;
  subtract: boolean;
  clamp: [number, number];
}

/**
 * TFLite's int8 AVERAGE_POOL_2D (profile rounding 'tflite'): the stored int8 values (q
 * offset so the grid spans −128..127) of the window's in-bounds taps are summed and divided
 * by their count, rounded half away from zero; padding never counts. TFLite keeps the input
 * grid; where quantflow's output grid differs, `regrid` moves the average onto it as TFLite's
 * int8 → int8 QUANTIZE does, MultiplyByQuantizedMultiplier(q − z_x) + z_y with M·2^−shift ≈ s_x/s_y.
 */
export interface TfliteAvgPoolLayer extends LayerBase, Window {
  op: 'tflite-avgpool';
  regrid?: FixedPointMultiplier;
  clamp: [number, number];
}

/**
 * TFLite's int8 MEAN over height and width (profile rounding 'tflite'): acc = Σ (q − z_x),
 * MultiplyByQuantizedMultiplier by M·2^−shift ≈ s_x/s_y, then divided by the element count
 * rounded half away from zero, plus z_y. The output keeps the channel axis ([1, C, 1, 1]
 * or [1, C]).
 */
export interface TfliteMeanLayer extends LayerBase {
  op: 'tflite-mean';
  multiplier: number;
  shift: number;
  clamp: [number, number];
}

export type NpuLayer =
  | ConvLayer
  | FullyConnectedLayer
  | AddLayer
  | TfliteAddLayer
  | TfliteAvgPoolLayer
  | TfliteMeanLayer
  | MulLayer
  | AvgPoolLayer
  | MaxPoolLayer
  | LutLayer
  | ReshapeLayer
  | TransposeLayer
  | SelectLayer
  | PadLayer
  | ConcatLayer;
