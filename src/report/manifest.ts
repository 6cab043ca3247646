/**
 * What a run needs to be reproduced or compared: tool versions, seed, options, target
 * profile, and fingerprints of every input.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { TargetProfile } from '../quantization/profile.js';
import { QuantflowError } from '../util/errors.js';

/** Fingerprint of one input path. */
export interface InputHash {
  sha256: string;
  /**
   * 'content': the file's bytes. 'listing': a folder, hashed as its sorted list of
   * `relative/path<TAB>size` lines (files at any depth), not its bytes: hashing a dataset
   * of images byte by byte would cost more than many runs, and a changed image almost
   * always changes its size. A same-size edit inside a folder goes unnoticed.
   */
  of: 'content' | 'listing';
  /** File size, or total size of the folder's files. */
  bytes: number;
  /** Files in the folder ('listing' only). */
  files?: number;
}

export interface RunManifest {
  quantflowVersion: string;
  onnxruntimeVersion: string;
  nodeVersion: string;
  /** null when the run used no randomness that a seed controls. */
  seed: number | null;
  /** The options that took effect (after defaults). */
  options: Record<string, unknown>;
  profile?: TargetProfile;
  /** Keyed by the path as given. */
  inputHashes: Record<string, InputHash>;
  /** ISO 8601. */
  startedAt: string;
}

export interface ManifestInput {
  seed?: number;
  options: Record<string, unknown>;
  profile?: TargetProfile;
  /** Files (models, profile files) and folders (datasets) the run read. */
  inputs: string[];
}

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

/** The manifest of a run that starts now. Throws a QuantflowError for an unreadable input. */
export function runManifest(input: ManifestInput): RunManifest {
  return {
    quantflowVersion: pkg.version,
    onnxruntimeVersion: ort.env.versions.node ?? ort.env.versions.common,
    nodeVersion: process.versions.node,
    seed: input.seed ?? null,
    options: input.options,
    profile: input.profile,
    inputHashes: Object.fromEntries(input.inputs.map((p) => [p, hashInput(p)])),
    startedAt: new Date().toISOString(),
  };
}

/** Fingerprint of a file (its bytes) or a folder (its listing; see `InputHash.of`). */
export function hashInput(path: string): InputHash {
  let stat;
  try {
    stat = statSync(path);
  } catch (e) {
    throw new QuantflowError(`${path}: cannot read input to fingerprint it (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  return stat.isDirectory() ? hashListing(path) : { sha256: hashFile(path), of: 'content', bytes: stat.size };
}

function hashFile(path: string): string {
  const hash = createHash('sha256');
  // Chunked, so that a multi-gigabyte model is never held in memory at once.
  const chunk = Buffer.allocUnsafe(1 << 20);
  const fd = openSync(path, 'r');
  try {
    for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0;) hash.update(chunk.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

function hashListing(dir: string): InputHash {
  const files = readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => {
      const path = join(e.parentPath, e.name);
      return { name: relative(dir, path).split(sep).join('/'), size: statSync(path).size };
    })
    // Code-unit order, so the hash does not depend on the locale.
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const hash = createHash('sha256');
  for (const f of files) hash.update(`${f.name}\t${f.size}\n`);
  return { sha256: hash.digest('hex'), of: 'listing', bytes: files.reduce((s, f) => s + f.size, 0), files: files.length };
}
