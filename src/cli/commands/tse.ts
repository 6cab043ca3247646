import { rmSync } from 'node:fs';
import type { Command } from 'commander';
import { loadModel } from '../../import/load.js';
import { prepareModel } from '../../import/prepare.js';
import { loadDataset } from '../../data/dataset.js';
import type { PresetName } from '../../data/preprocess.js';
import { writeOnnxFile } from '../../onnx/write.js';
import { detectSqueezeExcite, type SqueezeExciteBlock } from '../../tse/detect.js';
import { tileSqueezeExcite } from '../../tse/rewrite.js';
import { bufferReport } from '../../tse/buffers.js';
import { gateSimilarity, type SimilarityReport } from '../../tse/analyze.js';
import { tileFor, type TileOptions } from '../../tse/tile.js';
import { QuantflowError } from '../../util/errors.js';
import { progressBar } from '../progress.js';
import { formatTable } from '../table.js';
import { writeJsonResult } from '../output.js';
import { positiveInt, presetOption } from './eval.js';
import { addTileOptions, bufferTable, nearMissLines, tileOptionsFrom, type TileCliOptions } from './buffers.js';

interface TseOptions extends TileCliOptions {
  output: string;
  analyze?: boolean;
  data?: string;
  limit: number;
  preset?: PresetName;
  json?: string;
}

export function registerTse(program: Command): void {
  addTileOptions(
    program
      .command('tse')
      .description('Tile the squeeze-and-excite blocks of a model (TSE): local context instead of a global mean, no retraining.')
      .argument('<model>', 'model file (.tflite or .onnx)'),
  )
    .requiredOption('-o, --output <file>', 'ONNX file to write (the tiled model)')
    .option('--analyze', 'measure how similar tile gates are to the global gate and to each other')
    .option('--data <dir>', 'images for --analyze (labels.csv or class folders; labels unused)')
    .option('--limit <n>', 'images for --analyze', positiveInt('--limit'), 100)
    .option('--preset <name>', 'preprocessing for --analyze; default chosen from the model', presetOption)
    .option('--json <file>', 'write blocks, near misses, buffering and the analysis as JSON')
    .addHelpText(
      'after',
      '\nA tile larger than a block\'s map covers it whole; such a block stays as it is. The tiled\n' +
        'model is a standard ONNX model: `eval` and `quantize` take it like any other.\n\nExample:\n' +
        '  quantflow tse mobilenet_v3_small_1.0_224_uint8.tflite --tile-rows 7 -o mnv3-tse7.onnx\n' +
        '  quantflow eval mnv3-tse7.onnx --data ../shared/data/imagenet-val-650',
    )
    .action(async (modelPath: string, opts: TseOptions) => {
      const tiles = tileOptionsFrom(opts);
      if (opts.analyze && !opts.data) throw new QuantflowError('--analyze needs --data <dir> (calibration images)');
      const model = await prepareModel(loadModel(modelPath));
      const { blocks, nearMisses } = detectSqueezeExcite(model);
      for (const line of nearMissLines(nearMisses)) console.log(line);
      if (!blocks.length) throw new QuantflowError(`${modelPath}: no squeeze-and-excite block found, nothing to tile`);
      console.log(blockTable(blocks, tiles));
      const tiled = tileSqueezeExcite(model, tiles);
      const buffers = bufferReport(blocks, tiles);
      console.log(bufferTable(buffers));
      let analysis: SimilarityReport | undefined;
      if (opts.analyze) {
        const dataset = await loadDataset(opts.data!);
        const bar = progressBar('analyze', Math.min(opts.limit, dataset.items.length));
        analysis = await gateSimilarity(model, dataset, tiles, { limit: opts.limit, preset: opts.preset, onProgress: (done) => bar.update(done) });
        bar.stop();
        console.log(similarityTable(analysis));
      }
      writeOnnxFile(tiled, opts.output);
      try {
        if (opts.json) {
          const summary = blocks.map((b) => ({ block: b.mul.name, input: b.input, squeeze: b.squeeze.name, gate: b.gate.kind, channels: b.channels, height: b.height, width: b.width }));
          writeJsonResult(opts.json, { model: modelPath, output: opts.output, blocks: summary, nearMisses, buffers, analysis });
        }
      } catch (e) {
        rmSync(opts.output, { force: true });
        throw e;
      }
      console.log(`wrote ${opts.output}: ${blocks.filter((b) => tiledBlock(b, tiles)).length} of ${blocks.length} SE blocks tiled`);
    });
}

/** Whether the tile is smaller than the block's map (otherwise the block stays SE). */
function tiledBlock(block: SqueezeExciteBlock, tiles: TileOptions): boolean {
  const [kh, kw] = tileFor(block, tiles);
  return kh < block.height || kw < block.width;
}

function blockTable(blocks: readonly SqueezeExciteBlock[], tiles: TileOptions): string {
  return formatTable([
    ['SE block (Mul)', 'squeeze', 'excitation', 'gate', 'C x H x W', 'tile'],
    ...blocks.map((b) => {
      const [kh, kw] = tileFor(b, tiles);
      const layers = b.excitation.filter((n) => ['Conv', 'Gemm', 'MatMul'].includes(n.opType)).map((n) => n.opType);
      return [b.mul.name, b.squeeze.opType, layers.join('+'), b.gate.kind, `${b.channels}x${b.height}x${b.width}`, tiledBlock(b, tiles) ? `${kh}x${kw}` : 'whole map'];
    }),
  ]);
}

function similarityTable(report: SimilarityReport): string {
  return formatTable([
    [`gate cosine similarity (${report.tiles}, ${report.images} images)`, 'tiles', 'tile vs global', 'neighbours'],
    ...report.blocks.map((b) => [b.block, `${b.grid[0]}x${b.grid[1]}`, b.toGlobal.toFixed(4), b.neighbours?.toFixed(4) ?? '-']),
  ]);
}
