import type { Model } from '../graph/types.js';
import { inferShapes } from '../graph/shapes.js';
import { validateModel } from '../graph/validate.js';
import { foldBatchNorm } from '../passes/fold-batchnorm.js';
import { foldConstants } from '../passes/fold-constants.js';
import { foldShapes } from '../passes/fold-shapes.js';
import { fixInputSize, type InputSize } from '../passes/input-size.js';
import type { PassLog } from '../passes/pass-log.js';

export interface PrepareOptions {
  /**
   * Height and width of the image inputs (`--input-size`); needed when the model leaves them
   * dynamic, allowed over fixed ones where the graph's shapes fit (see `fixInputSize`).
   */
  inputSize?: InputSize;
}

/**
 * What every loaded model goes through before use: validation (precise errors before any
 * run), fixing the input height and width (the one place they become static; the batch
 * stays as the model has it), shape inference, folding of the shape subgraphs and of other
 * constants, and batch-norm folding. `log` records what each pass changed, for the run
 * manifest. Throws a QuantflowError when an image input has a dynamic height or width and
 * `options.inputSize` is not given.
 */
export async function prepareModel(model: Model, log?: PassLog, options: PrepareOptions = {}): Promise<Model> {
  validateModel(model);
  inferShapes(model);
  const run = (name: string, pass: () => unknown) => (log ? log.run(name, model, pass) : pass());
  await run('input-size', () => fixInputSize(model, options.inputSize));
  await run('fold-shapes', () => foldShapes(model));
  await run('fold-constants', () => foldConstants(model));
  await run('fold-batchnorm', () => foldBatchNorm(model.graph));
  return model;
}
