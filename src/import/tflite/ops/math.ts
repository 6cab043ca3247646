/**
 * Arithmetic and index operators: MAXIMUM/MINIMUM, unary functions, FLOOR_DIV,
 * SQUARED_DIFFERENCE, LEAKY_RELU, PRELU, CAST and ARG_MAX/ARG_MIN.
 */
import { attr } from '../../../graph/graph.js';
import type { DataType } from '../../../graph/types.js';
import { onnxTypeCode } from '../../../graph/datatype.js';
import { type ImportContext, type Op, valueType } from '../context.js';
import { onnxAxis } from '../layout.js';
import { Options } from '../schema.js';
import { operand, unary } from './elementwise.js';

function extremum(onnxOp: 'Max' | 'Min') {
  return (ctx: ImportContext, op: Op): void => {
    op.arity(2, 2);
    const y = op.output();
    const inputs = [0, 1].map((k) => operand(ctx, op, op.input(k), y.shape.length));
    const out = ctx.output(op, 0);
    ctx.node(onnxOp, inputs, [out], [ctx.onnxDims(y)]);
  };
}

/** MAXIMUM → Max. */
export const maximum = extremum('Max');
/** MINIMUM → Min. */
export const minimum = extremum('Min');

/** EXP → Exp. */
export const exp = unary('Exp', [0, Infinity]);
/** SQRT → Sqrt. */
export const sqrt = unary('Sqrt', [0, Infinity]);
/** TANH → Tanh. */
export const tanh = unary('Tanh', [-1, 1]);

/** RSQRT → Reciprocal(Sqrt). */
export function rsqrt(ctx: ImportContext, op: Op): void {
  op.arity(1, 1);
  const [x, y] = [op.input(0), op.output()];
  const input = ctx.value(op, x);
  const out = ctx.output(op, 0, { bounds: [0, Infinity] });
  const root = ctx.fresh(`${out}_sqrt`);
  ctx.node('Sqrt', [input], [root], [ctx.onnxDims(x)]);
  ctx.node('Reciprocal', [root], [out], [ctx.onnxDims(y)]);
}

/** SQUARED_DIFFERENCE → (a − b)². */
export function squaredDifference(ctx: ImportContext, op: Op): void {
  op.arity(2, 2);
  const y = op.output();
  const [a, b] = [0, 1].map((k) => operand(ctx, op, op.input(k), y.shape.length)) as [string, string];
  const out = ctx.output(op, 0, { bounds: [0, Infinity] });
  const difference = ctx.fresh(`${out}_difference`);
  ctx.node('Sub', [a, b], [difference], [ctx.onnxDims(y)]);
  ctx.node('Mul', [difference, difference], [out], [ctx.onnxDims(y)]);
}

/**
 * FLOOR_DIV → Floor(Div). Integer operands are divided as floats: ONNX's integer Div
 * truncates, TFLite's FLOOR_DIV rounds towards −∞.
 */
export function floorDiv(ctx: ImportContext, op: Op): void {
  op.arity(2, 2);
  const y = op.output();
  const type = valueType(y);
  const dims = ctx.onnxDims(y);
  const asFloat = (name: string): string => {
    if (ctx.typeOf(name) === 'float32') return name;
    const cast = ctx.fresh(`${name}_float`);
    const shape = ctx.graph.valueInfo.get(name)?.shape ?? ctx.graph.initializers.get(name)?.dims ?? dims;
    ctx.node('Cast', [name], [cast], [shape], { to: attr.int(onnxTypeCode('float32')) }, ['float32']);
    return cast;
  };
  const [a, b] = [0, 1].map((k) => asFloat(operand(ctx, op, op.input(k), y.shape.length))) as [string, string];
  const out = ctx.output(op, 0);
  const quotient = ctx.fresh(`${out}_quotient`);
  ctx.node('Div', [a, b], [quotient], [dims], {}, ['float32']);
  if (type === 'float32') {
    ctx.node('Floor', [quotient], [out], [dims]);
    return;
  }
  const floor = ctx.fresh(`${out}_floor`);
  ctx.node('Floor', [quotient], [floor], [dims]);
  ctx.node('Cast', [floor], [out], [dims], { to: attr.int(onnxTypeCode(type)) }, [type]);
}

