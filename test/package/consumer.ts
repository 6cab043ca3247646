// A project's TypeScript against the installed package's types: compiled with --noEmit only.
import {
  compareModels,
  finetune,
  loadDataset,
  loadModel,
  QFT_DEFAULTS,
  QuantflowError,
  quantizeModel,
  runQuantize,
  type CompareResult,
  type Dataset,
  type LoadModelOptions,
  type Model,
  type Quantization,
  type QuantizeOptions,
  type QuantizeRunOptions,
  type TargetProfile,
} from 'quantflow';
// @ts-expect-error internal modules are not exported
import type { Graph } from 'quantflow/dist/src/graph/types.js';

const load: LoadModelOptions = { inputSize: [224, 224], cutBefore: 'Softmax' };
const ptqOptions: QuantizeOptions = { profile: 'w4a8-shift', calibLimit: 16, preprocess: { preset: 'inception' } };
const run: QuantizeRunOptions = {
  model: 'm.tflite',
  calib: 'calib/',
  profile: 'w8a8-channel',
  output: 'out/',
  qft: { epochs: QFT_DEFAULTS.epochs },
};

export async function quantizeAndCompare(
  file: string,
  calibDir: string,
): Promise<{ q: Quantization; figures: CompareResult; bits: TargetProfile['weights']['bits'] }> {
  const float: Model = await loadModel(file, load);
  const calib: Dataset = await loadDataset(calibDir);
  const ptq = await quantizeModel(float, calib, ptqOptions);
  const { quantization: q } = await finetune(ptq, calib, { epochs: 1 });
  const figures = await compareModels(float, q.model, calib, { limit: 8 });
  return { q, figures, bits: q.profile.weights.bits };
}

export async function pipeline(): Promise<string> {
  try {
    return (await runQuantize(run)).files.html;
  } catch (e) {
    if (e instanceof QuantflowError) return e.message;
    throw e;
  }
}

export type Unused = Graph;
