// TSE: tile the squeeze-and-excite blocks of MobileNetV3-Small into 7-row bands, measure the
// activation buffering it saves at 512x512, and compare the tiled model with the original.
// Run: node examples/tse.mjs [shared folder]   (default: QUANTFLOW_SHARED, else ../shared beside the repository)
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareModels, loadDataset, loadModel, measureBuffers, tileSqueezeExcite, writeModel } from 'quantflow';

const shared = resolve(process.argv[2] ?? process.env.QUANTFLOW_SHARED ?? fileURLToPath(new URL('../../shared', import.meta.url)));
const modelFile = join(shared, 'models/mobilenet_v3_small_1.0_224_uint8.tflite');
const dataDir = join(shared, 'data/imagenet-val-650');
const missing = [modelFile, dataDir].filter((p) => !existsSync(p));
if (missing.length) {
  console.log(`skipped: missing ${missing.join(', ')}`);
  process.exit(0);
}

const tiles = { tileRows: 7 };
const { buffers } = measureBuffers(await loadModel(modelFile, { inputSize: [512, 512] }), tiles);
console.log(
  `${buffers.blocks.length} SE blocks at 512x512: ${buffers.se} elements buffered, ${buffers.tse} with ${buffers.tiles} (-${(100 * buffers.reduction).toFixed(1)}%)`,
);

const model = await loadModel(modelFile);
const tiled = tileSqueezeExcite(model, tiles);
const out = join(mkdtempSync(join(tmpdir(), 'quantflow-tse-')), 'mnv3-tse7.onnx');
writeModel(tiled, out);
const result = await compareModels(model, tiled, await loadDataset(dataDir), { limit: 16 });
console.log(`wrote ${out}; tiled vs original on ${result.n} images: top-1 agreement ${result.outputs[0]?.classify?.top1Agreement}`);
