import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor, sizeOf } from '../src/graph/tensor.js';
import type { AttributeValue, Dim, Model, Node, TensorData } from '../src/graph/types.js';
import { checkGradients } from '../src/autodiff/gradcheck.js';
import { staticShapes } from '../src/autodiff/shapes.js';
import { randomFloats, randomTensor } from './fixtures.js';

interface Case {
  /** Graph inputs: shape (symbolic dims allowed) and the value fed. */
  inputs?: Record<string, { shape: Dim[]; value: TensorData }>;
  params?: Record<string, TensorData>;
  nodes: Node[];
  /** The value the loss Σ out·r (r fixed random) is computed from. */
  out: string;
  wrt: string[];
  epsilon?: number;
  /** Elements checked per tensor (default 4); more where most gradients are zero. */
  samples?: number;
}

/** Builds the case's model with loss = Σ out·r, so that d loss / d out = r, any tensor. */
function caseModel(c: Case): Model {
  const g = createGraph('case');
  const inputs = Object.entries(c.inputs ?? {});
  for (const [name, t] of Object.entries(c.params ?? {})) g.initializers.set(name, t);
  g.nodes.push(...c.nodes);
  const model: Model = { graph: g, opset: 17, producerName: 'test', metadata: {} };
  // The shape of r comes from the fed values; the declared input shapes may be symbolic.
  g.inputs = inputs.map(([name, { value }]) => ({ name, dataType: 'float32', shape: value.dims }));
  const outShape = staticShapes(model).get(c.out)!.shape as number[];
  g.inputs = inputs.map(([name, { shape }]) => ({ name, dataType: 'float32', shape }));
  g.initializers.set('loss_weights', floatTensor(outShape, randomFloats(sizeOf(outShape), 99)));
  g.nodes.push(
    makeNode('Mul', [c.out, 'loss_weights'], ['weighted']),
    makeNode('ReduceSum', ['weighted'], ['loss'], { keepdims: attr.int(0) }),
  );
  g.outputs.push({ name: 'loss', dataType: 'float32', shape: [] });
  return model;
}

async function check(c: Case): Promise<void> {
  const feeds = Object.fromEntries(Object.entries(c.inputs ?? {}).map(([k, v]) => [k, v.value]));
  const { failures, samples } = await checkGradients(caseModel(c), {
    loss: 'loss',
    wrt: c.wrt,
    feeds,
    epsilon: c.epsilon ?? 1e-2,
    samples: c.samples,
  });
  assert.deepEqual(failures, []);
  for (const w of c.wrt)
    assert.ok(
      samples.some((s) => s.name === w && s.analytic !== 0),
      `some gradient of '${w}' is non-zero`,
    );
}

const input = (dims: number[], seed = 1, shape: Dim[] = dims) => ({ x: { shape, value: randomTensor(dims, seed) } });
const ints = (v: number[]): AttributeValue => attr.ints(v);

test('Conv 3x3, stride 1, padding 1, with bias', () =>
  check({
    inputs: input([2, 3, 5, 5]),
    params: { w: randomTensor([4, 3, 3, 3], 2), b: randomTensor([4], 3) },
    nodes: [makeNode('Conv', ['x', 'w', 'b'], ['y'], { pads: ints([1, 1, 1, 1]) })],
    out: 'y',
    wrt: ['x', 'w', 'b'],
  }));

test('Conv stride 2 with asymmetric padding (transposed-conv input gradient)', () =>
  check({
    inputs: input([2, 3, 7, 6]),
    params: { w: randomTensor([4, 3, 3, 3], 2) },
    nodes: [makeNode('Conv', ['x', 'w'], ['y'], { strides: ints([2, 2]), pads: ints([1, 0, 0, 1]) })],
    out: 'y',
    wrt: ['x', 'w'],
  }));

