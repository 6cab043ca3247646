/**
 * Is evaluation bound by inference? Compares evaluate()'s end-to-end images/s (decode,
 * preprocess, inference) with bare onnxruntime on pre-made tensors of the same batches,
 * for MobileNetV2 int8 (imported as float) on imagenet-val-650. Each is run twice,
 * alternating, and the better run counts. Run with `npm run bench:eval`.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { formatTable } from '../src/cli/table.js';
import { loadDataset } from '../src/data/dataset.js';
import { evaluate } from '../src/eval/evaluate.js';
import type { Model } from '../src/graph/types.js';
import { importTflite } from '../src/import/tflite/import.js';
import { openSession } from '../src/runtime/session.js';
import { sharedPath } from '../test/shared.js';

const MODEL = 'mobilenet_v2_1.0_224_int8.tflite';
const BATCH = 32;

/** Images/s of bare inference over `images` random images in batches of BATCH. */
async function bareOrt(model: Model, images: number): Promise<number> {
  const input = model.graph.inputs[0]!;
  const [, c, h, w] = input.shape as number[];
  const size = c! * h! * w!;
  const data = Float32Array.from({ length: BATCH * size }, () => Math.random() * 2 - 1);
  const session = await openSession(model);
  try {
    const started = performance.now();
    for (let start = 0; start < images; start += BATCH) {
      const n = Math.min(BATCH, images - start);
      await session.run({ [input.name]: new ort.Tensor('float32', data.subarray(0, n * size), [n, c!, h!, w!]) });
    }
    return images / ((performance.now() - started) / 1000);
  } finally {
    await session.release();
  }
}

async function main(): Promise<void> {
  const modelFile = sharedPath('models', MODEL);
  const data = sharedPath('data', 'imagenet-val-650');
  const skip = modelFile.skip || data.skip;
  if (skip) {
    console.log(`bench:eval skipped: ${skip}`);
    return;
  }
  const model = importTflite(readFileSync(modelFile.path), MODEL);
  const dataset = await loadDataset(data.path);
  const images = dataset.items.length;
  let ortRate = 0;
  let evalRate = 0;
  let top1 = 0;
  for (let round = 0; round < 2; round++) {
    ortRate = Math.max(ortRate, await bareOrt(model, images));
    const r = await evaluate(model, dataset, { batch: BATCH });
    evalRate = Math.max(evalRate, r.imagesPerSecond);
    top1 = r.top1;
  }
  const ratio = evalRate / ortRate;
  const rows = [
    ['measure', 'images/s'],
    ['bare onnxruntime', ortRate.toFixed(1)],
    ['evaluate (end to end)', evalRate.toFixed(1)],
    ['ratio', ratio.toFixed(3)],
  ];
  console.log(`${MODEL} on imagenet-val-650 (${images} images), batch ${BATCH}, ${availableParallelism()} cores`);
  console.log(formatTable(rows));
  console.log(
    JSON.stringify({
      bench: 'eval',
      model: MODEL,
      images,
      batch: BATCH,
      cores: availableParallelism(),
      ortImagesPerSecond: ortRate,
      evalImagesPerSecond: evalRate,
      ratio,
      top1,
    }),
  );
}

await main();
