import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor } from '../src/graph/tensor.js';
import { inferShapes } from '../src/graph/shapes.js';
import type { Dim, Model, Node, TensorData, ValueInfo } from '../src/graph/types.js';
import { QuantflowError } from '../src/util/errors.js';

const INT64_MAX = 9223372036854775807n;

/** Float32 graph inputs by shape (undefined: rank unknown). */
type Inputs = Record<string, Dim[] | undefined>;

function model(inputs: Inputs, initializers: Record<string, TensorData>, nodes: Node[], opset = 17): Model {
  const g = createGraph('t');
  for (const [name, shape] of Object.entries(inputs))
    g.inputs.push(shape ? { name, dataType: 'float32', shape } : { name, dataType: 'float32' });
  for (const [name, t] of Object.entries(initializers)) g.initializers.set(name, t);
  g.nodes.push(...nodes);
  return { graph: g, opset, producerName: 'test', metadata: {} };
}

function infer(inputs: Inputs, initializers: Record<string, TensorData>, nodes: Node[], opset = 17): Map<string, ValueInfo> {
  const m = model(inputs, initializers, nodes, opset);
  inferShapes(m);
  return m.graph.valueInfo;
}

/** Shape of the first output of the last node. */
function shapeOf(inputs: Inputs, initializers: Record<string, TensorData>, nodes: Node[], opset = 17): Dim[] | undefined {
  return infer(inputs, initializers, nodes, opset).get(nodes[nodes.length - 1].outputs[0])?.shape;
}

const ints = (values: number[]) => int64Tensor([values.length], values);
const bigInts = (values: bigint[]): TensorData => ({
  dataType: 'int64',
  dims: [values.length],
  data: BigInt64Array.from(values),
});

test('Conv: stride 2 with pads, asymmetric pads, dilation', () => {
  const conv = (a: Node['attributes']) => [makeNode('Conv', ['x', 'w'], ['y'], a)];
  assert.deepEqual(
    shapeOf(
      { x: [1, 3, 224, 224] },
      { w: floatTensor([64, 3, 7, 7]) },
      conv({ strides: attr.ints([2, 2]), pads: attr.ints([3, 3, 3, 3]) }),
    ),
    [1, 64, 112, 112],
  );
  // (10 + 0 + 1 - 3) / 2 + 1 = 5 rows; (12 + 0 + 0 - 3) / 2 + 1 = 5 (floored) columns.
  assert.deepEqual(
    shapeOf({ x: [1, 3, 10, 12] }, { w: floatTensor([8, 3, 3, 3]) }, conv({ strides: attr.ints([2, 2]), pads: attr.ints([0, 0, 1, 0]) })),
    [1, 8, 5, 5],
  );
  // Dilation 2 turns a 3-tap kernel into a 5-wide window: 10 - 5 + 1 = 6.
  assert.deepEqual(
    shapeOf({ x: [1, 1, 10, 10] }, { w: floatTensor([2, 1, 3, 3]), b: floatTensor([2]) }, [
      makeNode('Conv', ['x', 'w', 'b'], ['y'], { dilations: attr.ints([2, 2]) }),
    ]),
    [1, 2, 6, 6],
  );
});

test('Conv auto_pad on an odd input: SAME_UPPER, SAME_LOWER, VALID', () => {
  const w = { w: floatTensor([4, 3, 3, 3]) };
  const withPad = (autoPad: string) =>
    shapeOf({ x: [1, 3, 7, 7] }, w, [makeNode('Conv', ['x', 'w'], ['y'], { auto_pad: attr.string(autoPad), strides: attr.ints([2, 2]) })]);
  assert.deepEqual(withPad('SAME_UPPER'), [1, 4, 4, 4]);
  assert.deepEqual(withPad('SAME_LOWER'), [1, 4, 4, 4]);
  assert.deepEqual(withPad('VALID'), [1, 4, 3, 3]);
});