test('Conv with auto_pad SAME_UPPER, stride 2', () =>
  check({
    inputs: input([1, 2, 6, 5]),
    params: { w: randomTensor([3, 2, 3, 3], 4) },
    nodes: [makeNode('Conv', ['x', 'w'], ['y'], { strides: ints([2, 2]), auto_pad: attr.string('SAME_UPPER') })],
    out: 'y',
    wrt: ['x', 'w'],
  }));

test('grouped, dilated Conv', () =>
  check({
    inputs: input([2, 4, 6, 6]),
    params: { w: randomTensor([6, 2, 3, 3], 5), b: randomTensor([6], 6) },
    nodes: [makeNode('Conv', ['x', 'w', 'b'], ['y'], { group: attr.int(2), dilations: ints([2, 2]), pads: ints([2, 2, 2, 2]) })],
    out: 'y',
    wrt: ['x', 'w', 'b'],
  }));

test('depthwise Conv, multiplier 2, stride 2 (static batch)', () =>
  check({
    inputs: input([2, 3, 7, 7]),
    params: { w: randomTensor([6, 1, 3, 3], 7) },
    nodes: [makeNode('Conv', ['x', 'w'], ['y'], { group: attr.int(3), strides: ints([2, 2]), pads: ints([1, 1, 1, 1]) })],
    out: 'y',
    wrt: ['x', 'w'],
  }));

test('depthwise Conv, stride 1, symbolic batch', () =>
  check({
    inputs: input([2, 3, 5, 5], 8, ['n', 3, 5, 5]),
    params: { w: randomTensor([3, 1, 3, 3], 9) },
    nodes: [makeNode('Conv', ['x', 'w'], ['y'], { group: attr.int(3), pads: ints([1, 1, 1, 1]) })],
    out: 'y',
    wrt: ['x', 'w'],
  }));

test('pointwise (1x1) Conv', () =>
  check({
    inputs: input([2, 4, 3, 5]),
    params: { w: randomTensor([6, 4, 1, 1], 10), b: randomTensor([6], 11) },
    nodes: [makeNode('Conv', ['x', 'w', 'b'], ['y'])],
    out: 'y',
    wrt: ['x', 'w', 'b'],
  }));

test('Gemm with transB, bias broadcast along rows', () =>
  check({
    inputs: input([3, 4]),
    params: { w: randomTensor([5, 4], 2), c: randomTensor([5], 3) },
    nodes: [makeNode('Gemm', ['x', 'w', 'c'], ['y'], { transB: attr.int(1) })],
    out: 'y',
    wrt: ['x', 'w', 'c'],
  }));

test('Gemm with transA, alpha and beta, bias broadcast along columns', () =>
  check({
    inputs: input([4, 3]),
    params: { w: randomTensor([4, 5], 2), c: randomTensor([3, 1], 3) },
    nodes: [makeNode('Gemm', ['x', 'w', 'c'], ['y'], { transA: attr.int(1), alpha: attr.float(0.5), beta: attr.float(2) })],
    out: 'y',
    wrt: ['x', 'w', 'c'],
  }));

test('MatMul with broadcast batch axes and a vector operand', () =>
  check({
    inputs: input([2, 3, 4]),
    params: { w: randomTensor([4, 5], 2), v: randomTensor([5], 3) },
    nodes: [makeNode('MatMul', ['x', 'w'], ['h']), makeNode('MatMul', ['h', 'v'], ['y'])],
    out: 'y',
    wrt: ['x', 'w', 'v'],
  }));

test('Add, Sub, Mul, Div with broadcasting', () =>
  check({
    inputs: input([2, 3, 4]),
    params: {
      a: randomTensor([3, 1], 2),
      b: randomTensor([3, 1], 4),
      m: randomTensor([4], 3),
      d: floatTensor([1, 3, 1], [1.5, -2, 0.8]),
    },
    nodes: [
      makeNode('Add', ['x', 'a'], ['s']),
      makeNode('Sub', ['b', 's'], ['t']),
      makeNode('Mul', ['t', 'm'], ['u']),
      makeNode('Div', ['u', 'd'], ['y']),
    ],
    out: 'y',
    wrt: ['x', 'a', 'b', 'm', 'd'],
  }));

