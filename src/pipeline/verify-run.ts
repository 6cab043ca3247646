/**
 * `quantflow verify` without the printing: the integer NPU package of a quantize run against
 * the fake-quant simulation of its QDQ model, on the same images.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { imageBatches, imageInputGeometry } from '../data/batches.js';
import { loadDataset } from '../data/dataset.js';
import {
  PREPROCESS_METADATA,
  PRESETS,
  resolvePreprocess,
  type PreprocessChoice,
  type PreprocessRequest,
  type PresetName,
} from '../data/preprocess.js';
import { readNpuPackage } from '../npu/io.js';
import { buildNpuPackage } from '../npu/package.js';
import type { NpuPackage } from '../npu/types.js';
import { verifyPackage, type VerifyReport } from '../npu/verify.js';
import { readOnnxFile } from '../onnx/read.js';
import type { InputSize } from '../passes/input-size.js';
import { loadProfile } from '../quantization/profile.js';
import { QuantflowError } from '../util/errors.js';

/** What to verify and on which images. */
export interface VerifyRunOptions {
  /** Output folder of a quantize run (model.qdq.onnx and npu/). */
  dir: string;
  /** Image folder (labels are not used). */
  data: string;
  /** Images to run (default 4): the integer executor takes seconds per image. */
  limit?: number;
  /** QDQ model (default `<dir>/model.qdq.onnx`). */
  qdq?: string;
  /** NPU package folder (default `<dir>/npu`; built from the QDQ model when that folder is absent). */
  package?: string;
  /** Target profile to build the package with (default: the one named in the QDQ model). */
  profile?: string;
  /** Preprocessing; by default the one recorded in the QDQ model. */
  preprocess?: PreprocessRequest;
  /** Must be the size the model was quantized at, when given. */
  inputSize?: InputSize;
  skipBadImages?: boolean;
  onImage?: (done: number, total: number) => void;
}

/** The outcome of `runVerify`. */
export interface VerifyRun {
  report: VerifyReport;
  /** The package verified. */
  package: NpuPackage;
  /** True when the package was built from the QDQ model (and not written) rather than read. */
  built: boolean;
  qdqPath: string;
  preprocess: PreprocessChoice;
  /** Images that could not be decoded (only with `skipBadImages`). */
  skipped: string[];
}

/**
 * Runs the integer NPU package and the QDQ model's fake-quant simulation on the first `limit`
 * images of `data` and compares their integers, end to end, layer by layer and (the package's
 * integer ONNX model) against the executor. User errors are QuantflowErrors.
 */
export async function runVerify(options: VerifyRunOptions): Promise<VerifyRun> {
  const qdqPath = options.qdq ?? join(options.dir, 'model.qdq.onnx');
  if (!existsSync(qdqPath)) throw new QuantflowError(`no QDQ model at '${qdqPath}' (give --qdq)`);
  const qdq = readOnnxFile(qdqPath);
  const packageDir = options.package ?? join(options.dir, 'npu');
  let pkg: NpuPackage;
  const built = !options.package && !existsSync(packageDir);
  if (!built) pkg = readNpuPackage(packageDir);
  else {
    const profileName = options.profile ?? qdq.metadata['quantflow.profile'];
    if (!profileName) throw new QuantflowError(`no NPU package at '${packageDir}' and no profile to build one (give --profile)`);
    pkg = await buildNpuPackage(qdq, loadProfile(profileName));
  }
  const geometry = imageInputGeometry(qdq);
  // Packages record only a preset name; QDQ models from before the metadata existed have nothing else.
  const packaged =
    qdq.metadata[PREPROCESS_METADATA] === undefined && PRESETS.includes(pkg.preset as PresetName)
      ? { preset: pkg.preset as PresetName }
      : undefined;
  const preprocess = resolvePreprocess(qdq, options.preprocess ?? packaged, geometry.channels);
  const dataset = await loadDataset(options.data);
  const items = dataset.items.slice(0, options.limit ?? 4);
  // The QDQ model and the package were built at one size; any other would not be what they compute.
  if (options.inputSize && (options.inputSize[0] !== geometry.height || options.inputSize[1] !== geometry.width))
    throw new QuantflowError(
      `${qdqPath} was quantized at input size ${geometry.height}x${geometry.width}, not --input-size ${options.inputSize.join('x')}: quantize again at that size or drop the option`,
    );
  const skipped: string[] = [];
  // A model exported with a fixed batch (often 1) takes only that many images at a time.
  const batch = geometry.fixedBatch ?? 4;
  const batches = (async function* () {
    for await (const b of imageBatches(items, { ...geometry, preprocess: preprocess.spec, batch, skipBadImages: options.skipBadImages })) {
      skipped.push(...b.skipped);
      if (b.items.length) yield { data: b.data, count: b.items.length };
    }
  })();
  const report = await verifyPackage(pkg, qdq, batches, { integerModel: true, onImage: (done) => options.onImage?.(done, items.length) });
  return { report, package: pkg, built, qdqPath, preprocess, skipped };
}
