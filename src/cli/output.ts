import { writeFileAtomic } from '../util/fs.js';

/** Writes a command's machine-readable result (atomically, so a failed run leaves none). */
export function writeJsonResult(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + '\n');
}
