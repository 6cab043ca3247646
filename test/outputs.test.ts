import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, sizeOf } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { hostTail } from '../src/graph/host-tail.js';
import { loadProfile, type TargetProfile } from '../src/quantization/profile.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import { openSession, runModel, runSession } from '../src/runtime/session.js';
import { buildNpuPackage } from '../src/npu/package.js';
import { verifyPackage } from '../src/npu/verify.js';
import { outputTerms, termError } from '../src/eval/output-error.js';
import { buildStudent, finetune } from '../src/qft/index.js';
import { loadDataset, type Dataset } from '../src/data/dataset.js';
import { minMaxQdq, randomFloats, tinyCnn } from './fixtures.js';
import { loadShared, sharedPath } from './shared.js';

const IMAGES = 8;
const images = () => randomFloats(IMAGES * 3 * 6 * 6, 7);

/** x [N, 3, 6, 6] → Conv 3x3 → Relu, then two 1x1 Conv heads: boxes [N, 2, 6, 6] and scores [N, 1, 6, 6]. */
function twoHeads(tail?: 'argmax'): Model {
  const g = createGraph('two_heads');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['batch', 3, 6, 6] });
  const weight = (name: string, dims: number[], seed: number) => {
    g.initializers.set(
      name,
      floatTensor(
        dims,
        randomFloats(sizeOf(dims), seed).map((v) => v * 0.5),
      ),
    );
    g.initializers.set(`${name}_b`, floatTensor([dims[0]!], randomFloats(dims[0]!, seed + 1)));
  };
  weight('w', [4, 3, 3, 3], 1);
  weight('wb', [2, 4, 1, 1], 3);
  weight('ws', [3, 4, 1, 1], 5);
  g.nodes.push(
    makeNode('Conv', ['x', 'w', 'w_b'], ['c'], { kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]) }, 'conv'),
    makeNode('Relu', ['c'], ['r'], {}, 'relu'),
    makeNode('Conv', ['r', 'wb', 'wb_b'], ['boxes'], { kernel_shape: attr.ints([1, 1]) }, 'box_head'),
    makeNode('Conv', ['r', 'ws', 'ws_b'], ['scores'], { kernel_shape: attr.ints([1, 1]) }, 'score_head'),
  );
  if (tail === 'argmax') {
    // A class map as a float model's last ops: ArgMax (int64), then a Cast back to float.
    g.nodes.push(
      makeNode('ArgMax', ['scores'], ['classes'], { axis: attr.int(1), keepdims: attr.int(0) }, 'argmax'),
      makeNode('Cast', ['classes'], ['class_map'], { to: attr.int(1) }, 'cast'),
    );
    g.outputs.push({ name: 'class_map', dataType: 'float32', shape: ['batch', 6, 6] });
  } else {
    g.outputs.push(
      { name: 'boxes', dataType: 'float32', shape: ['batch', 2, 6, 6] },
      { name: 'scores', dataType: 'float32', shape: ['batch', 3, 6, 6] },
    );
  }
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

/** PTQ by hand (min-max ranges) over `images`. */
const quantize = (model: Model, profile: TargetProfile) =>
  minMaxQdq(model, profile, { dataType: 'float32', dims: [IMAGES, 3, 6, 6], data: images() });

async function* batches() {
  yield { data: images(), count: IMAGES };
}

test('two outputs: both calibrated and quantized in the QDQ model, both package outputs, verify compares both', async () => {
  const profile = loadProfile('w8a8-shift');
  const { plan, qdq } = await quantize(twoHeads(), profile);
  assert.ok(plan.activations.includes('boxes') && plan.activations.includes('scores'));
  const quantizedValues = qdq.graph.nodes.filter((n) => n.opType === 'DequantizeLinear').map((n) => n.outputs[0]);
  assert.ok(quantizedValues.includes('boxes') && quantizedValues.includes('scores'), 'each output is a DequantizeLinear output');
  const pkg = await buildNpuPackage(qdq, profile);
  assert.deepEqual(pkg.outputs, ['boxes', 'scores']);
  assert.equal(pkg.hostTail, undefined);
  const report = await verifyPackage(pkg, qdq, batches(), { integerModel: true });
  assert.deepEqual(
    report.outputs.map((o) => [o.tensor, o.elements]),
    [
      ['boxes', IMAGES * 2 * 36],
      ['scores', IMAGES * 3 * 36],
    ],
  );
  for (const o of report.outputs) assert.ok(o.maxDiff <= 1, `${o.tensor}: ${o.maxDiff} LSB`);
  for (const a of report.integerModel!) assert.equal(a.exact, a.elements, a.tensor);
});

