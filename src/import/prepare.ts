import type { Model } from '../graph/types.js';
import { inferShapes } from '../graph/shapes.js';
import { validateModel } from '../graph/validate.js';
import { foldBatchNorm } from '../passes/fold-batchnorm.js';
import { foldConstants } from '../passes/fold-constants.js';
import type { PassLog } from '../passes/pass-log.js';

/**
 * What every loaded model goes through before use: validation (precise errors before any
 * run), shape inference, constant folding and batch-norm folding. `log` records what each
 * pass changed, for the run manifest.
 */
export async function prepareModel(model: Model, log?: PassLog): Promise<Model> {
  validateModel(model);
  inferShapes(model);
  const run = (name: string, pass: () => unknown) => (log ? log.run(name, model, pass) : pass());
  await run('fold-constants', () => foldConstants(model));
  await run('fold-batchnorm', () => foldBatchNorm(model.graph));
  return model;
}
