/**
 * Input sizes fixed when a model is prepared, and the shape subgraphs exporters leave behind
 * folded to constants: the new shape operators (known answers, checked against onnxruntime),
 * hand-built dynamic graphs (Reshape and Resize targets from Shape arithmetic, a dynamic
 * batch left dynamic), the missing-size error, TSE on a dynamic SE block, and BlazeFace with
 * a symbolic height and width against the original file run by onnxruntime.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { inferShapes } from '../src/graph/shapes.js';
import { floatTensor, int64Tensor, toNumbers } from '../src/graph/tensor.js';
import type { Dim, Model, Node, TensorData } from '../src/graph/types.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { readOnnxFile } from '../src/onnx/read.js';
import { writeOnnxFile } from '../src/onnx/write.js';
import { runModel } from '../src/runtime/session.js';
import { detectSqueezeExcite } from '../src/tse/detect.js';
import { QuantflowError } from '../src/util/errors.js';
import { maxAbsDiff, randomTensor } from './fixtures.js';
import { sharedPath } from './shared.js';

function model(
  inputs: Record<string, Dim[]>,
  initializers: Record<string, TensorData>,
  nodes: Node[],
  outputs: string[],
  opset = 13,
): Model {
  const g = createGraph('t');
  for (const [name, shape] of Object.entries(inputs)) g.inputs.push({ name, dataType: 'float32', shape });
  for (const [name, t] of Object.entries(initializers)) g.initializers.set(name, t);
  g.nodes.push(...nodes);
  const m: Model = { graph: g, opset, producerName: 'test', metadata: {} };
  inferShapes(m);
  for (const o of outputs) g.outputs.push({ ...g.valueInfo.get(o)! });
  return m;
}

const ints = (values: number[]) => int64Tensor([values.length], values);
const scalar = (v: number) => int64Tensor([], [v]);
const values = (t: TensorData) => (t.dataType === 'int64' ? toNumbers(t) : Array.from(t.data as Float32Array));

/**
 * One constant-input node: its inferred shape and elements must be `shape` and `expected`,
 * and onnxruntime must compute the same.
 */
async function knownAnswer(node: Node, initializers: Record<string, TensorData>, shape: number[], expected: number[]): Promise<void> {
  const m = model({}, initializers, [node], node.outputs);
  const elements = inferShapes(m);
  const out = node.outputs[0]!;
  assert.deepEqual(m.graph.valueInfo.get(out)!.shape, shape, `${node.opType} shape`);
  // Shape operands are 1-D; higher-rank values are tracked when small, never required.
  if (shape.length <= 1 || elements.has(out)) assert.deepEqual(elements.get(out), expected, `${node.opType} elements`);
  const ort = (await runModel(m, {}))[out]!;
  assert.deepEqual(ort.dims, shape, `${node.opType}: onnxruntime agrees on the shape`);
  assert.deepEqual(values(ort), expected, `${node.opType}: onnxruntime agrees on the values`);
}

test('ConstantOfShape, Expand, Range, Tile, Floor, Ceil: known shapes and elements, as onnxruntime computes them', async () => {
  await knownAnswer(
    makeNode('ConstantOfShape', ['s'], ['y'], { value: attr.tensor(int64Tensor([1], [7])) }),
    { s: ints([2, 3]) },
    [2, 3],
    [7, 7, 7, 7, 7, 7],
  );
  await knownAnswer(makeNode('ConstantOfShape', ['s'], ['y']), { s: ints([2]) }, [2], [0, 0]);
  await knownAnswer(
    makeNode('Expand', ['x', 's'], ['y']),
    { x: floatTensor([3, 1], [1, 2, 3]), s: ints([2, 1, 2]) },
    [2, 3, 2],
    [1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3],
  );
  await knownAnswer(makeNode('Expand', ['x', 's'], ['y']), { x: ints([5]), s: ints([3]) }, [3], [5, 5, 5]);
  await knownAnswer(makeNode('Range', ['a', 'b', 'd'], ['y']), { a: scalar(2), b: scalar(11), d: scalar(3) }, [3], [2, 5, 8]);
  await knownAnswer(makeNode('Range', ['a', 'b', 'd'], ['y']), { a: scalar(5), b: scalar(1), d: scalar(-2) }, [2], [5, 3]);
  await knownAnswer(
    makeNode('Range', ['a', 'b', 'd'], ['y']),
    { a: floatTensor([], [0]), b: floatTensor([], [1]), d: floatTensor([], [0.25]) },
    [4],
    [0, 0.25, 0.5, 0.75],
  );
  await knownAnswer(
    makeNode('Tile', ['x', 'r'], ['y']),
    { x: floatTensor([2, 2], [1, 2, 3, 4]), r: ints([1, 2]) },
    [2, 4],
    [1, 2, 1, 2, 3, 4, 3, 4],
  );
  await knownAnswer(makeNode('Tile', ['x', 'r'], ['y']), { x: ints([1, 2]), r: ints([3]) }, [6], [1, 2, 1, 2, 1, 2]);
  await knownAnswer(makeNode('Floor', ['x'], ['y']), { x: floatTensor([3], [-1.5, 2.5, 3]) }, [3], [-2, 2, 3]);
  await knownAnswer(makeNode('Ceil', ['x'], ['y']), { x: floatTensor([3], [-1.5, 2.5, 3]) }, [3], [-1, 3, 3]);
});