test("ArgMax → Cast stays unquantized in the QDQ model and is the NPU package's named host tail; verify compares the cut", async () => {
  const model = twoHeads('argmax');
  assert.deepEqual(
    hostTail(model.graph).map((n) => n.name),
    ['argmax', 'cast'],
  );
  const profile = loadProfile('w8a8-shift');
  const { plan, qdq } = await quantize(model, profile);
  assert.ok(plan.activations.includes('scores'), "the tail's input is the NPU's output, quantized");
  assert.ok(!plan.activations.includes('class_map') && !plan.activations.includes('classes'));
  const quantized = new Set(qdq.graph.nodes.filter((n) => n.opType === 'QuantizeLinear').map((n) => n.inputs[0]));
  const argmax = qdq.graph.nodes.find((n) => n.opType === 'ArgMax')!;
  assert.equal(argmax.inputs[0], 'scores', 'ArgMax reads the dequantized scores');
  assert.ok(![...quantized].some((v) => v?.startsWith('class')), 'nothing after ArgMax is quantized');
  // The QDQ model runs end to end; its class map matches the float model's on most pixels.
  const x = { dataType: 'float32' as const, dims: [IMAGES, 3, 6, 6], data: images() };
  const want = (await runModel(model, { x })).class_map!.data as Float32Array;
  const session = await openSession(qdq, { simulate: true });
  const got = (await runSession(session, { x })).class_map!.data as Float32Array;
  await session.release();
  assert.ok(want.filter((v, i) => v === got[i]).length / want.length > 0.9);
  const pkg = await buildNpuPackage(qdq, profile);
  assert.deepEqual(pkg.hostTail, [
    { name: 'argmax', opType: 'ArgMax' },
    { name: 'cast', opType: 'Cast' },
  ]);
  assert.deepEqual(pkg.outputs, ['scores']);
  const report = await verifyPackage(pkg, qdq, batches());
  assert.deepEqual(
    report.outputs.map((o) => o.tensor),
    ['scores'],
  );
  assert.ok(report.outputs[0]!.maxDiff <= 1);
});

test('host tail: the unweighted nodes that feed only the tail join it; a weighted layer, a graph output or a value read elsewhere stops it', () => {
  const g = createGraph('tail');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 3, 4, 4] });
  g.initializers.set('w', floatTensor([4, 3, 1, 1], randomFloats(12, 1)));
  g.initializers.set('gain', floatTensor([1, 4, 1, 1], [1, 2, 3, 4]));
  g.nodes.push(
    makeNode('Conv', ['x', 'w'], ['c'], {}, 'conv'),
    makeNode('Relu', ['c'], ['features'], {}, 'relu'),
    makeNode('Sigmoid', ['features'], ['probs'], {}, 'sigmoid'),
    makeNode('Mul', ['probs', 'gain'], ['scaled'], {}, 'decode'),
    makeNode('ArgMax', ['scaled'], ['class_map'], { axis: attr.int(1) }, 'argmax'),
  );
  g.outputs.push({ name: 'class_map', dataType: 'int64' });
  const model: Model = { graph: g, opset: 17, producerName: 'test', metadata: {} };
  // The convolution's ReLU is part of the layer (fused into its requantization): the NPU keeps it.
  assert.deepEqual(
    hostTail(g).map((n) => n.name),
    ['sigmoid', 'decode', 'argmax'],
  );
  // A value the model also outputs stays with the NPU.
  g.outputs.push({ name: 'probs', dataType: 'float32' });
  assert.deepEqual(
    hostTail(model.graph).map((n) => n.name),
    ['decode', 'argmax'],
  );
});

test('--loss auto: KL on a classifier, normalized L2 on each output of a two-output model', () => {
  assert.deepEqual(outputTerms(tinyCnn()), [{ tensor: 'y', kind: 'kl', classes: 3 }]);
  const softmax = tinyCnn();
  softmax.graph.nodes.push(makeNode('Softmax', ['y'], ['p'], { axis: attr.int(-1) }));
  softmax.graph.outputs = [{ name: 'p', dataType: 'float32' }];
  assert.deepEqual(outputTerms(softmax), [{ tensor: 'y', kind: 'kl', classes: 3 }], 'a probability output is compared on its logits');
  assert.deepEqual(outputTerms(twoHeads()), [
    { tensor: 'boxes', kind: 'l2' },
    { tensor: 'scores', kind: 'l2' },
  ]);
  assert.deepEqual(outputTerms(twoHeads('argmax')), [{ tensor: 'scores', kind: 'l2' }], "a class map is compared at the host tail's input");
});

/** x [2, 2] → Relu → a, x → Neg → b: two outputs and nothing to quantize. */
function twoOutputs(): Model {
  const g = createGraph('two');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [2, 2] });
  g.nodes.push(makeNode('Relu', ['x'], ['a']), makeNode('Neg', ['x'], ['b']));
  g.outputs.push({ name: 'a', dataType: 'float32' }, { name: 'b', dataType: 'float32' });
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

