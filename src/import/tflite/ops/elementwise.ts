/**
 * Elementwise operators: ADD/SUB/MUL with broadcasting, activations, SOFTMAX, and the
 * QUANTIZE/DEQUANTIZE conversions that are identities in the float graph.
 */
import { attr } from '../../../graph/graph.js';
import { floatTensor } from '../../../graph/tensor.js';
import type { Interval, ImportContext, Op } from '../context.js';
import { NHWC_TO_NCHW, onnxShape, transposeData } from '../layout.js';
import { Options } from '../schema.js';
import type { TfliteTensor } from '../schema.js';

/** ACTIVATIONS codes of the standalone activation operators. */
const RELU = 1;
const RELU_N1_TO_1 = 2;
const RELU6 = 3;

/**
 * Operand `t` of a broadcasting op whose output has rank `rank`. NumPy-style broadcasting
 * aligns trailing NHWC dims; against a 4-D NCHW value a lower-rank operand is first given
 * leading 1s and moved to NCHW as well.
 */
export function operand(ctx: ImportContext, op: Op, t: TfliteTensor, rank: number): string {
  if (rank !== 4 || t.shape.length === 4 || t.shape.length === 0) return ctx.value(op, t);
  if (t.shape.length > 4) op.fail(`operand '${t.name}' of rank ${t.shape.length} does not broadcast to rank 4`);
  const dims = [...Array<number>(4 - t.shape.length).fill(1), ...t.shape];
  if (ctx.isConstant(t)) {
    const data = transposeData(ctx.constantValues(op, t), dims, NHWC_TO_NCHW);
    const quant = ctx.quantRecord(t, (a) => NHWC_TO_NCHW.indexOf(a + 4 - t.shape.length));
    return ctx.initializer(ctx.baseName(t), floatTensor(onnxShape(dims), data), quant);
  }
  const name = ctx.fresh(`${ctx.value(op, t)}_4d`);
  ctx.reshape(ctx.reshapeSource(op, t), dims, false, name);
  return name;
}

function binary(onnxOp: 'Add' | 'Div' | 'Mul' | 'Sub', options: { type: number; activation: number }) {
  return (ctx: ImportContext, op: Op): void => {
    op.arity(2, 2);
    const o = op.options(options);
    const y = op.output();
    const inputs = [0, 1].map((k) => operand(ctx, op, op.input(k), y.shape.length));
    const out = ctx.output(op, 0, { activation: op.activation(o, options.activation) });
    ctx.node(onnxOp, inputs, [out], [ctx.onnxDims(y)]);
  };
}

/** ADD → Add. */
export const add = binary('Add', Options.add);
/** SUB → Sub. */
export const sub = binary('Sub', Options.sub);
/** DIV → Div. */
export const div = binary('Div', Options.div);
/** MUL → Mul. */
export const mul = binary('Mul', Options.mul);

export function unary(onnxOp: string, bounds: Interval) {
  return (ctx: ImportContext, op: Op): void => {
    op.arity(1, 1);
    const input = ctx.value(op, op.input(0));
    const out = ctx.output(op, 0, { bounds });
    ctx.node(onnxOp, [input], [out], [ctx.onnxDims(op.output())]);
  };
}

/** LOGISTIC → Sigmoid. */
export const logistic = unary('Sigmoid', [0, 1]);
/** HARD_SWISH → HardSwish (x·relu6(x+3)/6, whose minimum is −3/8). */
export const hardSwish = unary('HardSwish', [-0.375, Infinity]);

/** RELU, RELU6, RELU_N1_TO_1: one clamp, merged with the output's quantized range; none when the input already fits. */
function clampOp(activation: number) {
  return (ctx: ImportContext, op: Op): void => {
    op.arity(1, 1);
    const x = op.input(0);
    ctx.passThrough(op, 0, ctx.value(op, x), { activation, bounds: ctx.rangeOf(x) });
  };
}

export const relu = clampOp(RELU);
export const relu6 = clampOp(RELU6);
export const reluN1To1 = clampOp(RELU_N1_TO_1);

/** SOFTMAX over the last TFLite axis (channels, i.e. ONNX axis 1, for 4-D), with beta folded in as a Mul. */
export function softmax(ctx: ImportContext, op: Op): void {
  op.arity(1, 1);
  const [x, y] = [op.input(0), op.output()];
  const beta = op.options(Options.softmax)?.float32(Options.softmax.beta) ?? 0;
  let input = ctx.value(op, x);
  const out = ctx.output(op, 0, { bounds: [0, 1] });
  if (beta !== 1) {
    const scaled = ctx.fresh(`${out}_logits`);
    ctx.node('Mul', [input, ctx.scalar(`${out}_beta`, beta)], [scaled], [ctx.onnxDims(x)]);
    input = scaled;
  }
  ctx.node('Softmax', [input], [out], [ctx.onnxDims(y)], { axis: attr.int(x.shape.length === 4 ? 1 : -1) });
}

/** QUANTIZE: an identity on real values, except that requantizing to a narrower range clamps. */
export function quantize(ctx: ImportContext, op: Op): void {
  op.arity(1, 1);
  const x = op.input(0);
  ctx.passThrough(op, 0, ctx.value(op, x), { bounds: ctx.rangeOf(x) });
}

/** DEQUANTIZE: constants (float16 or int8 weights) are decoded where used; activations pass through. */
export function dequantize(ctx: ImportContext, op: Op): void {
  op.arity(1, 1);
  const x = op.input(0);
  if (ctx.isConstant(x)) ctx.forwardConstant(x, op.output());
  else ctx.passThrough(op, 0, ctx.value(op, x));
}
