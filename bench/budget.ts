/**
 * Mixed precision under a weight budget, at several budgets: calibration and the sensitivity
 * pass run once, then for each budget the greedy allocation is assembled and measured — bits
 * per weight, held-out output error (KL for a classifier, normalized L2 otherwise) on
 * calibration images that neither calibration nor the sensitivity pass saw, top-1 on the
 * evaluation set and top-1 agreement with the float model. With `--qft`, QFT (the pipeline's
 * defaults) runs on each allocation of `--qft-budgets` and is measured the same way.
 *
 *   npm run bench:budget -- [--model F] [--profile w4w8a8-channel] [--budgets 4,4.25,4.5,5,6,8]
 *     [--calib imagenet-sample-1k] [--calib-limit 904] [--heldout 64] [--data imagenet-val-650]
 *     [--eval-limit N] [--preset P] [--qft-budgets 4.5] [--json out.json]
 *
 * Images: the first --calib-limit of --calib set the ranges (and train QFT), the next
 * --heldout measure the output error, the last 32 are the sensitivity pass's (as in
 * `quantize --weight-budget`). --calib and --data are names under ../shared/data or paths.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatTable, percent } from '../src/cli/table.js';
import { loadDataset, type Dataset } from '../src/data/dataset.js';
import type { PresetName } from '../src/data/preprocess.js';
import { decodeImages } from '../src/data/images.js';
import { evaluate, type EvalResult } from '../src/eval/evaluate.js';
import { OutputErrorMeter } from '../src/eval/output-error.js';
import type { Model } from '../src/graph/types.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { applyFinetune } from '../src/pipeline/quantize-run.js';
import { finetune, QFT_DEFAULTS } from '../src/qft/index.js';
import { allocatedProfile, allocateGreedy, budgetBits, parseBudget, widthChoices } from '../src/quantization/allocation.js';
import { loadProfile } from '../src/quantization/profile.js';
import { assembleQuantization, calibrateModel } from '../src/quantization/quantize.js';
import { weightSensitivity } from '../src/quantization/sensitivity.js';
import { writeJsonResult } from '../src/util/fs.js';
import { sharedPath } from '../test/shared.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'mobilenet_v2_1.0_224_int8.tflite' },
    profile: { type: 'string', default: 'w4w8a8-channel' },
    budgets: { type: 'string', default: '4,4.25,4.5,5,6,8' },
    calib: { type: 'string', default: 'imagenet-sample-1k' },
    'calib-limit': { type: 'string', default: '904' },
    heldout: { type: 'string', default: '64' },
    data: { type: 'string', default: 'imagenet-val-650' },
    'eval-limit': { type: 'string' },
    preset: { type: 'string' },
    'qft-budgets': { type: 'string', default: '' },
    json: { type: 'string' },
  },
});

const SENSITIVITY_IMAGES = 32;
const batch = QFT_DEFAULTS.batch;
const data = (name: string) => (existsSync(name) ? name : sharedPath('data', name).path);
const calibLimit = Number(args['calib-limit']);
const heldoutCount = Number(args.heldout);
const evalLimit = args['eval-limit'] ? Number(args['eval-limit']) : undefined;
const started = performance.now();

const model = await prepareModel(loadModel(existsSync(args.model!) ? args.model! : sharedPath('models', args.model!).path));
const calib = await loadDataset(data(args.calib!));
const val = await loadDataset(data(args.data!));
if (calib.items.length < calibLimit + heldoutCount + SENSITIVITY_IMAGES)
  throw new Error(`${args.calib} has ${calib.items.length} images, fewer than --calib-limit + --heldout + ${SENSITIVITY_IMAGES}`);
const profile = loadProfile(args.profile!);
const cal = await calibrateModel(model, calib, {
  profile,
  calibLimit,
  batch,
  preprocess: { preset: args.preset as PresetName | undefined },
});
const slice = (items: Dataset['items']): Promise<Awaited<ReturnType<typeof decodeImages>>> =>
  decodeImages(cal.model, { ...calib, items }, { limit: items.length, preprocess: cal.preprocess.spec, batch });
const sensMeter = await OutputErrorMeter.create(cal.model, await slice(calib.items.slice(-SENSITIVITY_IMAGES)), { batch });
const heldMeter = await OutputErrorMeter.create(cal.model, await slice(calib.items.slice(calibLimit, calibLimit + heldoutCount)), {
  batch,
});
const sens = await weightSensitivity(cal, sensMeter, {});
console.log(`${args.model} ${args.profile}: calibration ${cal.seconds.toFixed(0)} s, sensitivity ${sens.seconds.toFixed(0)} s`);

const evalModel = (m: Model) => evaluate(m, val, { preprocess: cal.preprocess.spec, limit: evalLimit });
const float = await evalModel(cal.model);
const agreement = (e: EvalResult) => e.predictions.filter((p, i) => p.top5[0] === float.predictions[i]!.top5[0]).length / e.n;

interface Row {
  budget: string;
  stage: 'PTQ' | 'QFT';
  bitsPerElement: number;
  heldOutError: number;
  top1: number;
  agreement: number;
  layersAt8: string[];
  seconds: number;
}
const rows: Row[] = [];
const qftBudgets = new Set(args['qft-budgets']!.split(',').filter(Boolean));
for (const budgetText of args.budgets!.split(',')) {
  const t0 = performance.now();
  const bits = budgetBits(parseBudget(budgetText, '--budgets'), sens.layers, profile.source);
  const chosen = allocateGreedy(sens.layers, bits, sens.baseError);
  const allocated = allocatedProfile(profile, `${profile.name}-wb${budgetText}`, {
    weights: widthChoices<4 | 8>(sens.layers, chosen.widths),
  });
  const ptq = await assembleQuantization(
    { ...cal, profile: allocated },
    sens.quantized.map((widths, i) => widths.get(chosen.widths[i] as 4 | 8)!),
  );
  const layersAt8 = sens.layers.filter((l, i) => l.widths.length > 1 && chosen.widths[i] === 8).map((l) => l.name);
  const measure = async (m: Model, stage: Row['stage'], since: number) => {
    const e = await evalModel(m);
    const row: Row = {
      budget: budgetText,
      stage,
      bitsPerElement: chosen.bitsPerElement,
      heldOutError: await heldMeter.measure(m),
      top1: e.top1,
      agreement: agreement(e),
      layersAt8,
      seconds: (performance.now() - since) / 1000,
    };
    rows.push(row);
    console.log(
      `${budgetText} ${stage}: ${row.bitsPerElement.toFixed(3)} bits/weight, held-out error ${row.heldOutError.toFixed(4)}, ` +
        `top-1 ${percent(row.top1)}, agreement ${percent(row.agreement)} (${row.seconds.toFixed(0)} s)`,
    );
  };
  await measure(ptq.model, 'PTQ', t0);
  if (qftBudgets.has(budgetText)) {
    const t1 = performance.now();
    const tuned = await finetune(ptq, calib, { calibLimit });
    await measure((await applyFinetune(ptq, tuned, allocated)).model, 'QFT', t1);
  }
}

console.log(
  `\n${args.model}, ${args.profile}: float top-1 ${percent(float.top1)} on ${float.n} images of ${args.data}; ` +
    `held-out error on ${heldoutCount} calibration images; ${((performance.now() - started) / 1000).toFixed(0)} s in all`,
);
console.log(
  formatTable([
    ['budget', 'stage', 'bits/weight', 'held-out error', 'top-1', 'agreement', 'layers at 8 bits'],
    ...rows.map((r) => [
      r.budget,
      r.stage,
      r.bitsPerElement.toFixed(3),
      r.heldOutError.toFixed(4),
      percent(r.top1),
      percent(r.agreement),
      `${r.layersAt8.length} of ${sens.layers.filter((l) => l.widths.length > 1).length}`,
    ]),
  ]),
);
if (args.json)
  writeJsonResult(args.json, {
    model: args.model,
    profile: args.profile,
    float: { top1: float.top1, n: float.n },
    sensitivity: sens.layers,
    sensitivitySeconds: sens.seconds,
    rows,
  });
