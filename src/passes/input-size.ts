import type { Dim, Model } from '../graph/types.js';
import { attrInts, attrString } from '../graph/graph.js';
import { inferShapes } from '../graph/shapes.js';
import { formatShape } from '../graph/tensor.js';
import { QuantflowError } from '../util/errors.js';

/** Height and width of the image inputs, in pixels. */
export type InputSize = readonly [height: number, width: number];

const fixed = (d: Dim | undefined): d is number => typeof d === 'number' && d > 0;

/**
 * Gives every [N, C, H, W] input of `model` the height and width `size` (the batch stays as it
 * is, dynamic or not) and re-infers shapes; without `size`, checks that every such input has a
 * fixed height and width, since quantization, tiling and the NPU need static feature maps.
 *
 * A size other than a fixed one the model declares is allowed when the graph's shapes infer at
 * the new size (a fully convolutional network, or a classifier whose pooling is global):
 * buffering studies run models at other resolutions. Average pools whose fixed kernel is
 * their whole map at the model's own size (TFLite writes global pooling that way) become
 * GlobalAveragePool first: they stand for a global mean, and a fixed kernel would neither
 * pool globally nor keep the classifier's shapes valid at another size. Where shapes do not
 * fit, the QuantflowError names the node and the size. Edits `model` in place.
 */
export function fixInputSize(model: Model, size?: InputSize): void {
  const images = model.graph.inputs.filter((v) => v.shape?.length === 4);
  if (!size) {
    for (const v of images)
      if (!fixed(v.shape![2]) || !fixed(v.shape![3]))
        throw new QuantflowError(
          `input '${v.name}' has a dynamic height or width ${formatShape(v.shape!)}: pass --input-size HxW (for example --input-size 640x640) to fix it`,
        );
    return;
  }
  const [height, width] = size;
  if (!fixed(height) || !fixed(width)) throw new QuantflowError(`input size ${height}x${width} should be two positive integers`);
  if (images.length === 0)
    throw new QuantflowError(`--input-size ${height}x${width} needs a model with an [N, C, H, W] input, this one has none`);
  const resized = images.some((v) => fixed(v.shape![2]) && fixed(v.shape![3]) && (v.shape![2] !== height || v.shape![3] !== width));
  if (resized) globalPoolsAsGlobal(model);
  for (const v of images) v.shape = [v.shape![0]!, v.shape![1]!, height, width];
  try {
    inferShapes(model);
  } catch (e) {
    if (!(e instanceof QuantflowError)) throw e;
    throw new QuantflowError(`at input size ${height}x${width}: ${e.message}`, { cause: e });
  }
  // Declared output shapes were for the old size; onnxruntime checks results against them.
  for (const o of model.graph.outputs) {
    const inferred = model.graph.valueInfo.get(o.name)?.shape;
    if (inferred) o.shape = [...inferred];
  }
}

/** Unpadded AveragePools whose kernel covers their whole (fixed) map become GlobalAveragePool. */
function globalPoolsAsGlobal(model: Model): void {
  inferShapes(model);
  const { valueInfo } = model.graph;
  model.graph.nodes = model.graph.nodes.map((n) => {
    if (n.opType !== 'AveragePool') return n;
    const map = valueInfo.get(n.inputs[0]!)?.shape ?? model.graph.inputs.find((v) => v.name === n.inputs[0])?.shape;
    const kernel = attrInts(n, 'kernel_shape', []);
    const unpadded = attrInts(n, 'pads', []).every((p) => p === 0) && ['NOTSET', 'VALID'].includes(attrString(n, 'auto_pad', 'NOTSET'));
    const whole = unpadded && map?.length === 4 && kernel[0] === map[2] && kernel[1] === map[3];
    return whole ? { ...n, opType: 'GlobalAveragePool', attributes: {} } : n;
  });
}