test('new shape operators: symbolic and unknown operands give unknown dims, bad operands a QuantflowError', () => {
  const shapeOf = (inputs: Record<string, Dim[]>, inits: Record<string, TensorData>, node: Node) =>
    model(inputs, inits, [node], node.outputs).graph.valueInfo.get(node.outputs[0]!)!.shape;
  // Expand to a shape computed at run time: only the rank is known.
  assert.deepEqual(shapeOf({ x: [2, 3], s: [4] }, {}, makeNode('Expand', ['x', 's'], ['y'])), [null, null, null, null]);
  assert.deepEqual(shapeOf({ x: ['N', 3] }, { r: ints([1, 2]) }, makeNode('Tile', ['x', 'r'], ['y'])), ['N', 6]);
  assert.deepEqual(shapeOf({ x: ['N', 3] }, { r: ints([2, 1]) }, makeNode('Tile', ['x', 'r'], ['y'])), [null, 3]);
  assert.throws(() => shapeOf({ x: [2, 3] }, { r: ints([2]) }, makeNode('Tile', ['x', 'r'], ['y'])), /repeats \[2\] should hold 2 values/);
  assert.throws(() => shapeOf({ x: [2, 3] }, { s: ints([4, 3]) }, makeNode('Expand', ['x', 's'], ['y'])), QuantflowError);
  assert.throws(
    () => shapeOf({}, { a: scalar(0), b: scalar(4), d: scalar(0) }, makeNode('Range', ['a', 'b', 'd'], ['y'])),
    /delta must not be 0/,
  );
});

/**
 * x [batch, 2, h, w] → Reshape to [batch, 2, h·w], the target computed as PyTorch exports
 * it: Shape → Gather (batch, h, w) → Mul → Unsqueeze → Concat.
 */
function dynamicReshape(): Model {
  return model(
    { x: ['batch', 2, 'h', 'w'] },
    { i0: scalar(0), i2: scalar(2), i3: scalar(3), axes: ints([0]), two: ints([2]) },
    [
      makeNode('Shape', ['x'], ['s']),
      makeNode('Gather', ['s', 'i0'], ['n'], { axis: attr.int(0) }),
      makeNode('Gather', ['s', 'i2'], ['h'], { axis: attr.int(0) }),
      makeNode('Gather', ['s', 'i3'], ['w'], { axis: attr.int(0) }),
      makeNode('Mul', ['h', 'w'], ['hw']),
      makeNode('Unsqueeze', ['n', 'axes'], ['n1']),
      makeNode('Unsqueeze', ['hw', 'axes'], ['hw1']),
      makeNode('Concat', ['n1', 'two', 'hw1'], ['target'], { axis: attr.int(0) }),
      makeNode('Reshape', ['x', 'target'], ['y']),
    ],
    ['y'],
  );
}

test('Reshape target from Shape → Gather → Concat folds at a fixed size; the batch stays dynamic', async () => {
  const original = dynamicReshape();
  const prepared = await prepareModel(dynamicReshape(), undefined, { inputSize: [3, 4] });
  assert.deepEqual(
    prepared.graph.nodes.map((n) => n.opType),
    ['Reshape'],
  );
  const target = prepared.graph.initializers.get(prepared.graph.nodes[0]!.inputs[1]!)!;
  assert.deepEqual(toNumbers(target), [0, 2, 12], 'the batch entry copies the input dim (0), h·w is 12');
  assert.deepEqual(prepared.graph.inputs[0]!.shape, ['batch', 2, 3, 4]);
  assert.deepEqual(prepared.graph.valueInfo.get('y')!.shape, ['batch', 2, 12]);
  for (const batch of [1, 3]) {
    const x = randomTensor([batch, 2, 3, 4], batch);
    const [a, b] = [(await runModel(original, { x })).y!, (await runModel(prepared, { x })).y!];
    assert.deepEqual(b.dims, [batch, 2, 12]);
    assert.deepEqual(Array.from(b.data as Float32Array), Array.from(a.data as Float32Array));
  }
});

/**
 * x [batch, 2, h, w] → Resize (nearest) to sizes [batch, 2, floor(1.5·h), floor(1.5·w)],
 * computed from Shape → Slice → Cast → Mul → Floor → Cast → Concat, as PyTorch exports
 * interpolate.
 */
