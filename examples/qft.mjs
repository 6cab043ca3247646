// QFT: PTQ of a CIFAR-10 ResNet-8 to 4-bit weights, then one epoch of finetuning by distillation
// from the float model on 32 images; top-1 of float, PTQ and QFT on 200 other test images.
// Run: node examples/qft.mjs [shared folder]   (default: QUANTFLOW_SHARED, else ../shared beside the repository)
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { evaluate, finetune, loadDataset, loadModel, quantizeModel } from 'quantflow';

const shared = resolve(process.argv[2] ?? process.env.QUANTFLOW_SHARED ?? fileURLToPath(new URL('../../shared', import.meta.url)));
const modelFile = join(shared, 'models/resnet8_cifar10_float.tflite');
const dataDir = join(shared, 'data/cifar10-test');
const missing = [modelFile, dataDir].filter((p) => !existsSync(p));
if (missing.length) {
  console.log(`skipped: missing ${missing.join(', ')}`);
  process.exit(0);
}

const model = await loadModel(modelFile);
const data = await loadDataset(dataDir);
// labels.csv lists the images class by class: strided picks cover every class, and no image is in both sets.
const calib = { ...data, items: data.items.filter((_, i) => i % 312 === 1).slice(0, 32) };
const test = { ...data, items: data.items.filter((_, i) => i % 50 === 0) };
// The model takes pixels as they are (0..255): the `raw` preset.
const ptq = await quantizeModel(model, calib, { profile: 'w4a8-shift', preprocess: { preset: 'raw' } });
const { quantization, finetune: qft } = await finetune(ptq, calib, { epochs: 1, batch: 16 });
const top1 = async (m) => (await evaluate(m, test, { preprocess: ptq.preprocess.spec })).top1;
console.log(
  `QFT: ${qft.steps} steps in ${qft.seconds.toFixed(1)} s, loss ${qft.initialLoss.toFixed(4)} → ${qft.losses.at(-1)?.toFixed(4)}`,
);
console.log(`top-1 on 200 images: float ${await top1(model)}, PTQ ${await top1(ptq.model)}, QFT ${await top1(quantization.model)}`);
