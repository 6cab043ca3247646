import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { builtinProfiles } from '../../quantization/profile.js';
import type { RangeMethod } from '../../quantization/calibration.js';
import { progressBar } from '../progress.js';
import { formatTable, nodeSummary, percent } from '../table.js';
import { choice, positiveInt } from './eval.js';
import { addPreprocessOptions, preprocessRequest, type PreprocessFlags } from '../preprocess-options.js';
import { QFT_DEFAULTS, type LrSchedule } from '../../qft/finetune.js';
import { TRAINED_GROUPS, type LossKind, type TrainedGroup } from '../../qft/student.js';
import { runQuantize } from '../../pipeline/quantize-run.js';
import { PTQ_DEFAULTS } from '../../quantization/quantize.js';
import { addInputSizeOption, type InputSizeCliOptions } from '../input-size.js';
import { addTaskOptions, formatComparison, taskOptions, type TaskCliOptions } from './compare.js';
import { CUT_BEFORE_OPTION, loadOptions, type ModelCliOptions } from '../model-options.js';
import { TFLITE_FILE } from '../../pipeline/export-run.js';
import { arithmeticSummary } from '../../npu/arithmetic.js';

const METHODS: RangeMethod[] = ['minmax', 'percentile', 'mse'];

interface QuantizeCliOptions extends PreprocessFlags, InputSizeCliOptions, TaskCliOptions, ModelCliOptions {
  calib: string;
  profile: string;
  calibration: RangeMethod;
  calibLimit: number;
  batch: number;
  biasCorrection?: boolean;
  gptq?: boolean;
  equalize?: boolean;
  eval?: string;
  compare?: string;
  compareLimit?: number;
  output: string;
  qft?: boolean;
  epochs: number;
  lrWeights: number;
  lrBiases: number;
  lrScales: number;
  timeBudget?: number;
  seed: number;
  schedule: LrSchedule;
  loss: LossKind;
  lossLayers?: string[];
  checkpoint?: string;
  train: TrainedGroup[];
  rechooseShifts?: boolean;
  reallocate?: string | true;
  weightBudget?: string;
  activationBudget?: string;
}

function groupList(value: string): TrainedGroup[] {
  const groups = value.split(',').map((g) => g.trim());
  const unknown = groups.filter((g) => !(TRAINED_GROUPS as readonly string[]).includes(g));
  if (unknown.length || !groups.length)
    throw new InvalidArgumentError(`--train: unknown group '${unknown[0] ?? value}'; choose from ${TRAINED_GROUPS.join(', ')}`);
  return groups as TrainedGroup[];
}