test('depthwise Conv keeps symbolic batch and a symbolic size under stride-1 same padding', () => {
  const dw = (strides: number[]) =>
    shapeOf({ x: ['N', 32, 'H', 16] }, { w: floatTensor([32, 1, 3, 3]) }, [
      makeNode('Conv', ['x', 'w'], ['y'], {
        group: attr.int(32),
        pads: attr.ints([1, 1, 1, 1]),
        strides: attr.ints(strides),
      }),
    ]);
  assert.deepEqual(dw([1, 1]), ['N', 32, 'H', 16]);
  assert.deepEqual(dw([2, 2]), ['N', 32, null, 8]);
});

test('ConvTranspose: stride, pads, group, output_padding, output_shape', () => {
  const ct = (w: TensorData, a: Node['attributes']) =>
    shapeOf({ x: [1, 8, 4, 4] }, { w }, [makeNode('ConvTranspose', ['x', 'w'], ['y'], a)]);
  assert.deepEqual(ct(floatTensor([8, 4, 2, 2]), { strides: attr.ints([2, 2]) }), [1, 4, 8, 8]);
  // (4 - 1) * 2 + 4 - 1 - 1 = 8, plus output_padding 1 on the second axis.
  assert.deepEqual(
    ct(floatTensor([8, 2, 4, 4]), {
      group: attr.int(2),
      strides: attr.ints([2, 2]),
      pads: attr.ints([1, 1, 1, 1]),
      output_padding: attr.ints([0, 1]),
    }),
    [1, 4, 8, 9],
  );
  assert.deepEqual(ct(floatTensor([8, 4, 3, 3]), { output_shape: attr.ints([9, 9]) }), [1, 4, 9, 9]);
  assert.deepEqual(ct(floatTensor([8, 4, 3, 3]), { auto_pad: attr.string('SAME_UPPER'), strides: attr.ints([2, 2]) }), [1, 4, 8, 8]);
});

test('Gemm with transA / transB and MatMul with broadcast batch dims', () => {
  assert.deepEqual(
    shapeOf({ a: ['N', 512] }, { b: floatTensor([10, 512]), c: floatTensor([10]) }, [
      makeNode('Gemm', ['a', 'b', 'c'], ['y'], { transB: attr.int(1) }),
    ]),
    ['N', 10],
  );
  assert.deepEqual(
    shapeOf({ a: [512, 2] }, { b: floatTensor([512, 10]) }, [makeNode('Gemm', ['a', 'b'], ['y'], { transA: attr.int(1) })]),
    [2, 10],
  );
  const mm = (a: Dim[], b: Dim[]) => shapeOf({ a, b }, {}, [makeNode('MatMul', ['a', 'b'], ['y'])]);
  assert.deepEqual(mm([2, 3, 4, 5], [5, 6]), [2, 3, 4, 6]);
  assert.deepEqual(mm(['N', 1, 3, 4], [7, 4, 5]), ['N', 7, 3, 5]);
  assert.deepEqual(mm([4], [4, 6]), [6]);
  assert.deepEqual(mm([3, 4], [4]), [3]);
});

test('elementwise ops broadcast numpy-style and pick the right element type', () => {
  const vi = infer({ a: ['N', 3, 1, 5], b: [4, 1], c: [5] }, {}, [
    makeNode('Add', ['a', 'b'], ['sum']),
    makeNode('Equal', ['a', 'c'], ['eq']),
    makeNode('Where', ['eq', 'a', 'b'], ['pick']),
    makeNode('Max', ['a', 'b', 'c'], ['max']),
    makeNode('Pow', ['c', 'c'], ['pow']),
  ]);
  assert.deepEqual(vi.get('sum'), { name: 'sum', dataType: 'float32', shape: ['N', 3, 4, 5] });
  assert.deepEqual(vi.get('eq'), { name: 'eq', dataType: 'bool', shape: ['N', 3, 1, 5] });
  assert.deepEqual(vi.get('pick')?.shape, ['N', 3, 4, 5]);
  assert.equal(vi.get('pick')?.dataType, 'float32');
  assert.deepEqual(vi.get('max')?.shape, ['N', 3, 4, 5]);
  assert.deepEqual(vi.get('pow')?.shape, [5]);
  // Two different symbols might be equal or one might be 1: the result is unknown, not a guess.
  assert.deepEqual(shapeOf({ a: ['N', 3], b: ['M', 3] }, {}, [makeNode('Mul', ['a', 'b'], ['y'])]), [null, 3]);
  assert.deepEqual(shapeOf({ a: ['N', 3], b: [null, 1] }, {}, [makeNode('Sub', ['a', 'b'], ['y'])]), [null, 3]);
  assert.deepEqual(shapeOf({ a: [7, 3], b: [null, 1] }, {}, [makeNode('Div', ['a', 'b'], ['y'])]), [7, 3]);
});

