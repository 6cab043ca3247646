/**
 * Builtin operator versions and the model's `min_runtime_version`, as TFLite's converter
 * derives them (tensorflow/lite/tools/versioning/op_version.cc, GetBuiltinOperatorVersion, and
 * runtime_version.cc, FindMinimumRuntimeVersionForOp). A runtime refuses an operator whose
 * version it does not know, so writing every operator as version 1 would claim the float or
 * uint8 kernel for int8 tensors. Only the rules of the operators quantflow writes are kept; the
 * order of the checks is op_version.cc's, since the first that matches decides.
 */
import { OP, type OpSpec, type TensorSpec } from './flatbuffer.js';

/** The version of one operator from its tensors' types and shapes and its options. */
export function builtinVersion(op: OpSpec, tensor: (i: number) => TensorSpec): number {
  const input = (k: number): TensorSpec | undefined => {
    const i = op.inputs[k];
    return i === undefined || i < 0 ? undefined : tensor(i);
  };
  const type = (t: TensorSpec | undefined) => (t ? (t.type ?? 'float32') : undefined);
  const in0 = type(input(0));
  const in1 = type(input(1));
  const out0 = type(op.outputs[0] === undefined ? undefined : tensor(op.outputs[0]));
  const int8 = in0 === 'int8';
  const allInt8 = int8 && in1 === 'int8' && out0 === 'int8';
  const hybrid = in0 === 'float32' && in1 === 'int8' && out0 === 'float32';
  const perChannel = (input(1)?.quant?.scale.length ?? 0) > 1;
  const option = (slot: number) => op.options?.fields.find((f) => f.slot === slot)?.value;
  const set = (slot: number) => {
    const v = option(slot);
    return typeof v === 'number' && v !== 0;
  };
  const maxRank = Math.max(...op.inputs.map((_, k) => input(k)?.shape.length ?? 0));
  const broadcast5d = () => maxRank > 4 && input(0)?.shape.join() !== input(1)?.shape.join();
  switch (op.code) {
    case OP.CONV_2D: {
      const grouped = input(0) && input(1) && input(0)!.shape.at(-1) !== input(1)!.shape.at(-1);
      if (grouped) return 6;
      if (allInt8) return 3;
      if (hybrid) return perChannel ? 5 : 2;
      return 1;
    }
    case OP.DEPTHWISE_CONV_2D:
      if (hybrid) return perChannel ? 6 : 4;
      if (allInt8) return 3;
      // DepthwiseConv2DOptions: dilation_w_factor and dilation_h_factor, default 1
      return [5, 6].some((s) => (option(s) ?? 1) !== 1) ? 2 : 1;
    case OP.FULLY_CONNECTED:
      if (op.inputs.length === 2) return 6;
      if (set(2)) return 5; // keep_num_dims
      if (allInt8) return 4;
      if (hybrid) return 3;
      return 1;
    case OP.MUL: {
      const [s1, s2, so] = [input(0), input(1), tensor(op.outputs[0]!)].map((t) => t?.quant?.scale[0] ?? 0);
      if (s1 && s2 && so && (s1 * s2) / so >= 1) return 3;
      return int8 ? 2 : 1;
    }
    case OP.SUB:
    case OP.MAXIMUM:
    case OP.MINIMUM:
      if (broadcast5d()) return 3;
      return int8 ? 2 : 1;
    case OP.TRANSPOSE:
      if ((input(0)?.shape.length ?? 0) > 4) return 4;
      return int8 ? 2 : 1;
    case OP.TRANSPOSE_CONV:
      if (set(3)) return 4; // fused_activation_function
      if (op.inputs.length === 4 && op.inputs[3]! >= 0) return 3;
      return in1 === 'int8' ? 2 : 1;
    case OP.DEQUANTIZE:
      if (in0 === 'int16' || in0 === 'float16') return 3;
      if (int8) return (input(0)?.quant?.scale.length ?? 0) > 1 ? 5 : 2;
      return 1;
    case OP.QUANTIZE:
      if ((tensor(op.outputs[0]!).quant?.scale.length ?? 0) > 1) return 3;
      return out0 === 'int16' ? 2 : 1;
    case OP.RELU:
      return int8 || in0 === 'uint8' ? 2 : 1;
    case OP.STRIDED_SLICE:
      if (set(2) || set(3)) return 6; // ellipsis_mask, new_axis_mask
      if ((input(0)?.shape.length ?? 0) > 4) return 4;
      return int8 ? 2 : 1;
    case OP.RESIZE_BILINEAR:
      if (set(3)) return 3; // half_pixel_centers
      return int8 ? 2 : 1;
    case OP.RESIZE_NEAREST_NEIGHBOR:
      if (set(0) || set(1)) return 3; // align_corners, half_pixel_centers
      return int8 ? 2 : 1;
    case OP.PAD:
      if ((input(0)?.shape.length ?? 0) > 4) return 4;
      return int8 ? 2 : 1;
    case OP.SPLIT:
      // The tensor split is input 1 (input 0 is the axis).
      if (in1 === 'int32') return 3;
      return in1 === 'int8' ? 2 : 1;
    case OP.FLOOR_DIV:
      if (int8 || in0 === 'int16') return 3;
      return in0 === 'float32' ? 2 : 1;
    case OP.CAST:
      if (int8 || out0 === 'int8') return 3;
      return 1;
    case OP.UNPACK:
      return int8 || in0 === 'uint8' ? 2 : 1;
    case OP.EXP:
      return int8 || in0 === 'int16' ? 2 : 1;
    case OP.ADD:
    case OP.AVERAGE_POOL_2D:
    case OP.MAX_POOL_2D:
    case OP.CONCATENATION:
    case OP.SOFTMAX:
    case OP.MEAN:
    case OP.REDUCE_MAX:
    case OP.RELU6:
    case OP.RSQRT:
    case OP.LOGISTIC:
    case OP.TANH:
    case OP.GATHER:
    case OP.PACK:
    case OP.ARG_MAX:
    case OP.ARG_MIN:
    case OP.SPACE_TO_DEPTH:
    case OP.DEPTH_TO_SPACE:
    case OP.SPLIT_V:
    case OP.SUM:
    case OP.SQUARED_DIFFERENCE:
    case OP.BATCH_MATMUL:
    case OP.GELU:
      return int8 ? 2 : 1;
  }
  return 1;
}