function dynamicResize(batch: Dim = 1): Model {
  return model(
    { x: [batch, 2, 'h', 'w'] },
    {
      zero: ints([0]),
      two: ints([2]),
      four: ints([4]),
      factor: floatTensor([2], [1.5, 1.5]),
      roi: floatTensor([0]),
      scales: floatTensor([0]),
    },
    [
      makeNode('Shape', ['x'], ['s']),
      makeNode('Slice', ['s', 'zero', 'two'], ['nc']),
      makeNode('Slice', ['s', 'two', 'four'], ['hw']),
      makeNode('Cast', ['hw'], ['hwf'], { to: attr.int(1) }),
      makeNode('Mul', ['hwf', 'factor'], ['scaled']),
      makeNode('Floor', ['scaled'], ['floored']),
      makeNode('Cast', ['floored'], ['hw2'], { to: attr.int(7) }),
      makeNode('Concat', ['nc', 'hw2'], ['sizes'], { axis: attr.int(0) }),
      makeNode('Resize', ['x', 'roi', 'scales', 'sizes'], ['y'], { mode: attr.string('nearest') }),
    ],
    ['y'],
  );
}

test('Resize sizes from Shape arithmetic (Slice, Cast, Mul, Floor) fold to a constant', async () => {
  const original = dynamicResize();
  const prepared = await prepareModel(dynamicResize(), undefined, { inputSize: [4, 5] });
  assert.deepEqual(
    prepared.graph.nodes.map((n) => n.opType),
    ['Resize'],
  );
  assert.deepEqual(toNumbers(prepared.graph.initializers.get(prepared.graph.nodes[0]!.inputs[3]!)!), [1, 2, 6, 7]);
  assert.deepEqual(prepared.graph.valueInfo.get('y')!.shape, [1, 2, 6, 7]);
  const x = randomTensor([1, 2, 4, 5], 9);
  const [a, b] = [(await runModel(original, { x })).y!, (await runModel(prepared, { x })).y!];
  assert.deepEqual(b.dims, [1, 2, 6, 7]);
  assert.deepEqual(Array.from(b.data as Float32Array), Array.from(a.data as Float32Array));
});

test('Resize sizes that copy a dynamic batch become constant scales, with the same results', async () => {
  const original = dynamicResize('batch');
  const prepared = await prepareModel(dynamicResize('batch'), undefined, { inputSize: [4, 5] });
  assert.deepEqual(
    prepared.graph.nodes.map((n) => n.opType),
    ['Resize'],
  );
  const resize = prepared.graph.nodes[0]!;
  assert.equal(resize.inputs.length, 3, 'scales instead of sizes');
  assert.deepEqual(Array.from(prepared.graph.initializers.get(resize.inputs[2]!)!.data as Float32Array), [1, 1, 1.5, Math.fround(1.4)]);
  assert.deepEqual(prepared.graph.valueInfo.get('y')!.shape, ['batch', 2, 6, 7]);
  for (const batch of [1, 3]) {
    const x = randomTensor([batch, 2, 4, 5], 10 + batch);
    const [a, b] = [(await runModel(original, { x })).y!, (await runModel(prepared, { x })).y!];
    assert.deepEqual(b.dims, [batch, 2, 6, 7]);
    assert.deepEqual(Array.from(b.data as Float32Array), Array.from(a.data as Float32Array));
  }
});

