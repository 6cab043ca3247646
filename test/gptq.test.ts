import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { gptqQuantize, gptqRound, gptqRoundChoosing } from '../src/quantization/gptq.js';
import { hasPatchMoments, PatchMoments, withPatchMoments } from '../src/quantization/patch-moments.js';
import { dequantize, quantize, quantizePerTensor, quantizeWithShifts, shiftChoices, sqnrDb } from '../src/quantization/weights.js';
import { openSession, runSession } from '../src/runtime/session.js';
import { randomFloats, randomTensor } from './fixtures.js';
import { loadShared } from './shared.js';
import { loadProfile } from '../src/quantization/profile.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import { decodeImages } from '../src/data/images.js';
import { outputError as modelOutputError } from '../src/eval/output-error.js';

/** tr(ΔW·H·ΔWᵀ): the output error E‖(Ŵ − W)x‖² for inputs with second moments H. */
function outputError(w: Float32Array, q: Int8Array, scale: Float32Array, h: Float64Array): number {
  const cols = w.length / scale.length;
  let total = 0;
  for (let r = 0; r < scale.length; r++) {
    const d = Array.from({ length: cols }, (_, i) => q[r * cols + i]! * scale[r]! - w[r * cols + i]!);
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) total += d[i]! * h[i * cols + j]! * d[j]!;
  }
  return total;
}

const nearest = (w: Float32Array, scale: Float32Array, qmax: number) =>
  Int8Array.from(w, (v, i) => quantize(v, scale[Math.floor(i / (w.length / scale.length))]!, qmax));

test('GPTQ: two identical inputs share one rounding error (known answer)', () => {
  // x₁ = x₂ always: 0.4·x₁ + 0.4·x₂ = 0.8·x₁. Nearest gives 0 + 0 (output off by 0.8·x);
  // pushing the first weight's error onto the second gives 0 + 1 (off by 0.2·x).
  const w = Float32Array.of(0.4, 0.4);
  const scale = Float32Array.of(1);
  const h = Float64Array.of(1, 1, 1, 1);
  assert.deepEqual([...nearest(w, scale, 7)], [0, 0]);
  assert.deepEqual([...gptqRound(w, scale, h, 7)], [0, 1]);
});

test('GPTQ: uncorrelated inputs leave nothing to trade, so it rounds to nearest', () => {
  const w = randomFloats(4 * 6, 3).map((v) => v * 3);
  const scale = Float32Array.of(0.5, 0.7, 0.3, 1);
  const h = new Float64Array(36);
  for (let i = 0; i < 6; i++) h[i * 6 + i] = 1 + i;
  assert.deepEqual([...gptqRound(w, scale, h, 7)], [...nearest(w, scale, 7)]);
});

/** Σ x·xᵀ of inputs mixing 6 latent factors: strongly correlated channels, as after a 1x1 expansion. */
function correlatedMoments(cols: number): Float64Array {
  const mix = randomFloats(cols * 6, 5);
  const samples = 400;
  const latent = randomFloats(samples * 6, 6);
  const h = new Float64Array(cols * cols);
  for (let n = 0; n < samples; n++) {
    const x = Array.from({ length: cols }, (_, i) => {
      let v = 0.1 * randomFloats(1, n * cols + i + 7)[0]!;
      for (let k = 0; k < 6; k++) v += mix[i * 6 + k]! * latent[n * 6 + k]!;
      return v;
    });
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) h[i * cols + j]! += x[i]! * x[j]!;
  }
  return h;
}

test('GPTQ: on correlated inputs the output error is well below rounding to nearest', () => {
  const rows = 8;
  const cols = 24;
  const h = correlatedMoments(cols);
  const w = randomFloats(rows * cols, 8);
  const scale = new Float32Array(rows).fill(2 / 7);
  const q = gptqRound(w, scale, h, 7);
  assert.ok(q.every((v) => v >= -7 && v <= 7));
  const ratio = outputError(w, q, scale, h) / outputError(w, nearest(w, scale, 7), scale, h);
  assert.ok(ratio < 0.5, `GPTQ / nearest output error ${ratio.toFixed(3)}`);
});