test('unary ops keep shape; Cast, Softmax, Clip, Identity', () => {
  const x: Dim[] = ['N', 16, 8, 8];
  for (const op of ['Relu', 'Sigmoid', 'HardSwish', 'Tanh', 'Exp', 'Log', 'Sqrt', 'Neg', 'Abs', 'Erf', 'Identity'])
    assert.deepEqual(shapeOf({ x }, {}, [makeNode(op, ['x'], ['y'])]), x, op);
  assert.deepEqual(shapeOf({ x }, {}, [makeNode('LeakyRelu', ['x'], ['y'], { alpha: attr.float(0.1) })]), x);
  assert.deepEqual(shapeOf({ x }, {}, [makeNode('HardSigmoid', ['x'], ['y'], { alpha: attr.float(0.2) })]), x);
  assert.deepEqual(shapeOf({ x }, { lo: floatTensor([], [0]), hi: floatTensor([], [6]) }, [makeNode('Clip', ['x', 'lo', 'hi'], ['y'])]), x);
  assert.deepEqual(shapeOf({ x }, {}, [makeNode('Softmax', ['x'], ['y'], { axis: attr.int(1) })]), x);
  assert.deepEqual(shapeOf({ x }, {}, [makeNode('LogSoftmax', ['x'], ['y'])]), x);
  const cast = infer({ x }, {}, [makeNode('Cast', ['x'], ['y'], { to: attr.int(3) })]).get('y');
  assert.deepEqual(cast, { name: 'y', dataType: 'int8', shape: x });
});

test('pools: ceil_mode, windows starting in the right padding, auto_pad, global pools', () => {
  const pool = (op: string, x: Dim[], a: Node['attributes']) => shapeOf({ x }, {}, [makeNode(op, ['x'], ['y'], a)]);
  const k3s2 = { kernel_shape: attr.ints([3, 3]), strides: attr.ints([2, 2]) };
  assert.deepEqual(pool('MaxPool', [1, 8, 6, 6], k3s2), [1, 8, 2, 2]);
  assert.deepEqual(pool('MaxPool', [1, 8, 6, 6], { ...k3s2, ceil_mode: attr.int(1) }), [1, 8, 3, 3]);
  // 5 + 2 padding, window 2, stride 2: ceil gives 4 windows but the 4th would start in the right padding.
  const padded = {
    kernel_shape: attr.ints([2]),
    strides: attr.ints([2]),
    pads: attr.ints([1, 1]),
    ceil_mode: attr.int(1),
  };
  assert.deepEqual(pool('AveragePool', [1, 8, 5], padded), [1, 8, 3]);
  assert.deepEqual(pool('AveragePool', ['N', 8, 7, 7], { ...k3s2, auto_pad: attr.string('SAME_UPPER') }), ['N', 8, 4, 4]);
  assert.deepEqual(pool('GlobalAveragePool', ['N', 64, 7, 7], {}), ['N', 64, 1, 1]);
  assert.deepEqual(pool('GlobalMaxPool', ['N', 64, 7], {}), ['N', 64, 1]);

  const vi = infer({ x: [1, 8, 6, 6] }, {}, [makeNode('MaxPool', ['x'], ['y', 'idx'], k3s2)]);
  assert.deepEqual(vi.get('idx'), { name: 'idx', dataType: 'int64', shape: [1, 8, 2, 2] });
});

