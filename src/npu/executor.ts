import { QuantflowError } from '../util/errors.js';
import {
  add,
  averagePool,
  concat,
  conv,
  fullyConnected,
  lookup,
  maxPool,
  mul,
  pad,
  select,
  tfliteAdd,
  tfliteAveragePool,
  tfliteMean,
  transpose,
  type KernelResult,
  type Operand,
} from './kernels.js';
import type { NpuLayer, NpuPackage } from './types.js';
import type { Rounding } from '../quantization/profile.js';

/**
 * The bit-exact reference executor of an NPU package: integer inputs in, integer tensors
 * out, every step the integer arithmetic documented in types.ts. It defines what a
 * hardware target must reproduce. It is plain JavaScript on one core (1–2 s per
 * MobileNetV2 image); the package's integer ONNX model (integer-model.ts) reproduces it
 * bit for bit at onnxruntime's speed.
 */

export interface Execution {
  /** Every tensor of the run (inputs included), by name, on its grid. */
  tensors: Map<string, Int32Array>;
  /** Largest |accumulator| per accumulating layer (by layer name): headroom against accumulatorBits. */
  peaks: Map<string, number>;
}

/**
 * Runs the package on one image. `inputs` holds each package input as integers on its grid
 * (see grid.ts `quantizeTensor`). Throws a QuantflowError for a malformed input and for an
 * accumulator that leaves the profile's signed accumulatorBits range, naming the layer.
 */
export function execute(pkg: NpuPackage, inputs: Record<string, ArrayLike<number>>): Execution {
  const tensors = new Map<string, Int32Array>();
  for (const name of pkg.inputs) {
    const given = inputs[name];
    const info = pkg.tensors[name]!;
    const size = info.shape.reduce((a, b) => a * b, 1);
    if (!given || given.length !== size)
      throw new QuantflowError(`input '${name}' needs ${size} integers (shape [${info.shape}]), got ${given?.length ?? 'none'}`);
    const data = Int32Array.from(given);
    if (data.some((q) => q < info.grid.qmin || q > info.grid.qmax))
      throw new QuantflowError(`input '${name}' has values outside its grid [${info.grid.qmin}, ${info.grid.qmax}]`);
    tensors.set(name, data);
  }
  const peaks = new Map<string, number>();
  for (const layer of pkg.layers) {
    const result = executeLayer(
      pkg,
      layer,
      layer.inputs.map((i) => tensors.get(i)!),
    );
    tensors.set(layer.output, result.output);
    if (result.peak) peaks.set(layer.name, result.peak);
  }
  return { tensors, peaks };
}

/**
 * Runs one layer on given input tensors (in `layer.inputs` order): the building block of
 * `execute`, and of per-layer comparisons that feed each layer someone else's inputs.
 */
export function executeLayer(pkg: NpuPackage, layer: NpuLayer, inputs: Int32Array[]): KernelResult {
  const operands: Operand[] = layer.inputs.map((name, i) => {
    const data = inputs[i];
    if (!data) throw new QuantflowError(`layer '${layer.name}': input '${name}' is missing`);
    return { data, ...pkg.tensors[name]! };
  });
  const out = pkg.tensors[layer.output]!;
  const zy = out.grid.zeroPoint;
  const [x, y] = operands as [Operand, Operand];
  const result = run(layer, x, y, operands, out.shape, zy, pkg.profile.requantization.rounding);
  const limit = 2 ** (pkg.profile.accumulatorBits - 1);
  // Checked as |acc| < 2^(b−1): the kernels keep magnitudes only, so −2^(b−1) counts as an overflow too.
  if (result.peak >= limit) {
    throw new QuantflowError(
      `layer '${layer.name}': accumulator reached ±${result.peak}, beyond the ${pkg.profile.accumulatorBits}-bit accumulator of profile ${pkg.profile.name}`,
    );
  }
  return result;
}

function run(layer: NpuLayer, x: Operand, y: Operand, all: Operand[], outShape: number[], zy: number, rounding: Rounding): KernelResult {
  switch (layer.op) {
    case 'conv':
      return conv(layer, x, outShape, zy, rounding);
    case 'fc':
      return fullyConnected(layer, x, zy, rounding);
    case 'add':
      return add(layer, x, y, outShape, zy);
    case 'tflite-add':
      return tfliteAdd(layer, x, y, outShape, zy);
    case 'tflite-avgpool':
      return tfliteAveragePool(layer, x, zy, rounding);
    case 'tflite-mean':
      return tfliteMean(layer, x, zy);
    case 'mul':
      return mul(layer, x, y, outShape, zy, rounding);
    case 'avgpool':
      return averagePool(layer, x, zy);
    case 'maxpool':
      return maxPool(layer, x);
    case 'lut':
      return lookup(layer, x);
    case 'reshape':
      return { output: x.data, peak: 0 };
    case 'transpose':
      return transpose(layer, x);
    case 'select':
      return select(layer, x);
    case 'pad':
      return pad(layer, x, outShape);
    case 'concat':
      return concat(layer, all, outShape);
  }
}
