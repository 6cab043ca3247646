import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { foldConstants } from '../src/passes/fold-constants.js';
import { runModel } from '../src/runtime/session.js';

function model(): Model {
  const g = createGraph('consts');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [2, 3] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: [3, 2] });
  g.initializers.set('a', floatTensor([3, 2], [1, 2, 3, 4, 5, 6]));
  g.initializers.set('two', floatTensor([], [2]));
  g.initializers.set('d0', int64Tensor([1], [3]));
  g.initializers.set('d1', int64Tensor([1], [2]));
  g.nodes.push(
    makeNode('Mul', ['a', 'two'], ['a2']),
    makeNode('Concat', ['d0', 'd1'], ['shape'], { axis: attr.int(0) }),
    makeNode('Reshape', ['x', 'shape'], ['xr']),
    makeNode('Add', ['xr', 'a2'], ['y']),
  );
  g.valueInfo.set('a2', { name: 'a2', dataType: 'float32', shape: [3, 2] });
  g.valueInfo.set('shape', { name: 'shape', dataType: 'int64', shape: [2] });
  return { graph: g, opset: 17, producerName: 't', metadata: {} };
}

test('constant subgraphs are evaluated and replaced by initializers', async () => {
  const m = model();
  const x = floatTensor([2, 3], [0, 1, 2, 3, 4, 5]);
  const before = await runModel(m, { x });
  assert.equal(await foldConstants(m), 2);
  assert.deepEqual(
    m.graph.nodes.map((n) => n.opType),
    ['Reshape', 'Add'],
  );
  assert.deepEqual([...m.graph.initializers.get('a2')!.data], [2, 4, 6, 8, 10, 12]);
  assert.deepEqual(m.graph.initializers.get('shape')!.data, BigInt64Array.from([3n, 2n]));
  assert.ok(!m.graph.initializers.has('two'), 'inputs of folded nodes are pruned');
  const after = await runModel(m, { x });
  assert.deepEqual([...after.y!.data], [...before.y!.data]);
  assert.deepEqual([...after.y!.data], [2, 5, 8, 11, 14, 17]);
});

test('DequantizeLinear on constant weights is kept for the QDQ model', async () => {
  const g = createGraph('qdq');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [2] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: [2] });
  g.initializers.set('q', { dataType: 'int8', dims: [2], data: Int8Array.from([3, -4]) });
  g.initializers.set('s', floatTensor([], [0.5]));
  g.nodes.push(makeNode('DequantizeLinear', ['q', 's'], ['w']), makeNode('Add', ['x', 'w'], ['y']));
  g.valueInfo.set('w', { name: 'w', dataType: 'float32', shape: [2] });
  assert.equal(await foldConstants({ graph: g, opset: 17, producerName: 't', metadata: {} }), 0);
  assert.equal(g.nodes.length, 2);
});
