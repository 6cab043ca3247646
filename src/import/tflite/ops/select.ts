/**
 * TRANSPOSE, STRIDED_SLICE, SPLIT, SPLIT_V, PACK, UNPACK, GATHER and GATHER_ND: data movement
 * whose axes are TFLite's. Rank-preserving cases map the axes onto the NCHW value; the others
 * compute in TFLite layout between Transposes of the 4-D values involved.
 */
import { attr, normalizeAxis } from '../../../graph/graph.js';
import { int64Tensor } from '../../../graph/tensor.js';
import type { Dim } from '../../../graph/types.js';
import { onnxTypeCode } from '../../../graph/datatype.js';
import type { ImportContext, Op, OutputSpec } from '../context.js';
import { NCHW_TO_NHWC, NHWC_TO_NCHW, onnxAxis } from '../layout.js';
import { Options } from '../schema.js';
import type { TfliteTensor } from '../schema.js';

/** The value of `t` with its dims in TFLite order (a 4-D value transposed back to NHWC). */
function tfliteLayout(ctx: ImportContext, op: Op, t: TfliteTensor): string {
  const v = ctx.value(op, t);
  if (t.shape.length !== 4) return v;
  const name = ctx.fresh(`${v}_nhwc`);
  ctx.node('Transpose', [v], [name], [ctx.tfliteDims(t)], { perm: attr.ints(NCHW_TO_NHWC) });
  return name;
}

/** Output k, which `build` computes in TFLite layout into the name and dims it is given. */
function fromTfliteLayout(ctx: ImportContext, op: Op, k: number, spec: OutputSpec, build: (target: string, dims: Dim[]) => void): void {
  const y = op.output(k);
  const out = ctx.output(op, k, spec);
  if (y.shape.length !== 4) {
    build(out, ctx.onnxDims(y));
    return;
  }
  const nhwc = ctx.fresh(`${out}_nhwc`);
  build(nhwc, ctx.tfliteDims(y));
  ctx.node('Transpose', [nhwc], [out], [ctx.onnxDims(y)], { perm: attr.ints(NHWC_TO_NCHW) });
}

/** An axis operand or option, checked against `rank` and made non-negative. */
function axisOf(op: Op, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) op.fail(`axis ${axis} is out of range for rank ${rank}`);
  return normalizeAxis(axis, rank);
}

/** The single value of a constant scalar (or one-element) int tensor. */
function scalarInt(ctx: ImportContext, op: Op, t: TfliteTensor): number {
  const v = ctx.constantInts(op, t);
  if (v.length !== 1) op.fail(`'${t.name}' must hold one value, holds [${v}]`);
  return v[0]!;
}

/** TRANSPOSE → Transpose; on 4-D values the permutation is conjugated into NCHW. */
export function transpose(ctx: ImportContext, op: Op): void {
  op.arity(2, 2);
  const [x, y] = [op.input(0), op.output()];
  const rank = x.shape.length;
  const perm = ctx.constantInts(op, op.input(1)).map((p) => normalizeAxis(p, rank));
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i))
    op.fail(`perm [${perm}] is not a permutation of ${rank} axes`);
  const expected = perm.map((p) => x.shape[p]!);
  if (expected.join() !== y.shape.join()) op.fail(`output [${y.shape}] should be [${expected}]`);
  // Output axis i of the NCHW value is TFLite output axis NHWC_TO_NCHW[i], i.e. input axis perm[that].
  const onnxPerm = rank === 4 ? NHWC_TO_NCHW.map((a) => onnxAxis(perm[a]!, 4)) : perm;
  const input = ctx.value(op, x);
  const out = ctx.output(op, 0, { bounds: ctx.rangeOf(x) });
  ctx.node('Transpose', [input], [out], [ctx.onnxDims(y)], { perm: attr.ints(onnxPerm) });
}

/** One axis of a strided slice resolved on a static dim: first index, element count, step. */
interface AxisSlice {
  first: number;
  count: number;
  step: number;
}

/** TensorFlow's strided-slice index arithmetic for one axis of size `dim`. */
function resolveAxis(
  dim: number,
  begin: number,
  end: number,
  step: number,
  masks: { begin: boolean; end: boolean; shrink: boolean },
): AxisSlice {
  const wrap = (i: number): number => (i < 0 ? i + dim : i);
  if (masks.shrink) return { first: wrap(begin), count: 1, step: 1 };
  const [lo, hi] = step > 0 ? [0, dim] : [-1, dim - 1];
  const clamp = (i: number): number => Math.min(Math.max(i, lo), hi);
  const first = masks.begin ? (step > 0 ? 0 : dim - 1) : clamp(wrap(begin));
  const last = masks.end ? (step > 0 ? dim : -1) : clamp(wrap(end));
  return { first, count: Math.max(0, Math.ceil((last - first) / step)), step };
}

