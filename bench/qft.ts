/**
 * QFT on top of PTQ for one model and profile: PTQ (MSE calibration, bias correction), then
 * QFT on the same calibration images; reports seconds per training step against one float
 * forward pass of a batch, the distillation loss before and after, and top-1 of PTQ and
 * QFT on imagenet-val-650 (fake-quant simulation).
 *
 *   npm run build && node dist/bench/qft.js [--model F] [--profile P] [--calib-limit N]
 *     [--epochs N] [--batch N] [--lr-weights X] [--lr-biases X] [--lr-scales X] [--eval-limit N] [--seed N]
 *     [--schedule cosine|constant] [--train weights,biases,scales,equalization]
 *     [--data imagenet-val-650|cifar10-test] [--preset raw|...] [--rechoose-shifts]
 *     [--holdout N] [--loss auto|kl|l2|kl+l2] [--loss-layers a,b] [--no-gptq]
 *
 * `--holdout N` also measures the KL on the N calibration images after the first
 * `--calib-limit` ones, which neither PTQ nor QFT saw: the signal to choose defaults by,
 * since tuning on imagenet-val-650 would fit the evaluation set.
 */
import { parseArgs } from 'node:util';
import type { PresetName } from '../src/data/preprocess.js';
import { loadDataset } from '../src/data/dataset.js';
import { evaluate } from '../src/eval/evaluate.js';
import { outputError } from '../src/eval/output-error.js';
import { buildQdqModel } from '../src/quantization/qdq.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { loadProfile } from '../src/quantization/profile.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import { openSession, runSession } from '../src/runtime/session.js';
import { decodeImages, finetuneImages, qdqBiases, QFT_DEFAULTS, TRAINED_GROUPS, type LrSchedule, type LossKind } from '../src/qft/index.js';
import { sharedPath } from '../test/shared.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'mobilenet_v2_1.0_224_int8.tflite' },
    profile: { type: 'string', default: 'w4a8-channel' },
    'calib-limit': { type: 'string', default: '1000' },
    epochs: { type: 'string', default: String(QFT_DEFAULTS.epochs) },
    batch: { type: 'string', default: String(QFT_DEFAULTS.batch) },
    'lr-weights': { type: 'string', default: String(QFT_DEFAULTS.lrWeights) },
    'lr-biases': { type: 'string', default: String(QFT_DEFAULTS.lrBiases) },
    'lr-scales': { type: 'string', default: String(QFT_DEFAULTS.lrScales) },
    'eval-limit': { type: 'string', default: '650' },
    seed: { type: 'string', default: '0' },
    data: { type: 'string', default: 'imagenet-val-650' },
    'rechoose-shifts': { type: 'boolean', default: false },
    'no-gptq': { type: 'boolean', default: false },
    preset: { type: 'string' },
    schedule: { type: 'string', default: QFT_DEFAULTS.schedule },
    train: { type: 'string', default: 'weights,biases,scales,equalization' },
    holdout: { type: 'string', default: '0' },
    loss: { type: 'string', default: QFT_DEFAULTS.loss },
    'loss-layers': { type: 'string' },
  },
});

const start = performance.now();
const batch = Number(args.batch);
const model = await prepareModel(loadModel(sharedPath('models', args.model!).path));
const calib = await loadDataset(sharedPath('data', 'imagenet-sample-1k').path);
const val = await loadDataset(sharedPath('data', args.data!).path);
const profile = loadProfile(args.profile);
const calibLimit = Number(args['calib-limit']);

let t0 = performance.now();
const ptq = await quantizeModel(model, calib, {
  profile,
  calibLimit,
  batch,
  biasCorrection: true,
  gptq: !args['no-gptq'],
  preprocess: { preset: args.preset as PresetName | undefined },
});
const ptqSeconds = (performance.now() - t0) / 1000;
const images = await decodeImages(model, calib, { limit: calibLimit, preprocess: ptq.preprocess.spec, batch });
const holdoutCount = Number(args.holdout);
if (holdoutCount && calib.items.length < calibLimit + holdoutCount)
  throw new Error(`--holdout ${holdoutCount}: imagenet-sample-1k has ${calib.items.length} images, fewer than --calib-limit + --holdout`);
