import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { buildQdqModel } from '../src/quantization/qdq.js';
import { planQuantization } from '../src/quantization/plan.js';
import { quantizePerChannel, quantizeWithShifts } from '../src/quantization/weights.js';
import { openSession, runModel, runSession } from '../src/runtime/session.js';
import { parseOnnx } from '../src/onnx/read.js';
import { serializeModel } from '../src/onnx/write.js';
import { tinyCnn } from './fixtures.js';
import { foldBatchNorm } from '../src/passes/fold-batchnorm.js';
import { loadShared } from './shared.js';
import { evaluate } from '../src/eval/evaluate.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import { loadProfile } from '../src/quantization/profile.js';

test('the plan quantizes weights of Conv/Gemm and activations after fused clamps', () => {
  const model = tinyCnn();
  foldBatchNorm(model.graph);
  const plan = planQuantization(model.graph);
  assert.deepEqual(
    plan.layers.map((l) => [l.node.opType, l.channelAxis]),
    [
      ['Conv', 0],
      ['Gemm', 0],
    ],
  );
  // Conv output is read only by Relu: fused, so the Relu output is quantized instead; Reshape keeps its grid.
  assert.deepEqual(plan.activations, ['x', 'relu', 'pool', 'y']);
});

/** y = Conv1x1(x) with two output channels of very different ranges: the WESS case. */
function twoChannelConv(): Model {
  const g = createGraph('wess');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 1, 1, 2] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: [1, 2, 1, 2] });
  g.initializers.set('w', floatTensor([2, 1, 1, 1], [1.0, 0.1]));
  g.initializers.set('b', floatTensor([2], [0.5, -0.25]));
  g.nodes.push(makeNode('Conv', ['x', 'w', 'b'], ['y'], { kernel_shape: attr.ints([1, 1]) }));
  return { graph: g, opset: 17, producerName: 't', metadata: {} };
}

test('QDQ export: WESS weights become per-channel power-of-two scales and int32 biases', async () => {
  const model = twoChannelConv();
  const [layer] = planQuantization(model.graph).layers;
  const quantized = quantizeWithShifts(Float32Array.from([1.0, 0.1]), 2, { bits: 8, method: 'minmax', shiftBits: 4 });
  assert.deepEqual([...quantized.shifts!], [0, 3]);
  const xParams = { scale: 1 / 127, zeroPoint: 0, qmin: -128, qmax: 127 };
  const yParams = { scale: 2 / 255, zeroPoint: 128, qmin: 0, qmax: 255 };
  const { model: qdq } = buildQdqModel(model, {
    activations: new Map([
      ['x', xParams],
      ['y', yParams],
    ]),
    weights: [{ layer: layer!, quantized }],
  });
  const ops = qdq.graph.nodes.map((n) => n.opType);
  assert.deepEqual(ops.sort(), [
    'Conv',
    'DequantizeLinear',
    'DequantizeLinear',
    'DequantizeLinear',
    'DequantizeLinear',
    'QuantizeLinear',
    'QuantizeLinear',
  ]);
  const init = [...qdq.graph.initializers.entries()];
  const wq = init.find(([n]) => n === 'w_quantized')![1];
  assert.equal(wq.dataType, 'int8');
  // s = 1/127: channel 0 → 127; channel 1 → round(0.1·8·127) = 102, effective scale s/8.
  assert.deepEqual([...wq.data], [127, 102]);
  const ws = init.find(([n]) => n === 'w_scale')![1];
  assert.ok(Math.abs((ws.data[0] as number) / (ws.data[1] as number) - 8) < 1e-6);
  const bq = init.find(([n]) => n === 'b_quantized')![1];
  assert.equal(bq.dataType, 'int32');
  // bias / (s_x · s_w[c]) = 0.5·127·127 and −0.25·127·127·8
  assert.deepEqual([...bq.data], [Math.round(0.5 * 127 * 127), Math.round(-0.25 * 127 * 127 * 8)]);

  // The simulation and onnxruntime's integer kernels both stay within one output step of float.
  const back = parseOnnx(serializeModel(qdq));
  const x = floatTensor([1, 1, 1, 2], [0.3, -0.7]);
  const float = (await runModel(model, { x })).y!.data as Float32Array;
  for (const simulate of [true, false]) {
    const s = await openSession(back, { simulate });
    const out = (await runSession(s, { x })).y!.data as Float32Array;
    await s.release();
    for (let i = 0; i < 4; i++)
      assert.ok(Math.abs(out[i]! - float[i]!) <= yParams.scale * 1.01, `simulate=${simulate} element ${i}: ${out[i]} vs ${float[i]}`);
  }
});

test('4-bit weights are exported as int4 at opset 21', async () => {
  const model = twoChannelConv();
  const [layer] = planQuantization(model.graph).layers;
  const quantized = quantizePerChannel(Float32Array.from([1.0, 0.1]), 2, { bits: 4, method: 'minmax' });
  const { model: qdq } = buildQdqModel(model, {
    activations: new Map([['x', { scale: 1 / 127, zeroPoint: 0, qmin: -128, qmax: 127 }]]),
    weights: [{ layer: layer!, quantized }],
  });
  assert.equal(qdq.opset, 21);
  assert.equal(qdq.graph.initializers.get('w_quantized')!.dataType, 'int4');
  assert.deepEqual([...qdq.graph.initializers.get('w_quantized')!.data], [7, 7]);
  const out = await runModel(parseOnnx(serializeModel(qdq)), { x: floatTensor([1, 1, 1, 2], [0.5, -0.5]) });
  assert.equal(out.y!.dims.join(','), '1,2,1,2');
});

test('end to end on MobileNetV2: per-tensor W8A8 loses far more than WESS shift scalers', async (t) => {
  const shared = await loadShared('mobilenet_v2_1.0_224_int8.tflite', 'imagenet-sample-1k', 'imagenet-val-650');
  if ('skip' in shared) return t.skip(shared.skip);
  const {
    model,
    data: [calib, val],
  } = shared;
  const top1 = async (m: Model) => (await evaluate(m, val, { limit: 100 })).top1;
  const float = await top1(model);
  const quantized = async (profile: string) =>
    top1((await quantizeModel(model, calib, { profile: loadProfile(profile), calibLimit: 48, biasCorrection: false })).model);
  const tensor = await quantized('w8a8-tensor');
  const shift = await quantized('w8a8-shift');
  assert.ok(float > 0.65, `float top-1 ${float}`);
  assert.ok(shift > float - 0.1, `WESS top-1 ${shift} vs float ${float}`);
  assert.ok(tensor < shift - 0.1, `per-tensor top-1 ${tensor} vs WESS ${shift}`);
});
