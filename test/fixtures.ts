import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor, sizeOf } from '../src/graph/tensor.js';
import type { Model, TensorData } from '../src/graph/types.js';
import { activationQuantParams } from '../src/quantization/calibration.js';
import { planQuantization } from '../src/quantization/plan.js';
import { resolveLayer, type TargetProfile } from '../src/quantization/profile.js';
import { buildQdqModel } from '../src/quantization/qdq.js';
import { quantizeWeights } from '../src/quantization/weights.js';
import { runModel } from '../src/runtime/session.js';
import type { NpuLayer } from '../src/npu/types.js';

/** Deterministic pseudo-random floats in [-1, 1) (a fixed LCG, so tests are repeatable). */
export function randomFloats(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

export function randomTensor(dims: number[], seed = 1): TensorData {
  return floatTensor(dims, randomFloats(sizeOf(dims), seed));
}

/**
 * A tiny CNN: Conv(3→4, 3x3, pad 1) → BatchNormalization → Relu → GlobalAveragePool →
 * Reshape → Gemm(4→3). Input 'x' [batch,3,5,5], output 'y' [batch,3].
 */
export function tinyCnn(): Model {
  const g = createGraph('tiny');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['batch', 3, 5, 5] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: ['batch', 3] });
  g.initializers.set('w', randomTensor([4, 3, 3, 3], 2));
  g.initializers.set('b', randomTensor([4], 3));
  g.initializers.set('bn_scale', floatTensor([4], [1.5, 0.5, 2, 1]));
  g.initializers.set('bn_bias', floatTensor([4], [0.1, -0.2, 0.3, 0]));
  g.initializers.set('bn_mean', floatTensor([4], [0.2, 0, -0.1, 0.4]));
  g.initializers.set('bn_var', floatTensor([4], [1, 0.25, 2, 0.5]));
  g.initializers.set('shape', int64Tensor([2], [0, -1]));
  g.initializers.set('fc_w', randomTensor([3, 4], 4));
  g.initializers.set('fc_b', randomTensor([3], 5));
  g.nodes.push(
    makeNode('Conv', ['x', 'w', 'b'], ['conv'], { pads: attr.ints([1, 1, 1, 1]), kernel_shape: attr.ints([3, 3]) }),
    makeNode('BatchNormalization', ['conv', 'bn_scale', 'bn_bias', 'bn_mean', 'bn_var'], ['bn'], {
      epsilon: attr.float(1e-3),
    }),
    makeNode('Relu', ['bn'], ['relu']),
    makeNode('GlobalAveragePool', ['relu'], ['pool']),
    makeNode('Reshape', ['pool', 'shape'], ['flat']),
    makeNode('Gemm', ['flat', 'fc_w', 'fc_b'], ['y'], { transB: attr.int(1) }),
  );
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

/** Largest absolute difference between two float arrays of equal length. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/**
 * PTQ by hand, for tests of what comes after it: min-max ranges of every planned activation
 * over the batch `x` (fed to input 'x'), weights as `profile` says, then the QDQ export.
 */
export async function minMaxQdq(model: Model, profile: TargetProfile, x: TensorData) {
  const plan = planQuantization(model.graph);
  const outputs = plan.activations.map((name) => ({ name, dataType: 'float32' as const }));
  const values = await runModel({ ...model, graph: { ...model.graph, outputs } }, { x });
  const activations = new Map(
    plan.activations.map((name) => {
      const v = values[name]!.data as Float32Array;
      return [name, activationQuantParams({ min: Math.min(...v), max: Math.max(...v) }, 8, false)];
    }),
  );
  const weights = plan.layers.map((layer, i) => {
    const spec = resolveLayer(profile, layer.node.name, { isFirst: i === 0, isLast: i === plan.layers.length - 1 });
    const w = model.graph.initializers.get(layer.weight)!;
    return { layer, quantized: quantizeWeights(w.data as Float32Array, w.dims[0]!, spec, { method: 'minmax' }) };
  });
  return { plan, qdq: buildQdqModel(model, { activations, weights }).model };
}

/** 3x3 input, centered values 1..9 (zero point 10). */
export const x3 = Array.from({ length: 9 }, (_, i) => i + 11);

/** Conv 3x3, pad 1, stride 2 over x3: channel 0 sums each window (ones), channel 1 doubles the centre. */
export function cornerConv(requant: Extract<NpuLayer, { op: 'conv' }>['requant']): Extract<NpuLayer, { op: 'conv' }> {
  return {
    op: 'conv',
    name: 'conv',
    inputs: ['x'],
    output: 'y',
    kernel: [3, 3],
    strides: [2, 2],
    pads: [1, 1, 1, 1],
    dilations: [1, 1],
    group: 1,
    weights: { dtype: 'int8', shape: [2, 1, 3, 3], data: Int8Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0]) },
    bias: { dtype: 'int32', shape: [2], data: Int32Array.from([5, -20]) },
    requant,
    clamp: [0, 255],
  };
}