const holdout = holdoutCount
  ? await decodeImages(
      model,
      { ...calib, items: calib.items.slice(calibLimit) },
      { limit: holdoutCount, preprocess: ptq.preprocess.spec, batch },
    )
  : undefined;

// One float forward pass of a training batch, the unit a training step is compared with.
const session = await openSession(model);
const feed = { [images.input]: images.slice(0, batch) };
await runSession(session, feed);
t0 = performance.now();
for (let i = 0; i < 3; i++) await runSession(session, feed);
const forward = (performance.now() - t0) / 3000;
await session.release();

const stepTimes: number[] = [];
let last = performance.now();
const tuned = await finetuneImages(model, ptq.params, images, {
  epochs: Number(args.epochs),
  batch,
  lrWeights: Number(args['lr-weights']),
  lrBiases: Number(args['lr-biases']),
  lrScales: Number(args['lr-scales']),
  seed: Number(args.seed),
  schedule: args.schedule as LrSchedule,
  rechooseShifts: args['rechoose-shifts'],
  loss: args.loss as LossKind,
  lossLayers: args['loss-layers']?.split(','),
  train: Object.fromEntries(TRAINED_GROUPS.map((g) => [g, args.train!.split(',').includes(g)])),
  biases: qdqBiases(ptq),
  onProgress: (step, total, loss) => {
    const now = performance.now();
    stepTimes.push((now - last) / 1000);
    last = now;
    console.error(`step ${step}/${total} loss ${loss.toExponential(3)} ${stepTimes.at(-1)!.toFixed(1)} s`);
  },
});
const qft = buildQdqModel(tuned.model, tuned.params).model;
// What a user waits for and needs: PTQ + QFT (decoding, teacher, training, export), before the evaluation below.
const wallSeconds = (performance.now() - start) / 1000;
const peakRssGiB = process.resourceUsage().maxRSS / 2 ** 20;

/** The output error (KL of the classifier's probabilities) over the first `limit` images of `set` (see outputError). */
const distillation = (quantized: typeof model, set = images, limit = 64) => outputError(model, quantized, set, { batch, limit });

const limit = Number(args['eval-limit']);
const top1 = async (m: typeof model) => (await evaluate(m, val, { preprocess: ptq.preprocess.spec, limit })).top1;
// The first step also builds the training graph and opens its session.
const steady = stepTimes.slice(1);
const perStep = steady.length ? steady.reduce((s, t) => s + t, 0) / steady.length : NaN;
console.log(
  JSON.stringify(
    {
      model: args.model,
      profile: profile.name,
      calibImages: images.count,
      epochs: Number(args.epochs),
      batch,
      lrWeights: Number(args['lr-weights']),
      lrBiases: Number(args['lr-biases']),
      lrScales: Number(args['lr-scales']),
      schedule: args.schedule,
      train: args.train,
      rechooseShifts: args['rechoose-shifts'],
      gptq: !args['no-gptq'],
      loss: args.loss,
      lossLayers: args['loss-layers'],
      wallSeconds,
      peakRssGiB,
      ptqSeconds,
      qftSeconds: tuned.seconds,
      steps: tuned.steps,
      firstStepSeconds: stepTimes[0],
      secondsPerStep: perStep,
      forwardSeconds: forward,
      stepOverForward: perStep / forward,
      lossFirstBatch: tuned.initialLoss,
      klPtq64: await distillation(ptq.model),
      klQft64: await distillation(qft),
      lossPerEpoch: tuned.losses,
      klHoldout: holdout && {
        images: holdout.count,
        ptq: await distillation(ptq.model, holdout, holdout.count),
        qft: await distillation(qft, holdout, holdout.count),
      },
      top1: { float: await top1(model), ptq: await top1(ptq.model), qft: await top1(qft), n: limit },
    },
    null,
    2,
  ),
);
