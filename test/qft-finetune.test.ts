import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildQdqModel, type QuantizationParams } from '../src/quantization/qdq.js';
import { toFloat32 } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { foldBatchNorm } from '../src/passes/fold-batchnorm.js';
import { activationQuantParams } from '../src/quantization/calibration.js';
import { planQuantization } from '../src/quantization/plan.js';
import { quantizeWeights } from '../src/quantization/weights.js';
import { openSession, runModel, runSession } from '../src/runtime/session.js';
import { buildStudent, exportStudent, finetuneImages, ImageSet, learningRate, TeacherTargets, TRAINED_GROUPS } from '../src/qft/index.js';
import { QuantflowError } from '../src/util/errors.js';
import { createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor } from '../src/graph/tensor.js';
import { maxAbsDiff, randomTensor, tinyCnn } from './fixtures.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const IMAGES = 64;

function floatModel(): Model {
  const model = tinyCnn();
  foldBatchNorm(model.graph);
  return model;
}

/** PTQ by hand: min-max activation grids (uint8, or uint16 at `activationBits` 16) and MSE weight scales at `bits`. */
async function ptq(
  model: Model,
  images: ImageSet,
  bits: number,
  granularity: 'tensor' | 'channel' | 'shift',
  kernelTaps = 1,
  activationBits = 8,
): Promise<QuantizationParams> {
  const plan = planQuantization(model.graph);
  const outputs = plan.activations.map((name) => ({ name, dataType: 'float32' as const }));
  const out = await runModel({ ...model, graph: { ...model.graph, outputs } }, { x: images.slice(0, images.count) });
  const activations = new Map(
    plan.activations.map((a) => {
      const v = a === 'x' ? images.data : (out[a]!.data as Float32Array);
      return [a, activationQuantParams({ min: Math.min(...v), max: Math.max(...v) }, activationBits, false)];
    }),
  );
  const weights = plan.layers.map((layer) => {
    const t = model.graph.initializers.get(layer.weight)!;
    const w = layer.channelAxis === 0 ? toFloat32(t) : transpose(toFloat32(t), t.dims);
    const layerSpec = granularity === 'shift' ? { bits, granularity, shiftBits: 4 } : { bits, granularity };
    return {
      layer,
      quantized: quantizeWeights(w, t.dims[layer.channelAxis]!, layerSpec as never, {
        kernelTaps: layer.node.opType === 'Conv' ? kernelTaps : 1,
      }),
    };
  });
  return { activations, weights };
}

