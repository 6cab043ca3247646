import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { QuantflowError } from './errors.js';

/**
 * Writes a file so that readers see either the old file or the complete new one: an
 * interrupted run never leaves a half-written model or report behind.
 */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    // A folder that is a file, no permission, a full disk: the user's to fix, so one line naming the path.
    if (e instanceof Error && 'code' in e) throw new QuantflowError(`cannot write ${path}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** Writes `value` as indented JSON, atomically (see `writeFileAtomic`). */
export function writeJsonResult(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + '\n');
}