/**
 * STRIDED_SLICE → Slice on the mapped axes, then a reshape when shrink_axis_mask drops axes.
 * begin/end/ellipsis masks and offset are honoured; new_axis_mask is refused.
 */
export function stridedSlice(ctx: ImportContext, op: Op): void {
  op.arity(4, 4);
  const s = Options.stridedSlice;
  const o = op.options(s);
  const [x, y] = [op.input(0), op.output()];
  const rank = x.shape.length;
  const mask = (slot: number): number => o?.int32(slot) ?? 0;
  if (mask(s.newAxisMask) !== 0) op.fail('new_axis_mask is not supported');
  const begin = ctx.constantInts(op, op.input(1));
  const end = ctx.constantInts(op, op.input(2));
  const strides = ctx.constantInts(op, op.input(3));
  const n = begin.length;
  if (end.length !== n || strides.length !== n || strides.some((v) => v === 0))
    op.fail(`begin [${begin}], end [${end}] and strides [${strides}] must have equal lengths and non-zero strides`);
  const offset = o?.bool(s.offset) ?? false;
  const bit = (m: number, i: number): boolean => ((m >> i) & 1) === 1;
  const ellipsis = mask(s.ellipsisMask);
  // Each spec entry addresses one input axis, except the ellipsis, which spans what the others leave.
  const axes: AxisSlice[] = [];
  const shrunk = new Set<number>();
  for (let i = 0; i < n; i++) {
    if (bit(ellipsis, i)) {
      const span = rank - (n - 1);
      for (let j = 0; j < span; j++) axes.push({ first: 0, count: x.shape[axes.length]!, step: 1 });
      continue;
    }
    const a = axes.length;
    if (a >= rank) op.fail(`slices ${n} axes of input [${x.shape}]`);
    const shrink = bit(mask(s.shrinkAxisMask), i);
    if (shrink) shrunk.add(a);
    const stop = offset ? begin[i]! + end[i]! : end[i]!;
    axes.push(
      resolveAxis(x.shape[a]!, begin[i]!, stop, strides[i]!, { begin: bit(mask(s.beginMask), i), end: bit(mask(s.endMask), i), shrink }),
    );
  }
  while (axes.length < rank) axes.push({ first: 0, count: x.shape[axes.length]!, step: 1 });
  const sliced = axes.map((a) => a.count);
  const expected = sliced.filter((_, i) => !shrunk.has(i));
  if (expected.join() !== y.shape.join()) op.fail(`output [${y.shape}] should be [${expected}]`);
  if (axes.some((a, i) => a.count === 1 && (a.first < 0 || a.first >= x.shape[i]!)))
    op.fail(`begin [${begin}] lies outside input [${x.shape}]`);

  const input = ctx.value(op, x);
  const out = ctx.output(op, 0, { bounds: ctx.rangeOf(x) });
  const cut = axes.flatMap((a, i) => (a.first === 0 && a.step === 1 && a.count === x.shape[i] ? [] : [i]));
  const target = shrunk.size ? ctx.fresh(`${out}_sliced`) : out;
  const slicedDims = ctx.onnxDims({ ...x, shape: sliced });
  if (cut.length) {
    const stop = (a: AxisSlice): number => {
      const e = a.first + a.count * a.step;
      // A negative end would count from the back: "before index 0" needs a value below −dim.
      return e < 0 ? -(2 ** 31) : e;
    };
    ctx.node(
      'Slice',
      [
        input,
        ctx.int64s(
          `${target}_starts`,
          cut.map((i) => axes[i]!.first),
        ),
        ctx.int64s(
          `${target}_ends`,
          cut.map((i) => stop(axes[i]!)),
        ),
        ctx.int64s(
          `${target}_axes`,
          cut.map((i) => onnxAxis(i, rank)),
        ),
        ctx.int64s(
          `${target}_steps`,
          cut.map((i) => axes[i]!.step),
        ),
      ],
      [target],
      [slicedDims],
    );
  }
  const source = cut.length ? target : input;
  if (shrunk.size)
    ctx.reshape({ name: source, dims: sliced, batched: ctx.isBatched(x.index) && !shrunk.has(0) }, y.shape, ctx.outputBatched(op, y), out);
  else if (!cut.length) ctx.node('Identity', [input], [out], [ctx.onnxDims(y)]);
}

