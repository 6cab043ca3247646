import assert from 'node:assert/strict';
import { test } from 'node:test';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, sizeOf } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { arithmeticSummary, compareArithmetic, withTfliteArithmetic } from '../src/npu/arithmetic.js';
import { buildNpuPackage } from '../src/npu/package.js';
import { loadProfile } from '../src/quantization/profile.js';
import { minMaxQdq, randomFloats, randomTensor } from './fixtures.js';

/** Conv 3→4 (3x3, pads 1), global average pool, flatten, Gemm 4→5: a classifier on a 1x3x6x6 input. */
function classifier(): Model {
  const g = createGraph('t');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['batch', 3, 6, 6] });
  g.outputs.push({ name: 'y', dataType: 'float32' });
  for (const [k, v] of Object.entries({
    w: randomTensor([4, 3, 3, 3], 1),
    b: randomTensor([4], 2),
    fc_w: randomTensor([5, 4], 3),
    fc_b: randomTensor([5], 4),
  }))
    g.initializers.set(k, v);
  g.nodes.push(
    makeNode('Conv', ['x', 'w', 'b'], ['c'], { pads: attr.ints([1, 1, 1, 1]) }, 'conv'),
    makeNode('GlobalAveragePool', ['c'], ['p']),
    makeNode('Flatten', ['p'], ['f']),
    makeNode('Gemm', ['f', 'fc_w', 'fc_b'], ['y'], { transB: attr.int(1) }, 'fc'),
  );
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

test("TFLite's arithmetic against a profile's own: equal elements, LSB apart, top-1 agreement", async () => {
  const profile = loadProfile('w8a8-shift');
  const shape = [3, 3, 6, 6];
  const sample = floatTensor(shape, randomFloats(sizeOf(shape), 9));
  const { qdq } = await minMaxQdq(classifier(), profile, floatTensor([1, 3, 6, 6], sample.data.slice(0, 108) as Float32Array));
  const own = await buildNpuPackage(qdq, profile);
  const tflite = await buildNpuPackage(qdq, withTfliteArithmetic(profile));

  // A package against itself: every element equal.
  const same = compareArithmetic(own, own, sample);
  assert.deepEqual(same, { images: 3, outputs: [{ name: own.outputs[0]!, elements: 15, equal: 15, maxLsb: 0, top1Agreement: 1 }] });

  // Half-up rounding with 16-bit multipliers against TFLite's Q0.31 double rounding: each
  // requantization differs by at most one step, and three layers compound to a few.
  const gap = compareArithmetic(own, tflite, sample);
  const [o] = gap.outputs;
  assert.equal(gap.images, 3);
  assert.equal(o!.elements, 15);
  assert.ok(o!.equal >= 10 && o!.maxLsb <= 3, JSON.stringify(o));
  assert.match(
    arithmeticSummary(gap),
    /^against the profile's own on 3 calibration images, .*: \d+\.\d\d% of elements equal, at most \d LSB apart, top-1 agreement/,
  );
});
