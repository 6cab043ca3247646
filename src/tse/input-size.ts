/** Feature-map sizes of a model at another input resolution. */
import type { Model } from '../graph/types.js';
import { attrInts, attrString } from '../graph/graph.js';
import { inferShapes } from '../graph/shapes.js';
import { QuantflowError } from '../util/errors.js';
import { cloneModel } from './clone.js';
import { GraphView } from './view.js';

/**
 * A copy of `model` with its [N, C, H, W] image input set to `height`x`width` and shapes
 * re-inferred. Average pools whose fixed kernel is their whole map at the model's own size
 * (TFLite writes global pooling that way) become GlobalAveragePool first: they stand for a
 * global mean, and a fixed kernel would neither pool globally nor keep the classifier's
 * shapes valid at another size. Throws a QuantflowError when the graph has no such input or
 * does not fit the new size.
 */
export function withInputSize(model: Model, height: number, width: number): Model {
  const out = cloneModel(model);
  const images = out.graph.inputs.filter((v) => v.shape?.length === 4);
  if (images.length !== 1)
    throw new QuantflowError(`setting the input size needs a model with one [N, C, H, W] input, this one has ${images.length}`);
  const view = new GraphView(model);
  out.graph.nodes = out.graph.nodes.map((n) => {
    if (n.opType !== 'AveragePool') return n;
    const map = view.shape(n.inputs[0]!);
    const kernel = attrInts(n, 'kernel_shape', []);
    const unpadded = attrInts(n, 'pads', []).every((p) => p === 0) && ['NOTSET', 'VALID'].includes(attrString(n, 'auto_pad', 'NOTSET'));
    const whole = unpadded && map?.length === 4 && kernel[0] === map[2] && kernel[1] === map[3];
    return whole ? { ...n, opType: 'GlobalAveragePool', attributes: {} } : n;
  });
  const input = images[0]!;
  input.shape = [input.shape![0]!, input.shape![1]!, height, width];
  try {
    inferShapes(out);
  } catch (e) {
    if (!(e instanceof QuantflowError)) throw e;
    throw new QuantflowError(`at input size ${height}x${width}: ${e.message}`, { cause: e });
  }
  return out;
}
