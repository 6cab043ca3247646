import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `../shared` beside the repository root (tests run from dist/test). */
export const sharedDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'shared');

/** Path inside ../shared, or a skip reason for node:test when it is missing. */
export function sharedPath(...parts: string[]): { path: string; skip: string | false } {
  const path = join(sharedDir, ...parts);
  return { path, skip: existsSync(path) ? false : `missing ${path} (../shared not present)` };
}