test('a dynamic height or width without an input size is a one-line error naming the input and the option', async () => {
  await assert.rejects(prepareModel(dynamicResize()), (e: unknown) => {
    assert.ok(e instanceof QuantflowError);
    assert.match(e.message, /^input 'x' has a dynamic height or width \[1, 2, h, w\]: pass --input-size HxW/);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
});

test('a size the graph cannot take is a QuantflowError naming the size; a fixed size the graph fits is allowed', async () => {
  const fixed = () => model({ x: [1, 2, 4, 6] }, { target: ints([1, 48]) }, [makeNode('Reshape', ['x', 'target'], ['y'])], ['y']);
  await assert.rejects(prepareModel(fixed(), undefined, { inputSize: [5, 5] }), /at input size 5x5: node 'y' \(Reshape\): cannot reshape/);
  const convolutional = model({ x: [1, 2, 4, 6] }, {}, [makeNode('Relu', ['x'], ['y'])], ['y']);
  const resized = await prepareModel(convolutional, undefined, { inputSize: [8, 8] });
  assert.deepEqual(resized.graph.valueInfo.get('y')!.shape, [1, 2, 8, 8]);
});

test('TSE: an SE block on a dynamic-size map is found once the input size is fixed', async () => {
  const se = () =>
    model(
      { x: ['N', 4, 'h', 'w'] },
      { w1: randomTensor([2, 4, 1, 1], 1), b1: randomTensor([2], 2), w2: randomTensor([4, 2, 1, 1], 3), b2: randomTensor([4], 4) },
      [
        makeNode('GlobalAveragePool', ['x'], ['p']),
        makeNode('Conv', ['p', 'w1', 'b1'], ['c1']),
        makeNode('Relu', ['c1'], ['r']),
        makeNode('Conv', ['r', 'w2', 'b2'], ['c2']),
        makeNode('Sigmoid', ['c2'], ['g']),
        makeNode('Mul', ['x', 'g'], ['y']),
      ],
      ['y'],
    );
  assert.equal(detectSqueezeExcite(se()).blocks.length, 0, 'no block on symbolic map sizes');
  const { blocks } = detectSqueezeExcite(await prepareModel(se(), undefined, { inputSize: [8, 6] }));
  assert.deepEqual(
    blocks.map((b) => [b.channels, b.height, b.width]),
    [[4, 8, 6]],
  );
});

test('CLI: --input-size on inspect and buffers (--input kept as its alias); without it a one-line error, exit code 2', async () => {
  const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const cli = (...args: string[]) => promisify(execFile)(process.execPath, [main, ...args]);
  const dir = mkdtempSync(join(tmpdir(), 'fold-shapes-cli-'));
  try {
    const file = join(dir, 'dynamic.onnx');
    writeOnnxFile(dynamicReshape(), file);
    const failed = await cli('buffers', file).then(
      () => assert.fail('should exit with an error'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(failed.code, 2);
    assert.equal(failed.stderr.trim().split('\n').length, 1);
    assert.match(failed.stderr, /input 'x' has a dynamic height or width .*--input-size HxW/);
    assert.match((await cli('buffers', file, '--input-size', '3x4')).stdout, /at input \[batch, 2, 3, 4\]/);
    assert.match((await cli('buffers', file, '--input', '3x4')).stdout, /at input \[batch, 2, 3, 4\]/);
    assert.match((await cli('inspect', file)).stdout, /problems:\n  input 'x' has a dynamic height or width/);
    const inspected = (await cli('inspect', file, '--input-size', '3x4')).stdout;
    assert.match(inspected, /output y: float32 \[batch, 2, 12\]/);
    assert.match(inspected, /operators: Reshape 1\n/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const blazeface = sharedPath('models', 'blazeface_128_float.onnx');

/**
 * Each output of `prepared` against the original file run by onnxruntime on the same random
 * input: max abs error ≤ 1e-4 of the output's range (the float-import check).
 */
async function matchesOriginal(path: string, prepared: Model): Promise<void> {
  const original = readOnnxFile(path);
  const input = original.graph.inputs[0]!;
  const dims = prepared.graph.inputs[0]!.shape!.map((d) => (typeof d === 'number' ? d : 1));
  const x = randomTensor(dims, 5);
  const [want, got] = [await runModel(original, { [input.name]: x }), await runModel(prepared, { [input.name]: x })];
  for (const o of original.graph.outputs) {
    const [a, b] = [want[o.name]!.data as Float32Array, got[o.name]!.data as Float32Array];
    assert.deepEqual(got[o.name]!.dims, want[o.name]!.dims, o.name);
    let [lo, hi] = [Infinity, -Infinity];
    for (const v of a) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    assert.ok(maxAbsDiff(a, b) <= 1e-4 * (hi - lo), `${o.name}: max abs error ${maxAbsDiff(a, b)} over range ${hi - lo}`);
  }
}

test('BlazeFace (PyTorch, opset 9) computes what the original file computes, as is', { skip: blazeface.skip }, async () => {
  await matchesOriginal(blazeface.path, await prepareModel(loadModel(blazeface.path)));
});

test(
  'BlazeFace with a symbolic batch, height and width, prepared at 128x128: no Shape left, same outputs',
  { skip: blazeface.skip },
  async () => {
    const m = loadModel(blazeface.path);
    assert.ok(
      m.graph.nodes.some((n) => n.opType === 'Shape'),
      'the export has a shape subgraph',
    );
    m.graph.inputs[0]!.shape = ['batch', 3, 'height', 'width'];
    const prepared = await prepareModel(m, undefined, { inputSize: [128, 128] });
    assert.deepEqual(
      prepared.graph.nodes.filter((n) => ['Shape', 'Gather', 'Unsqueeze'].includes(n.opType)),
      [],
    );
    assert.deepEqual(prepared.graph.inputs[0]!.shape, ['batch', 3, 128, 128]);
    assert.deepEqual(
      prepared.graph.outputs.map((o) => o.shape),
      [
        ['batch', 896, 16],
        ['batch', 896, 1],
      ],
      'declared outputs follow the input',
    );
    await matchesOriginal(blazeface.path, prepared);
  },
);
