import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor } from '../src/graph/tensor.js';
import { equalizeCrossLayer } from '../src/passes/equalize.js';
import { runModel } from '../src/runtime/session.js';
import { maxAbsDiff, randomTensor } from './fixtures.js';

test('hand-computed equalization of two 1x1 convs across a ReLU', () => {
  const g = createGraph('pair');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 1, 1, 1] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: [1, 1, 1, 1] });
  g.initializers.set('w1', floatTensor([2, 1, 1, 1], [4, 1]));
  g.initializers.set('b1', floatTensor([2], [2, 3]));
  g.initializers.set('w2', floatTensor([1, 2, 1, 1], [1, 4]));
  g.nodes.push(makeNode('Conv', ['x', 'w1', 'b1'], ['h']), makeNode('Relu', ['h'], ['r']), makeNode('Conv', ['r', 'w2'], ['y']));
  assert.equal(equalizeCrossLayer(g), 1);
  // r1 = [4, 1], r2 = [1, 4] → s = [2, 1/2]: both ranges become √(r1·r2) = 2.
  assert.deepEqual([...g.initializers.get('w1')!.data], [2, 2]);
  assert.deepEqual([...g.initializers.get('b1')!.data], [1, 6]);
  assert.deepEqual([...g.initializers.get('w2')!.data], [2, 2]);
});

test('equalization keeps outputs of a conv → relu → depthwise → conv chain, and stops at ReLU6', async () => {
  const g = createGraph('chain');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [2, 3, 6, 6] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: [2, 5, 6, 6] });
  const w1 = randomTensor([4, 3, 3, 3], 1);
  (w1.data as Float32Array).forEach((v, i, a) => (a[i] = v * (i < 27 ? 20 : 1)));
  g.initializers.set('w1', w1);
  g.initializers.set('b1', randomTensor([4], 2));
  g.initializers.set('w2', randomTensor([4, 1, 3, 3], 3));
  g.initializers.set('b2', randomTensor([4], 4));
  g.initializers.set('w3', randomTensor([5, 4, 1, 1], 5));
  g.initializers.set('six', floatTensor([], [6]));
  g.initializers.set('zero', floatTensor([], [0]));
  g.initializers.set('w4', randomTensor([5, 5, 1, 1], 6));
  const pads = { pads: attr.ints([1, 1, 1, 1]) };
  g.nodes.push(
    makeNode('Conv', ['x', 'w1', 'b1'], ['a'], pads),
    makeNode('Relu', ['a'], ['ar']),
    makeNode('Conv', ['ar', 'w2', 'b2'], ['d'], { ...pads, group: attr.int(4) }),
    makeNode('Conv', ['d', 'w3'], ['p']),
    makeNode('Clip', ['p', 'zero', 'six'], ['p6']),
    makeNode('Conv', ['p6', 'w4'], ['y']),
  );
  const model = { graph: g, opset: 17, producerName: 't', metadata: {} };
  const x = randomTensor([2, 3, 6, 6], 7);
  const before = (await runModel(model, { x })).y!.data as Float32Array;
  const w4 = [...g.initializers.get('w4')!.data];
  assert.equal(equalizeCrossLayer(g), 2);
  assert.deepEqual([...g.initializers.get('w4')!.data], w4, 'no equalization across ReLU6');
  const after = (await runModel(model, { x })).y!.data as Float32Array;
  assert.ok(maxAbsDiff(before, after) < 1e-4, `max difference ${maxAbsDiff(before, after)}`);
  const r1 = Math.max(...[...g.initializers.get('w1')!.data].slice(0, 27).map((v) => Math.abs(Number(v))));
  const r2 = Math.max(...[...g.initializers.get('w2')!.data].slice(0, 9).map((v) => Math.abs(Number(v))));
  assert.ok(Math.abs(r1 / r2 - 1) < 0.1, `channel 0 ranges ${r1} vs ${r2}`);
});