function transpose(w: Float32Array, dims: number[]): Float32Array {
  const [rows, cols] = dims as [number, number];
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

/** Mean KL(float ‖ quantized) of the softmax over the logits, the QDQ model run as a float simulation. */
async function distillationLoss(model: Model, quantized: Model, images: ImageSet): Promise<number> {
  const x = images.slice(0, images.count);
  const teacher = (await runModel(model, { x })).y!.data as Float32Array;
  const session = await openSession(quantized, { simulate: true });
  const student = (await runSession(session, { x })).y!.data as Float32Array;
  await session.release();
  const classes = teacher.length / images.count;
  let kl = 0;
  for (let i = 0; i < images.count; i++) {
    const lt = logSoftmax(teacher.subarray(i * classes, (i + 1) * classes));
    const ls = logSoftmax(student.subarray(i * classes, (i + 1) * classes));
    lt.forEach((l, c) => (kl += Math.exp(l) * (l - ls[c]!)));
  }
  return kl / images.count;
}

function logSoftmax(z: Float32Array): number[] {
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
  return Array.from(z, (v) => v - lse);
}

/** 30 epochs of one 16-image batch at rates that move tinyCnn's 4-bit weights. */
const TINY_RUN = { epochs: 30, batch: 16, lrWeights: 0.05, lrScales: 0.01, seed: 7, threads: 1, schedule: 'constant' } as const;

test('QFT lowers the distillation loss of 4-bit per-tensor PTQ on tinyCnn and is deterministic', async () => {
  const model = floatModel();
  const images = new ImageSet('x', [3, 5, 5], randomTensor([IMAGES, 3, 5, 5], 41).data as Float32Array);
  const params = await ptq(model, images, 4, 'tensor');
  const before = await distillationLoss(model, buildQdqModel(model, params).model, images);
  const run = () => finetuneImages(model, params, images, TINY_RUN);
  const result = await run();
  const after = await distillationLoss(model, buildQdqModel(result.model, result.params).model, images);
  assert.equal(result.losses.length, 30);
  assert.equal(result.steps, 30 * (IMAGES / 16));
  // The training-time loss starts where PTQ is: the fake quantization matches the QDQ simulation.
  assert.ok(Math.abs(result.initialLoss - before) < 0.5 * before + 1e-4, `first step ${result.initialLoss} vs PTQ ${before}`);
  // Measured: 1.6e-3 → 2.6e-4.
  assert.ok(after < 0.3 * before, `KL ${before} (PTQ) → ${after} (QFT)`);

  const again = await run();
  assert.deepEqual(again.losses, result.losses);
  assert.deepEqual(
    again.params.weights.map((w) => w.quantized.q),
    result.params.weights.map((w) => w.quantized.q),
  );
  assert.deepEqual([...again.params.activations], [...result.params.activations]);
});

test('QFT trains 4-bit weights under 16-bit activations: the loss falls, the grids stay uint16, the QDQ model is opset 21', async () => {
  const model = floatModel();
  const images = new ImageSet('x', [3, 5, 5], randomTensor([IMAGES, 3, 5, 5], 41).data as Float32Array);
  const params = await ptq(model, images, 4, 'tensor', 1, 16);
  const before = await distillationLoss(model, buildQdqModel(model, params).model, images);
  const result = await finetuneImages(model, params, images, TINY_RUN);
  const qdq = buildQdqModel(result.model, result.params).model;
  const after = await distillationLoss(model, qdq, images);
  assert.ok(Math.abs(result.initialLoss - before) < 0.5 * before + 1e-4, `first step ${result.initialLoss} vs PTQ ${before}`);
  assert.ok(after < 0.5 * before, `KL ${before} (PTQ) → ${after} (QFT)`);
  for (const [name, g] of result.params.activations) assert.deepEqual([g.qmin, g.qmax], [0, 65535], name);
  assert.ok(qdq.opset >= 21);
});

test('QFT keeps WESS shifts and the integer grid, and honours the time budget', async () => {
  const model = floatModel();
  const images = new ImageSet('x', [3, 5, 5], randomTensor([IMAGES, 3, 5, 5], 43).data as Float32Array);
  const params = await ptq(model, images, 4, 'shift');
  const progress: number[] = [];
  const result = await finetuneImages(model, params, images, {
    epochs: 1000,
    batch: 16,
    timeBudgetSeconds: 0,
    threads: 1,
    onProgress: (step) => progress.push(step),
  });
  assert.equal(result.steps, 1, 'a zero budget stops after the first step');
  assert.ok(Number.isFinite(result.initialLoss) && result.initialLoss > 0, `loss ${result.initialLoss}`);
  assert.deepEqual(progress, [1]);
  result.params.weights.forEach(({ quantized }, i) => {
    const start = params.weights[i]!.quantized;
    assert.equal(quantized.granularity, 'shift');
    assert.deepEqual(quantized.shifts, start.shifts);
    assert.ok(quantized.q.every((q) => q >= -7 && q <= 7));
    quantized.scale.forEach((s, c) => assert.equal(s, Math.fround(quantized.layerScale! * 2 ** -quantized.shifts![c]!)));
  });
});

test('a run interrupted twice and resumed from its checkpoint ends exactly like an uninterrupted one', async () => {
  const model = floatModel();
  const images = new ImageSet('x', [3, 5, 5], randomTensor([IMAGES, 3, 5, 5], 47).data as Float32Array);
  const params = await ptq(model, images, 4, 'shift');
  const dir = mkdtempSync(join(tmpdir(), 'qft-checkpoint-'));
  try {
    // 3 epochs of 4 steps; high learning rates (the layer scales' above all) so that the WESS shifts change between epochs.
    const options = { epochs: 3, batch: 16, lrWeights: 0.5, lrScales: 0.2, seed: 3, threads: 1, checkpointSteps: 3, rechooseShifts: true };
    const whole = await finetuneImages(model, params, images, options);
    const interruptAt = async (step: number) => {
      const stop = new AbortController();
      const run = finetuneImages(model, params, images, {
        ...options,
        checkpoint: dir,
        signal: stop.signal,
        onProgress: (s) => s === step && stop.abort(),
      });
      await assert.rejects(
        run,
        (e: Error) => e instanceof QuantflowError && e.message.includes(`after step ${step} of 12`) && e.message.includes(dir),
      );
    };
    await interruptAt(4); // at an epoch's end, before its shifts are re-chosen
    await interruptAt(6); // mid-epoch, between checkpoints
    const resumed = await finetuneImages(model, params, images, { ...options, checkpoint: dir });
    assert.equal(resumed.stepsRun, 6);
    assert.deepEqual(resumed.stepLosses, whole.stepLosses);
    assert.deepEqual(resumed.losses, whole.losses);
    const shifts = (r: typeof whole) => r.params.weights.map((w) => [...w.quantized.shifts!]);
    assert.notDeepEqual(
      shifts(whole),
      params.weights.map((w) => [...w.quantized.shifts!]),
      'shifts were re-chosen',
    );
    assert.deepEqual(shifts(resumed), shifts(whole));
    assert.deepEqual(
      resumed.params.weights.map((w) => w.quantized.q),
      whole.params.weights.map((w) => w.quantized.q),
    );
    assert.deepEqual([...resumed.params.activations], [...whole.params.activations]);
    // A finished run's checkpoint returns the result without training; another run's is refused.
    assert.equal((await finetuneImages(model, params, images, { ...options, checkpoint: dir })).stepsRun, 0);
    await assert.rejects(finetuneImages(model, params, images, { ...options, seed: 4, checkpoint: dir }), /different run/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("frozen groups keep their PTQ values; the L2 loss starts at the QDQ model's normalized error", async () => {
  const model = floatModel();
  const images = new ImageSet('x', [3, 5, 5], randomTensor([IMAGES, 3, 5, 5], 53).data as Float32Array);
  const params = await ptq(model, images, 4, 'channel');
  // One batch of every image: the first step's loss is the loss over all of them.
  const weightsOnly = await finetuneImages(model, params, images, {
    batch: IMAGES,
    epochs: 2,
    loss: 'l2',
    lossLayers: ['y'],
    train: { biases: false, scales: false },
    lrWeights: 0.3,
    threads: 1,
  });
  assert.deepEqual([...weightsOnly.params.activations], [...params.activations]);
  weightsOnly.params.weights.forEach(({ quantized }, i) => assert.deepEqual(quantized.scale, params.weights[i]!.quantized.scale));
  assert.ok(
    weightsOnly.params.weights.some(({ quantized }, i) => quantized.q.some((q, j) => q !== params.weights[i]!.quantized.q[j])),
    'weights moved',
  );

  const x = images.slice(0, images.count);
  const teacher = (await runModel(model, { x })).y!.data as Float32Array;
  const session = await openSession(buildQdqModel(model, params).model, { simulate: true });
  const student = (await runSession(session, { x })).y!.data as Float32Array;
  await session.release();
  const classes = teacher.length / IMAGES;
  let l2 = 0;
  for (let i = 0; i < IMAGES; i++) {
    let error = 0;
    let energy = 0;
    for (let c = i * classes; c < (i + 1) * classes; c++) {
      error += (student[c]! - teacher[c]!) ** 2;
      energy += teacher[c]! ** 2;
    }
    l2 += error / energy / IMAGES;
  }
  assert.ok(Math.abs(weightsOnly.initialLoss - l2) < 0.02 * l2, `first step ${weightsOnly.initialLoss} vs QDQ ${l2}`);
  const both = await finetuneImages(model, params, images, { batch: IMAGES, loss: 'kl+l2', lossLayers: ['y'], threads: 1 });
  const kl = await distillationLoss(model, buildQdqModel(model, params).model, images);
  assert.ok(Math.abs(both.initialLoss - (kl + l2)) < 0.02 * (kl + l2), `kl+l2 first step ${both.initialLoss} vs ${kl} + ${l2}`);
  await assert.rejects(finetuneImages(model, params, images, { loss: 'l2', lossLayers: ['nope'], threads: 1 }), /'nope' is not a value/);
});

test('biases learn at their own rate: one Adam step moves each by lr-biases output steps', async () => {
  const model = floatModel();
  const images = new ImageSet('x', [3, 5, 5], randomTensor([IMAGES, 3, 5, 5], 59).data as Float32Array);
  const params = await ptq(model, images, 4, 'channel');
  const lrBiases = 0.02;
  const step = await finetuneImages(model, params, images, {
    batch: IMAGES,
    epochs: 1,
    schedule: 'constant',
    train: { weights: false, scales: false, equalization: false },
    lrBiases,
    threads: 1,
  });
  // With unit ratio the student's bias units are the output steps themselves.
  const units = buildStudent(model, params, { loss: 'kl', logits: 'y', scaleRatio: 1, biasRatio: 1, batch: IMAGES }).layers;
  const ratios: number[] = [];
  for (const { layer, bias } of units) {
    if (!bias) continue;
    const start = toFloat32(model.graph.initializers.get(layer.bias!)!);
    const after = toFloat32(step.model.graph.initializers.get(layer.bias!)!);
    start.forEach((b0, c) => ratios.push(Math.abs(after[c]! - b0) / (lrBiases * bias.unit)));
  }
  // Adam's first step is lr·g/(|g| + ε): lr units where the gradient is large, a little less where ε counts.
  assert.ok(ratios.length > 0 && ratios.every((r) => r > 0.95 && r < 1 + 1e-4), `moves in units of lr-biases output steps: ${ratios}`);
  assert.ok(ratios.filter((r) => Math.abs(r - 1) < 1e-4).length > ratios.length / 2, `moves: ${ratios}`);
});

test('equalization factors: trained between conv → ReLU → conv and folded into both layers on export', async () => {
  const g = createGraph('pair');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['batch', 2, 4, 4] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: ['batch', 2] });
  g.initializers.set('w1', randomTensor([3, 2, 1, 1], 61));
  g.initializers.set('b1', floatTensor([3], [0.1, 0.2, 0.3]));
  g.initializers.set('w2', randomTensor([2, 3, 1, 1], 62));
  g.initializers.set('shape', int64Tensor([2], [0, -1]));
  g.nodes.push(
    makeNode('Conv', ['x', 'w1', 'b1'], ['h']),
    makeNode('Relu', ['h'], ['r']),
    makeNode('Conv', ['r', 'w2'], ['c']),
    makeNode('GlobalAveragePool', ['c'], ['p']),
    makeNode('Reshape', ['p', 'shape'], ['y']),
  );
  const model: Model = { graph: g, opset: 17, producerName: 'test', metadata: {} };
  const images = new ImageSet('x', [2, 4, 4], randomTensor([16, 2, 4, 4], 63).data as Float32Array);
  const params = await ptq(model, images, 8, 'channel');
  const student = buildStudent(model, params, { loss: 'kl', logits: 'y', scaleRatio: 1, biasRatio: 1, batch: 4 });
  assert.equal(student.equalization.length, 1);
  const trained = await finetuneImages(model, params, images, { batch: 4, epochs: 2, lrScales: 0.05, threads: 1 });
  assert.equal(trained.equalizedPairs, 1);
  assert.ok(trained.losses.every(Number.isFinite));
  // f < 1 grows the first layer's weights: its step sizes grow with them (θ = 1/f − 1), so its
  // integer weights stay PTQ's; the second layer's shrink within their grid.
  const f = [0.8, 0.9, 0.7];
  const values = new Map(
    Object.values(student.params)
      .flat()
      .map((p) => [p, student.model.graph.initializers.get(p)!]),
  );
  values.set(
    student.equalization[0]!.theta,
    floatTensor(
      [3],
      f.map((v) => v - 1),
    ),
  );
  values.set(
    student.layers[0]!.scale,
    floatTensor(
      [3],
      f.map((v) => 1 / v - 1),
    ),
  );
  // The activation between them grows by up to 1/0.7: so does its step size.
  for (const a of student.activations) if (a.tensor === 'h' || a.tensor === 'r') values.set(a.scale, floatTensor([], [1 / 0.7 - 1]));
  const out = exportStudent(model, params, student, values);
  const [first, second] = out.params.weights.map((w) => w.quantized);
  assert.deepEqual(first!.q, params.weights[0]!.quantized.q);
  first!.scale.forEach((s, c) => assert.ok(Math.abs(s - params.weights[0]!.quantized.scale[c]! / f[c]!) < 1e-6 * s, `scale ${c}`));
  const w2 = toFloat32(g.initializers.get('w2')!);
  const q2 = w2.map((v, j) => Math.max(-127, Math.min(127, Math.round((v * f[j % 3]!) / second!.scale[Math.floor(j / 3)]!))));
  assert.deepEqual([...second!.q], [...q2]);
  assert.deepEqual(
    [...toFloat32(out.model.graph.initializers.get('b1')!)],
    [0.1, 0.2, 0.3].map((b, c) => Math.fround(Math.fround(b) / Math.fround(f[c]!))),
  );
  // The function is unchanged up to quantization noise.
  const x = images.slice(0, 16);
  const float = (await runModel(model, { x })).y!.data as Float32Array;
  const session = await openSession(buildQdqModel(out.model, out.params).model, { simulate: true });
  const quantized = (await runSession(session, { x })).y!.data as Float32Array;
  await session.release();
  assert.ok(maxAbsDiff(float, quantized) < 0.05 * Math.max(...float.map(Math.abs)), `max difference ${maxAbsDiff(float, quantized)}`);
});

test('learning-rate schedules: 5% linear warm-up, then a half cosine to zero; or constant', () => {
  const cosine = learningRate('cosine', 100);
  assert.deepEqual([0, 1, 4].map(cosine), [0.2, 0.4, 1]);
  assert.equal(cosine(5), 1);
  assert.ok(Math.abs(cosine(52.5) - 0.5) < 1e-12);
  assert.ok(cosine(99) > 0 && cosine(99) < 0.001);
  assert.equal(learningRate('cosine', 1)(0), 1, 'a single step runs at the full rate');
  assert.deepEqual([0, 50, 99].map(learningRate('constant', 100)), [1, 1, 1]);
});

test('teacher values: cached or recomputed per batch, the same numbers', async () => {
  const model = floatModel();
  const images = new ImageSet('x', [3, 5, 5], randomTensor([8, 3, 5, 5], 71).data as Float32Array);
  const cached = await TeacherTargets.create(model, ['y', 'relu'], images, 4);
  const recomputed = await TeacherTargets.create(model, ['y', 'relu'], images, 4, 0);
  assert.ok(cached.cached && !recomputed.cached);
  const indices = [5, 2, 7];
  const batch = images.gather(indices, new Float32Array(3 * images.size));
  const a = await cached.gather(indices, batch);
  const b = await recomputed.gather(indices, batch);
  for (const t of ['y', 'relu']) {
    assert.deepEqual(a[t]!.dims, b[t]!.dims);
    assert.ok(maxAbsDiff(a[t]!.data as Float32Array, b[t]!.data as Float32Array) < 1e-6, t);
  }
  await Promise.all([cached.release(), recomputed.release()]);
});

test("QFT starts where PTQ ended: untrained, the student exports PTQ's integers, also those not rounded to nearest", async () => {
  const model = floatModel();
  const images = new ImageSet('x', [3, 5, 5], randomTensor([8, 3, 5, 5], 71).data as Float32Array);
  const params = await ptq(model, images, 4, 'channel', 9);
  const conv = params.weights[0]!;
  const w = toFloat32(model.graph.initializers.get(conv.layer.weight)!);
  const per = w.length / conv.quantized.scale.length;
  const nearest = w.map((v, i) => Math.max(-7, Math.min(7, Math.round(v / conv.quantized.scale[Math.floor(i / per)]!))));
  assert.ok(
    conv.quantized.q.some((q, i) => q !== nearest[i]),
    'kernel sums re-rounded some weights',
  );
  const student = buildStudent(model, params, { loss: 'kl', logits: 'y', scaleRatio: 0.05, biasRatio: 10, batch: 8 });
  const untrained = new Map(TRAINED_GROUPS.flatMap((g) => student.params[g]).map((p) => [p, student.model.graph.initializers.get(p)!]));
  const exported = exportStudent(model, params, student, untrained);
  exported.params.weights.forEach(({ quantized }, i) => assert.deepEqual(quantized.q, params.weights[i]!.quantized.q));
});
