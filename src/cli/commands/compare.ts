import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { loadModel } from '../../import/load.js';
import { prepareModel } from '../../import/prepare.js';
import { loadDataset } from '../../data/dataset.js';
import { COMPARE_DEFAULTS, compareModels, quantizedModelFile, type CompareOptions, type CompareResult } from '../../eval/compare.js';
import { BOX_FORMATS, TASKS, type BoxFormat, type Task } from '../../eval/tasks.js';
import { progressBar } from '../progress.js';
import { formatTable, percent } from '../table.js';
import { writeJsonResult } from '../../util/fs.js';
import { choice, positiveInt } from './eval.js';
import { addInputSizeOption, type InputSizeCliOptions } from '../input-size.js';
import { addPreprocessOptions, preprocessRequest, type PreprocessFlags } from '../preprocess-options.js';

function fraction(name: string): (value: string) => number {
  return (value) => {
    const x = Number(value);
    if (value.trim() === '' || !Number.isFinite(x)) throw new InvalidArgumentError(`${name} must be a number, got '${value}'`);
    return x;
  };
}

/** The options that say what the outputs are and how to judge them; `quantize --compare` takes them too. */
export interface TaskCliOptions {
  task?: Task;
  boxes?: string;
  scores?: string;
  boxFormat?: BoxFormat;
  scoreThreshold: number;
  threshold: number;
}

export function addTaskOptions(command: Command): Command {
  return command
    .option('--task <task>', `what the outputs are: ${TASKS.join(', ')} (default: from output shapes and ops)`, choice('--task', TASKS))
    .option('--boxes <output>', 'detection: raw box output (name or 0-based position), compared anchor by anchor; needs --scores')
    .option('--scores <output>', 'detection: raw score output [N, anchors] or [N, anchors, classes]; needs --boxes')
    .option(
      '--box-format <format>',
      `layout of the --boxes values: ${BOX_FORMATS.join(', ')} (default cxcywh)`,
      choice('--box-format', BOX_FORMATS),
    )
    .option(
      '--score-threshold <x>',
      'detection: detections scoring below this are dropped',
      fraction('--score-threshold'),
      COMPARE_DEFAULTS.scoreThreshold,
    )
    .option(
      '--threshold <x>',
      'dense maps: compare the sets of elements at or above this',
      fraction('--threshold'),
      COMPARE_DEFAULTS.threshold,
    );
}

/** `TaskCliOptions` as `compareModels` takes them. */
export function taskOptions(
  opts: TaskCliOptions,
): Pick<CompareOptions, 'task' | 'boxes' | 'scores' | 'boxFormat' | 'scoreThreshold' | 'threshold'> {
  return {
    task: opts.task,
    boxes: opts.boxes,
    scores: opts.scores,
    boxFormat: opts.boxFormat,
    scoreThreshold: opts.scoreThreshold,
    threshold: opts.threshold,
  };
}

interface CompareCliOptions extends TaskCliOptions, PreprocessFlags, InputSizeCliOptions {
  data: string;
  batch: number;
  limit?: number;
  json?: string;
  integerKernels?: boolean;
}

const fixed = (x: number | undefined, digits = 4) => (x === undefined ? '-' : x.toFixed(digits));

