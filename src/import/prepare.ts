import type { Model } from '../graph/types.js';
import { inferShapes } from '../graph/shapes.js';
import { validateModel } from '../graph/validate.js';
import { foldBatchNorm } from '../passes/fold-batchnorm.js';
import { foldConstants } from '../passes/fold-constants.js';

/**
 * What every loaded model goes through before use: validation (precise errors before any
 * run), shape inference, constant folding and batch-norm folding.
 */
export async function prepareModel(model: Model): Promise<Model> {
  validateModel(model);
  inferShapes(model);
  await foldConstants(model);
  foldBatchNorm(model.graph);
  return model;
}