test('Reduce*: axes attribute before opset 18 (13 for ReduceSum), input after; keepdims', () => {
  const x: Dim[] = ['N', 16, 7, 7];
  const hw = { axes: attr.ints([2, 3]) };
  assert.deepEqual(shapeOf({ x }, {}, [makeNode('ReduceMean', ['x'], ['y'], hw)], 13), ['N', 16, 1, 1]);
  assert.deepEqual(shapeOf({ x }, {}, [makeNode('ReduceMax', ['x'], ['y'], { ...hw, keepdims: attr.int(0) })], 13), ['N', 16]);
  assert.deepEqual(
    shapeOf({ x }, { axes: ints([-1, -2]) }, [makeNode('ReduceMean', ['x', 'axes'], ['y'], { keepdims: attr.int(0) })], 18),
    ['N', 16],
  );
  assert.deepEqual(shapeOf({ x }, { axes: ints([1]) }, [makeNode('ReduceSum', ['x', 'axes'], ['y'])], 13), ['N', 1, 7, 7]);
  assert.deepEqual(shapeOf({ x }, {}, [makeNode('ReduceSum', ['x'], ['y'])], 13), [1, 1, 1, 1]);
  assert.deepEqual(shapeOf({ x }, {}, [makeNode('ReduceSum', ['x'], ['y'], { noop_with_empty_axes: attr.int(1) })], 13), x);
  // Axes computed at run time: keepdims still fixes the rank, not the sizes.
  assert.deepEqual(shapeOf({ x, axes: [1] }, {}, [makeNode('ReduceMean', ['x', 'axes'], ['y'])], 18), [null, null, null, null]);
  assert.equal(shapeOf({ x, axes: [1] }, {}, [makeNode('ReduceMean', ['x', 'axes'], ['y'], { keepdims: attr.int(0) })], 18), undefined);
});

test('Reshape: 0 copies, -1 infers, symbols cancel, allowzero, shape computed in the graph', () => {
  const reshape = (x: Dim[], target: number[], a: Node['attributes'] = {}) =>
    shapeOf({ x }, { s: ints(target) }, [makeNode('Reshape', ['x', 's'], ['y'], a)]);
  assert.deepEqual(reshape([2, 3, 4], [0, -1]), [2, 12]);
  assert.deepEqual(reshape([2, 3, 4], [-1, 6]), [4, 6]);
  assert.deepEqual(reshape(['N', 3, 4, 4], [0, -1]), ['N', 48]);
  assert.deepEqual(reshape(['N', 3, 4], [-1, 12]), ['N', 12]);
  assert.deepEqual(reshape(['N', 3, 4], [-1, 6]), [null, 6]);
  assert.deepEqual(reshape([0, 3], [0, 3], { allowzero: attr.int(1) }), [0, 3]);

  // PyTorch's x.view(x.size(0), -1): Shape → Gather → Unsqueeze → Concat → Reshape.
  const nodes = [
    makeNode('Shape', ['x'], ['shape']),
    makeNode('Gather', ['shape', 'zero'], ['batch'], { axis: attr.int(0) }),
    makeNode('Unsqueeze', ['batch', 'axes0'], ['batch1']),
    makeNode('Concat', ['batch1', 'minus1'], ['target'], { axis: attr.int(0) }),
    makeNode('Reshape', ['x', 'target'], ['y']),
  ];
  const vi = infer({ x: ['N', 64, 2, 2] }, { zero: int64Tensor([], [0]), axes0: ints([0]), minus1: ints([-1]) }, nodes);
  assert.deepEqual(vi.get('shape'), { name: 'shape', dataType: 'int64', shape: [4] });
  assert.deepEqual(vi.get('batch')?.shape, []);
  assert.deepEqual(vi.get('target')?.shape, [2]);
  assert.deepEqual(vi.get('y')?.shape, ['N', 256]);

  // A target only known at run time still gives the rank.
  assert.deepEqual(shapeOf({ x: [2, 3], t: [3] }, {}, [makeNode('Reshape', ['x', 't'], ['y'])]), [null, null, null]);
});

