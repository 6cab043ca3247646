import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { loadModel } from '../../import/load.js';
import { prepareModel } from '../../import/prepare.js';
import { loadDataset } from '../../data/dataset.js';
import { PRESETS, type PresetName } from '../../data/preprocess.js';
import { evaluate } from '../../eval/evaluate.js';
import { progressBar } from '../progress.js';
import { formatTable, percent } from '../table.js';
import { writeJsonResult } from '../../util/fs.js';
import { CUT_BEFORE_OPTION, loadOptions, type ModelCliOptions } from '../model-options.js';

/** Parses a positive integer option, with a message that names the option. */
export function positiveInt(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got '${value}'`);
    return n;
  };
}

export function presetOption(value: string): PresetName {
  if (!(PRESETS as readonly string[]).includes(value))
    throw new InvalidArgumentError(`unknown preset '${value}' (choose one of ${PRESETS.join(', ')})`);
  return value as PresetName;
}

interface EvalOptions extends ModelCliOptions {
  data: string;
  preset?: PresetName;
  batch: number;
  limit?: number;
  json?: string;
  skipBadImages?: boolean;
  integerKernels?: boolean;
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('Measure top-1/top-5 accuracy and throughput of a model on a labeled image folder.')
    .argument('<model>', 'model file (.onnx, including QDQ models, or .tflite)')
    .option(...CUT_BEFORE_OPTION)
    .requiredOption('--data <dir>', 'image folder: labels.csv (file,label) or one subfolder per class')
    .option('--preset <name>', `preprocessing (${PRESETS.join(', ')}); default chosen from the model`, presetOption)
    .option('--batch <n>', 'images per inference batch', positiveInt('--batch'), 32)
    .option('--limit <n>', 'evaluate only the first n images', positiveInt('--limit'))
    .option('--skip-bad-images', 'skip unreadable images (listed in the result) instead of failing')
    .option('--integer-kernels', "QDQ models: measure onnxruntime's fused integer kernels instead of the fake-quant simulation")
    .option('--json <file>', 'write the result, with per-image top-5 predictions, as JSON')
    .addHelpText(
      'after',
      '\nModels with one more output than there are classes (1001 for ImageNet) are taken to have\n' +
        'a background class first; it is removed before scoring.\n\nExample:\n' +
        '  quantflow eval mobilenet_v2.onnx --data ../shared/data/imagenet-val-650 --json result.json',
    )
    .action(async (modelPath: string, opts: EvalOptions) => {
      const model = await prepareModel(loadModel(modelPath, loadOptions(opts)));
      const dataset = await loadDataset(opts.data);
      const total = Math.min(opts.limit ?? Infinity, dataset.items.length);
      const bar = progressBar('eval', total);
      const result = await evaluate(model, dataset, {
        preset: opts.preset,
        batch: opts.batch,
        limit: opts.limit,
        skipBadImages: opts.skipBadImages,
        simulate: opts.integerKernels ? false : undefined,
        onProgress: (done) => bar.update(done),
      });
      bar.stop();
      console.log(
        formatTable([
          ['model', 'n', 'top-1', 'top-5', 'images/s'],
          [modelPath, result.n, percent(result.top1), percent(result.top5), result.imagesPerSecond.toFixed(1)],
        ]),
      );
      console.log(`preset: ${result.preset} (${result.presetReason})`);
      if (result.skipped.length) console.log(`skipped ${result.skipped.length} unreadable image(s)`);
      if (opts.json) writeJsonResult(opts.json, { model: modelPath, data: opts.data, ...result });
    });
}
