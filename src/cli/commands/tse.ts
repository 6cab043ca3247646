import { rmSync } from 'node:fs';
import type { Command } from 'commander';
import { loadModel } from '../../import/load.js';
import { CUT_BEFORE_OPTION, loadOptions, type ModelCliOptions } from '../model-options.js';
import { prepareModel } from '../../import/prepare.js';
import { loadDataset } from '../../data/dataset.js';
import { writeOnnxFile } from '../../onnx/write.js';
import { PassLog } from '../../passes/pass-log.js';
import { runManifest } from '../../report/manifest.js';
import { isTiled, tseReport } from '../../report/tse.js';
import type { TseReportJson } from '../../report/types.js';
import { detectSqueezeExcite } from '../../tse/detect.js';
import { tileSqueezeExcite } from '../../tse/rewrite.js';
import { gateSimilarity, type SimilarityReport } from '../../tse/analyze.js';
import { QuantflowError } from '../../util/errors.js';
import { progressBar } from '../progress.js';
import { formatTable } from '../table.js';
import { writeJsonResult } from '../../util/fs.js';
import { reportFilesBeside, reportFilesIn, writeReportFiles } from '../../report/files.js';
import { positiveInt } from './eval.js';
import { addPreprocessOptions, preprocessRequest, type PreprocessFlags } from '../preprocess-options.js';
import { addTileOptions, bufferTable, nearMissLines, tileOptionsFrom, type TileCliOptions } from './buffers.js';
import { addInputSizeOption, type InputSizeCliOptions } from '../input-size.js';

interface TseOptions extends TileCliOptions, PreprocessFlags, InputSizeCliOptions, ModelCliOptions {
  output: string;
  analyze?: boolean;
  data?: string;
  limit: number;
  json?: string;
  report?: string;
}

export function registerTse(program: Command): void {
  const command = addTileOptions(
    addInputSizeOption(
      program
        .command('tse')
        .description('Tile the squeeze-and-excite blocks of a model (TSE): local context instead of a global mean, no retraining.')
        .argument('<model>', 'model file (.tflite or .onnx)')
        .option(...CUT_BEFORE_OPTION),
    ),
  )
    .requiredOption('-o, --output <file>', 'ONNX file to write (the tiled model)')
    .option('--analyze', 'measure how similar tile gates are to the global gate and to each other')
    .option('--data <dir>', 'images for --analyze (any folder of images; labels unused)')
    .option('--limit <n>', 'images for --analyze', positiveInt('--limit'), 100);
  addPreprocessOptions(command)
    .option('--json <file>', 'write blocks, near misses, buffering and the analysis as JSON')
    .option('--report <dir>', 'write report.html and report.json into <dir> instead of beside the tiled model')
    .addHelpText(
      'after',
      "\nA tile larger than a block's map covers it whole; such a block stays as it is. The tiled\n" +
        'model is a standard ONNX model: `eval` and `quantize` take it like any other.\n\n' +
        'The report (blocks found, near misses, SE vs TSE buffering per block, gate similarity with\n' +
        '--analyze, run manifest) goes beside the tiled model: -o m7.onnx writes m7.report.html and\n' +
        'm7.report.json; --report <dir> writes <dir>/report.html and <dir>/report.json instead.\n\nExample:\n' +
        '  quantflow tse mobilenet_v3_small_1.0_224_uint8.tflite --tile-rows 7 -o mnv3-tse7.onnx\n' +
        '  quantflow eval mnv3-tse7.onnx --data ../shared/data/imagenet-val-650',
    )
    .action(async (modelPath: string, opts: TseOptions) => {
      const tiles = tileOptionsFrom(opts);
      if (opts.analyze && !opts.data) throw new QuantflowError('--analyze needs --data <dir> (calibration images)');
      const preprocess = preprocessRequest(opts);
      const manifest = runManifest({
        options: {
          tiles,
          inputSize: opts.inputSize ?? null,
          analyze: !!opts.analyze,
          limit: opts.analyze ? opts.limit : null,
          preprocess: preprocess ?? null,
          skipBadImages: !!opts.skipBadImages,
        },
        inputs: [modelPath, ...(opts.analyze ? [opts.data!] : [])],
      });
      const passes = new PassLog();
      const model = await prepareModel(loadModel(modelPath, loadOptions(opts)), passes, { inputSize: opts.inputSize });
      const detection = detectSqueezeExcite(model);
      const { blocks, nearMisses } = detection;
      for (const line of nearMissLines(nearMisses)) console.log(line);
      if (!blocks.length) throw new QuantflowError(`${modelPath}: no squeeze-and-excite block found, nothing to tile`);
      const input = model.graph.inputs[0]?.shape;
      const report = tseReport({ model: modelPath, output: opts.output, input, detection, tiles, manifest, passes: passes.changes });
      const { buffers } = report;
      console.log(blockTable(report));
      const tiled = tileSqueezeExcite(model, tiles);
      console.log(bufferTable(buffers));
      const files = opts.report === undefined ? reportFilesBeside(opts.output) : reportFilesIn(opts.report);
      if (opts.analyze) {
        const dataset = await loadDataset(opts.data!);
        const bar = progressBar('analyze', Math.min(opts.limit, dataset.items.length));
        report.analysis = await gateSimilarity(model, dataset, tiles, {
          limit: opts.limit,
          preprocess,
          skipBadImages: opts.skipBadImages,
          onProgress: (done) => bar.update(done),
        });
        bar.stop();
        const skipped = report.analysis.skipped ?? [];
        if (skipped.length) console.log(`skipped ${skipped.length} unreadable image(s), listed in ${files.json}`);
        console.log(similarityTable(report.analysis));
      }
      writeOnnxFile(tiled, opts.output);
      try {
        if (opts.json) {
          const summary = blocks.map((b) => ({
            block: b.mul.name,
            input: b.input,
            squeeze: b.squeeze.name,
            gate: b.gate.kind,
            channels: b.channels,
            height: b.height,
            width: b.width,
          }));
          writeJsonResult(opts.json, {
            model: modelPath,
            output: opts.output,
            blocks: summary,
            nearMisses,
            buffers,
            analysis: report.analysis,
          });
        }
        writeReportFiles(files, report);
      } catch (e) {
        for (const path of [opts.output, opts.json]) if (path) rmSync(path, { force: true });
        throw e;
      }
      console.log(
        `wrote ${opts.output}: ${buffers.blocks.filter(isTiled).length} of ${blocks.length} SE blocks tiled; report ${files.html}`,
      );
    });
}

function blockTable(report: TseReportJson): string {
  return formatTable([
    ['SE block (Mul)', 'squeeze', 'excitation', 'gate', 'C x H x W', 'tile'],
    ...report.blocks.map((b, i) => {
      const x = report.buffers.blocks[i]!;
      return [
        b.block,
        b.squeeze,
        b.excitation.join('+'),
        b.gate,
        `${x.channels}x${x.height}x${x.width}`,
        isTiled(x) ? `${x.tile[0]}x${x.tile[1]}` : 'whole map',
      ];
    }),
  ]);
}

function similarityTable(report: SimilarityReport): string {
  return formatTable([
    [`gate cosine similarity (${report.tiles}, ${report.images} images)`, 'tiles', 'tile vs global', 'neighbours'],
    ...report.blocks.map((b) => [b.block, `${b.grid[0]}x${b.grid[1]}`, b.toGlobal.toFixed(4), b.neighbours?.toFixed(4) ?? '-']),
  ]);
}
