import { test } from 'node:test';
import assert from 'node:assert/strict';
import { foldBatchNorm } from '../src/passes/fold-batchnorm.js';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor } from '../src/graph/tensor.js';
import { runModel } from '../src/runtime/session.js';
import { maxAbsDiff, randomTensor, tinyCnn } from './fixtures.js';

test('BatchNormalization after Conv is folded and outputs are unchanged', async () => {
  const model = tinyCnn();
  const x = randomTensor([2, 3, 5, 5], 7);
  const before = await runModel(model, { x });
  assert.equal(foldBatchNorm(model.graph), 1);
  assert.deepEqual(
    model.graph.nodes.map((n) => n.opType),
    ['Conv', 'Relu', 'GlobalAveragePool', 'Reshape', 'Gemm'],
  );
  assert.ok(!model.graph.initializers.has('bn_mean'), 'unused BN parameters are pruned');
  const after = await runModel(model, { x });
  assert.ok(maxAbsDiff(before.y!.data as Float32Array, after.y!.data as Float32Array) < 1e-5);
});

test('hand-computed fold into a 1x1 Conv without bias', () => {
  const g = createGraph('bn1x1');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 1, 1, 1] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: [1, 2, 1, 1] });
  g.initializers.set('w', floatTensor([2, 1, 1, 1], [2, 3]));
  g.initializers.set('g', floatTensor([2], [1, 4]));
  g.initializers.set('b', floatTensor([2], [0.5, 1]));
  g.initializers.set('m', floatTensor([2], [1, 2]));
  g.initializers.set('v', floatTensor([2], [3, 15]));
  g.nodes.push(
    makeNode('Conv', ['x', 'w'], ['c']),
    makeNode('BatchNormalization', ['c', 'g', 'b', 'm', 'v'], ['y'], { epsilon: attr.float(1) }),
  );
  assert.equal(foldBatchNorm(g), 1);
  const conv = g.nodes[0]!;
  // s = [1/2, 4/4] → W' = [1, 3]; b' = (0 − m)·s + beta = [−0.5 + 0.5, −2 + 1]
  assert.deepEqual([...g.initializers.get(conv.inputs[1]!)!.data], [1, 3]);
  assert.deepEqual([...g.initializers.get(conv.inputs[2]!)!.data], [0, -1]);
  assert.deepEqual(conv.outputs, ['y']);
});

test('BatchNormalization after Gemm (transB = 0) is folded along the column axis', async () => {
  const g = createGraph('gemm');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['n', 4] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: ['n', 3] });
  g.initializers.set('w', randomTensor([4, 3], 1));
  g.initializers.set('b', randomTensor([3], 2));
  g.initializers.set('g', floatTensor([3], [2, 0.5, 1]));
  g.initializers.set('beta', floatTensor([3], [0, 1, -1]));
  g.initializers.set('m', floatTensor([3], [0.1, 0.2, 0.3]));
  g.initializers.set('v', floatTensor([3], [1, 2, 3]));
  g.nodes.push(makeNode('Gemm', ['x', 'w', 'b'], ['h']), makeNode('BatchNormalization', ['h', 'g', 'beta', 'm', 'v'], ['y']));
  const model = { graph: g, opset: 17, producerName: 't', metadata: {} };
  const x = randomTensor([5, 4], 3);
  const before = await runModel(model, { x });
  assert.equal(foldBatchNorm(g), 1);
  const after = await runModel(model, { x });
  assert.ok(maxAbsDiff(before.y!.data as Float32Array, after.y!.data as Float32Array) < 1e-5);
});

test('a BatchNormalization whose input has other readers is left alone', () => {
  const model = tinyCnn();
  model.graph.nodes.push(makeNode('Relu', ['conv'], ['side']));
  model.graph.outputs.push({ name: 'side', dataType: 'float32' });
  assert.equal(foldBatchNorm(model.graph), 0);
});
