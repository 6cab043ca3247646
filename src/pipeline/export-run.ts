/** `quantflow export`: an existing quantize run written in another format. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { exportTflite, type IoType } from '../export/tflite/export.js';
import { readNpuPackage } from '../npu/io.js';
import { readOnnxFile } from '../onnx/read.js';
import { loadProfile } from '../quantization/profile.js';
import { QuantflowError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';

/** The file `quantize` writes the TFLite export to, inside its output folder. */
export const TFLITE_FILE = 'model.int8.tflite';

export interface ExportRunOptions {
  /** Output folder of `quantize` (model.qdq.onnx, npu/). */
  dir: string;
  format: 'tflite';
  ioType?: IoType;
  /** Where to write (default `<dir>/model.int8.tflite`). */
  output?: string;
  /** Target profile (default: the one named in the QDQ model). */
  profile?: string;
  /** Leave the host tail (ARG_MAX, detection post-processing) out: the file ends at the NPU package's outputs. */
  noHostTail?: boolean;
}

/** Writes the run in `dir` as a fully-integer TFLite model; returns the file written and its size. */
export async function runExport(options: ExportRunOptions): Promise<{ file: string; bytes: number }> {
  const qdqPath = join(options.dir, 'model.qdq.onnx');
  if (!existsSync(qdqPath)) throw new QuantflowError(`${options.dir}: no model.qdq.onnx there; give the output folder of quantize`);
  const qdq = readOnnxFile(qdqPath);
  const profileName = options.profile ?? qdq.metadata['quantflow.profile'];
  if (!profileName) throw new QuantflowError(`${qdqPath} names no profile: give --profile`);
  const npuDir = join(options.dir, 'npu');
  const npu = existsSync(npuDir) ? readNpuPackage(npuDir) : undefined;
  const bytes = await exportTflite(qdq, loadProfile(profileName), { ioType: options.ioType, npu, hostTail: !options.noHostTail });
  const file = options.output ?? join(options.dir, TFLITE_FILE);
  writeFileAtomic(file, bytes);
  return { file, bytes: bytes.length };
}
