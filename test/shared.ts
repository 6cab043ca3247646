import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset, type Dataset } from '../src/data/dataset.js';
import type { Model } from '../src/graph/types.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';

/** `../shared` beside the repository root (tests run from dist/test). */
export const sharedDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'shared');

/** Path inside ../shared, or a skip reason for node:test when it is missing. */
export function sharedPath(...parts: string[]): { path: string; skip: string | false } {
  const path = join(sharedDir, ...parts);
  return { path, skip: existsSync(path) ? false : `missing ${path} (../shared not present)` };
}

/**
 * A model from ../shared/models, imported and prepared, with datasets from ../shared/data;
 * or, when any of them is missing, the reason for node:test to skip.
 */
export async function loadShared(modelFile: string, ...dataDirs: string[]): Promise<{ model: Model; data: Dataset[] } | { skip: string }> {
  const paths = [sharedPath('models', modelFile), ...dataDirs.map((d) => sharedPath('data', d))];
  const missing = paths.find((p) => p.skip);
  if (missing) return { skip: missing.skip as string };
  const model = await prepareModel(loadModel(paths[0]!.path));
  return { model, data: await Promise.all(paths.slice(1).map((p) => loadDataset(p.path))) };
}
