/** AVERAGE_POOL_2D, MAX_POOL_2D and MEAN: reductions whose results stay within their input's range. */
import { attr, normalizeAxis } from '../../../graph/graph.js';
import type { AttributeValue, Dim } from '../../../graph/types.js';
import type { ImportContext, Op } from '../context.js';
import { onnxAxis } from '../layout.js';
import { Options } from '../schema.js';
import { windowAttributes } from './conv.js';

function pool(onnxOp: 'AveragePool' | 'MaxPool') {
  return (ctx: ImportContext, op: Op): void => {
    op.arity(1, 1);
    const o = op.options(Options.pool2d);
    const [x, y] = [op.input(0), op.output()];
    if (x.shape.length !== 4 || y.shape.length !== 4 || x.shape[3] !== y.shape[3])
      op.fail(`input [${x.shape}] and output [${y.shape}] must be 4-D with equal channels`);
    const s = Options.pool2d;
    const kh = op.positive(o, s.filterH, 'filter_height', 0);
    const kw = op.positive(o, s.filterW, 'filter_width', 0);
    const window = {
      padding: op.padding(o, s.padding),
      strideH: op.positive(o, s.strideH, 'stride_h', 1),
      strideW: op.positive(o, s.strideW, 'stride_w', 1),
      dilationH: 1,
      dilationW: 1,
    };
    // TFLite averages over the valid pixels only, as ONNX does with count_include_pad = 0.
    const attributes = windowAttributes(op, x.shape, y.shape, kh, kw, window);
    const input = ctx.value(op, x);
    const out = ctx.output(op, 0, { activation: op.activation(o, s.activation), bounds: ctx.rangeOf(x) });
    ctx.node(onnxOp, [input], [out], [ctx.onnxDims(y)], attributes);
  };
}

/** AVERAGE_POOL_2D → AveragePool. */
export const averagePool2d = pool('AveragePool');
/** MAX_POOL_2D → MaxPool. */
export const maxPool2d = pool('MaxPool');

/**
 * MEAN, SUM and REDUCE_MAX over constant axes → ReduceMean, ReduceSum, ReduceMax (keepdims,
 * then a reshape when TFLite drops the axes of a 4-D value). ReduceSum takes its axes as an
 * input at opset 17, the others as an attribute.
 */
function reducer(onnxOp: 'ReduceMax' | 'ReduceMean' | 'ReduceSum') {
  return (ctx: ImportContext, op: Op): void => {
    op.arity(2, 2);
    const [x, axesTensor, y] = [op.input(0), op.input(1), op.output()];
    const rank = x.shape.length;
    const axes = [...new Set(ctx.constantInts(op, axesTensor).map((a) => normalizeAxis(a, rank)))].sort((a, b) => a - b);
    if (axes.length === 0 || axes.some((a) => a < 0 || a >= rank)) op.fail(`axes [${axes}] do not fit input [${x.shape}]`);
    const keptDims = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const keepDims = op.options(Options.reducer)?.bool(Options.reducer.keepDims) ?? false;
    const expected = keepDims ? keptDims : x.shape.filter((_, i) => !axes.includes(i));
    if (expected.join() !== y.shape.join()) op.fail(`output [${y.shape}] should be [${expected}]`);

    const input = ctx.value(op, x);
    const out = ctx.output(op, 0, { bounds: onnxOp === 'ReduceSum' ? undefined : ctx.rangeOf(x) });
    const onnxAxes = axes.map((a) => onnxAxis(a, rank)).sort((a, b) => a - b);
    const reduce = (output: string, keep: boolean, dims: Dim[]): void => {
      const axesInput = onnxOp === 'ReduceSum' ? [ctx.int64s(`${output}_axes`, onnxAxes)] : [];
      const attributes: Record<string, AttributeValue> = { keepdims: attr.int(keep ? 1 : 0) };
      if (onnxOp !== 'ReduceSum') attributes.axes = attr.ints(onnxAxes);
      ctx.node(onnxOp, [input, ...axesInput], [output], [dims], attributes);
    };
    if (keepDims || rank !== 4) {
      reduce(out, keepDims, ctx.onnxDims(y));
      return;
    }
    // Dropping axes of an NCHW value can leave the rest in a different order than TFLite's.
    const kept = ctx.fresh(`${out}_keepdims`);
    reduce(kept, true, ctx.onnxDims({ ...x, shape: keptDims }));
    ctx.reshape({ name: kept, dims: keptDims, batched: ctx.isBatched(x.index) }, y.shape, ctx.outputBatched(op, y), out);
  };
}

/** MEAN → ReduceMean. */
export const mean = reducer('ReduceMean');
/** REDUCE_MAX → ReduceMax. */
export const reduceMax = reducer('ReduceMax');
/** SUM → ReduceSum. */
export const sum = reducer('ReduceSum');
