import type { Command } from 'commander';
import { loadModel } from '../../import/load.js';
import { writeOnnxFile } from '../../onnx/write.js';
import { prepareModel } from '../../import/prepare.js';
import { writeJsonResult } from '../../util/fs.js';
import { addInputSizeOption, type InputSizeCliOptions } from '../input-size.js';
import { CUT_BEFORE_OPTION, loadOptions, type ModelCliOptions } from '../model-options.js';

export function registerImport(program: Command): void {
  addInputSizeOption(
    program
      .command('import')
      .description('Convert a TFLite (or ONNX) model to a float ONNX model that onnxruntime runs.')
      .argument('<model>', 'model file (.tflite or .onnx)')
      .option(...CUT_BEFORE_OPTION),
  )
    .requiredOption('-o, --output <file>', 'ONNX file to write')
    .option('--json <file>', 'also write a machine-readable summary')
    .addHelpText(
      'after',
      '\nQuantized TFLite models (uint8 per-tensor, int8 per-channel) become float graphs with\n' +
        'dequantized weights; their original quantization parameters are kept as model metadata.\n' +
        'Layout becomes NCHW; the batch dimension is dynamic; height and width are fixed (--input-size).\n' +
        'SSD detectors keep their TFLite_Detection_PostProcess as ONNX (box decoding, NonMaxSuppression,\n' +
        'the same four outputs); other custom operators need --cut-before.\n\nExample:\n  quantflow import mobilenet_v2_1.0_224_int8.tflite -o mobilenet_v2.onnx',
    )
    .action(async (modelPath: string, opts: { output: string; json?: string } & InputSizeCliOptions & ModelCliOptions) => {
      const model = await prepareModel(loadModel(modelPath, loadOptions(opts)), undefined, { inputSize: opts.inputSize });
      writeOnnxFile(model, opts.output);
      const input = model.graph.inputs[0];
      const summary = {
        source: modelPath,
        output: opts.output,
        nodes: model.graph.nodes.length,
        opset: model.opset,
        input: input && { name: input.name, shape: input.shape },
        outputs: model.graph.outputs.map((o) => ({ name: o.name, shape: o.shape })),
      };
      console.log(
        `wrote ${opts.output}: ${summary.nodes} nodes, opset ${summary.opset}, input ${input?.name} [${input?.shape?.join(',')}]`,
      );
      if (opts.json) writeJsonResult(opts.json, summary);
    });
}