function positiveNumber(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a positive number, got '${value}'`);
    return n;
  };
}

/** Marks the on/off flag that matches the default, which commander cannot show for a flag pair. */
function defaultMark(isDefault: boolean): string {
  return isDefault ? ' (default)' : '';
}

export function registerQuantize(program: Command): void {
  const command = addInputSizeOption(
    program
      .command('quantize')
      .description('Post-training quantization for an integer target profile; writes a QDQ ONNX model and a report.')
      .argument('<model>', 'float model (.tflite or .onnx)')
      .option(...CUT_BEFORE_OPTION),
  ).requiredOption('--calib <dir>', 'calibration images: any folder of images at any depth (labels unused)');
  addPreprocessOptions(command)
    .option('--profile <name|file.json>', `target profile: ${builtinProfiles().join(', ')}, or a JSON file`, PTQ_DEFAULTS.profile)
    .option(
      '--calibration <method>',
      `activation ranges: ${METHODS.join(', ')}`,
      choice('--calibration', METHODS),
      PTQ_DEFAULTS.calibration,
    )
    .option(
      '--weight-budget <bits|size>',
      'choose each layer\'s weight width among those the profile allows (e.g. "bits": [4, 8]) by measured sensitivity, ' +
        'within this average bits per weight (e.g. 4.5) or size (e.g. 2.1MB); writes the allocation as <out>/profile.json',
    )
    .option(
      '--activation-budget <bits>',
      'choose each activation\'s width among those the profile allows (e.g. "bits": [8, 16], as in w8a8a16-channel) by measured ' +
        'sensitivity, within this average bits per activation element (8 to 16, e.g. 9); written with any weight allocation to <out>/profile.json',
    )
    .option('--calib-limit <n>', 'calibration images used', positiveInt('--calib-limit'), PTQ_DEFAULTS.calibLimit)
    .option('--batch <n>', 'images per calibration batch', positiveInt('--batch'), PTQ_DEFAULTS.batch)
    .option(
      '--equalize',
      `cross-layer equalization: balance the weight ranges of convolution pairs around ReLUs before quantizing${defaultMark(PTQ_DEFAULTS.equalize)}`,
    )
    .option(
      '--bias-correction',
      `correct each bias for the mean output shift that weight rounding causes, measured on the calibration images${defaultMark(PTQ_DEFAULTS.biasCorrection)}`,
    )
    .option('--no-bias-correction', `keep the float biases as they are${defaultMark(!PTQ_DEFAULTS.biasCorrection)}`)
    .option(
      '--gptq',
      `round the weights of convolutions without groups below 8 bits for the least output error on the calibration images (GPTQ)${defaultMark(PTQ_DEFAULTS.gptq)}`,
    )
    .option(
      '--no-gptq',
      `round weights to nearest instead (each spatial kernel still keeps its integer sum)${defaultMark(!PTQ_DEFAULTS.gptq)}`,
    )
    .option(
      '--qft',
      'after PTQ, finetune weights, biases, step sizes and equalization factors jointly by distillation from the float model (QFT)',
    )
    .option('--epochs <n>', 'QFT passes over the calibration images', positiveInt('--epochs'), QFT_DEFAULTS.epochs)
    .option(
      '--lr-weights <x>',
      'QFT peak Adam learning rate of weights (in quantization steps)',
      positiveNumber('--lr-weights'),
      QFT_DEFAULTS.lrWeights,
    )
    .option(
      '--lr-biases <x>',
      "QFT peak Adam learning rate of biases (in steps of the layer's quantized output)",
      positiveNumber('--lr-biases'),
      QFT_DEFAULTS.lrBiases,
    )
    .option(
      '--lr-scales <x>',
      'QFT peak Adam learning rate of step sizes and equalization factors (relative)',
      positiveNumber('--lr-scales'),
      QFT_DEFAULTS.lrScales,
    )
    .option(
      '--schedule <name>',
      'QFT learning-rate schedule: cosine (5% warm-up, then cosine decay) or constant',
      choice('--schedule', ['cosine', 'constant'] as const),
      QFT_DEFAULTS.schedule,
    )
    .option(
      '--loss <kind>',
      'QFT distillation loss: auto (KL on a classifier, normalized L2 summed over other outputs), kl (logits), l2 (normalized, on --loss-layers) or kl+l2',
      choice('--loss', ['auto', 'kl', 'l2', 'kl+l2'] as const),
      QFT_DEFAULTS.loss,
    )
    .option(
      '--loss-layers <names>',
      'comma-separated values of the float model for the L2 loss (default: the input of the last layer)',
      (v: string) =>
        v
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
    )
    .option('--train <groups>', `QFT groups to train, comma-separated: ${TRAINED_GROUPS.join(', ')}`, groupList, [...TRAINED_GROUPS])
    .option(
      '--rechoose-shifts',
      "QFT re-chooses the WESS shifts for the trained weights between epochs instead of keeping PTQ's (worse on the models measured; see docs/RESULTS.md)",
    )
    .option(
      '--reallocate [budget]',
      'with --qft and --weight-budget: after QFT, raise layers to wider weights by sensitivities measured on the finetuned model, ' +
        'within this weight budget (default: the --weight-budget again, spending what the first allocation left)',
    )
    .option('--checkpoint <dir>', 'save QFT progress here; rerunning the same command continues from it')
    .option('--time-budget <seconds>', 'stop QFT after this many seconds', positiveNumber('--time-budget'))
    .option(
      '--seed <n>',
      'QFT shuffling seed',
      (v: string) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`--seed must be a non-negative integer, got '${v}'`);
        return n;
      },
      0,
    )
    .option('--eval <dir>', 'also measure float and quantized top-1/top-5 on this labeled folder (never the calibration set)')
    .option(
      '--compare <dir>',
      'also compare the quantized outputs with the float ones on this image folder (as quantflow compare; into the report)',
    )
    .option('--compare-limit <n>', 'compare on the first n images of --compare only', positiveInt('--compare-limit'))
    .requiredOption('-o, --output <dir>', 'output folder (model.qdq.onnx, npu/, model.int8.tflite, report.json, report.html)');
  addTaskOptions(command)
    .addHelpText(
      'after',
      '\nBuilt-in profiles: w8a8-* and w4a8-* with weight granularity tensor (one scale per layer),\n' +
        'channel (one per output channel) or shift (WESS: one scale per layer and a 4-bit power-of-two\n' +
        'shift per output channel). The 4-bit profiles keep the first convolution and the final\n' +
        'classifier at 8-bit weights, the usual convention. Activations are per-tensor uint8, except\n' +
        'in w8a16-channel (uint16, 48-bit accumulators) and where an override sets 16 bits.\n\n' +
        'Example:\n  quantflow quantize mobilenet_v2.tflite --calib ../shared/data/imagenet-sample-1k --profile w8a8-shift -o out/',
    )
    .action(async (modelPath: string, opts: QuantizeCliOptions) => {
      // Ctrl-C during QFT ends the current step and saves the checkpoint; a second one exits at once.
      const interrupt = new AbortController();
      const onSigint = () => interrupt.abort();
      const {
        quantization: result,
        profile,
        accuracy,
        compare,
        files,
        npuProblem,
        tfliteProblem,
        accumulatorWarning,
        finetune: tuned,
        report,
      } = await runQuantize({
        model: modelPath,
        load: loadOptions(opts),
        calib: opts.calib,
        inputSize: opts.inputSize,
        profile: opts.profile,
        output: opts.output,
        calibration: opts.calibration,
        calibLimit: opts.calibLimit,
        batch: opts.batch,
        preprocess: preprocessRequest(opts),
        skipBadImages: opts.skipBadImages,
        biasCorrection: opts.biasCorrection,
        gptq: opts.gptq,
        equalize: !!opts.equalize,
        eval: opts.eval,
        compare: opts.compare,
        compareLimit: opts.compareLimit,
        compareOptions: taskOptions(opts),
        weightBudget: opts.weightBudget,
        activationBudget: opts.activationBudget,
        qft: opts.qft
          ? {
              epochs: opts.epochs,
              lrWeights: opts.lrWeights,
              lrBiases: opts.lrBiases,
              lrScales: opts.lrScales,
              schedule: opts.schedule,
              loss: opts.loss,
              lossLayers: opts.lossLayers,
              train: opts.train,
              rechooseShifts: opts.rechooseShifts,
              reallocate: opts.reallocate,
              seed: opts.seed,
              timeBudgetSeconds: opts.timeBudget,
              checkpoint: opts.checkpoint,
              signal: interrupt.signal,
            }
          : undefined,
        onStage: (stage, total) => {
          const bar = progressBar(stage, total, { loss: stage === 'qft' });
          if (stage !== 'qft') return bar;
          // Only while QFT trains: elsewhere Ctrl-C keeps its default, exiting at once.
          process.once('SIGINT', onSigint);
          return {
            update: bar.update,
            stop: () => {
              process.removeListener('SIGINT', onSigint);
              bar.stop();
            },
          };
        },
      });
      if (tuned)
        console.log(
          `QFT: ${tuned.steps} steps${tuned.stepsRun < tuned.steps ? ` (${tuned.steps - tuned.stepsRun} from the checkpoint)` : ''} in ${tuned.seconds.toFixed(1)} s; ` +
            `loss on the first batch ${tuned.initialLoss.toExponential(3)} (PTQ), mean per epoch ${tuned.losses.map((l) => l.toExponential(3)).join(', ')}`,
        );
      const worst = [...result.layers].sort((a, b) => (a.outputSqnrDb ?? Infinity) - (b.outputSqnrDb ?? Infinity)).slice(0, 8);
      console.log(
        formatTable([
          ['layer (worst output SQNR first)', 'op', 'bits', 'weights', 'weight SQNR dB', 'output SQNR dB'],
          ...worst.map((l) => [
            l.name,
            l.opType,
            l.weightBits,
            l.granularity,
            l.weightSqnrDb.toFixed(1),
            l.outputSqnrDb?.toFixed(1) ?? '-',
          ]),
        ]),
      );
      console.log(
        `${result.layers.length} layers, ${result.params.activations.size} activations quantized for profile ${profile.name}; ` +
          `calibrated on ${result.calibrationImages} images (${opts.calibration}, preset ${result.preprocess.label}) in ${result.seconds.calibration.toFixed(1)} s`,
      );
      console.log(`preprocessing: ${result.preprocess.label} (${result.preprocess.reason})`);
      if (result.skipped.length) console.log(`skipped ${result.skipped.length} unreadable calibration image(s), listed in ${files.json}`);
      if (accuracy?.float && accuracy.quantized)
        console.log(
          `top-1 on ${opts.eval}: float ${percent(accuracy.float.top1)}, quantized ${percent(accuracy.quantized.top1)} (n = ${accuracy.float.n})`,
        );
      if (result.outputs.length > 1 || result.outputs.some((o) => o.sqnrDb === undefined))
        console.log(
          `outputs: ${result.outputs.map((o) => `${o.name} ${o.sqnrDb !== undefined ? `SQNR ${o.sqnrDb.toFixed(1)} dB` : `agreement ${percent(o.agreement!)}`}`).join(', ')}`,
        );
      if (compare) console.log(`outputs on ${compare.n} images of ${opts.compare}, float vs quantized:\n${formatComparison(compare)}`);
      for (const [a, unit] of [
        [report.activationAllocation, 'activation'],
        [report.allocation, 'weight'],
      ] as const) {
        if (!a) continue;
        const free = a.layers.filter((l) => l.widths.length > 1);
        const high = free.filter((l) => l.bits === l.widths.at(-1));
        console.log(
          `${unit} budget ${a.budget}: ${a.bitsPerElement.toFixed(3)} bits per ${unit}; sensitivity on ${a.heldOutImages} held-out images in ${a.seconds.toFixed(1)} s; ` +
            `held-out output error ${a.measuredError.toExponential(3)} (predicted ${a.predictedError.toExponential(3)}, all at the highest width ${a.baseError.toExponential(3)}); ` +
            `${high.length} of ${free.length} ${unit === 'weight' ? 'layers' : 'activations'} at ${free[0]?.widths.at(-1) ?? '-'} bits (listed in ${files.html}); allocation in ${files.profile}`,
        );
      }
      const after = report.allocation?.afterQft;
      if (after)
        console.log(
          `reallocation after QFT within ${after.budget}: ${after.bitsPerElement.toFixed(3)} bits per weight, ${after.raised.length} layers raised; ` +
            `held-out output error ${after.errorBefore.toExponential(3)} → ${after.measuredError.toExponential(3)} (predicted ${after.predictedError.toExponential(3)})`,
        );
      if (npuProblem) console.log(`integer NPU package not written: ${npuProblem}`);
      if (tfliteProblem) console.warn(`warning: ${TFLITE_FILE} not written: ${tfliteProblem}`);
      if (accumulatorWarning) console.warn(`warning: ${accumulatorWarning}`);
      if (report.tfliteArithmetic)
        console.log(`${TFLITE_FILE} computes with TFLite's reference-kernel arithmetic: ${arithmeticSummary(report.tfliteArithmetic)}`);
      if (report.npu?.hostTail)
        console.log(
          `host tail: ${nodeSummary(report.npu.hostTail)}; the NPU package outputs ${report.npu.outputs.length <= 4 ? report.npu.outputs.join(', ') : `${report.npu.outputs.length} tensors`}`,
        );
      console.log(
        `wrote ${files.model}${files.npu ? `, ${files.npu}/ (integer NPU package)` : ''}${files.tflite ? `, ${files.tflite}` : ''}, ${files.json} and ${files.html}`,
      );
    });
}