/** runtime_version.cc: the first TFLite release that runs version k + 1 of each operator quantflow writes. */
const RUNTIME: Partial<Record<number, readonly string[]>> = {
  [OP.ADD]: ['1.5.0', '1.14.0', '2.4.0', '2.6.0'],
  [OP.ARG_MAX]: ['1.9.0', '1.14.0', '2.9.0'],
  [OP.ARG_MIN]: ['1.9.0', '1.14.0', '2.9.0'],
  [OP.AVERAGE_POOL_2D]: ['1.5.0', '1.14.0', '2.3.0'],
  [OP.BATCH_MATMUL]: ['2.3.0', '2.3.0', '2.4.0', '2.5.0'],
  [OP.CAST]: ['1.5.0', '2.7.0', '2.8.0', '2.9.0'],
  [OP.CONCATENATION]: ['1.5.0', '1.14.0', '2.3.0'],
  [OP.CONV_2D]: ['1.5.0', '1.14.0', '1.14.0', '2.3.0', '2.4.0', '2.9.0'],
  [OP.DEPTH_TO_SPACE]: ['2.1.0', '2.5.0'],
  [OP.DEPTHWISE_CONV_2D]: ['1.5.0', '1.12.0', '1.14.0', '2.2.0', '2.3.0', '2.3.0'],
  [OP.DEQUANTIZE]: ['1.13.1', '1.14.0', '1.15.0', '2.2.0', '2.7.0'],
  [OP.DIV]: ['1.6.0', '2.3.0'],
  [OP.EXP]: ['1.7.0'],
  [OP.FLOOR_DIV]: ['1.14.0', '1.14.0'],
  [OP.FULLY_CONNECTED]: ['1.5.0', '1.10.0', '1.14.0', '1.14.0', '2.0.0', '2.1.0', '2.3.0', '2.3.0', '2.3.0'],
  [OP.GATHER]: ['1.6.0', '1.14.0', '1.15.0', '2.4.0', '2.5.0'],
  [OP.GATHER_ND]: ['1.14.0', '2.3.0', '2.5.0'],
  [OP.GELU]: ['2.9.0', '2.9.0'],
  [OP.HARD_SWISH]: ['1.15.0'],
  [OP.LEAKY_RELU]: ['1.13.1', '2.3.0'],
  [OP.LOGISTIC]: ['1.14.0', '1.14.0', '2.3.0'],
  [OP.MAX_POOL_2D]: ['1.5.0', '1.14.0', '2.3.0'],
  [OP.MAXIMUM]: ['1.14.0', '1.14.0', '2.3.0', '2.3.0'],
  [OP.MEAN]: ['1.6.0', '1.14.0', '2.4.0'],
  [OP.MINIMUM]: ['1.14.0', '1.14.0', '2.3.0', '2.3.0'],
  [OP.MUL]: ['1.5.0', '1.14.0', '1.15.0', '2.3.0', '2.6.0'],
  [OP.PACK]: ['1.11.0', '1.14.0', '2.3.0'],
  [OP.PAD]: ['1.5.0', '1.14.0', '2.4.0', '2.6.0'],
  [OP.PRELU]: ['1.8.0'],
  [OP.QUANTIZE]: ['1.14.0', '1.15.0', '2.7.0'],
  [OP.REDUCE_MAX]: ['1.11.0', '1.14.0', '2.5.0'],
  [OP.RELU]: ['1.5.0', '2.1.0', '2.5.0'],
  [OP.RELU_N1_TO_1]: ['1.5.0'],
  [OP.RELU6]: ['1.5.0', '1.14.0', '2.5.0'],
  [OP.RESHAPE]: ['1.5.0'],
  [OP.RESIZE_BILINEAR]: ['1.7.0', '1.14.0', '2.2.0', '2.5.0'],
  [OP.RESIZE_NEAREST_NEIGHBOR]: ['1.13.1', '1.14.0', '2.3.0', '2.4.0'],
  [OP.RSQRT]: ['1.10.0', '2.5.0'],
  [OP.SOFTMAX]: ['1.5.0', '1.14.0', '2.3.0'],
  [OP.SPACE_TO_DEPTH]: ['1.5.0', '1.14.0'],
  [OP.SPLIT]: ['1.5.0', '1.14.0', '1.14.0', '2.3.0'],
  [OP.SPLIT_V]: ['1.13.1', '2.3.0'],
  [OP.SQRT]: ['1.10.0'],
  [OP.SQUARED_DIFFERENCE]: ['1.13.1', '2.5.0'],
  [OP.SQUEEZE]: ['1.6.0', '2.5.0'],
  [OP.STRIDED_SLICE]: ['1.6.0', '1.14.0', '2.1.0', '2.2.0', '2.5.0', '2.6.0'],
  [OP.SUB]: ['1.6.0', '1.14.0', '2.3.0', '2.4.0', '2.4.0'],
  [OP.SUM]: ['1.10.0', '1.15.0'],
  [OP.TANH]: ['1.14.0', '1.14.0', '2.3.0'],
  [OP.TRANSPOSE]: ['1.6.0', '1.14.0', '1.15.0', '2.3.0', '2.4.0'],
  [OP.TRANSPOSE_CONV]: ['1.9.0', '2.2.0', '2.3.0'],
  [OP.UNPACK]: ['1.11.0', '1.14.0', '2.2.0', '2.3.0'],
};

/**
 * The newest first release over the operators' (code, version) pairs; pairs the table does not
 * list (custom operators) are skipped, as TFLite's converter skips them. Empty when none is listed.
 */
export function minRuntimeVersion(versions: ReadonlyMap<number, number>): string {
  const key = (v: string) => v.split('.').map(Number);
  const newer = (a: string, b: string) => {
    const [x, y] = [key(a), key(b)];
    const i = x.findIndex((n, k) => n !== y[k]);
    return i >= 0 && x[i]! > y[i]!;
  };
  let newest = '';
  for (const [code, version] of versions) {
    const v = RUNTIME[code]?.[version - 1];
    if (v && (!newest || newer(v, newest))) newest = v;
  }
  return newest;
}
