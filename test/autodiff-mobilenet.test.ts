import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cloneModel, makeNode } from '../src/graph/graph.js';
import { inferShapes } from '../src/graph/shapes.js';
import { validateModel } from '../src/graph/validate.js';
import { buildGradientGraph } from '../src/autodiff/gradients.js';
import { loadShared } from './shared.js';

test('the gradient graph of MobileNetV2 validates and shape-infers with quantflow itself', async (t) => {
  const shared = await loadShared('mobilenet_v2_1.0_224_int8.tflite');
  if ('skip' in shared) return t.skip(shared.skip);
  const model = cloneModel(shared.model);
  const { graph } = model;
  // Gradients need static shapes: one image.
  graph.inputs[0]!.shape = [1, ...graph.inputs[0]!.shape!.slice(1)];
  graph.valueInfo.clear();
  graph.nodes.push(makeNode('ReduceSum', [graph.outputs[0]!.name], ['loss']));
  graph.outputs = [{ name: 'loss', dataType: 'float32' }];
  const wrt = graph.nodes.filter((n) => n.opType === 'Conv' || n.opType === 'Gemm').map((n) => n.inputs[1]!);
  const grad = buildGradientGraph(model, { loss: 'loss', wrt });
  assert.equal(grad.graph.valueInfo.size, 0, 'no shapes before inference');
  validateModel(grad);
  inferShapes(grad);
  for (const [i, w] of wrt.entries()) {
    const inferred = grad.graph.valueInfo.get(grad.graph.outputs[i + 1]!.name)?.shape;
    assert.deepEqual(inferred, graph.initializers.get(w)!.dims, `the inferred shape of ${w}'s gradient is the weight's`);
  }
});
