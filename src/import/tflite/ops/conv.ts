/** CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: the operators with constant weights. */
import { attr } from '../../../graph/graph.js';
import { floatTensor } from '../../../graph/tensor.js';
import type { AttributeValue } from '../../../graph/types.js';
import { type ImportContext, type Op, permuteConstant } from '../context.js';
import { spatialPadding } from '../layout.js';
import { Options, type Table } from '../schema.js';

/** Conv weights OHWI → OIHW. */
const CONV_WEIGHTS = [0, 3, 1, 2];
/** Depthwise weights 1HW(C·M) → (C·M)1HW. */
const DEPTHWISE_WEIGHTS = [3, 0, 1, 2];

interface Window {
  strideH: number;
  strideW: number;
  dilationH: number;
  dilationW: number;
  padding: 'SAME' | 'VALID';
}

/** Reads stride/dilation/padding options; `slots` names their positions in the table. */
function readWindow(
  op: Op,
  o: Table | null,
  slots: { padding: number; strideH: number; strideW: number; dilationH: number; dilationW: number },
): Window {
  return {
    padding: op.padding(o, slots.padding),
    strideH: op.positive(o, slots.strideH, 'stride_h', 1),
    strideW: op.positive(o, slots.strideW, 'stride_w', 1),
    dilationH: op.positive(o, slots.dilationH, 'dilation_h_factor', 1),
    dilationW: op.positive(o, slots.dilationW, 'dilation_w_factor', 1),
  };
}

/**
 * ONNX kernel_shape/strides/dilations/pads of a 2-D window over NHWC `input` whose TFLite
 * result has NHWC shape `output`; checks the output size the options imply.
 */
export function windowAttributes(
  op: Op,
  input: number[],
  output: number[],
  kernelH: number,
  kernelW: number,
  w: Window,
): Record<string, AttributeValue> {
  const [top, bottom] = spatialPadding(w.padding, input[1]!, kernelH, w.strideH, w.dilationH);
  const [left, right] = spatialPadding(w.padding, input[2]!, kernelW, w.strideW, w.dilationW);
  const size = (n: number, pad: number, k: number, s: number, d: number) => Math.floor((n + pad - (k - 1) * d - 1) / s) + 1;
  const outH = size(input[1]!, top + bottom, kernelH, w.strideH, w.dilationH);
  const outW = size(input[2]!, left + right, kernelW, w.strideW, w.dilationW);
  if (outH !== output[1] || outW !== output[2])
    op.fail(
      `output is ${output[1]}x${output[2]} but a ${kernelH}x${kernelW} window with ${w.padding} padding ` +
        `over ${input[1]}x${input[2]} gives ${outH}x${outW}`,
    );
  const attributes: Record<string, AttributeValue> = {
    kernel_shape: attr.ints([kernelH, kernelW]),
    strides: attr.ints([w.strideH, w.strideW]),
    pads: attr.ints([top, left, bottom, right]),
  };
  if (w.dilationH !== 1 || w.dilationW !== 1) attributes.dilations = attr.ints([w.dilationH, w.dilationW]);
  return attributes;
}

function require4d(op: Op, ...tensors: { name: string; shape: number[] }[]): void {
  for (const t of tensors) if (t.shape.length !== 4) op.fail(`tensor '${t.name}' must be 4-D, has shape [${t.shape}]`);
}

/** The bias initializer (length `channels`) from input `k`, or none when the op has no bias input. */
function bias(ctx: ImportContext, op: Op, channels: number, k = 2): string[] {
  const b = op.optionalInput(k);
  if (!b) return [];
  const data = ctx.constantValues(op, b);
  if (data.length !== channels) op.fail(`bias '${b.name}' has ${data.length} values for ${channels} output channels`);
  return [
    ctx.initializer(
      ctx.baseName(b),
      floatTensor([channels], data),
      ctx.quantRecord(b, () => 0),
    ),
  ];
}

/** Weights of shape `dims` permuted by `perm` into a new initializer. */
function weights(ctx: ImportContext, op: Op, k: number, perm: number[]): string {
  const w = op.input(k);
  const tensor = permuteConstant(ctx.constantValues(op, w), w.shape, perm);
  return ctx.initializer(
    ctx.baseName(w),
    tensor,
    ctx.quantRecord(w, (a) => perm.indexOf(a)),
  );
}

/** CONV_2D → Conv (grouped when the weights' input depth divides the input channels). */
export function conv2d(ctx: ImportContext, op: Op): void {
  op.arity(2, 3);
  const o = op.options(Options.conv2d);
  const [x, w, y] = [op.input(0), op.input(1), op.output()];
  require4d(op, x, w, y);
  const [outChannels, kh, kw, depth] = w.shape as [number, number, number, number];
  const channels = x.shape[3]!;
  if (depth === 0 || channels % depth !== 0 || y.shape[3] !== outChannels || outChannels % (channels / depth) !== 0)
    op.fail(`weights [${w.shape}] do not fit input [${x.shape}] and output [${y.shape}]`);
  const attributes = windowAttributes(op, x.shape, y.shape, kh, kw, readWindow(op, o, Options.conv2d));
  if (channels !== depth) attributes.group = attr.int(channels / depth);
  const inputs = [ctx.value(op, x), weights(ctx, op, 1, CONV_WEIGHTS), ...bias(ctx, op, outChannels)];
  const out = ctx.output(op, 0, { activation: op.activation(o, Options.conv2d.activation) });
  ctx.node('Conv', inputs, [out], [ctx.onnxDims(y)], attributes);
}

