import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, sizeOf } from '../src/graph/tensor.js';
import type { Model, TensorData } from '../src/graph/types.js';
import { runModel } from '../src/runtime/session.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { expandFakeQuant, fakeQuant, lsqGradScale, QUANTFLOW_DOMAIN, type FakeQuantOptions } from '../src/autodiff/fake-quant.js';
import { buildGradientGraph } from '../src/autodiff/gradients.js';
import { maxAbsDiff, randomFloats } from './fixtures.js';

/** Round half to even, as ONNX Round does. */
function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The definition: forward y, STE dx and LSQ ds for loss Σ y·r, one scale per channel of `axis`. */
function reference(x: TensorData, scales: number[], r: Float32Array, o: FakeQuantOptions) {
  const { qmin, qmax, zeroPoint: z = 0, perChannelAxis, gradScale = 1 } = o;
  const y = new Float32Array(x.data.length);
  const dx = new Float32Array(x.data.length);
  const ds = new Float64Array(scales.length);
  const inner = perChannelAxis === undefined ? x.data.length : sizeOf(x.dims.slice(perChannelAxis + 1));
  x.data.forEach((value, i) => {
    const c = perChannelAxis === undefined ? 0 : Math.floor(i / inner) % scales.length;
    const s = scales[c]!;
    const v = Math.fround(Math.fround(value as number) / s);
    const q = Math.min(qmax, Math.max(qmin, roundEven(v) + z));
    y[i] = s * (q - z);
    const inside = qmin <= v + z && v + z <= qmax;
    dx[i] = inside ? r[i]! : 0;
    ds[c]! += r[i]! * (inside ? roundEven(v) - v : q - z) * gradScale;
  });
  return { y, dx, ds };
}

async function checkFakeQuant(dims: number[], scales: number[], o: FakeQuantOptions, spread: number) {
  const g = createGraph('fq');
  const model: Model = { graph: g, opset: 17, producerName: 'test', metadata: {} };
  const x = floatTensor(
    dims,
    randomFloats(sizeOf(dims), 3).map((v) => v * spread),
  );
  const r = randomFloats(sizeOf(dims), 4);
  g.inputs.push({ name: 'x', dataType: 'float32', shape: dims });
  g.initializers.set('s', floatTensor(o.perChannelAxis === undefined ? [] : [scales.length], scales));
  g.initializers.set('r', floatTensor(dims, r));
  const b = new GraphBuilder(model);
  const y = fakeQuant(b, 'x', 's', o);
  g.nodes.push(makeNode('Mul', [y, 'r'], ['weighted']), makeNode('ReduceSum', ['weighted'], ['loss'], { keepdims: attr.int(0) }));
  g.outputs.push({ name: 'loss', dataType: 'float32', shape: [] }, { name: y, dataType: 'float32', shape: dims });
  assert.equal(model.extraOpsets?.[QUANTFLOW_DOMAIN], 1);

  const ref = reference(x, scales, r, o);
  const grad = buildGradientGraph(model, { loss: 'loss', wrt: ['x', 's'] });
  assert.ok(!grad.graph.nodes.some((n) => n.domain === QUANTFLOW_DOMAIN), 'markers are expanded');
  const out = await runModel(grad, { x });
  const [, dxName, dsName] = grad.graph.outputs.map((v) => v.name);
  assert.ok(maxAbsDiff(out[dxName!]!.data as Float32Array, ref.dx) === 0, 'straight-through dx');
  const ds = out[dsName!]!;
  assert.deepEqual(ds.dims, o.perChannelAxis === undefined ? [] : [scales.length]);
  for (const [c, want] of ref.ds.entries())
    assert.ok(Math.abs((ds.data as Float32Array)[c]! - want) < 1e-4 * Math.max(1, Math.abs(want)), `ds[${c}] ${ds.data[c]} vs ${want}`);
  // Some elements must fall outside the range, some inside, for the test to mean anything.
  assert.ok(ref.dx.some((v) => v === 0) && ref.dx.some((v) => v !== 0));

  expandFakeQuant(model);
  assert.equal(model.extraOpsets?.[QUANTFLOW_DOMAIN], undefined);
  const forward = await runModel(model, { x });
  assert.ok(maxAbsDiff(forward[y]!.data as Float32Array, ref.y) < 1e-6, 'forward matches the definition');
}

test('per-tensor int8 fake quantization with a zero point: STE and LSQ gradients', () =>
  checkFakeQuant([2, 3, 4, 4], [0.05], { qmin: -128, qmax: 127, zeroPoint: 10 }, 8));

test('per-channel int4 weights (axis 0) with the LSQ gradient scale', () =>
  checkFakeQuant([3, 2, 3, 3], [0.1, 0.05, 0.2], { qmin: -8, qmax: 7, perChannelAxis: 0, gradScale: lsqGradScale(18, 7) }, 1.2));

test('per-channel scales along axis 1 of an activation (uint8 range)', () =>
  checkFakeQuant([2, 3, 2, 5], [0.004, 0.002, 0.006], { qmin: 0, qmax: 255, zeroPoint: 128, perChannelAxis: 1 }, 1));

test('fakeQuant rejects an empty or inverted range', () => {
  const model: Model = { graph: createGraph('bad'), opset: 17, producerName: 'test', metadata: {} };
  assert.throws(() => fakeQuant(new GraphBuilder(model), 'x', 's', { qmin: 7, qmax: -8 }), /qmin < qmax/);
});
