import { attrString } from './graph.js';
import type { Dim, Node } from './types.js';

/**
 * The axes a Resize only broadcasts: input length 1, every other axis unchanged. Any
 * interpolation of one sample is that sample, so such a Resize copies values like a
 * nearest-neighbour one whatever its mode (DeepLab's image-pooling branch spreads a 1x1 map
 * over the feature map). Undefined when it does more than that, when a shape is unknown, and
 * for tf_crop_and_resize, whose extrapolation value can enter.
 */
export function resizeBroadcastAxes(
  node: Node,
  inShape: readonly Dim[] | undefined,
  outShape: readonly Dim[] | undefined,
): number[] | undefined {
  if (!inShape || !outShape || inShape.length !== outShape.length) return undefined;
  if (attrString(node, 'coordinate_transformation_mode', 'half_pixel') === 'tf_crop_and_resize') return undefined;
  // A symbolic batch stays as it is; it matches itself.
  if (!inShape.every((d, i) => (d !== null && d === outShape[i]) || d === 1)) return undefined;
  const axes = inShape.flatMap((d, i) => (d === outShape[i] ? [] : [i]));
  return axes.length ? axes : undefined;
}