/** LEAKY_RELU → LeakyRelu. */
export function leakyRelu(ctx: ImportContext, op: Op): void {
  op.arity(1, 1);
  const alpha = op.options(Options.leakyRelu)?.float32(Options.leakyRelu.alpha) ?? 0;
  const input = ctx.value(op, op.input(0));
  const out = ctx.output(op, 0);
  ctx.node('LeakyRelu', [input], [out], [ctx.onnxDims(op.output())], { alpha: attr.float(alpha) });
}

/** PRELU → PRelu, the slope broadcast against the input's NHWC dims like an ADD operand. */
export function prelu(ctx: ImportContext, op: Op): void {
  op.arity(2, 2);
  const y = op.output();
  const inputs = [0, 1].map((k) => operand(ctx, op, op.input(k), y.shape.length));
  const out = ctx.output(op, 0);
  ctx.node('PRelu', inputs, [out], [ctx.onnxDims(y)]);
}

/** CAST → Cast to the output's element type (float32 for a quantized or float output). */
export function cast(ctx: ImportContext, op: Op): void {
  op.arity(1, 1);
  const [x, y] = [op.input(0), op.output()];
  const to = valueType(y);
  const input = ctx.value(op, x);
  if (ctx.typeOf(input) === to) {
    ctx.passThrough(op, 0, input);
    return;
  }
  const out = ctx.output(op, 0);
  ctx.node('Cast', [input], [out], [ctx.onnxDims(y)], { to: attr.int(onnxTypeCode(to)) }, [to]);
}

/**
 * ARG_MAX/ARG_MIN over a constant axis → ArgMax/ArgMin (first index on ties, as TFLite).
 * ONNX returns int64; an int32 output adds a Cast. On a 4-D input the reduced axis is kept
 * and reshaped away unless dropping it leaves NCHW and NHWC in the same order.
 */
function argReduce(onnxOp: 'ArgMax' | 'ArgMin') {
  return (ctx: ImportContext, op: Op): void => {
    op.arity(2, 2);
    const [x, y] = [op.input(0), op.output()];
    const rank = x.shape.length;
    const axes = ctx.constantInts(op, op.input(1));
    if (axes.length !== 1 || axes[0]! < -rank || axes[0]! >= rank) op.fail(`axis [${axes}] does not fit input [${x.shape}]`);
    const axis = axes[0]! < 0 ? axes[0]! + rank : axes[0]!;
    const expected = x.shape.filter((_, i) => i !== axis);
    if (expected.join() !== y.shape.join()) op.fail(`output [${y.shape}] should be [${expected}]`);
    const type: DataType = valueType(y);
    if (type !== 'int32' && type !== 'int64') op.fail(`output type ${y.type} is not int32 or int64`);

    const input = ctx.value(op, x);
    const out = ctx.output(op, 0);
    const target = type === 'int64' ? out : ctx.fresh(`${out}_int64`);
    const keep = rank === 4 && axis !== 3;
    const reduced = keep ? ctx.fresh(`${out}_keepdims`) : target;
    const keptDims = x.shape.map((d, i) => (i === axis ? 1 : d));
    ctx.node(
      onnxOp,
      [input],
      [reduced],
      [keep ? ctx.onnxDims({ ...x, shape: keptDims }) : ctx.onnxDims(y)],
      { axis: attr.int(onnxAxis(axis, rank)), keepdims: attr.int(keep ? 1 : 0) },
      ['int64'],
    );
    if (keep) ctx.reshape({ name: reduced, dims: keptDims, batched: ctx.isBatched(x.index) }, y.shape, ctx.outputBatched(op, y), target);
    if (target !== out) ctx.node('Cast', [target], [out], [ctx.onnxDims(y)], { to: attr.int(onnxTypeCode('int32')) }, ['int32']);
  };
}

/** ARG_MAX → ArgMax. */
export const argMax = argReduce('ArgMax');
/** ARG_MIN → ArgMin. */
export const argMin = argReduce('ArgMin');
