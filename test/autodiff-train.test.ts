import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createGraph } from '../src/graph/graph.js';
import { floatTensor, toFloat32 } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { runModel } from '../src/runtime/session.js';
import { adamUpdate } from '../src/autodiff/adam.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { fakeQuant, lsqGradScale } from '../src/autodiff/fake-quant.js';
import { mseLoss } from '../src/autodiff/loss.js';
import { Trainer } from '../src/autodiff/train-step.js';
import { randomTensor, tinyCnn } from './fixtures.js';

test('Adam update matches hand-computed bias-corrected steps', async () => {
  const model: Model = { graph: createGraph('adam'), opset: 17, producerName: 'test', metadata: {} };
  const g = model.graph;
  for (const name of ['p', 'g', 'm', 'v']) g.inputs.push({ name, dataType: 'float32', shape: [2] });
  g.inputs.push({ name: 't', dataType: 'float32', shape: [] }, { name: 'lr', dataType: 'float32', shape: [] });
  const b = new GraphBuilder(model);
  const [u] = adamUpdate(b, [{ param: 'p', grad: 'g', m: 'm', v: 'v' }], 't', 'lr', { beta1: 0.5, beta2: 0.75, epsilon: 0.1 });
  g.outputs.push(...[u!.param, u!.m, u!.v].map((name) => ({ name, dataType: 'float32' as const, shape: [2] })));

  // Step 1 from zero moments: m = 0.5·g, v = 0.25·g², m̂ = g, v̂ = g², p' = p − lr·g/(|g| + 0.1).
  let out = await runModel(model, {
    p: floatTensor([2], [1, -2]),
    g: floatTensor([2], [0.4, -3]),
    m: floatTensor([2], [0, 0]),
    v: floatTensor([2], [0, 0]),
    t: floatTensor([], [1]),
    lr: floatTensor([], [0.1]),
  });
  const close = (got: ArrayLike<number>, want: number[]) =>
    want.forEach((w, i) => assert.ok(Math.abs(got[i]! - w) < 1e-6, `${got[i]} vs ${w}`));
  close(out[u!.m]!.data as Float32Array, [0.2, -1.5]);
  close(out[u!.v]!.data as Float32Array, [0.04, 2.25]);
  close(out[u!.param]!.data as Float32Array, [1 - (0.1 * 0.4) / 0.5, -2 + (0.1 * 3) / 3.1]);

  // Step 2, g = [1, 1]: m = [0.6, −0.25], v = [0.28, 1.9375]; m̂ = m/0.75, v̂ = v/0.4375.
  out = await runModel(model, {
    p: floatTensor([2], [0, 0]),
    g: floatTensor([2], [1, 1]),
    m: floatTensor([2], [0.2, -1.5]),
    v: floatTensor([2], [0.04, 2.25]),
    t: floatTensor([], [2]),
    lr: floatTensor([], [0.1]),
  });
  const step = (m: number, v: number) => (-0.1 * (m / 0.75)) / (Math.sqrt(v / 0.4375) + 0.1);
  close(out[u!.param]!.data as Float32Array, [step(0.6, 0.28), step(-0.25, 1.9375)]);
});

test('training steps (forward + backward + Adam in one session) lower an L2 loss on tinyCnn', async () => {
  const model = tinyCnn();
  model.graph.inputs.push({ name: 'target', dataType: 'float32', shape: ['batch', 3] });
  const loss = mseLoss(new GraphBuilder(model), 'y', 'target');
  model.graph.outputs = [{ name: loss, dataType: 'float32', shape: [] }];
  const params = ['w', 'b', 'bn_scale', 'bn_bias', 'fc_w', 'fc_b'];
  const before = new Map(params.map((p) => [p, model.graph.initializers.get(p)!.data.slice()]));
  const trainer = await Trainer.create(model, { loss, params }, { threads: 1 });
  try {
    const feeds = { x: randomTensor([8, 3, 5, 5], 21), target: randomTensor([8, 3], 22) };
    const losses: number[] = [];
    for (let i = 0; i < 40; i++) losses.push(await trainer.step(feeds, 0.05));
    assert.ok(losses.at(-1)! < 0.2 * losses[0]!, `loss ${losses[0]} → ${losses.at(-1)}`);
    for (const p of params) {
      assert.deepEqual(model.graph.initializers.get(p)!.data, before.get(p), `the model's '${p}' is untouched`);
      assert.notDeepEqual(trainer.parameters().get(p)!.data, before.get(p), `'${p}' was trained`);
    }
  } finally {
    await trainer.release();
  }
});

test('LSQ scales of int4 fake-quantized weights learn by distillation from the float model', async () => {
  const x = randomTensor([8, 3, 5, 5], 31);
  const target = (await runModel(tinyCnn(), { x })).y!;

  const model = tinyCnn();
  const g = model.graph;
  const w = toFloat32(g.initializers.get('w')!);
  // Per output channel, the step that maps the largest weight to qmax = 7, made 3x too coarse.
  const steps = Array.from({ length: 4 }, (_, c) => (3 * Math.max(...w.subarray(c * 27, c * 27 + 27).map(Math.abs))) / 7);
  g.initializers.set('w_scale', floatTensor([4], steps));
  const b = new GraphBuilder(model);
  const wq = fakeQuant(b, 'w', 'w_scale', { qmin: -8, qmax: 7, perChannelAxis: 0, gradScale: lsqGradScale(27, 7) });
  const conv = g.nodes.find((n) => n.opType === 'Conv')!;
  conv.inputs[1] = wq;
  g.nodes.splice(g.nodes.indexOf(conv), 0, g.nodes.pop()!);
  g.inputs.push({ name: 'target', dataType: 'float32', shape: ['batch', 3] });
  const loss = mseLoss(b, 'y', 'target');
  g.outputs = [{ name: loss, dataType: 'float32', shape: [] }];

  const trainer = await Trainer.create(model, { loss, params: ['w_scale'] }, { threads: 1 });
  try {
    const losses: number[] = [];
    for (let i = 0; i < 30; i++) losses.push(await trainer.step({ x, target }, 0.03));
    // Rounding makes single steps noisy; the late average must be well below the start.
    const late = losses.slice(-10).reduce((s, l) => s + l, 0) / 10;
    assert.ok(late < 0.5 * losses[0]!, `loss ${losses[0]} → ${late} (mean of the last 10 steps)`);
    const learned = trainer.parameters().get('w_scale')!.data as Float32Array;
    assert.ok(
      learned.every((s, c) => s > 0 && s < 0.75 * steps[c]!),
      `steps ${steps} → ${learned}`,
    );
  } finally {
    await trainer.release();
  }
});