test('Flatten, Squeeze, Unsqueeze (attribute before 13, input after), Transpose', () => {
  assert.deepEqual(shapeOf({ x: ['N', 512, 1, 1] }, {}, [makeNode('Flatten', ['x'], ['y'])]), ['N', 512]);
  assert.deepEqual(shapeOf({ x: [2, 3, 4] }, {}, [makeNode('Flatten', ['x'], ['y'], { axis: attr.int(0) })]), [1, 24]);
  assert.deepEqual(shapeOf({ x: [2, 3, 4] }, {}, [makeNode('Flatten', ['x'], ['y'], { axis: attr.int(-1) })]), [6, 4]);

  const x: Dim[] = ['N', 512, 1, 1];
  assert.deepEqual(shapeOf({ x }, {}, [makeNode('Squeeze', ['x'], ['y'], { axes: attr.ints([2, 3]) })], 11), ['N', 512]);
  assert.deepEqual(shapeOf({ x }, { a: ints([-1]) }, [makeNode('Squeeze', ['x', 'a'], ['y'])], 13), ['N', 512, 1]);
  assert.deepEqual(shapeOf({ x: [1, 512, 1] }, {}, [makeNode('Squeeze', ['x'], ['y'])], 13), [512]);
  assert.equal(shapeOf({ x }, {}, [makeNode('Squeeze', ['x'], ['y'])], 13), undefined, 'N might be 1');

  assert.deepEqual(shapeOf({ x: ['N', 8] }, {}, [makeNode('Unsqueeze', ['x'], ['y'], { axes: attr.ints([1, -1]) })], 11), ['N', 1, 8, 1]);
  assert.deepEqual(shapeOf({ x: ['N', 8] }, { a: ints([0]) }, [makeNode('Unsqueeze', ['x', 'a'], ['y'])], 13), [1, 'N', 8]);

  assert.deepEqual(shapeOf({ x: ['N', 3, 4] }, {}, [makeNode('Transpose', ['x'], ['y'])]), [4, 3, 'N']);
  assert.deepEqual(shapeOf({ x: ['N', 3, 4, 5] }, {}, [makeNode('Transpose', ['x'], ['y'], { perm: attr.ints([0, 2, 3, 1]) })]), [
    'N',
    4,
    5,
    3,
  ]);
});

test('Concat sums the axis and unifies the others; Pad via attribute and input', () => {
  assert.deepEqual(
    shapeOf({ a: ['N', 3, 8, 8], b: ['N', 5, 8, 8], c: [null, 1, 8, 8] }, {}, [
      makeNode('Concat', ['a', 'b', 'c'], ['y'], { axis: attr.int(-3) }),
    ]),
    ['N', 9, 8, 8],
  );
  assert.deepEqual(shapeOf({ a: [2, 'C'], b: [3, 'C'] }, {}, [makeNode('Concat', ['a', 'b'], ['y'], { axis: attr.int(0) })]), [5, 'C']);
  assert.deepEqual(shapeOf({ x: ['N', 3, 8, 8] }, { p: ints([0, 0, 1, 2, 0, 0, 3, 4]) }, [makeNode('Pad', ['x', 'p'], ['y'])], 11), [
    'N',
    3,
    12,
    14,
  ]);
  assert.deepEqual(
    shapeOf({ x: ['N', 3, 8, 8] }, {}, [makeNode('Pad', ['x'], ['y'], { pads: attr.ints([0, 0, 1, 1, 0, 0, -1, -1]) })], 10),
    ['N', 3, 8, 8],
  );
  assert.deepEqual(
    shapeOf({ x: [1, 3, 8, 8] }, { p: ints([2, 2]), axes: ints([-1]) }, [makeNode('Pad', ['x', 'p', '', 'axes'], ['y'])], 18),
    [1, 3, 8, 12],
  );
});

test('BatchNormalization, Dropout, QuantizeLinear / DequantizeLinear', () => {
  const c = floatTensor([16]);
  assert.deepEqual(
    shapeOf({ x: ['N', 16, 7, 7] }, { s: c, b: c, m: c, v: c }, [makeNode('BatchNormalization', ['x', 's', 'b', 'm', 'v'], ['y'])]),
    ['N', 16, 7, 7],
  );
  const drop = infer({ x: ['N', 10] }, {}, [makeNode('Dropout', ['x'], ['y', 'mask'])]);
  assert.deepEqual(drop.get('mask'), { name: 'mask', dataType: 'bool', shape: ['N', 10] });

  const x: Dim[] = ['N', 16, 7, 7];
  const scale = floatTensor([], [0.1]);
  const zp: TensorData = { dataType: 'int8', dims: [], data: new Int8Array(1) };
  const vi = infer({ x }, { scale, zp, axisScale: floatTensor([16]) }, [
    makeNode('QuantizeLinear', ['x', 'scale', 'zp'], ['q8']),
    makeNode('QuantizeLinear', ['x', 'scale'], ['qu8']),
    makeNode('DequantizeLinear', ['q8', 'scale', 'zp'], ['dq']),
    makeNode('QuantizeLinear', ['x', 'axisScale'], ['qa'], { axis: attr.int(1) }),
  ]);
  assert.deepEqual(vi.get('q8'), { name: 'q8', dataType: 'int8', shape: x });
  assert.equal(vi.get('qu8')?.dataType, 'uint8');
  assert.deepEqual(vi.get('dq'), { name: 'dq', dataType: 'float32', shape: x });
  assert.equal(vi.get('qa')?.dataType, 'uint8');
});

