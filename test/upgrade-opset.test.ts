import assert from 'node:assert/strict';
import { test } from 'node:test';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { upgradeOpset } from '../src/passes/upgrade-opset.js';
import { runModel } from '../src/runtime/session.js';

/** An opset-9 Pad of a [1, 1, 1, 2] input by one column each side, filled with `value`. */
function pad9(value?: number): Model {
  const g = createGraph('pad9');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 1, 1, 2] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: [1, 1, 1, 4] });
  g.nodes.push(
    makeNode('Pad', ['x'], ['y'], {
      pads: attr.ints([0, 0, 0, 1, 0, 0, 0, 1]),
      ...(value === undefined ? {} : { value: attr.float(value) }),
    }),
  );
  return { graph: g, opset: 9, producerName: 'test', metadata: {} };
}

test("opset 9 → 13 moves Pad's pads and constant value from attributes to inputs", async () => {
  const m = pad9(2.5);
  upgradeOpset(m, 13);
  assert.equal(m.opset, 13);
  const node = m.graph.nodes[0]!;
  assert.deepEqual(node.attributes, {});
  assert.equal(node.inputs.length, 3);
  const y = await runModel(m, { x: floatTensor([1, 1, 1, 2], [1, 2]) });
  assert.deepEqual([...(y.y!.data as Float32Array)], [2.5, 1, 2, 2.5]);

  const zero = pad9(0);
  upgradeOpset(zero, 13);
  assert.equal(zero.graph.nodes[0]!.inputs.length, 2, 'a zero fill is the default and needs no input');
  const z = await runModel(zero, { x: floatTensor([1, 1, 1, 2], [1, 2]) });
  assert.deepEqual([...(z.y!.data as Float32Array)], [0, 1, 2, 0]);
});
