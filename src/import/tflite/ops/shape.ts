/** RESHAPE, SQUEEZE, PAD and CONCATENATION: data movement, with axes translated to NCHW. */
import { attr, normalizeAxis } from '../../../graph/graph.js';
import { sizeOf } from '../../../graph/tensor.js';
import type { ImportContext, Op } from '../context.js';
import { NHWC_TO_NCHW, onnxAxis, onnxShape, permute, sameOrderAsNchw } from '../layout.js';
import { Options } from '../schema.js';

/** RESHAPE to the output tensor's static shape (the optional shape input says the same). */
export function reshape(ctx: ImportContext, op: Op): void {
  op.arity(1, 2);
  const [x, y] = [op.input(0), op.output()];
  if (sizeOf(x.shape) !== sizeOf(y.shape)) op.fail(`cannot reshape [${x.shape}] to [${y.shape}]`);
  const src = ctx.reshapeSource(op, x);
  ctx.reshape(src, y.shape, ctx.outputBatched(op, y), ctx.output(op, 0, { bounds: ctx.rangeOf(x) }));
}

/** SQUEEZE → Squeeze on the mapped axes when NCHW gives TFLite's result, else a reshape. */
export function squeeze(ctx: ImportContext, op: Op): void {
  op.arity(1, 1);
  const [x, y] = [op.input(0), op.output()];
  const rank = x.shape.length;
  const listed = op.options(Options.squeeze)?.int32s(Options.squeeze.squeezeDims, 'squeeze_dims') ?? [];
  const axes = listed.length ? listed.map((a) => normalizeAxis(a, rank)) : x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
  if (axes.some((a) => x.shape[a] !== 1)) op.fail(`cannot squeeze axes [${listed}] of [${x.shape}]`);
  const expected = x.shape.filter((_, i) => !axes.includes(i));
  if (expected.join() !== y.shape.join()) op.fail(`output [${y.shape}] should be [${expected}]`);

  const src = ctx.reshapeSource(op, x);
  const out = ctx.output(op, 0, { bounds: ctx.rangeOf(x) });
  const onnxAxes = axes.map((a) => onnxAxis(a, rank));
  const squeezedNchw = onnxShape(x.shape).filter((_, i) => !onnxAxes.includes(i));
  // With C or H·W equal to 1 both layouts store the same sequence, so only the dims must agree.
  if (y.shape.length !== 4 && sameOrderAsNchw(x.shape) && squeezedNchw.join() === y.shape.join()) {
    const axesValue = ctx.int64s(`${out}_axes`, onnxAxes);
    ctx.node('Squeeze', [src.name, axesValue], [out], [ctx.onnxDims(y)]);
  } else ctx.reshape(src, y.shape, ctx.outputBatched(op, y), out);
}

/** PAD with constant zeros (a quantized model pads with the zero point, i.e. real 0). */
export function pad(ctx: ImportContext, op: Op): void {
  op.arity(2, 2);
  const [x, y] = [op.input(0), op.output()];
  const rank = x.shape.length;
  const paddings = ctx.constantInts(op, op.input(1));
  if (paddings.length !== 2 * rank || paddings.some((p) => p < 0)) op.fail(`paddings [${paddings}] do not fit input [${x.shape}]`);
  let begin = paddings.filter((_, i) => i % 2 === 0);
  let end = paddings.filter((_, i) => i % 2 === 1);
  const expected = x.shape.map((d, i) => d + begin[i]! + end[i]!);
  if (expected.join() !== y.shape.join()) op.fail(`output [${y.shape}] should be [${expected}]`);
  if (rank === 4) {
    begin = permute(begin, NHWC_TO_NCHW);
    end = permute(end, NHWC_TO_NCHW);
  }
  const input = ctx.value(op, x);
  const [lo, hi] = ctx.rangeOf(x);
  const out = ctx.output(op, 0, { bounds: [Math.min(lo, 0), Math.max(hi, 0)] });
  ctx.node('Pad', [input, ctx.int64s(`${out}_pads`, [...begin, ...end])], [out], [ctx.onnxDims(y)]);
}

/** CONCATENATION → Concat on the mapped axis. */
export function concatenation(ctx: ImportContext, op: Op): void {
  if (op.raw.inputs.length < 1) op.fail('has no inputs');
  op.arity(1, op.raw.inputs.length);
  const o = op.options(Options.concatenation);
  const y = op.output();
  const xs = op.raw.inputs.map((_, k) => op.input(k));
  const rank = y.shape.length;
  const axis = o?.int32(Options.concatenation.axis) ?? 0;
  if (axis < -rank || axis >= rank) op.fail(`axis ${axis} is out of range for rank ${rank}`);
  const a = normalizeAxis(axis, rank);
  const fits = xs.every((x) => x.shape.length === rank && x.shape.every((d, i) => i === a || d === y.shape[i]));
  if (!fits || xs.reduce((s, x) => s + x.shape[a]!, 0) !== y.shape[a])
    op.fail(`inputs ${xs.map((x) => `[${x.shape}]`).join(', ')} do not concatenate to [${y.shape}] on axis ${axis}`);
  const inputs = xs.map((x) => ctx.value(op, x));
  const activation = op.activation(o, Options.concatenation.activation);
  const out = ctx.output(op, 0, { activation, bounds: ctx.hullOf(xs) });
  ctx.node('Concat', inputs, [out], [ctx.onnxDims(y)], { axis: attr.int(onnxAxis(a, rank)) });
}
