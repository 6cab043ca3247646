/** A quantize output folder as the benches read it back. */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Preprocess } from '../src/data/preprocess.js';
import type { Model } from '../src/graph/types.js';
import { readOnnxFile } from '../src/onnx/read.js';
import { loadProfile, type TargetProfile } from '../src/quantization/profile.js';
import { QuantflowError } from '../src/util/errors.js';

/** The QDQ model of run folder `dir`, the profile and preprocessing it recorded, and its size in bytes. */
export function readRun(dir: string): { qdq: Model; profile: TargetProfile; preprocess: Preprocess; qdqBytes: number } {
  const path = join(dir, 'model.qdq.onnx');
  const qdq = readOnnxFile(path);
  const name = qdq.metadata['quantflow.profile'];
  const preprocess = qdq.metadata['quantflow.preprocess'];
  if (!name || !preprocess) throw new QuantflowError(`${path}: no profile or preprocessing recorded; quantize it again`);
  return { qdq, profile: loadProfile(name), preprocess: JSON.parse(preprocess) as Preprocess, qdqBytes: statSync(path).size };
}