test('GPTQ with a choice of step: each row keeps the candidate whose rounding has the least output error', () => {
  const rows = 12;
  const cols = 24;
  const h = correlatedMoments(cols);
  // Row r's weights span r/4 of the grid of step 1/7 at most: some rows want the finer step, some the coarser.
  const w = randomFloats(rows * cols, 9).map((v, i) => v * (0.3 + Math.floor(i / cols) / 8));
  const candidates = [1 / 7, 0.5 / 7, 0.25 / 7].map((s) => new Float32Array(rows).fill(s));
  const { q, chosen } = gptqRoundChoosing(w, candidates, h, 7);
  const row = <T extends Float32Array | Int8Array>(x: T, r: number) => x.slice(r * cols, (r + 1) * cols) as T;
  for (let r = 0; r < rows; r++) {
    const errors = candidates.map((s) => outputError(row(w, r), gptqRound(row(w, r), s.subarray(r, r + 1), h, 7), s.subarray(r, r + 1), h));
    assert.equal(errors[chosen[r]!], Math.min(...errors), `row ${r}: errors ${errors.map((e) => e.toFixed(4))}, chose ${chosen[r]}`);
    assert.deepEqual(row(q, r), gptqRound(row(w, r), candidates[chosen[r]!]!.subarray(r, r + 1), h, 7));
  }
  assert.ok(new Set(chosen).size > 1, `every row chose candidate ${chosen[0]}`);
});

test('GPTQ on WESS weights: each channel takes one of its two shifts, and the output error is at most that of the MSE shifts', () => {
  const rows = 16;
  const cols = 24;
  const h = correlatedMoments(cols);
  const w = randomFloats(rows * cols, 10).map((v, i) => v * 2 ** -((Math.floor(i / cols) * 5) % 7) * (1 + (Math.floor(i / cols) % 3) / 3));
  const ptq = quantizeWithShifts(w, rows, { bits: 4, shiftBits: 4 });
  const [coarser, finer] = shiftChoices(w, rows, ptq.layerScale!, { bits: 4, maxShift: 15 });
  const plain = { ...ptq, q: gptqRound(w, ptq.scale, h, 7) };
  const chosen = { ...ptq };
  gptqQuantize(w, chosen, h);
  chosen.shifts!.forEach((k, c) => {
    assert.ok(k === coarser[c] || k === finer[c], `channel ${c}: shift ${k} not in {${coarser[c]}, ${finer[c]}}`);
    assert.equal(chosen.scale[c], Math.fround(ptq.layerScale! * 2 ** -k));
  });
  assert.notDeepEqual(chosen.shifts, ptq.shifts, 'some channel changed its shift');
  assert.ok(outputError(w, chosen.q, chosen.scale, h) < outputError(w, plain.q, plain.scale, h));
  assert.equal(chosen.sqnrDb, sqnrDb(w, dequantize(chosen)));
});

test('GPTQ on per-tensor weights: every row rounds on the one step, for less output error than rounding to nearest', () => {
  const rows = 6;
  const cols = 18;
  const h = correlatedMoments(cols);
  const w = randomFloats(rows * cols, 11);
  const ptq = quantizePerTensor(w, { bits: 4, method: 'mse' });
  const gptq = { ...ptq };
  gptqQuantize(w, gptq, h);
  assert.equal(gptq.scale.length, 1);
  const steps = new Float32Array(rows).fill(ptq.scale[0]!);
  assert.ok(outputError(w, gptq.q, steps, h) < outputError(w, ptq.q, steps, h));
  assert.equal(gptq.sqnrDb, sqnrDb(w, dequantize(gptq)));
});