test('Resize and Upsample by scales or sizes', () => {
  const x: Dim[] = ['N', 8, 10, 15];
  assert.deepEqual(shapeOf({ x }, { scales: floatTensor([4], [1, 1, 2, 2]) }, [makeNode('Resize', ['x', '', 'scales'], ['y'])], 13), [
    'N',
    8,
    20,
    30,
  ]);
  // Opset 11 requires roi and scales; empty scales mean "use sizes".
  assert.deepEqual(
    shapeOf(
      { x: [1, 8, 10, 15] },
      { roi: floatTensor([0]), scales: floatTensor([0]), sizes: ints([1, 8, 32, 32]) },
      [makeNode('Resize', ['x', 'roi', 'scales', 'sizes'], ['y'])],
      11,
    ),
    [1, 8, 32, 32],
  );
  assert.deepEqual(
    shapeOf(
      { x },
      { scales: floatTensor([2], [0.5, 0.5]) },
      [makeNode('Resize', ['x', '', 'scales'], ['y'], { axes: attr.ints([2, 3]) })],
      18,
    ),
    ['N', 8, 5, 7],
  );
  assert.deepEqual(shapeOf({ x }, { s: floatTensor([4], [1, 1, 2, 2]) }, [makeNode('Upsample', ['x', 's'], ['y'])], 9), ['N', 8, 20, 30]);
  assert.deepEqual(shapeOf({ x }, {}, [makeNode('Upsample', ['x'], ['y'], { scales: attr.floats([1, 1, 3, 3]) })], 8), ['N', 8, 30, 45]);
});

test('Shape, Gather, Slice with initializer bounds (and attributes before opset 10)', () => {
  const vi = infer({ x: ['N', 3, 10, 10] }, { i: ints([0, 2]) }, [
    makeNode('Shape', ['x'], ['s']),
    makeNode('Shape', ['x'], ['s2'], { start: attr.int(-2) }),
    makeNode('Gather', ['x', 'i'], ['g'], { axis: attr.int(1) }),
  ]);
  assert.deepEqual(vi.get('s'), { name: 's', dataType: 'int64', shape: [4] });
  assert.deepEqual(vi.get('s2')?.shape, [2]);
  assert.deepEqual(vi.get('g')?.shape, ['N', 2, 10, 10]);

  const slice = (x: Dim[], bounds: Record<string, TensorData>, inputs: string[]) =>
    shapeOf({ x }, bounds, [makeNode('Slice', ['x', ...inputs], ['y'])]);
  const every2nd = { s: ints([1]), e: bigInts([INT64_MAX]), a: ints([2]), st: ints([2]) };
  assert.deepEqual(slice(['N', 3, 10, 10], every2nd, ['s', 'e', 'a', 'st']), ['N', 3, 5, 10]);
  const reversed = { s: ints([-1]), e: bigInts([-INT64_MAX]), a: ints([-1]), st: ints([-1]) };
  assert.deepEqual(slice(['N', 3, 10, 10], reversed, ['s', 'e', 'a', 'st']), ['N', 3, 10, 10]);
  // Without axes the bounds apply to the leading axes; "to the end" keeps a symbolic dim.
  assert.deepEqual(slice(['N', 3, 10], { s: ints([0, 1]), e: bigInts([INT64_MAX, 100n]) }, ['s', 'e']), ['N', 2, 10]);
  assert.deepEqual(
    shapeOf(
      { x: [4, 6] },
      {},
      [makeNode('Slice', ['x'], ['y'], { starts: attr.ints([1]), ends: attr.ints([-1]), axes: attr.ints([1]) })],
      9,
    ),
    [4, 4],
  );
  // Bounds computed from the input's own shape: x[:, :, : H - 2].
  const nodes = [
    makeNode('Shape', ['x'], ['shape']),
    makeNode('Slice', ['shape', 'two', 'three'], ['h']),
    makeNode('Sub', ['h', 'two'], ['end']),
    makeNode('Slice', ['x', 'zero', 'end', 'two'], ['y']),
  ];
  assert.deepEqual(shapeOf({ x: ['N', 3, 10] }, { zero: ints([0]), two: ints([2]), three: ints([3]) }, nodes), ['N', 3, 8]);
});