test("--loss auto: the student's loss is the hand-computed normalized L2 sum, or KL for one [N, K] output", async () => {
  const none = { activations: new Map(), weights: [] };
  const student = buildStudent(twoOutputs(), none, { scaleRatio: 1, biasRatio: 1, batch: 2 });
  assert.deepEqual(
    student.targets.map((t) => [t.tensor, t.kind]),
    [
      ['a', 'l2'],
      ['b', 'l2'],
    ],
  );
  // x = [[1, −2], [3, 0]]: a = [[1, 0], [3, 0]], b = [[−1, 2], [−3, 0]].
  // a vs [[2, 0], [3, 1]]: 1/4 and 1/10; b vs [[−1, 1], [−3, 0]]: 1/2 and 0; means 0.175 + 0.25.
  const feeds = {
    x: floatTensor([2, 2], [1, -2, 3, 0]),
    [student.targets[0]!.input]: floatTensor([2, 2], [2, 0, 3, 1]),
    [student.targets[1]!.input]: floatTensor([2, 2], [-1, 1, -3, 0]),
  };
  const loss = (await runModel(student.model, feeds))[student.loss]!.data[0] as number;
  assert.ok(Math.abs(loss - 0.425) < 1e-6, `loss ${loss}`);
  // outputError's terms add the same per-image values (summed over the batch).
  const a = termError({ tensor: 'a', kind: 'l2' }, Float32Array.of(2, 0, 3, 1), Float32Array.of(1, 0, 3, 0), 2);
  const b = termError({ tensor: 'b', kind: 'l2' }, Float32Array.of(-1, 1, -3, 0), Float32Array.of(-1, 2, -3, 0), 2);
  assert.ok(Math.abs((a + b) / 2 - 0.425) < 1e-6);

  const g = createGraph('classifier');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 2] });
  g.nodes.push(makeNode('Relu', ['x'], ['y']));
  g.outputs.push({ name: 'y', dataType: 'float32' });
  const classifier = buildStudent({ graph: g, opset: 17, producerName: 'test', metadata: {} }, none, {
    scaleRatio: 1,
    biasRatio: 1,
    batch: 1,
  });
  assert.deepEqual(
    classifier.targets.map((t) => t.kind),
    ['kl'],
  );
  // Teacher softmax [3/4, 1/4], student [1/2, 1/2]: KL = 3/4·ln(3/2) + 1/4·ln(1/2).
  const kl = (
    await runModel(classifier.model, {
      x: floatTensor([1, 2], [0, 0]),
      [classifier.targets[0]!.input]: floatTensor([1, 2], [Math.log(3), 0]),
    })
  )[classifier.loss]!.data[0] as number;
  assert.ok(Math.abs(kl - (0.75 * Math.log(1.5) + 0.25 * Math.log(0.5))) < 1e-6, `kl ${kl}`);
});

test('BlazeFace: w8a8-shift PTQ of both outputs, NPU package with both, verify within 1 LSB per layer; 1-epoch QFT with --loss auto', async (t) => {
  const loaded = await loadShared('blazeface_128_float.onnx');
  const folder = sharedPath('data', 'wider-face-183');
  if ('skip' in loaded || folder.skip) return t.skip('skip' in loaded ? loaded.skip : (folder.skip as string));
  const all = await loadDataset(folder.path);
  const calib: Dataset = { ...all, items: all.items.slice(0, 16) };
  const profile = loadProfile('w8a8-shift');
  // The export has a fixed batch of 1.
  const ptq = await quantizeModel(loaded.model, calib, { profile, calibLimit: 16, batch: 1 });
  assert.deepEqual(
    ptq.outputs.map((o) => o.name),
    ['199', '180'],
  );
  for (const o of ptq.outputs) assert.ok(o.activation && o.sqnrDb! > 8, `${o.name}: ${o.sqnrDb} dB`);
  const pkg = await buildNpuPackage(ptq.model, profile);
  assert.equal(pkg.outputs.length, 2);
  assert.equal(pkg.hostTail, undefined);
  const report = await verifyPackage(
    pkg,
    ptq.model,
    (async function* () {
      yield { data: ptq.sample.data as Float32Array, count: 1 };
    })(),
    { integerModel: true },
  );
  assert.equal(report.outputs.length, 2);
  for (const a of report.isolated) assert.ok(a.maxDiff <= 1, `${a.layer}: ${a.maxDiff} LSB`);
  for (const a of report.integerModel!) assert.equal(a.exact, a.elements, a.tensor);

  assert.deepEqual(
    outputTerms(ptq.float).map((o) => o.kind),
    ['l2', 'l2'],
  );
  const tuned = await finetune(ptq, calib, { epochs: 1, batch: 1, calibLimit: 16 });
  assert.equal(tuned.steps, 16);
  assert.ok(Number.isFinite(tuned.initialLoss) && tuned.initialLoss > 0);
  assert.ok(tuned.losses[0]! < tuned.initialLoss * 2, `epoch loss ${tuned.losses[0]} vs first batch ${tuned.initialLoss}`);
});
