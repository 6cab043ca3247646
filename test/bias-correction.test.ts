import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, makeNode } from '../src/graph/graph.js';
import { biasCorrection, ChannelMeans } from '../src/quantization/bias-correction.js';
import type { QuantizedWeights } from '../src/quantization/weights.js';

test('channel means accumulate over batches and spatial positions', () => {
  const m = new ChannelMeans();
  m.observe(Float32Array.from([1, 3, 10, 20]), [1, 2, 2]);
  m.observe(Float32Array.from([5, 7, 30, 40]), [1, 2, 2]);
  assert.deepEqual([...m.means()], [4, 25]);
});

test('bias correction is (Ŵ − W)·E[x] per output channel, grouped convs included', () => {
  const node = makeNode('Conv', ['x', 'w', 'b'], ['y'], { group: attr.int(2) });
  const layer = { node, weight: 'w', bias: 'b', channelAxis: 0 };
  // Depthwise-like: 2 groups, one input channel each, 1x2 kernels. Ŵ = q·scale.
  const original = Float32Array.from([0.3, 0.5, 1.0, -1.0]);
  const quantized: QuantizedWeights = {
    bits: 8,
    granularity: 'channel',
    scale: Float32Array.from([0.25, 0.5]),
    q: Int8Array.from([1, 2, 2, -2]),
    sqnrDb: 0,
  };
  // Ŵ − W = [−0.05, 0, 0, 0] → channel 0: −0.05·E[x0] = −0.05·2
  const delta = biasCorrection(layer, 2, original, quantized, Float64Array.from([2, 3]));
  assert.ok(Math.abs(delta[0]! + 0.1) < 1e-7);
  assert.equal(delta[1], 0);
});
