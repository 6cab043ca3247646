import type { Command } from 'commander';
import { runVerify } from '../../pipeline/verify-run.js';
import type { TensorAgreement } from '../../npu/verify.js';
import { writeJsonResult } from '../../util/fs.js';
import { progressBar } from '../progress.js';
import { formatTable, nodeSummary } from '../table.js';
import { positiveInt } from './eval.js';
import { addPreprocessOptions, preprocessRequest, type PreprocessFlags } from '../preprocess-options.js';
import { addInputSizeOption, type InputSizeCliOptions } from '../input-size.js';

interface VerifyOptions extends PreprocessFlags, InputSizeCliOptions {
  data: string;
  limit: number;
  qdq?: string;
  package?: string;
  profile?: string;
  perLayer?: boolean;
  json?: string;
}

export function registerVerify(program: Command): void {
  const command = addInputSizeOption(
    program
      .command('verify')
      .description('Run the integer NPU package and the fake-quant QDQ simulation on the same images and compare their integers.')
      .argument('<dir>', 'output folder of quantize (model.qdq.onnx and npu/)'),
  )
    .requiredOption('--data <dir>', 'image folder (labels are not used)')
    .option('--limit <n>', 'images to run; the integer executor takes 1-3 s per MobileNet image', positiveInt('--limit'), 4)
    .option('--qdq <file>', 'QDQ model (default <dir>/model.qdq.onnx)')
    .option('--package <dir>', 'NPU package (default <dir>/npu; built from the QDQ model when that folder is absent)')
    .option('--profile <name|file.json>', 'target profile for building the package (default: the profile named in the QDQ model)');
  addPreprocessOptions(command)
    .option('--per-layer', 'print every layer, not only the worst')
    .option('--json <file>', 'write the full comparison as JSON')
    .addHelpText(
      'after',
      '\nEnd to end, the executor runs from its own quantized input, so a one-step difference in an\n' +
        "early layer propagates; per layer, each layer is fed the simulation's inputs, which shows\n" +
        "what every layer adds by itself. Differences are in steps (LSBs) of each tensor's grid.\n" +
        'The fake-quant simulation rounds and rescales in float, so it agrees per layer to within one\n' +
        "step, not exactly; the package's integer ONNX model (src/npu/integer-model.ts), also run\n" +
        'here, must agree with the executor exactly.\n\n' +
        'Example:\n  quantflow verify out/ --data ../shared/data/imagenet-val-650 --limit 2 --per-layer',
    )
    .action(async (dir: string, opts: VerifyOptions) => {
      let bar: ReturnType<typeof progressBar> | undefined;
      const run = await runVerify({
        dir,
        data: opts.data,
        limit: opts.limit,
        qdq: opts.qdq,
        package: opts.package,
        profile: opts.profile,
        preprocess: preprocessRequest(opts),
        inputSize: opts.inputSize,
        skipBadImages: opts.skipBadImages,
        onImage: (done, total) => (bar ??= progressBar('verify', total)).update(done),
      });
      bar?.stop();
      const { report, package: pkg, preprocess, skipped, qdqPath } = run;
      const preset = preprocess.label;
      if (run.built) console.log(`built the NPU package from ${qdqPath} for profile ${pkg.profile.name} (not written)`);

      const opOf = new Map(pkg.layers.map((l) => [l.output, l.op]));
      const row = (a: TensorAgreement) => [a.tensor, a.elements, exactShare(a), a.maxDiff];
      console.log(formatTable([['package output (end to end)', 'elements', 'exact', 'max |diff| LSB'], ...report.outputs.map(row)]));
      console.log(`\n${report.images} image(s), profile ${pkg.profile.name}, preset ${preset} (${preprocess.reason})`);
      if (skipped.length) console.log(`skipped ${skipped.length} unreadable image(s): ${skipped.join(', ')}`);
      if (pkg.hostTail) console.log(`host tail (not verified, runs on the host): ${nodeSummary(pkg.hostTail)}`);
      console.log(`all tensors, end to end: ${summary(report.chained)}`);
      console.log(`all tensors, each layer fed the simulation's inputs: ${summary(report.isolated)}`);
      console.log(`all tensors, the package's integer ONNX model (onnxruntime) vs the executor: ${summary(report.integerModel!)}`);
      const peak = Object.entries(report.peaks).sort((a, b) => b[1] - a[1])[0];
      if (peak)
        console.log(
          `largest accumulator: ${peak[1]} (2^${Math.log2(peak[1]).toFixed(1)}) in '${peak[0]}', of a ${pkg.profile.accumulatorBits}-bit accumulator`,
        );

      const chained = new Map(report.chained.map((a) => [a.tensor, a]));
      const layers = opts.perLayer
        ? report.isolated
        : [...report.isolated].sort((a, b) => a.exact / a.elements - b.exact / b.elements).slice(0, 5);
      console.log(
        '\n' +
          formatTable([
            [opts.perLayer ? 'layer' : 'layer (least exact first)', 'op', 'elements', 'exact per layer', 'max', 'exact end to end', 'max'],
            ...layers.map((a) => [
              a.layer,
              opOf.get(a.tensor) ?? '',
              a.elements,
              exactShare(a),
              a.maxDiff,
              exactShare(chained.get(a.tensor)!),
              chained.get(a.tensor)!.maxDiff,
            ]),
          ]),
      );
      console.log(
        `\nexecutor ${report.seconds.executor.toFixed(1)} s, QDQ simulation ${report.seconds.simulation.toFixed(1)} s, integer model ${report.seconds.integerModel!.toFixed(1)} s`,
      );
      if (opts.json)
        writeJsonResult(opts.json, {
          qdq: qdqPath,
          profile: pkg.profile.name,
          preset,
          preprocess: preprocess.spec,
          skipped,
          data: opts.data,
          ...report,
        });
    });
}

function exactShare(a: TensorAgreement): string {
  return `${((100 * a.exact) / a.elements).toFixed(a.exact === a.elements ? 0 : 3)}%`;
}

function summary(list: TensorAgreement[]): string {
  const elements = list.reduce((n, a) => n + a.elements, 0);
  const exact = list.reduce((n, a) => n + a.exact, 0);
  const max = Math.max(0, ...list.map((a) => a.maxDiff));
  return `${exact} of ${elements} elements exact (${((100 * exact) / elements).toFixed(3)}%), max |diff| ${max} LSB`;
}