test('Constant values feed shape operands', () => {
  const vi = infer({ x: ['N', 4, 6] }, {}, [
    makeNode('Constant', [], ['target'], { value: attr.tensor(ints([0, 2, -1])) }),
    makeNode('Reshape', ['x', 'target'], ['y']),
    makeNode('Constant', [], ['k'], { value_ints: attr.ints([1, 2, 3]) }),
    makeNode('Constant', [], ['f'], { value_float: attr.float(0.5) }),
  ]);
  assert.deepEqual(vi.get('target'), { name: 'target', dataType: 'int64', shape: [3] });
  assert.deepEqual(vi.get('y')?.shape, ['N', 2, 12]);
  assert.deepEqual(vi.get('k'), { name: 'k', dataType: 'int64', shape: [3] });
  assert.deepEqual(vi.get('f'), { name: 'f', dataType: 'float32', shape: [] });
});

test('Split: equal parts, split sizes from an input, num_outputs with a smaller last part', () => {
  const vi = infer(
    { x: ['N', 12, 5] },
    { sizes: ints([2, 10]) },
    [
      makeNode('Split', ['x'], ['a', 'b', 'c'], { axis: attr.int(1) }),
      makeNode('Split', ['x', 'sizes'], ['d', 'e'], { axis: attr.int(1) }),
      makeNode('Split', ['x'], ['f', 'g'], { axis: attr.int(-1), num_outputs: attr.int(2) }),
    ],
    18,
  );
  assert.deepEqual(
    ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((n) => vi.get(n)?.shape),
    [
      ['N', 4, 5],
      ['N', 4, 5],
      ['N', 4, 5],
      ['N', 2, 5],
      ['N', 10, 5],
      ['N', 12, 3],
      ['N', 12, 2],
    ],
  );
  assert.deepEqual(shapeOf({ x: [6, 2] }, {}, [makeNode('Split', ['x'], ['a', 'b'], { split: attr.ints([1, 5]) })], 11), [1, 2]);
});

test('symbolic batch flows through a small CNN', () => {
  const vi = infer(
    { image: ['batch', 3, 32, 32] },
    {
      w1: floatTensor([16, 3, 3, 3]),
      b1: floatTensor([16]),
      fc: floatTensor([10, 16]),
      fcb: floatTensor([10]),
    },
    [
      makeNode('Conv', ['image', 'w1', 'b1'], ['c1'], { pads: attr.ints([1, 1, 1, 1]) }),
      makeNode('Relu', ['c1'], ['r1']),
      makeNode('MaxPool', ['r1'], ['p1'], { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) }),
      makeNode('GlobalAveragePool', ['p1'], ['gap']),
      makeNode('Flatten', ['gap'], ['flat']),
      makeNode('Gemm', ['flat', 'fc', 'fcb'], ['logits'], { transB: attr.int(1) }),
      makeNode('Softmax', ['logits'], ['probs']),
    ],
  );
  assert.deepEqual(
    [...vi.values()].map((v) => [v.name, v.shape]),
    [
      ['c1', ['batch', 16, 32, 32]],
      ['r1', ['batch', 16, 32, 32]],
      ['p1', ['batch', 16, 16, 16]],
      ['gap', ['batch', 16, 1, 1]],
      ['flat', ['batch', 16]],
      ['logits', ['batch', 10]],
      ['probs', ['batch', 10]],
    ],
  );
});

