/** The report of a `tse` or `buffers` run, built from what squeeze-and-excite detection found. */
import type { Dim } from '../graph/types.js';
import type { PassChange } from '../passes/pass-log.js';
import type { SimilarityReport } from '../tse/analyze.js';
import { bufferReport, type BlockBuffer } from '../tse/buffers.js';
import type { Detection } from '../tse/detect.js';
import type { TileOptions } from '../tse/tile.js';
import type { RunManifest } from './manifest.js';
import type { TseReportJson } from './types.js';

/** Ops that make an excitation's layers; the other nodes are activations, reshapes and clamps. */
const LAYER_OPS: ReadonlySet<string> = new Set(['Conv', 'Gemm', 'MatMul']);

export interface TseReportInput {
  /** Path of the model as given on the command line. */
  model: string;
  /** The tiled model written, if any. */
  output?: string;
  /** Shape of the model input the detection ran at. */
  input?: Dim[];
  detection: Detection;
  tiles: TileOptions;
  analysis?: SimilarityReport;
  manifest: RunManifest;
  passes?: PassChange[];
}

/** The report.json of a TSE run: the blocks found, their buffering under `tiles`, and the run. */
export function tseReport(o: TseReportInput): TseReportJson {
  return {
    kind: 'tse',
    model: o.model,
    output: o.output,
    input: o.input,
    blocks: o.detection.blocks.map((b) => ({
      block: b.mul.name,
      squeeze: b.squeeze.opType,
      excitation: b.excitation.filter((n) => LAYER_OPS.has(n.opType)).map((n) => n.opType),
      gate: b.gate.kind,
    })),
    nearMisses: o.detection.nearMisses,
    buffers: bufferReport(o.detection.blocks, o.tiles),
    analysis: o.analysis,
    manifest: o.manifest,
    passes: o.passes,
  };
}

/** Whether the block's tile is smaller than its map; otherwise one tile covers it and it stays SE. */
export function isTiled(b: BlockBuffer): boolean {
  return b.tile[0] < b.height || b.tile[1] < b.width;
}