/** Split of `x` along TFLite axis `axis` into parts of `sizes`, one per output. */
function splitInto(ctx: ImportContext, op: Op, x: TfliteTensor, axis: number, sizes: number[]): void {
  const rank = x.shape.length;
  if (sizes.length !== op.raw.outputs.length) op.fail(`splits into ${sizes.length} parts but has ${op.raw.outputs.length} outputs`);
  sizes.forEach((size, k) => {
    const expected = x.shape.map((d, i) => (i === axis ? size : d));
    if (expected.join() !== op.output(k).shape.join()) op.fail(`output ${k} [${op.output(k).shape}] should be [${expected}]`);
  });
  const input = ctx.value(op, x);
  const outs = sizes.map((_, k) => ctx.output(op, k, { bounds: ctx.rangeOf(x) }));
  const first = outs[0]!;
  ctx.node(
    'Split',
    [input, ctx.int64s(`${first}_split`, sizes)],
    outs,
    sizes.map((_, k) => ctx.onnxDims(op.output(k))),
    {
      axis: attr.int(onnxAxis(axis, rank)),
    },
  );
}

/** SPLIT (axis, input) into num_splits equal parts → Split. */
export function split(ctx: ImportContext, op: Op): void {
  op.arity(2, 2, op.raw.outputs.length);
  const x = op.input(1);
  const axis = axisOf(op, scalarInt(ctx, op, op.input(0)), x.shape.length);
  const parts = op.raw.outputs.length;
  if (parts < 1 || x.shape[axis]! % parts !== 0) op.fail(`axis ${axis} of [${x.shape}] does not split into ${parts} equal parts`);
  splitInto(ctx, op, x, axis, new Array<number>(parts).fill(x.shape[axis]! / parts));
}

/** SPLIT_V (input, size_splits, axis) → Split; one size of −1 takes the rest. */
export function splitV(ctx: ImportContext, op: Op): void {
  op.arity(3, 3, op.raw.outputs.length);
  const x = op.input(0);
  const axis = axisOf(op, scalarInt(ctx, op, op.input(2)), x.shape.length);
  const sizes = ctx.constantInts(op, op.input(1));
  const known = sizes.filter((v) => v !== -1).reduce((a, b) => a + b, 0);
  const filled = sizes.map((v) => (v === -1 ? x.shape[axis]! - known : v));
  if (sizes.filter((v) => v === -1).length > 1 || filled.some((v) => v < 0) || filled.reduce((a, b) => a + b, 0) !== x.shape[axis])
    op.fail(`size_splits [${sizes}] do not split axis ${axis} of [${x.shape}]`);
  splitInto(ctx, op, x, axis, filled);
}

/** PACK → Unsqueeze each input at the new axis, then Concat (in TFLite layout). */
export function pack(ctx: ImportContext, op: Op): void {
  const count = op.raw.inputs.length;
  op.arity(1, Math.max(count, 1));
  const o = op.options(Options.pack);
  const xs = op.raw.inputs.map((_, k) => op.input(k));
  const y = op.output();
  const axis = axisOf(op, o?.int32(Options.pack.axis) ?? 0, y.shape.length);
  const inShape = xs[0]!.shape;
  const expected = [...inShape.slice(0, axis), count, ...inShape.slice(axis)];
  if (xs.some((x) => x.shape.join() !== inShape.join()) || expected.join() !== y.shape.join())
    op.fail(`inputs ${xs.map((x) => `[${x.shape}]`).join(', ')} do not pack to [${y.shape}] on axis ${axis}`);
  const parts = xs.map((x) => tfliteLayout(ctx, op, x));
  fromTfliteLayout(ctx, op, 0, { bounds: ctx.hullOf(xs) }, (target, dims) => {
    const axesValue = ctx.int64s(`${target}_axes`, [axis]);
    const partDims = dims.map((d, i) => (i === axis ? 1 : d));
    const expanded = parts.map((p) => {
      const name = ctx.fresh(`${p}_expanded`);
      ctx.node('Unsqueeze', [p, axesValue], [name], [partDims]);
      return name;
    });
    ctx.node('Concat', expanded, [target], [dims], { axis: attr.int(axis) });
  });
}

