/** RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR, SPACE_TO_DEPTH and DEPTH_TO_SPACE: spatial rearrangements of 4-D maps. */
import { attr } from '../../../graph/graph.js';
import { floatTensor } from '../../../graph/tensor.js';
import type { AttributeValue } from '../../../graph/types.js';
import type { ImportContext, Op } from '../context.js';
import { Options } from '../schema.js';

/**
 * A float32 scale s with floor(in · s) = out in float32 arithmetic, as onnxruntime and shape
 * inference size a Resize by scales: out / in rounded to float32 can land a hair below.
 */
export function resizeScale(inSize: number, outSize: number): number {
  const buf = new Float32Array([outSize / inSize]);
  const bits = new Uint32Array(buf.buffer);
  while (Math.floor(Math.fround(buf[0]! * inSize)) < outSize) bits[0]!++;
  return buf[0]!;
}

/**
 * The ONNX Resize attributes that reproduce TFLite's sampling (its reference kernels):
 * bilinear reads (x + 0.5)·in/out − 0.5 with half_pixel_centers, x·(in−1)/(out−1) with
 * align_corners, x·in/out otherwise; nearest takes floor((x + 0.5)·in/out),
 * round(x·(in−1)/(out−1)) or floor(x·in/out) respectively.
 */
function resize(mode: 'linear' | 'nearest', slots: { type: number; alignCorners: number; halfPixelCenters: number }) {
  return (ctx: ImportContext, op: Op): void => {
    op.arity(2, 2);
    const o = op.options(slots);
    const [x, y] = [op.input(0), op.output()];
    if (x.shape.length !== 4 || y.shape.length !== 4) op.fail(`input [${x.shape}] and output [${y.shape}] must be 4-D`);
    const size = ctx.constantInts(op, op.input(1));
    if (size.join() !== y.shape.slice(1, 3).join()) op.fail(`size [${size}] disagrees with the output [${y.shape}]`);
    const alignCorners = o?.bool(slots.alignCorners) ?? false;
    const halfPixel = o?.bool(slots.halfPixelCenters) ?? false;
    if (alignCorners && halfPixel) op.fail('align_corners and half_pixel_centers are both set (TensorFlow allows one)');
    const transform = alignCorners ? 'align_corners' : halfPixel ? 'half_pixel' : 'asymmetric';
    const attributes = {
      mode: attr.string(mode),
      coordinate_transformation_mode: attr.string(transform),
      ...(mode === 'nearest' ? { nearest_mode: attr.string(transform === 'asymmetric' ? 'floor' : 'round_prefer_ceil') } : {}),
    };
    const scales = [1, 1, resizeScale(x.shape[1]!, y.shape[1]!), resizeScale(x.shape[2]!, y.shape[2]!)];
    const input = ctx.value(op, x);
    const out = ctx.output(op, 0, { bounds: ctx.rangeOf(x) });
    const scalesValue = ctx.initializer(`${out}_scales`, floatTensor([4], scales));
    ctx.node('Resize', [input, '', scalesValue], [out], [ctx.onnxDims(y)], attributes);
  };
}

/** RESIZE_BILINEAR → Resize (linear). */
export const resizeBilinear = resize('linear', Options.resizeBilinear);
/** RESIZE_NEAREST_NEIGHBOR → Resize (nearest). */
export const resizeNearestNeighbor = resize('nearest', Options.resizeNearestNeighbor);

/**
 * TensorFlow's depth/space rearrangements put the block offset (i·b + j) outermost in the
 * channel index, which is ONNX's DCR order on NCHW; SpaceToDepth has only that order.
 */
function blocks(onnxOp: 'DepthToSpace' | 'SpaceToDepth', slots: { type: number; blockSize: number }) {
  return (ctx: ImportContext, op: Op): void => {
    op.arity(1, 1);
    const [x, y] = [op.input(0), op.output()];
    const b = op.positive(op.options(slots), slots.blockSize, 'block_size', 0);
    const [n, h, w, c] = x.shape;
    const expected = onnxOp === 'DepthToSpace' ? [n, h! * b, w! * b, c! / (b * b)] : [n, h! / b, w! / b, c! * b * b];
    if (x.shape.length !== 4 || expected.join() !== y.shape.join())
      op.fail(`output [${y.shape}] should be [${expected}] for input [${x.shape}] and block size ${b}`);
    const input = ctx.value(op, x);
    const out = ctx.output(op, 0, { bounds: ctx.rangeOf(x) });
    const attributes: Record<string, AttributeValue> = { blocksize: attr.int(b) };
    if (onnxOp === 'DepthToSpace') attributes.mode = attr.string('DCR');
    ctx.node(onnxOp, [input], [out], [ctx.onnxDims(y)], attributes);
  };
}

/** DEPTH_TO_SPACE → DepthToSpace (DCR). */
export const depthToSpace = blocks('DepthToSpace', Options.depthToSpace);
/** SPACE_TO_DEPTH → SpaceToDepth. */
export const spaceToDepth = blocks('SpaceToDepth', Options.spaceToDepth);