/** The human table of a comparison: one row per output, then detection. */
export function formatComparison(r: CompareResult): string {
  const rows = r.outputs.map((o) => {
    const task = o.classify
      ? `top-1 agreement ${percent(o.classify.top1Agreement)}` +
        (o.classify.labels
          ? `; labels top-1 float ${percent(o.classify.labels.float.top1)}, quantized ${percent(o.classify.labels.quantized.top1)}`
          : '')
      : o.segment
        ? `pixel agreement ${percent(o.segment.pixelAgreement)}, mIoU ${percent(o.segment.meanIou)}`
        : o.dense
          ? `IoU at ${o.dense.threshold} ${percent(o.dense.iou)}`
          : '';
    const sqnr = o.sqnrDb === undefined ? '-' : o.sqnrDb === null ? 'inf' : o.sqnrDb.toFixed(1);
    return [o.name, o.kind, sqnr, fixed(o.cosine), o.maxAbsError === undefined ? '-' : o.maxAbsError.toPrecision(3), task];
  });
  const lines = [formatTable([['output', 'kind', 'SQNR dB', 'cosine', 'max abs err', 'task figures'], ...rows])];
  const d = r.detection;
  if (d)
    lines.push(
      `detection (${d.source}${d.source === 'anchors' ? ', anchor by anchor' : ''}, score ≥ ${d.scoreThreshold}, IoU ≥ ${d.iouThreshold}): ` +
        `precision ${percent(d.precision)}, recall ${percent(d.recall)} (${d.matched} matched; float ${d.floatDetections}, quantized ${d.quantizedDetections} detections)`,
    );
  return lines.join('\n');
}

export function registerCompare(program: Command): void {
  const command = addInputSizeOption(
    program
      .command('compare')
      .description('Compare a float model with its quantized (or tiled) version on the same images; no labels needed.')
      .argument('<float>', 'float model (.tflite or .onnx)')
      .argument('<quantized>', 'quantized or tiled model (.onnx), or an output folder of quantize (its model.qdq.onnx)'),
  ).requiredOption(
    '--data <dir>',
    'image folder at any depth; labels (labels.csv or class folders) are used only for classification top-1/top-5',
  );
  addPreprocessOptions(command)
    .option('--batch <n>', 'images per inference batch', positiveInt('--batch'), 32)
    .option('--limit <n>', 'compare on the first n images only', positiveInt('--limit'))
    .option('--integer-kernels', "QDQ models: run onnxruntime's fused integer kernels instead of the fake-quant simulation")
    .option('--json <file>', 'write the result as JSON');
  addTaskOptions(command)
    .addHelpText(
      'after',
      '\nEvery output gets SQNR, cosine similarity and max abs error against the float model. By kind:\n' +
        'classify ([N, K]): top-1 agreement; segment ([N, C, H, W] scores or an integer class map): pixel\n' +
        'agreement and mean IoU of the class maps; dense (other [N, C, H, W] maps): IoU of the maps\n' +
        'thresholded at --threshold; detect (TFLite_Detection_PostProcess outputs, NonMaxSuppression, or\n' +
        '--boxes/--scores): precision and recall at IoU 0.5 of the quantized detections against the float\n' +
        'ones. With --boxes/--scores every anchor is a detection, matched only against the same anchor;\n' +
        'scores outside [0, 1] are taken as logits (sigmoid).\n\nExample:\n' +
        '  quantflow compare model.onnx out/ --data ../shared/data/wider-face-183 --limit 50 --json compare.json',
    )
    .action(async (floatPath: string, quantizedPath: string, opts: CompareCliOptions) => {
      const preprocess = preprocessRequest(opts);
      const float = await prepareModel(loadModel(floatPath), undefined, { inputSize: opts.inputSize });
      const quantizedFile = quantizedModelFile(quantizedPath);
      const quantized = await prepareModel(loadModel(quantizedFile), undefined, { inputSize: opts.inputSize });
      const dataset = await loadDataset(opts.data);
      const bar = progressBar('compare', Math.min(opts.limit ?? Infinity, dataset.items.length));
      let result: CompareResult;
      try {
        result = await compareModels(float, quantized, dataset, {
          preprocess,
          batch: opts.batch,
          limit: opts.limit,
          skipBadImages: opts.skipBadImages,
          simulate: opts.integerKernels ? false : undefined,
          ...taskOptions(opts),
          onProgress: (done) => bar.update(done),
        });
      } finally {
        bar.stop();
      }
      console.log(formatComparison(result));
      console.log(`${result.n} images; preprocessing: ${result.preset} (${result.presetReason})`);
      if (result.skipped.length) console.log(`skipped ${result.skipped.length} unreadable image(s)`);
      if (opts.json) writeJsonResult(opts.json, { float: floatPath, quantized: quantizedFile, data: opts.data, ...result });
    });
}
