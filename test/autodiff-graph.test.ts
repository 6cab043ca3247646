import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { runModel } from '../src/runtime/session.js';
import { buildGradientGraph } from '../src/autodiff/gradients.js';
import { randomTensor, tinyCnn } from './fixtures.js';

function model(): Model {
  const g = createGraph('g');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [2, 3] });
  g.initializers.set('a', randomTensor([2, 3], 2));
  g.initializers.set('unused', randomTensor([4], 3));
  g.nodes.push(makeNode('Mul', ['x', 'a'], ['p']), makeNode('ReduceSum', ['p'], ['loss']));
  g.outputs.push({ name: 'loss', dataType: 'float32', shape: [1, 1] });
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

test('outputs are the loss then one gradient per wrt, named <wrt>_grad and shaped like it', async () => {
  const m = model();
  const nodesBefore = [...m.graph.nodes];
  const grad = buildGradientGraph(m, { loss: 'loss', wrt: ['a', 'x', 'unused'] });
  assert.deepEqual(m.graph.nodes, nodesBefore, 'the model is not changed');
  assert.deepEqual(
    grad.graph.outputs.map((o) => o.name),
    ['loss', 'a_grad', 'x_grad', 'unused_grad'],
  );
  const x = randomTensor([2, 3], 5);
  const out = await runModel(grad, { x });
  // A non-scalar loss is seeded with ones: d Σ(x·a) / da = x.
  assert.deepEqual(out.a_grad!.data, x.data);
  assert.deepEqual(out.x_grad!.data, m.graph.initializers.get('a')!.data);
  assert.deepEqual(out.unused_grad!.data, new Float32Array(4), 'no path to the loss: zeros');
});

test('only the gradients asked for are computed (no input gradient for the first conv)', () => {
  const grad = buildGradientGraph(tinyCnn(), { loss: 'y', wrt: ['w'] });
  const convs = grad.graph.nodes.filter((n) => n.opType === 'Conv' || n.opType === 'ConvTranspose');
  assert.deepEqual(
    convs.map((n) => n.name),
    ['conv', 'conv_patches'],
    'the forward conv and the weight gradient only',
  );
});

test('an operator without a gradient rule is named with its node', () => {
  const m = model();
  m.graph.nodes.splice(1, 0, makeNode('Erf', ['p'], ['e'], {}, 'my_erf'));
  m.graph.nodes[2]!.inputs[0] = 'e';
  assert.throws(() => buildGradientGraph(m, { loss: 'loss', wrt: ['a'] }), /node 'my_erf' \(Erf\): operator 'Erf' has no gradient rule/);
});

test('wrt must name an initializer or input with a float type', () => {
  assert.throws(() => buildGradientGraph(model(), { loss: 'loss', wrt: ['p'] }), /neither an initializer nor an input/);
  const m = model();
  m.graph.initializers.set('k', floatTensor([1], [1]));
  assert.throws(() => buildGradientGraph(m, { loss: 'nope', wrt: ['a'] }), /loss 'nope' is not a value/);
});