test('a value read twice accumulates both gradients (x·x + x)', () =>
  check({
    inputs: input([2, 3]),
    nodes: [makeNode('Mul', ['x', 'x'], ['sq']), makeNode('Add', ['sq', 'x'], ['y'])],
    out: 'y',
    wrt: ['x'],
  }));

/** x spread over [-4, 4) so that every activation's regimes are crossed. */
const wide = {
  x: {
    shape: [2, 3, 4],
    value: floatTensor(
      [2, 3, 4],
      randomFloats(24, 12).map((v) => 4 * v),
    ),
  },
};

for (const [op, attributes] of [
  ['Relu', {}],
  ['HardSigmoid', { alpha: attr.float(0.25), beta: attr.float(0.4) }],
  ['HardSwish', {}],
  ['Sigmoid', {}],
  ['Tanh', {}],
] as const)
  test(`${op}`, () => check({ inputs: wide, nodes: [makeNode(op, ['x'], ['y'], attributes)], out: 'y', wrt: ['x'] }));

test('Clip with min and max inputs, gradients of the bounds too', () =>
  check({
    inputs: wide,
    params: { lo: floatTensor([], [-1.5]), hi: floatTensor([], [2.5]) },
    nodes: [makeNode('Clip', ['x', 'lo', 'hi'], ['y'])],
    out: 'y',
    wrt: ['x', 'lo', 'hi'],
  }));

test('inference-mode BatchNormalization', () =>
  check({
    inputs: input([2, 3, 2, 2]),
    params: {
      g: floatTensor([3], [1.5, 0.5, -1]),
      b: floatTensor([3], [0.1, -0.2, 0.3]),
      m: floatTensor([3], [0.2, 0, -0.1]),
      v: floatTensor([3], [1, 0.25, 2]),
    },
    nodes: [makeNode('BatchNormalization', ['x', 'g', 'b', 'm', 'v'], ['y'], { epsilon: attr.float(1e-3) })],
    out: 'y',
    wrt: ['x', 'g', 'b', 'm', 'v'],
  }));

test('AveragePool 3x3 stride 2, padding excluded and included', () =>
  check({
    inputs: input([2, 2, 6, 7]),
    nodes: [
      makeNode('AveragePool', ['x'], ['p'], { kernel_shape: ints([3, 3]), strides: ints([2, 2]), pads: ints([1, 1, 1, 0]) }),
      makeNode('AveragePool', ['x'], ['q'], {
        kernel_shape: ints([3, 3]),
        strides: ints([2, 2]),
        pads: ints([1, 1, 1, 0]),
        count_include_pad: attr.int(1),
      }),
      makeNode('Add', ['p', 'q'], ['y']),
    ],
    out: 'y',
    wrt: ['x'],
  }));

test('AveragePool tiles (kernel = stride), ceil mode with partial tiles and floor mode', () =>
  check({
    inputs: input([2, 2, 5, 7]),
    nodes: [
      makeNode('AveragePool', ['x'], ['c'], { kernel_shape: ints([2, 3]), strides: ints([2, 3]), ceil_mode: attr.int(1) }),
      makeNode('AveragePool', ['x'], ['f'], { kernel_shape: ints([2, 3]), strides: ints([2, 3]) }),
      makeNode('GlobalAveragePool', ['c'], ['gc']),
      makeNode('GlobalAveragePool', ['f'], ['gf']),
      makeNode('Mul', ['gc', 'gf'], ['y']),
    ],
    out: 'y',
    wrt: ['x'],
  }));

