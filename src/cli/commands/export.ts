import type { Command } from 'commander';
import { IO_TYPES, type IoType } from '../../export/tflite/export.js';
import { runExport, TFLITE_FILE } from '../../pipeline/export-run.js';
import { choice } from './eval.js';

interface ExportOptions {
  format: 'tflite';
  ioType: IoType;
  output?: string;
  profile?: string;
  hostTail: boolean;
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .description(
      'Write an existing quantize run in another format: a fully-integer TFLite model (int8 activations and weights, NHWC, builtin ops).',
    )
    .argument('<dir>', 'output folder of quantize (model.qdq.onnx, npu/)')
    .requiredOption('--format <format>', 'output format: tflite', choice('--format', ['tflite'] as const))
    .option(
      '--io-type <type>',
      `type of the model's inputs and outputs: ${IO_TYPES.join(', ')} (QUANTIZE/DEQUANTIZE at the boundary)`,
      choice('--io-type', IO_TYPES),
      'int8',
    )
    .option('-o, --output <file>', `file to write (default <dir>/${TFLITE_FILE})`)
    .option('--profile <name|file.json>', 'target profile (default: the profile named in the QDQ model)')
    .option('--no-host-tail', 'end the file at the integer outputs, leaving ARG_MAX or detection post-processing to the caller')
    .addHelpText('after', '\nExample:\n  quantflow export out/ --format tflite --io-type float32 -o mobilenet_v2.int8.tflite')
    .action(async (dir: string, opts: ExportOptions) => {
      const r = await runExport({
        dir,
        format: opts.format,
        ioType: opts.ioType,
        output: opts.output,
        profile: opts.profile,
        noHostTail: !opts.hostTail,
      });
      console.log(`wrote ${r.file} (${(r.bytes / 1e6).toFixed(2)} MB)`);
    });
}
