import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor } from '../src/graph/tensor.js';
import { SUPPORTED_OPS, validateModel } from '../src/graph/validate.js';
import type { Dim, Model, Node, TensorData } from '../src/graph/types.js';
import { QuantflowError } from '../src/util/errors.js';

function model(
  inputs: Record<string, Dim[]>,
  initializers: Record<string, TensorData>,
  nodes: Node[],
  outputs: string[] = [nodes[nodes.length - 1].outputs[0]],
  opset = 17,
): Model {
  const g = createGraph('t');
  for (const [name, shape] of Object.entries(inputs)) g.inputs.push({ name, dataType: 'float32', shape });
  for (const [name, t] of Object.entries(initializers)) g.initializers.set(name, t);
  g.nodes.push(...nodes);
  for (const name of outputs) g.outputs.push({ name, dataType: 'float32' });
  return { graph: g, opset, producerName: 'test', metadata: {} };
}

/** validateModel must throw a one-line QuantflowError matching `pattern`. */
function rejects(m: Model, pattern: RegExp): void {
  assert.throws(
    () => validateModel(m),
    (e: unknown) => {
      assert.ok(e instanceof QuantflowError, `expected a QuantflowError, got ${String(e)}`);
      assert.match(e.message, pattern);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    },
  );
}

const conv = (name: string, inputs: string[], output: string, attributes: Node['attributes'] = {}) =>
  makeNode('Conv', inputs, [output], attributes, name);

function smallCnn(): Model {
  return model({ x: ['N', 3, 8, 8] }, { w: floatTensor([4, 3, 3, 3]), b: floatTensor([4]) }, [
    conv('conv', ['x', 'w', 'b'], 'c', { pads: attr.ints([1, 1, 1, 1]) }),
    makeNode('Relu', ['c'], ['y'], {}, 'relu'),
  ]);
}

test('a valid model passes and is left unchanged', () => {
  const m = smallCnn();
  validateModel(m);
  assert.equal(m.graph.valueInfo.size, 0, 'validation does not fill valueInfo');
});

test('SUPPORTED_OPS lists the operators quantflow handles', () => {
  for (const op of ['Conv', 'Gemm', 'QuantizeLinear', 'DequantizeLinear', 'Resize', 'Split', 'Where']) assert.ok(SUPPORTED_OPS.has(op), op);
  for (const op of ['LSTM', 'QLinearConv', 'RoiAlign']) assert.ok(!SUPPORTED_OPS.has(op), op);
});

test('an unsupported operator is named with the supported list', () => {
  rejects(
    model({ x: [1, 4] }, {}, [makeNode('Foo', ['x'], ['y'], {}, 'X')]),
    /^node 'X': operator 'Foo' is not supported by quantflow \(supported: Abs, .*, Where\); pass --cut-before Foo to import the model up to its inputs$/,
  );
  const ms = model({ x: [1, 4] }, {}, [makeNode('Relu', ['x'], ['y'], {}, 'gelu')]);
  ms.graph.nodes[0].domain = 'com.microsoft';
  rejects(ms, /^node 'gelu': operator 'Relu' \(domain 'com.microsoft'\) is not supported by quantflow/);
  const onnxDomain = model({ x: [1, 4] }, {}, [makeNode('Relu', ['x'], ['y'])]);
  onnxDomain.graph.nodes[0].domain = 'ai.onnx';
  validateModel(onnxDomain);
});