test('MaxPool 2x2 stride 2 (non-overlapping), floor mode leaving a row and column unread', () =>
  check({
    inputs: input([2, 2, 5, 5], 3),
    nodes: [makeNode('MaxPool', ['x'], ['y'], { kernel_shape: ints([2, 2]), strides: ints([2, 2]) })],
    out: 'y',
    wrt: ['x'],
    samples: 50,
  }));

test('ReduceMean (axes attribute) and ReduceSum (axes input), with and without keepdims', () =>
  check({
    inputs: input([2, 3, 4]),
    params: { axes: int64Tensor([1], [-1]) },
    nodes: [
      makeNode('ReduceMean', ['x'], ['m'], { axes: ints([0, 2]), keepdims: attr.int(0) }),
      makeNode('ReduceSum', ['x', 'axes'], ['s']),
      makeNode('Mul', ['s', 'm'], ['y']),
    ],
    out: 'y',
    wrt: ['x'],
  }));

test('Reshape, Flatten, Transpose, Squeeze, Unsqueeze', () =>
  check({
    inputs: input([2, 3, 4]),
    params: { shape: int64Tensor([3], [4, 3, 2]), axis0: int64Tensor([1], [0]) },
    nodes: [
      makeNode('Reshape', ['x', 'shape'], ['r']),
      makeNode('Transpose', ['r'], ['t'], { perm: ints([2, 0, 1]) }),
      makeNode('Unsqueeze', ['t', 'axis0'], ['u']),
      makeNode('Squeeze', ['u', 'axis0'], ['s']),
      makeNode('Flatten', ['s'], ['y'], { axis: attr.int(2) }),
    ],
    out: 'y',
    wrt: ['x'],
  }));

test('Concat and Pad (positive and negative pads)', () =>
  check({
    inputs: input([2, 3, 4]),
    params: { w: randomTensor([2, 2, 4], 5), pads: int64Tensor([6], [0, 1, -1, 0, 2, 1]) },
    nodes: [makeNode('Concat', ['x', 'w', 'x'], ['c'], { axis: attr.int(1) }), makeNode('Pad', ['c', 'pads'], ['y'])],
    out: 'y',
    wrt: ['x', 'w'],
  }));

test('Slice (negative start, end past the axis) and nearest Resize by integer factors, as TSE emits them', () =>
  check({
    inputs: input([2, 3, 3, 4]),
    params: {
      scales: floatTensor([4], [1, 1, 3, 2]),
      starts: int64Tensor([3], [0, 1, -7]),
      ends: int64Tensor([3], [8, 99, 7]),
      axes: int64Tensor([3], [2, 1, 3]),
    },
    nodes: [
      makeNode('Resize', ['x', '', 'scales'], ['r'], {
        mode: attr.string('nearest'),
        coordinate_transformation_mode: attr.string('asymmetric'),
        nearest_mode: attr.string('floor'),
      }),
      makeNode('Slice', ['r', 'starts', 'ends', 'axes'], ['y']),
    ],
    out: 'y',
    wrt: ['x'],
  }));

test('bilinear Resize that broadcasts a 1x1 map (DeepLab image pooling): the gradient sums over the map', () =>
  check({
    inputs: input([2, 3, 1, 1]),
    params: { sizes: int64Tensor([4], [2, 3, 4, 5]), w: randomTensor([2, 3, 4, 5], 7) },
    nodes: [makeNode('Resize', ['x', '', '', 'sizes'], ['r'], { mode: attr.string('linear') }), makeNode('Mul', ['r', 'w'], ['y'])],
    out: 'y',
    wrt: ['x'],
  }));

test('Softmax and LogSoftmax', () =>
  check({
    inputs: input([2, 3, 4]),
    nodes: [
      makeNode('Softmax', ['x'], ['s'], { axis: attr.int(1) }),
      makeNode('LogSoftmax', ['x'], ['l']),
      makeNode('Add', ['s', 'l'], ['y']),
    ],
    out: 'y',
    wrt: ['x'],
  }));