/** Σ p·pᵀ over batch and output positions, patches read by hand from an NCHW input. */
function handMoments(x: Float32Array, [n, c, h, w]: number[], k: number, stride: number, pad: number): Float64Array {
  const size = c * k * k;
  const out = new Float64Array(size * size);
  const oh = Math.floor((h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((w + 2 * pad - k) / stride) + 1;
  for (let b = 0; b < n; b++)
    for (let y = 0; y < oh; y++)
      for (let z = 0; z < ow; z++) {
        const p = new Float64Array(size);
        for (let ch = 0; ch < c; ch++)
          for (let i = 0; i < k; i++)
            for (let j = 0; j < k; j++) {
              const yy = y * stride + i - pad;
              const zz = z * stride + j - pad;
              if (yy >= 0 && yy < h && zz >= 0 && zz < w) p[(ch * k + i) * k + j] = x[((b * c + ch) * h + yy) * w + zz]!;
            }
        for (let i = 0; i < size; i++) for (let j = 0; j < size; j++) out[i * size + j]! += p[i]! * p[j]!;
      }
  return out;
}

for (const { k, stride, pad } of [
  { k: 1, stride: 1, pad: 0 },
  { k: 3, stride: 2, pad: 1 },
]) {
  test(`patch moments of a ${k}x${k} conv (stride ${stride}, pad ${pad}) sum p·pᵀ over batch and positions, as by hand`, async () => {
    const g = createGraph('conv');
    const dims = [2, 3, 5, 4];
    g.inputs.push({ name: 'x', dataType: 'float32', shape: dims });
    g.outputs.push({ name: 'y', dataType: 'float32' });
    g.initializers.set('w', randomTensor([4, 3, k, k], 2));
    g.nodes.push(
      makeNode('Conv', ['x', 'w'], ['y'], {
        kernel_shape: attr.ints([k, k]),
        strides: attr.ints([stride, stride]),
        pads: attr.ints([pad, pad, pad, pad]),
      }),
    );
    const model: Model = { graph: g, opset: 17, producerName: 'test', metadata: {} };
    const layer = { node: g.nodes[0]!, weight: 'w', channelAxis: 0 };
    assert.ok(hasPatchMoments(layer, g));

    const x = randomFloats(
      dims.reduce((a, b) => a * b, 1),
      9,
    );
    const { model: probed, outputs } = withPatchMoments(model, [layer]);
    const session = await openSession(probed);
    const out = await runSession(session, { x: floatTensor(dims, x) });
    await session.release();
    const moments = new PatchMoments();
    moments.observe(out[outputs.get(layer.node.name)!]!.data as Float32Array);
    const expected = handMoments(x, dims, k, stride, pad);
    assert.equal(moments.total().length, expected.length);
    moments.total().forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) < 1e-4, `moment ${i}: ${v} vs ${expected[i]}`));
  });
}

test('patch moments: two 1x1 convolutions reading the same value share one product', () => {
  const g = createGraph('branches');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 3, 4, 4] });
  g.initializers.set('w1', randomTensor([4, 3, 1, 1], 2));
  g.initializers.set('w2', randomTensor([2, 3, 1, 1], 3));
  g.nodes.push(makeNode('Conv', ['x', 'w1'], ['y1'], {}, 'a'), makeNode('Conv', ['x', 'w2'], ['y2'], {}, 'b'));
  const model: Model = { graph: g, opset: 17, producerName: 'test', metadata: {} };
  const layers = g.nodes.map((node, i) => ({ node, weight: `w${i + 1}`, channelAxis: 0 }));
  const { model: probed, outputs } = withPatchMoments(model, layers);
  assert.equal(outputs.get('a'), outputs.get('b'));
  assert.equal(probed.graph.nodes.filter((n) => n.opType === 'Gemm').length, 1);
});

test('patch moments skip grouped convolutions', () => {
  const g = createGraph('dw');
  g.initializers.set('w', randomTensor([3, 1, 3, 3], 2));
  const node = makeNode('Conv', ['x', 'w'], ['y'], { group: attr.int(3) });
  assert.equal(hasPatchMoments({ node, weight: 'w', channelAxis: 0 }, g), false);
});

test('end to end on MobileNetV2 w4a8-channel: GPTQ rounding brings the quantized outputs closer to float than rounding to nearest', async (t) => {
  const shared = await loadShared('mobilenet_v2_1.0_224_int8.tflite', 'imagenet-sample-1k', 'imagenet-val-650');
  if ('skip' in shared) return t.skip(shared.skip);
  const {
    model,
    data: [calib, val],
  } = shared;
  const quantize = (gptq: boolean) => quantizeModel(model, calib, { profile: loadProfile('w4a8-channel'), calibLimit: 64, gptq });
  const nearest = await quantize(false);
  const gptq = await quantize(true);
  const images = await decodeImages(model, val, { limit: 64, preprocess: gptq.preprocess.spec, batch: 32 });
  // Mean KL(float ‖ quantized) of the softmax outputs on images calibration never saw.
  const kl = (m: Model) => modelOutputError(model, m, images, { batch: 32 });
  const [klNearest, klGptq] = [await kl(nearest.model), await kl(gptq.model)];
  assert.ok(klGptq < 0.75 * klNearest, `KL with GPTQ ${klGptq.toFixed(3)} vs nearest ${klNearest.toFixed(3)}`);
});