test('unknown input shapes give unknown results, never invented numbers', () => {
  const vi = infer({ x: undefined }, { w: floatTensor([8, 3, 3, 3]) }, [
    makeNode('Relu', ['x'], ['r']),
    makeNode('Conv', ['r', 'w'], ['c']),
  ]);
  assert.deepEqual(vi.get('r'), { name: 'r', dataType: 'float32' });
  assert.deepEqual(vi.get('c')?.shape, [null, 8, null, null]);
});

test('inferShapes replaces stale valueInfo and leaves graph inputs alone', () => {
  const m = model({ x: [1, 4] }, {}, [makeNode('Relu', ['x'], ['y'])]);
  m.graph.valueInfo.set('gone', { name: 'gone', dataType: 'float32', shape: [9] });
  m.graph.valueInfo.set('y', { name: 'y', dataType: 'float32', shape: [9, 9] });
  inferShapes(m);
  assert.deepEqual([...m.graph.valueInfo.values()], [{ name: 'y', dataType: 'float32', shape: [1, 4] }]);
  assert.notEqual(m.graph.valueInfo.get('y')!.shape, m.graph.inputs[0].shape, 'shapes are copies');
});

test('inferShapes throws a QuantflowError naming the node on a proven mismatch', () => {
  const m = model({ x: [1, 3, 8, 8] }, { w: floatTensor([8, 4, 3, 3]) }, [makeNode('Conv', ['x', 'w'], ['y'], {}, 'conv1')]);
  assert.throws(
    () => inferShapes(m),
    (e: unknown) =>
      e instanceof QuantflowError && e.message.startsWith("node 'conv1' (Conv): input has 3 channels but weight [8, 4, 3, 3]"),
  );
  const unsorted = model({ x: [1] }, {}, [makeNode('Relu', ['y'], ['z'], {}, 'late'), makeNode('Relu', ['x'], ['y'])]);
  assert.throws(() => inferShapes(unsorted), /node 'late' \(Relu\): input 'y' is not produced before this node/);
});

test('ArgMax/ArgMin give int64 with the axis kept or dropped; GatherND; DepthToSpace/SpaceToDepth', () => {
  const arg = infer({ x: ['batch', 21, 5, 7] }, {}, [
    makeNode('ArgMax', ['x'], ['a'], { axis: attr.int(1), keepdims: attr.int(0) }),
    makeNode('ArgMin', ['x'], ['b'], { axis: attr.int(-1) }),
  ]);
  assert.deepEqual(arg.get('a'), { name: 'a', dataType: 'int64', shape: ['batch', 5, 7] });
  assert.deepEqual(arg.get('b')!.shape, ['batch', 21, 5, 1]);
  const nd = shapeOf({ x: [2, 3, 4, 5] }, { i: int64Tensor([6, 2], new Array(12).fill(0)) }, [makeNode('GatherND', ['x', 'i'], ['y'])]);
  assert.deepEqual(nd, [6, 4, 5]);
  const d2s = shapeOf({ x: ['batch', 8, 3, 5] }, {}, [makeNode('DepthToSpace', ['x'], ['y'], { blocksize: attr.int(2) })]);
  assert.deepEqual(d2s, ['batch', 2, 6, 10]);
  const s2d = shapeOf({ x: ['batch', 2, 6, 10] }, {}, [makeNode('SpaceToDepth', ['x'], ['y'], { blocksize: attr.int(2) })]);
  assert.deepEqual(s2d, ['batch', 8, 3, 5]);
  assert.throws(
    () => infer({ x: [1, 2, 5, 6] }, {}, [makeNode('SpaceToDepth', ['x'], ['y'], { blocksize: attr.int(2) }, 'S')]),
    (e) => e instanceof QuantflowError && /node 'S' \(SpaceToDepth\): height 5 is not a multiple of 2/.test(e.message),
  );
  const misc = infer({ x: [1, 3, 4, 4] }, { s: floatTensor([3, 1, 1], [0.1, 0.2, 0.3]) }, [
    makeNode('PRelu', ['x', 's'], ['p']),
    makeNode('Reciprocal', ['p'], ['r']),
    makeNode('Floor', ['r'], ['f']),
  ]);
  assert.deepEqual(misc.get('f'), { name: 'f', dataType: 'float32', shape: [1, 3, 4, 4] });
});
