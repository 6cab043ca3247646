/** Feature-map sizes of a model at another input resolution. */
import type { Model } from '../graph/types.js';
import { fixInputSize } from '../passes/input-size.js';
import { cloneModel } from '../graph/graph.js';

/**
 * A copy of `model` with its [N, C, H, W] image inputs set to `height`x`width` and shapes
 * re-inferred (see `fixInputSize`, which `prepareModel` applies for `--input-size`): for
 * studies of one prepared model at several sizes.
 */
export function withInputSize(model: Model, height: number, width: number): Model {
  const out = cloneModel(model);
  fixInputSize(out, [height, width]);
  return out;
}
