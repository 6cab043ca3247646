// PTQ of MobileNetV2 from a folder of images, then the quantized model against its float self.
// Run: node examples/ptq.mjs [shared folder]   (default: QUANTFLOW_SHARED, else ../shared beside the repository)
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNpuPackage, compareModels, loadDataset, loadModel, quantizeModel, writeModel, writeNpuPackage } from 'quantflow';

const shared = resolve(process.argv[2] ?? process.env.QUANTFLOW_SHARED ?? fileURLToPath(new URL('../../shared', import.meta.url)));
const modelFile = join(shared, 'models/mobilenet_v2_1.0_224_int8.tflite');
const calibDir = join(shared, 'data/imagenet-sample-1k');
const compareDir = join(shared, 'data/imagenet-val-650');
const missing = [modelFile, calibDir, compareDir].filter((p) => !existsSync(p));
if (missing.length) {
  console.log(`skipped: missing ${missing.join(', ')}`);
  process.exit(0);
}

const float = await loadModel(modelFile);
const q = await quantizeModel(float, await loadDataset(calibDir), { profile: 'w8a8-channel', calibLimit: 16 });
const out = mkdtempSync(join(tmpdir(), 'quantflow-ptq-'));
writeModel(q.model, join(out, 'model.qdq.onnx'));
writeNpuPackage(join(out, 'npu'), await buildNpuPackage(q));

const result = await compareModels(float, q.model, await loadDataset(compareDir), { limit: 16 });
const logits = result.outputs[0];
console.log(`PTQ on ${q.calibrationImages} images (${q.preprocess.label}), ${q.layers.length} layers; wrote ${out}`);
console.log(
  `quantized vs float on ${result.n} images: top-1 agreement ${logits?.classify?.top1Agreement}, SQNR ${logits?.sqnrDb?.toFixed(1)} dB`,
);
