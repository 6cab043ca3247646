/**
 * Is evaluation bound by inference? Compares evaluate()'s images/s (decoding,
 * preprocessing and inference) with bare onnxruntime on pre-made random tensors of the same
 * batches, for MobileNetV2 int8 (imported as float) on imagenet-val-650 at batch 32.
 *
 * Two rates each: from the moment the session is ready (what evaluate() reports; its first
 * batch may decode while the session is created) and over the whole call, session
 * creation included. Rounds alternate bare and evaluate; the best round of each counts, as
 * other load on the machine only ever slows a round down. Run with `npm run bench:eval`.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { formatTable } from '../src/cli/table.js';
import { loadDataset, type Dataset } from '../src/data/dataset.js';
import { evaluate } from '../src/eval/evaluate.js';
import type { Model } from '../src/graph/types.js';
import { importTflite } from '../src/import/tflite/import.js';
import { openSession } from '../src/runtime/session.js';
import { sharedPath } from '../test/shared.js';

const MODEL = 'mobilenet_v2_1.0_224_int8.tflite';
const BATCH = 32;
const ROUNDS = 3;

interface Rates {
  /** From session ready to done. */
  running: number;
  /** The whole call, session creation included. */
  total: number;
}

async function bareOrt(model: Model, images: number): Promise<Rates> {
  const input = model.graph.inputs[0]!;
  const [, c, h, w] = input.shape as number[];
  const size = c! * h! * w!;
  const data = Float32Array.from({ length: BATCH * size }, () => Math.random() * 2 - 1);
  const called = performance.now();
  const session = await openSession(model);
  try {
    const started = performance.now();
    for (let start = 0; start < images; start += BATCH) {
      const n = Math.min(BATCH, images - start);
      await session.run({ [input.name]: new ort.Tensor('float32', data.subarray(0, n * size), [n, c!, h!, w!]) });
    }
    const done = performance.now();
    return { running: images / ((done - started) / 1000), total: images / ((done - called) / 1000) };
  } finally {
    await session.release();
  }
}

async function evaluated(model: Model, dataset: Dataset): Promise<Rates & { top1: number }> {
  const called = performance.now();
  const r = await evaluate(model, dataset, { batch: BATCH });
  return { running: r.imagesPerSecond, total: r.n / ((performance.now() - called) / 1000), top1: r.top1 };
}

const best = (rates: Rates[]): Rates => ({
  running: Math.max(...rates.map((r) => r.running)),
  total: Math.max(...rates.map((r) => r.total)),
});

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
  const bare: Rates[] = [];
  const evals: (Rates & { top1: number })[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    bare.push(await bareOrt(model, images));
    evals.push(await evaluated(model, dataset));
  }
  const b = best(bare);
  const e = best(evals);
  console.log(`${MODEL} on imagenet-val-650 (${images} images), batch ${BATCH}, ${availableParallelism()} cores, best of ${ROUNDS}`);
  console.log(
    formatTable([
      ['', 'images/s, session ready', 'images/s, whole call'],
      ['bare onnxruntime', b.running.toFixed(1), b.total.toFixed(1)],
      ['evaluate()', e.running.toFixed(1), e.total.toFixed(1)],
      ['ratio', (e.running / b.running).toFixed(3), (e.total / b.total).toFixed(3)],
    ]),
  );
  console.log(
    JSON.stringify({
      bench: 'eval',
      model: MODEL,
      images,
      batch: BATCH,
      cores: availableParallelism(),
      ortImagesPerSecond: b.running,
      evalImagesPerSecond: e.running,
      ratio: e.running / b.running,
      ortImagesPerSecondWholeCall: b.total,
      evalImagesPerSecondWholeCall: e.total,
      ratioWholeCall: e.total / b.total,
      top1: evals[0]!.top1,
      rounds: { bare, evaluate: evals.map(({ running, total }) => ({ running, total })) },
    }),
  );
}

await main();