test('inputs must be produced, and produced earlier', () => {
  rejects(
    model({ x: [1, 4] }, {}, [makeNode('Add', ['x', 'ghost'], ['y'], {}, 'add')]),
    /^node 'add' \(Add\): input 'ghost' is never produced \(not a graph input, initializer or earlier node output\)$/,
  );
  rejects(
    model({ x: [1, 4] }, {}, [makeNode('Relu', ['r'], ['y'], {}, 'second'), makeNode('Relu', ['x'], ['r'], {}, 'first')]),
    /^node 'second' \(Relu\): input 'r' is produced by a later node 'first' \(Relu\); the nodes are not in topological order$/,
  );
  rejects(model({}, {}, [makeNode('Relu', ['y'], ['y'], {}, 'loop')]), /^node 'loop' \(Relu\): input 'y' is this node's own output$/);
});

test('a value may be produced only once', () => {
  rejects(
    model({ x: [1, 4] }, {}, [makeNode('Relu', ['x'], ['y'], {}, 'a'), makeNode('Sigmoid', ['x'], ['y'], {}, 'b')]),
    /^node 'b' \(Sigmoid\): 'y' is produced twice \(also by node 'a' \(Relu\)\)$/,
  );
  rejects(
    model({ x: [1, 4] }, {}, [makeNode('Relu', ['x'], ['x'], {}, 'shadow')]),
    /^node 'shadow' \(Relu\): 'x' is produced twice \(also by a graph input\)$/,
  );
  rejects(
    model({ x: [1, 4] }, { x: floatTensor([1, 4]) }, [makeNode('Relu', ['x'], ['y'])]),
    /^initializer 'x': 'x' is produced twice \(also by a graph input\)$/,
  );
  rejects(
    model({ x: [1, 4] }, {}, [makeNode('Relu', ['x'], ['a'], {}, 'n'), makeNode('Relu', ['a'], ['y'], {}, 'n')]),
    /^node name 'n' is used by two nodes$/,
  );
});

test('required inputs and input/output counts follow the opset', () => {
  rejects(model({ x: [1, 3, 8, 8] }, {}, [conv('c', ['x'], 'y')]), /^node 'c' \(Conv\): missing required input 1 \(needs 2 at opset 17\)$/);
  rejects(model({ x: [1, 4] }, {}, [makeNode('Reshape', ['x', ''], ['y'], {}, 'r')]), /^node 'r' \(Reshape\): missing required input 1/);
  rejects(model({ x: [1, 4] }, {}, [makeNode('Relu', ['x', 'x'], ['y'], {}, 'r')]), /^node 'r' \(Relu\): takes at most 1 inputs, found 2$/);
  // Unsqueeze takes axes as an input from opset 13 on.
  const axes = { a: int64Tensor([1], [0]) };
  rejects(
    model({ x: [4] }, axes, [makeNode('Unsqueeze', ['x', 'a'], ['y'], {}, 'u')], undefined, 11),
    /^node 'u' \(Unsqueeze\): takes at most 1 inputs, found 2$/,
  );
  validateModel(model({ x: [4] }, axes, [makeNode('Unsqueeze', ['x', 'a'], ['y'], {}, 'u')], undefined, 13));
  rejects(
    model({ x: [4] }, {}, [makeNode('Relu', ['x'], ['y', 'z'], {}, 'r')]),
    /^node 'r' \(Relu\): produces at most 1 outputs, found 2$/,
  );
});

test('attributes must have the declared type; required attributes must be present', () => {
  const weights = { w: floatTensor([4, 3, 3, 3]) };
  rejects(
    model({ x: [1, 3, 8, 8] }, weights, [conv('c', ['x', 'w'], 'y', { group: attr.float(1) })]),
    /^node 'c' \(Conv\): attribute 'group' should be an int, found float$/,
  );
  rejects(
    model({ x: [1, 3, 8, 8] }, weights, [conv('c', ['x', 'w'], 'y', { kernel_shape: attr.int(3) })]),
    /^node 'c' \(Conv\): attribute 'kernel_shape' should be a list of ints, found int$/,
  );
  rejects(
    model({ x: [1, 3, 8, 8] }, {}, [makeNode('MaxPool', ['x'], ['y'], {}, 'pool')]),
    /^node 'pool' \(MaxPool\): missing required attribute 'kernel_shape'$/,
  );
  rejects(
    model({ x: [1, 3] }, {}, [makeNode('Concat', ['x', 'x'], ['y'], {}, 'cat')]),
    /^node 'cat' \(Concat\): missing required attribute 'axis'$/,
  );
});

test('graph outputs must be produced and match what inference finds', () => {
  rejects(model({ x: [1, 4] }, {}, [makeNode('Relu', ['x'], ['y'])], ['y', 'nothing']), /^graph output 'nothing' is never produced$/);
  const m = smallCnn();
  m.graph.outputs[0].shape = ['N', 4, 8, 9];
  rejects(m, /^graph output 'y' is declared \[N, 4, 8, 9\] but node 'relu' \(Relu\) produces \[N, 4, 8, 8\]$/);
  const typed = smallCnn();
  typed.graph.outputs[0].dataType = 'int8';
  rejects(typed, /^graph output 'y' is declared int8 but node 'relu' \(Relu\) produces float32$/);
  const compatible = smallCnn();
  compatible.graph.outputs[0].shape = [1, 4, 'H', 8];
  validateModel(compatible);
});

test('shape mismatches found by inference name the node', () => {
  rejects(
    model({ x: [1, 3, 8, 8] }, { w: floatTensor([4, 2, 3, 3]) }, [conv('c1', ['x', 'w'], 'y')]),
    /^node 'c1' \(Conv\): input has 3 channels but weight \[4, 2, 3, 3\] with group 1 expects 2$/,
  );
  rejects(
    model({ x: [1, 8, 8, 8] }, { w: floatTensor([8, 2, 3, 3]) }, [conv('dw', ['x', 'w'], 'y', { group: attr.int(8) })]),
    /^node 'dw' \(Conv\): input has 8 channels but weight \[8, 2, 3, 3\] with group 8 expects 16$/,
  );
  rejects(
    model({ x: [1, 3, 8, 8] }, { w: floatTensor([4, 3, 3, 3]), b: floatTensor([5]) }, [conv('c2', ['x', 'w', 'b'], 'y')]),
    /^node 'c2' \(Conv\): bias \[5\] should be \[4\]$/,
  );
  rejects(
    model({ a: ['N', 512] }, { b: floatTensor([10, 256]) }, [makeNode('Gemm', ['a', 'b'], ['y'], { transB: attr.int(1) }, 'fc')]),
    /^node 'fc' \(Gemm\): inner dimensions differ: A \[N, 512\] · B \[10, 256\] transposed$/,
  );
  rejects(
    model({ a: [2, 3], b: [3, 5] }, {}, [makeNode('MatMul', ['b', 'a'], ['y'], {}, 'mm')]),
    /^node 'mm' \(MatMul\): inner dimensions differ: \[3, 5\] · \[2, 3\]$/,
  );
  rejects(
    model({ a: ['N', 3, 4], b: [5, 4] }, {}, [makeNode('Add', ['a', 'b'], ['y'], {}, 'add')]),
    /^node 'add' \(Add\): shapes \[N, 3, 4\] and \[5, 4\] are not broadcastable$/,
  );
  rejects(
    model({ a: ['N', 3, 8], b: ['N', 5, 9] }, {}, [makeNode('Concat', ['a', 'b'], ['y'], { axis: attr.int(1) }, 'cat')]),
    /^node 'cat' \(Concat\): inputs \[N, 3, 8\], \[N, 5, 9\] differ on axis 2, which is not the concatenation axis 1$/,
  );
  rejects(
    model({ x: [2, 3, 4] }, { s: int64Tensor([2], [5, 5]) }, [makeNode('Reshape', ['x', 's'], ['y'], {}, 'r')]),
    /^node 'r' \(Reshape\): cannot reshape \[2, 3, 4\] \(24 elements\) into \[5, 5\] \(25 elements\)$/,
  );
  rejects(
    model({ x: ['N', 3, 4] }, { s: int64Tensor([3], [0, 5, -1]) }, [makeNode('Reshape', ['x', 's'], ['y'], {}, 'r2')]),
    /^node 'r2' \(Reshape\): cannot reshape \[N, 3, 4\] \(12 elements\) into \[N, 5, -1\] \(5 elements\)$/,
  );
  rejects(
    model({ x: ['N', 3, 1] }, {}, [makeNode('Squeeze', ['x'], ['y'], { axes: attr.ints([1]) }, 'sq')], undefined, 11),
    /^node 'sq' \(Squeeze\): cannot squeeze axis 1 of size 3 in \[N, 3, 1\]$/,
  );
  rejects(
    model(
      { x: ['N', 10] },
      {},
      [makeNode('Split', ['x'], ['a', 'y'], { axis: attr.int(1), split: attr.ints([3, 3]) }, 'sp')],
      ['a', 'y'],
      11,
    ),
    /^node 'sp' \(Split\): split \[3, 3\] does not add up to 10$/,
  );
  rejects(
    model({ x: ['N', 16, 4, 4] }, { s: floatTensor([8]) }, [
      makeNode('QuantizeLinear', ['x', 's'], ['q'], {}, 'q'),
      makeNode('DequantizeLinear', ['q', 's'], ['y'], {}, 'dq'),
    ]),
    /^node 'q' \(QuantizeLinear\): per-axis scale has 8 values but axis 1 of \[N, 16, 4, 4\] has 16$/,
  );
  rejects(
    model({ x: [1, 3, 2, 2] }, { w: floatTensor([4, 3, 3, 3]) }, [conv('small', ['x', 'w'], 'y')]),
    /^node 'small' \(Conv\): window of 3 exceeds the padded input size 2 on spatial axis 0$/,
  );
});

test('opsets outside 9-23 are refused', () => {
  for (const opset of [8, 24])
    rejects(
      model({ x: [1, 4] }, {}, [makeNode('Relu', ['x'], ['y'])], undefined, opset),
      new RegExp(`^model opset ${opset} is not supported: quantflow handles opsets 9-23$`),
    );
});
