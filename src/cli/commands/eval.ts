import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { loadModel } from '../../import/load.js';
import { prepareModel } from '../../import/prepare.js';
import { loadDataset } from '../../data/dataset.js';
import { evaluate } from '../../eval/evaluate.js';
import { progressBar } from '../progress.js';
import { formatTable, percent } from '../table.js';
import { writeJsonResult } from '../../util/fs.js';
import { addInputSizeOption, type InputSizeCliOptions } from '../input-size.js';
import { addPreprocessOptions, preprocessRequest, type PreprocessFlags } from '../preprocess-options.js';
import { CUT_BEFORE_OPTION, loadOptions, type ModelCliOptions } from '../model-options.js';

/** Parses an option that takes one of `values`, with a message that names the option. */
export function choice<T extends string>(name: string, values: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(values as readonly string[]).includes(value)) throw new InvalidArgumentError(`${name}: choose one of ${values.join(', ')}`);
    return value as T;
  };
}

/** Parses a positive integer option, with a message that names the option. */
export function positiveInt(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got '${value}'`);
    return n;
  };
}

interface EvalOptions extends PreprocessFlags, InputSizeCliOptions, ModelCliOptions {
  data: string;
  batch: number;
  limit?: number;
  json?: string;
  integerKernels?: boolean;
}

export function registerEval(program: Command): void {
  const command = addInputSizeOption(
    program
      .command('eval')
      .description('Measure top-1/top-5 accuracy (on a labelled folder) and throughput of a model on an image folder.')
      .argument('<model>', 'model file (.onnx, including QDQ models, or .tflite)')
      .option(...CUT_BEFORE_OPTION),
  ).requiredOption('--data <dir>', 'image folder at any depth; labels from labels.csv (file,label) or one subfolder per class');
  addPreprocessOptions(command)
    .option('--batch <n>', 'images per inference batch', positiveInt('--batch'), 32)
    .option('--limit <n>', 'evaluate only the first n images', positiveInt('--limit'))
    .option('--integer-kernels', "QDQ models: measure onnxruntime's fused integer kernels instead of the fake-quant simulation")
    .option('--json <file>', 'write the result, with per-image top-5 predictions, as JSON')
    .addHelpText(
      'after',
      '\nModels with one more output than there are classes (1001 for ImageNet) are taken to have\n' +
        'a background class first; it is removed before scoring.\n\nExample:\n' +
        '  quantflow eval mobilenet_v2.onnx --data ../shared/data/imagenet-val-650 --json result.json',
    )
    .action(async (modelPath: string, opts: EvalOptions) => {
      const preprocess = preprocessRequest(opts);
      const model = await prepareModel(loadModel(modelPath, loadOptions(opts)), undefined, { inputSize: opts.inputSize });
      const dataset = await loadDataset(opts.data);
      const total = Math.min(opts.limit ?? Infinity, dataset.items.length);
      const bar = progressBar('eval', total);
      const result = await evaluate(model, dataset, {
        preprocess,
        batch: opts.batch,
        limit: opts.limit,
        skipBadImages: opts.skipBadImages,
        simulate: opts.integerKernels ? false : undefined,
        onProgress: (done) => bar.update(done),
      });
      bar.stop();
      const label = (v: number) => (result.labelled ? percent(v) : '-');
      console.log(
        formatTable([
          ['model', 'n', 'top-1', 'top-5', 'images/s'],
          [modelPath, result.n, label(result.top1), label(result.top5), result.imagesPerSecond.toFixed(1)],
        ]),
      );
      console.log(`preprocessing: ${result.preset} (${result.presetReason})`);
      if (!result.labelled)
        console.log(`top-1/top-5 need labels: '${opts.data}' has no labels.csv or class subfolders (predictions are in --json)`);
      if (result.skipped.length)
        console.log(
          `skipped ${result.skipped.length} unreadable image(s): ${result.skipped.slice(0, 5).join(', ')}${result.skipped.length > 5 ? ', ...' : ''}`,
        );
      if (opts.json) writeJsonResult(opts.json, { model: modelPath, data: opts.data, ...result });
    });
}
