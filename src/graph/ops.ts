/**
 * The operator set quantflow accepts: for each default-domain ONNX operator, how many inputs
 * and outputs it takes and the type of each attribute it defines. Validation checks nodes
 * against this table; shape inference (shapes.ts) has one shape function per entry.
 */
import type { AttributeValue, Node } from './types.js';

/** Oldest and newest default-domain opsets quantflow accepts (files and built graphs alike). */
export const MIN_OPSET = 9;
export const MAX_OPSET = 23;

/** [required, maximum] count; optional inputs past `required` may be '' (omitted). */
export type Arity = readonly [required: number, maximum: number];

export interface OpSchema {
  /** Input arity at the given opset (several operators moved attributes to inputs). */
  inputs(opset: number): Arity;
  outputs: Arity;
  /** Type of every attribute the operator defines at some opset we accept. */
  attributes: Readonly<Record<string, AttributeValue['type']>>;
}

const fixed =
  (required: number, maximum = required) =>
  (): Arity => [required, maximum];

/** Arity `before` up to `opset - 1` and `after` from `opset` on. */
const since =
  (opset: number, before: Arity, after: Arity) =>
  (version: number): Arity =>
    version >= opset ? after : before;

const WINDOW = {
  auto_pad: 'string',
  dilations: 'ints',
  kernel_shape: 'ints',
  pads: 'ints',
  strides: 'ints',
} as const;
const REDUCE = { axes: 'ints', keepdims: 'int', noop_with_empty_axes: 'int' } as const;

const unary: OpSchema = { inputs: fixed(1), outputs: [1, 1], attributes: {} };
const binary: OpSchema = { inputs: fixed(2), outputs: [1, 1], attributes: {} };
const variadic: OpSchema = { inputs: fixed(1, Infinity), outputs: [1, 1], attributes: {} };
const softmax: OpSchema = { inputs: fixed(1), outputs: [1, 1], attributes: { axis: 'int' } };
/** ReduceSum took axes as an input from opset 13, the others from 18. */
const reduce = (axesInputSince: number): OpSchema => ({
  inputs: since(axesInputSince, [1, 1], [1, 2]),
  outputs: [1, 1],
  attributes: REDUCE,
});

const argReduce: OpSchema = {
  inputs: fixed(1),
  outputs: [1, 1],
  attributes: { axis: 'int', keepdims: 'int', select_last_index: 'int' },
};