/** DEPTHWISE_CONV_2D → Conv with group = input channels. */
export function depthwiseConv2d(ctx: ImportContext, op: Op): void {
  op.arity(2, 3);
  const o = op.options(Options.depthwiseConv2d);
  const [x, w, y] = [op.input(0), op.input(1), op.output()];
  require4d(op, x, w, y);
  const [one, kh, kw, outChannels] = w.shape as [number, number, number, number];
  const channels = x.shape[3]!;
  // depth_multiplier is redundant with the shapes (newer converters leave it 0), so shapes decide.
  if (one !== 1 || channels === 0 || outChannels % channels !== 0 || y.shape[3] !== outChannels)
    op.fail(`weights [${w.shape}] do not fit input [${x.shape}] and output [${y.shape}]`);
  const attributes = windowAttributes(op, x.shape, y.shape, kh, kw, readWindow(op, o, Options.depthwiseConv2d));
  attributes.group = attr.int(channels);
  const inputs = [ctx.value(op, x), weights(ctx, op, 1, DEPTHWISE_WEIGHTS), ...bias(ctx, op, outChannels)];
  const out = ctx.output(op, 0, { activation: op.activation(o, Options.depthwiseConv2d.activation) });
  ctx.node('Conv', inputs, [out], [ctx.onnxDims(y)], attributes);
}

/** FULLY_CONNECTED → Gemm(transB=1), flattening the input to [rows, in] first when needed. */
export function fullyConnected(ctx: ImportContext, op: Op): void {
  op.arity(2, 3);
  const o = op.options(Options.fullyConnected);
  if ((o?.int8(Options.fullyConnected.weightsFormat) ?? 0) !== 0) op.fail('shuffled weights are not supported');
  const [x, w, y] = [op.input(0), op.input(1), op.output()];
  if (w.shape.length !== 2) op.fail(`weights '${w.name}' must be 2-D, have shape [${w.shape}]`);
  const [units, depth] = w.shape as [number, number];
  const elements = x.shape.reduce((a, b) => a * b, 1);
  if (depth === 0 || elements % depth !== 0) op.fail(`input [${x.shape}] does not split into rows of ${depth}`);
  const rows = elements / depth;
  if (y.shape.length !== 2 || y.shape[0] !== rows || y.shape[1] !== units)
    op.fail(`output [${y.shape}] should be [${rows},${units}] (keep_num_dims is not supported)`);
  let input = ctx.value(op, x);
  if (x.shape.length !== 2) {
    input = ctx.fresh(`${input}_flat`);
    ctx.reshape(ctx.reshapeSource(op, x), [rows, depth], ctx.outputBatched(op, y), input);
  }
  const inputs = [input, weights(ctx, op, 1, [0, 1]), ...bias(ctx, op, units)];
  const out = ctx.output(op, 0, { activation: op.activation(o, Options.fullyConnected.activation) });
  ctx.node('Gemm', inputs, [out], [ctx.onnxDims(y)], { transB: attr.int(1) });
}

/** ConvTranspose weights OHWI → IOHW. */
const TRANSPOSE_CONV_WEIGHTS = [3, 0, 1, 2];

/**
 * TRANSPOSE_CONV → ConvTranspose. TFLite states the output size (input 0) and pads as the
 * forward convolution from that output back to the input would; ONNX gets those pads and
 * whatever output_padding makes up the stated size.
 */
export function transposeConv(ctx: ImportContext, op: Op): void {
  op.arity(3, 4);
  const o = op.options(Options.transposeConv);
  const [w, x, y] = [op.input(1), op.input(2), op.output()];
  require4d(op, x, w, y);
  const stated = ctx.constantInts(op, op.input(0));
  if (stated.slice(1).join() !== y.shape.slice(1).join()) op.fail(`output_shape [${stated}] disagrees with the output tensor [${y.shape}]`);
  const [outChannels, kh, kw, depth] = w.shape as [number, number, number, number];
  if (depth !== x.shape[3] || outChannels !== y.shape[3])
    op.fail(`weights [${w.shape}] do not fit input [${x.shape}] and output [${y.shape}]`);
  const padding = op.padding(o, Options.transposeConv.padding);
  const strides = [
    op.positive(o, Options.transposeConv.strideH, 'stride_h', 1),
    op.positive(o, Options.transposeConv.strideW, 'stride_w', 1),
  ];
  const kernel = [kh, kw];
  const pads = [0, 0, 0, 0];
  const outputPadding = [0, 0];
  for (const a of [0, 1]) {
    const [n, out, k, s] = [x.shape[a + 1]!, y.shape[a + 1]!, kernel[a]!, strides[a]!];
    const [begin, end] = spatialPadding(padding, out, k, s, 1);
    const extra = out - ((n - 1) * s + k - begin - end);
    if (extra < 0 || extra >= s)
      op.fail(
        `output is ${y.shape[1]}x${y.shape[2]}, which a ${kh}x${kw} window with ${padding} padding and strides ${strides.join('x')} cannot produce from ${x.shape[1]}x${x.shape[2]}`,
      );
    pads[a] = begin;
    pads[a + 2] = end;
    outputPadding[a] = extra;
  }
  const attributes: Record<string, AttributeValue> = {
    kernel_shape: attr.ints(kernel),
    strides: attr.ints(strides),
    pads: attr.ints(pads),
  };
  if (outputPadding.some((p) => p !== 0)) attributes.output_padding = attr.ints(outputPadding);
  const inputs = [ctx.value(op, x), weights(ctx, op, 1, TRANSPOSE_CONV_WEIGHTS), ...bias(ctx, op, outChannels, 3)];
  const out = ctx.output(op, 0, { activation: op.activation(o, Options.transposeConv.activation) });
  ctx.node('ConvTranspose', inputs, [out], [ctx.onnxDims(y)], attributes);
}
