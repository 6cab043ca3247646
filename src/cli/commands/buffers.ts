import { rmSync } from 'node:fs';
import type { Command } from 'commander';
import { loadModel } from '../../import/load.js';
import { CUT_BEFORE_OPTION, loadOptions, type ModelCliOptions } from '../model-options.js';
import { prepareModel } from '../../import/prepare.js';
import { PassLog } from '../../passes/pass-log.js';
import { runManifest } from '../../report/manifest.js';
import { tseReport } from '../../report/tse.js';
import { detectSqueezeExcite, type NearMiss } from '../../tse/detect.js';
import type { BufferReport } from '../../tse/buffers.js';
import { checkTileOptions, type TileOptions } from '../../tse/tile.js';
import { formatTable, percent } from '../table.js';
import { writeJsonResult } from '../../util/fs.js';
import { reportFilesIn, writeReportFiles } from '../../report/files.js';
import { positiveInt } from './eval.js';
import { addInputSizeOption, sizePair, type InputSizeCliOptions } from '../input-size.js';

/** Rows the paper finds enough context for (arXiv 2107.02145): the default tile height. */
export const DEFAULT_TILE_ROWS = 7;

/** Tile options as the `tse` and `buffers` commands parse them. */
export interface TileCliOptions {
  tileRows?: number;
  tileCols?: number;
  tile?: [number, number];
}

/** Adds --tile-rows, --tile-cols and --tile to a command. */
export function addTileOptions(command: Command): Command {
  return command
    .option('--tile-rows <K>', `tiles of K full-width rows (default ${DEFAULT_TILE_ROWS})`, positiveInt('--tile-rows'))
    .option('--tile-cols <K>', 'tiles of K full-height columns', positiveInt('--tile-cols'))
    .option('--tile <KxK>', 'tiles of KxK pixels', sizePair('--tile'));
}

/** The tiling the options ask for: exactly one of them, or the default row tiles. */
export function tileOptionsFrom(o: TileCliOptions): TileOptions {
  const tiles: TileOptions = { tileRows: o.tileRows, tileCols: o.tileCols, tile: o.tile };
  if (o.tileRows === undefined && o.tileCols === undefined && o.tile === undefined) return { tileRows: DEFAULT_TILE_ROWS };
  checkTileOptions(tiles);
  return tiles;
}

/** Elements as a short count: 1.49M, 159.2k, 840. */
export function formatCount(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}

/** Per-block and total buffering as a table. */
export function bufferTable(report: BufferReport): string {
  return formatTable([
    ['SE block (Mul)', 'C x H x W', 'tile', 'SE buffer', 'TSE buffer'],
    ...report.blocks.map((b) => [
      b.block,
      `${b.channels}x${b.height}x${b.width}`,
      `${b.tile[0]}x${b.tile[1]}`,
      formatCount(b.se),
      formatCount(b.tse),
    ]),
    [`total (${report.tiles})`, '', '', formatCount(report.se), `${formatCount(report.tse)} (-${percent(report.reduction)})`],
  ]);
}

/** Near misses, one per line, or nothing. */
export function nearMissLines(nearMisses: readonly NearMiss[]): string[] {
  return nearMisses.map((m) => `not an SE block: Mul '${m.node}': ${m.reason}`);
}

interface BuffersOptions extends TileCliOptions, InputSizeCliOptions, ModelCliOptions {
  input?: [number, number];
  json?: string;
  report?: string;
}

export function registerBuffers(program: Command): void {
  addTileOptions(
    addInputSizeOption(
      program
        .command('buffers')
        .description('Activation buffering of squeeze-and-excite blocks on a streaming accelerator: SE vs tiled SE.')
        .argument('<model>', 'model file (.tflite or .onnx)')
        .option(...CUT_BEFORE_OPTION),
    ).option('--input <HxW>', 'the same as --input-size (its older name)', sizePair('--input')),
  )
    .option('--json <file>', 'write per-block and total buffering as JSON')
    .option('--report <dir>', 'write report.html and report.json (blocks, buffering chart, run manifest) into <dir>')
    .addHelpText(
      'after',
      '\nAn SE block holds its whole input map (C·H·W elements) until the global mean exists;\n' +
        'with tiles of K rows it holds one band of K rows (C·K·W), also for KxK tiles. Column\n' +
        'tiles span every row and save nothing on a row-streaming pipeline.\n\nExample:\n' +
        '  quantflow buffers mobilenet_v3_small_1.0_224_uint8.tflite --input-size 512x512 --tile-rows 7 --report out/',
    )
    .action(async (modelPath: string, opts: BuffersOptions) => {
      const tiles = tileOptionsFrom(opts);
      const inputSize = opts.inputSize ?? opts.input;
      const manifest = runManifest({ options: { tiles, input: inputSize ?? null }, inputs: [modelPath] });
      const passes = new PassLog();
      const model = await prepareModel(loadModel(modelPath, loadOptions(opts)), passes, { inputSize });
      const detection = detectSqueezeExcite(model);
      const input = model.graph.inputs[0]?.shape;
      const report = tseReport({ model: modelPath, input, detection, tiles, manifest, passes: passes.changes });
      const buffers = report.buffers;
      console.log(
        `${detection.blocks.length} squeeze-and-excite block(s) at input ${input ? `[${input.join(', ')}]` : 'of unknown shape'}`,
      );
      if (detection.blocks.length) console.log(bufferTable(buffers));
      for (const line of nearMissLines(detection.nearMisses)) console.log(line);
      const files = opts.report === undefined ? undefined : reportFilesIn(opts.report);
      try {
        if (opts.json) writeJsonResult(opts.json, { model: modelPath, input, ...buffers, nearMisses: detection.nearMisses });
        if (files) writeReportFiles(files, report);
      } catch (e) {
        if (opts.json) rmSync(opts.json, { force: true });
        throw e;
      }
      if (files) console.log(`wrote ${files.html} and ${files.json}`);
    });
}