const OP_SCHEMAS = {
  Abs: unary,
  Add: binary,
  And: binary,
  ArgMax: argReduce,
  ArgMin: argReduce,
  AveragePool: {
    inputs: fixed(1),
    outputs: [1, 1],
    attributes: { ...WINDOW, ceil_mode: 'int', count_include_pad: 'int' },
  },
  BatchNormalization: {
    inputs: fixed(5),
    outputs: [1, 5],
    attributes: { epsilon: 'float', momentum: 'float', training_mode: 'int', spatial: 'int' },
  },
  Cast: { inputs: fixed(1), outputs: [1, 1], attributes: { to: 'int', saturate: 'int' } },
  Ceil: unary,
  Clip: { inputs: since(11, [1, 1], [1, 3]), outputs: [1, 1], attributes: { min: 'float', max: 'float' } },
  Concat: { inputs: fixed(1, Infinity), outputs: [1, 1], attributes: { axis: 'int' } },
  Constant: {
    inputs: fixed(0),
    outputs: [1, 1],
    attributes: {
      value: 'tensor',
      value_float: 'float',
      value_floats: 'floats',
      value_int: 'int',
      value_ints: 'ints',
      value_string: 'string',
      value_strings: 'strings',
    },
  },
  ConstantOfShape: { inputs: fixed(1), outputs: [1, 1], attributes: { value: 'tensor' } },
  Conv: { inputs: fixed(2, 3), outputs: [1, 1], attributes: { ...WINDOW, group: 'int' } },
  ConvTranspose: {
    inputs: fixed(2, 3),
    outputs: [1, 1],
    attributes: { ...WINDOW, group: 'int', output_padding: 'ints', output_shape: 'ints' },
  },
  DepthToSpace: { inputs: fixed(1), outputs: [1, 1], attributes: { blocksize: 'int', mode: 'string' } },
  DequantizeLinear: {
    inputs: fixed(2, 3),
    outputs: [1, 1],
    attributes: { axis: 'int', block_size: 'int', output_dtype: 'int' },
  },
  Div: binary,
  Dropout: {
    inputs: since(12, [1, 1], [1, 3]),
    outputs: [1, 2],
    attributes: { ratio: 'float', seed: 'int' },
  },
  Equal: binary,
  Erf: unary,
  Exp: unary,
  Expand: binary,
  Flatten: { inputs: fixed(1), outputs: [1, 1], attributes: { axis: 'int' } },
  Floor: unary,
  Gather: { inputs: fixed(2), outputs: [1, 1], attributes: { axis: 'int' } },
  GatherElements: { inputs: fixed(2), outputs: [1, 1], attributes: { axis: 'int' } },
  GatherND: { inputs: fixed(2), outputs: [1, 1], attributes: { batch_dims: 'int' } },
  Gemm: {
    inputs: since(11, [3, 3], [2, 3]),
    outputs: [1, 1],
    attributes: { alpha: 'float', beta: 'float', transA: 'int', transB: 'int' },
  },
  Greater: binary,
  GlobalAveragePool: unary,
  GlobalMaxPool: unary,
  HardSigmoid: { inputs: fixed(1), outputs: [1, 1], attributes: { alpha: 'float', beta: 'float' } },
  HardSwish: unary,
  Identity: unary,
  LeakyRelu: { inputs: fixed(1), outputs: [1, 1], attributes: { alpha: 'float' } },
  Less: binary,
  Log: unary,
  LogSoftmax: softmax,
  MatMul: binary,
  Max: variadic,
  MaxPool: {
    inputs: fixed(1),
    outputs: [1, 2],
    attributes: { ...WINDOW, ceil_mode: 'int', storage_order: 'int' },
  },
  Min: variadic,
  Mul: binary,
  Neg: unary,
  NonMaxSuppression: { inputs: fixed(2, 5), outputs: [1, 1], attributes: { center_point_box: 'int' } },
  Pad: {
    inputs: (opset: number): Arity => (opset >= 18 ? [2, 4] : opset >= 11 ? [2, 3] : [1, 1]),
    outputs: [1, 1],
    attributes: { mode: 'string', pads: 'ints', value: 'float' },
  },
  Pow: binary,
  PRelu: binary,
  QuantizeLinear: {
    inputs: fixed(2, 3),
    outputs: [1, 1],
    attributes: { axis: 'int', block_size: 'int', output_dtype: 'int', saturate: 'int', precision: 'int' },
  },
  Range: { inputs: fixed(3), outputs: [1, 1], attributes: {} },
  Reciprocal: unary,
  ReduceMax: reduce(18),
  ReduceMean: reduce(18),
  ReduceSum: reduce(13),
  Relu: unary,
  Reshape: { inputs: fixed(2), outputs: [1, 1], attributes: { allowzero: 'int' } },
  Resize: {
    inputs: (opset: number): Arity => (opset >= 13 ? [1, 4] : opset >= 11 ? [3, 4] : [2, 2]),
    outputs: [1, 1],
    attributes: {
      antialias: 'int',
      axes: 'ints',
      coordinate_transformation_mode: 'string',
      cubic_coeff_a: 'float',
      exclude_outside: 'int',
      extrapolation_value: 'float',
      keep_aspect_ratio_policy: 'string',
      mode: 'string',
      nearest_mode: 'string',
    },
  },
  Round: unary,
  ScatterElements: { inputs: fixed(3), outputs: [1, 1], attributes: { axis: 'int', reduction: 'string' } },
  Shape: { inputs: fixed(1), outputs: [1, 1], attributes: { start: 'int', end: 'int' } },
  Sigmoid: unary,
  Size: unary,
  Slice: {
    inputs: since(10, [1, 1], [3, 5]),
    outputs: [1, 1],
    attributes: { starts: 'ints', ends: 'ints', axes: 'ints' },
  },
  Softmax: softmax,
  SpaceToDepth: { inputs: fixed(1), outputs: [1, 1], attributes: { blocksize: 'int' } },
  Split: {
    inputs: since(13, [1, 1], [1, 2]),
    outputs: [1, Infinity],
    attributes: { axis: 'int', split: 'ints', num_outputs: 'int' },
  },
  Sqrt: unary,
  Squeeze: { inputs: since(13, [1, 1], [1, 2]), outputs: [1, 1], attributes: { axes: 'ints' } },
  Sub: binary,
  Sum: variadic,
  Tanh: unary,
  Tile: binary,
  TopK: {
    inputs: since(10, [1, 1], [2, 2]),
    outputs: [2, 2],
    attributes: { axis: 'int', k: 'int', largest: 'int', sorted: 'int' },
  },
  Transpose: { inputs: fixed(1), outputs: [1, 1], attributes: { perm: 'ints' } },
  Unsqueeze: { inputs: since(13, [1, 1], [2, 2]), outputs: [1, 1], attributes: { axes: 'ints' } },
  Upsample: {
    inputs: since(9, [1, 1], [2, 2]),
    outputs: [1, 1],
    attributes: { mode: 'string', scales: 'floats' },
  },
  Where: { inputs: fixed(3), outputs: [1, 1], attributes: {} },
} satisfies Record<string, OpSchema>;

/** Name of a supported operator. */
export type OpType = keyof typeof OP_SCHEMAS;

/** Ops that only relabel the elements of their first input (its values, rearranged or not, are the output's). */
export const SHAPE_ONLY_OPS: ReadonlySet<string> = new Set<OpType>(['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity', 'Dropout']);

/** Every default-domain operator quantflow can validate, infer shapes for and quantize. */
export const SUPPORTED_OPS: ReadonlySet<string> = new Set(Object.keys(OP_SCHEMAS));

/** Whether `node` is in the default ONNX domain ('' and 'ai.onnx' name the same domain). */
function isDefaultDomain(node: Node): boolean {
  return node.domain === '' || node.domain === 'ai.onnx';
}

/** The schema of `node`'s operator, or undefined when quantflow does not support it. */
export function schemaOf(node: Node): OpSchema | undefined {
  return isDefaultDomain(node) && Object.hasOwn(OP_SCHEMAS, node.opType) ? OP_SCHEMAS[node.opType as OpType] : undefined;
}

/** The one-line message for a node whose operator is outside `SUPPORTED_OPS`. */
export function unsupportedOperatorMessage(node: Node): string {
  const domain = isDefaultDomain(node) ? '' : ` (domain '${node.domain}')`;
  const supported = [...SUPPORTED_OPS].sort().join(', ');
  return `node '${node.name}': operator '${node.opType}'${domain} is not supported by quantflow (supported: ${supported}); pass --cut-before ${node.opType} to import the model up to its inputs`;
}