/** UNPACK → Split into ones along the axis, then Squeeze it (in TFLite layout). */
export function unpack(ctx: ImportContext, op: Op): void {
  const count = op.raw.outputs.length;
  op.arity(1, 1, count);
  const o = op.options(Options.unpack);
  const x = op.input(0);
  const axis = axisOf(op, o?.int32(Options.unpack.axis) ?? 0, x.shape.length);
  const expected = x.shape.filter((_, i) => i !== axis);
  if (x.shape[axis] !== count || op.raw.outputs.some((_, k) => op.output(k).shape.join() !== expected.join()))
    op.fail(`input [${x.shape}] does not unpack into ${count} outputs of [${expected}] on axis ${axis}`);
  const input = tfliteLayout(ctx, op, x);
  const partDims = ctx.tfliteDims(x).map((d, i) => (i === axis ? 1 : d));
  const parts = op.raw.outputs.map(() => ctx.fresh(`${input}_part`));
  ctx.node(
    'Split',
    [input, ctx.int64s(`${parts[0]}_split`, new Array<number>(count).fill(1))],
    parts,
    parts.map(() => partDims),
    {
      axis: attr.int(axis),
    },
  );
  const axesValue = ctx.int64s(`${parts[0]}_axes`, [axis]);
  parts.forEach((part, k) =>
    fromTfliteLayout(ctx, op, k, { bounds: ctx.rangeOf(x) }, (target, dims) => ctx.node('Squeeze', [part, axesValue], [target], [dims])),
  );
}

/** Integer indices in TFLite layout: constants as int64 initializers, activations cast to int64 when `int64` asks. */
function indices(ctx: ImportContext, op: Op, t: TfliteTensor, int64: boolean): string {
  if (t.type !== 'int32' && t.type !== 'int64') op.fail(`indices '${t.name}' must be int32 or int64, are ${t.type}`);
  if (ctx.isConstant(t)) return ctx.initializer(ctx.baseName(t), int64Tensor([...t.shape], ctx.constantInts(op, t)));
  const v = tfliteLayout(ctx, op, t);
  if (!int64 || ctx.typeOf(v) === 'int64') return v;
  const cast = ctx.fresh(`${v}_int64`);
  ctx.node('Cast', [v], [cast], [ctx.tfliteDims(t)], { to: attr.int(onnxTypeCode('int64')) }, ['int64']);
  return cast;
}

/** GATHER → Gather (on the NCHW value when the rank stays 4, else in TFLite layout). */
export function gather(ctx: ImportContext, op: Op): void {
  op.arity(2, 2);
  const o = op.options(Options.gather);
  if ((o?.int32(Options.gather.batchDims) ?? 0) !== 0) op.fail('batch_dims other than 0 are not supported');
  const [x, idx, y] = [op.input(0), op.input(1), op.output()];
  const axis = axisOf(op, o?.int32(Options.gather.axis) ?? 0, x.shape.length);
  const expected = [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)];
  if (expected.join() !== y.shape.join()) op.fail(`output [${y.shape}] should be [${expected}]`);
  const picks = indices(ctx, op, idx, false);
  if (x.shape.length === 4 && idx.shape.length === 1) {
    const out = ctx.output(op, 0, { bounds: ctx.rangeOf(x) });
    ctx.node('Gather', [ctx.value(op, x), picks], [out], [ctx.onnxDims(y)], { axis: attr.int(onnxAxis(axis, 4)) });
    return;
  }
  const data = tfliteLayout(ctx, op, x);
  fromTfliteLayout(ctx, op, 0, { bounds: ctx.rangeOf(x) }, (target, dims) =>
    ctx.node('Gather', [data, picks], [target], [dims], { axis: attr.int(axis) }),
  );
}

/** GATHER_ND → GatherND in TFLite layout (int64 indices). */
export function gatherNd(ctx: ImportContext, op: Op): void {
  op.arity(2, 2);
  const [x, idx, y] = [op.input(0), op.input(1), op.output()];
  const depth = idx.shape[idx.shape.length - 1] ?? 0;
  const expected = [...idx.shape.slice(0, -1), ...x.shape.slice(depth)];
  if (depth < 1 || depth > x.shape.length || expected.join() !== y.shape.join())
    op.fail(`indices [${idx.shape}] into [${x.shape}] should give [${expected}], output is [${y.shape}]`);
  const picks = indices(ctx, op, idx, true);
  const data = tfliteLayout(ctx, op, x);
  fromTfliteLayout(ctx, op, 0, { bounds: ctx.rangeOf(x) }, (target, dims) => ctx.node('GatherND', [data, picks], [target], [dims]));
}
