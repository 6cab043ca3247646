/**
 * How much local context TSE gives up, measured on images: for every SE block, the cosine
 * similarity of each tile's gate vector to the global (SE) gate vector of the same image, and
 * of neighbouring tiles to each other. Both are computed from the same block input, the one
 * the original SE network produces, so each block is judged alone and errors of earlier
 * tiled blocks do not mix in.
 */
import type { Dataset } from '../data/dataset.js';
import { imageBatches, imageFeeds, imageInputGeometry } from '../data/batches.js';
import { resolvePreprocess, type PreprocessRequest } from '../data/preprocess.js';
import type { Model } from '../graph/types.js';
import { cloneModel, nameAllocator } from '../graph/graph.js';
import { inferShapes } from '../graph/shapes.js';
import { openSession, runSession } from '../runtime/session.js';
import { QuantflowError } from '../util/errors.js';
import { detectSqueezeExcite } from './detect.js';
import { emitTiledGate } from './tiled-gate.js';
import { checkTileOptions, describeTile, tileFor, type TileOptions } from './tile.js';
import { GraphView } from './view.js';

export interface SimilarityOptions {
  /** Images used (default 100). */
  limit?: number;
  /** Images per inference (default 16). */
  batch?: number;
  /** Preprocessing: a preset and/or fields; the rest is chosen from the model (`resolvePreprocess`). */
  preprocess?: PreprocessRequest;
  /** Leave out unreadable images (listed in `skipped`) instead of failing on the first. */
  skipBadImages?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/** Where an SE block is and how it is tiled. */
export interface BlockGeometry {
  /** The block's Mul node. */
  block: string;
  channels: number;
  height: number;
  width: number;
  tile: [number, number];
  /** Tiles along H and W. */
  grid: [number, number];
}

/** Gate similarities of one block, averaged over tiles and images. */
export interface BlockSimilarity extends BlockGeometry {
  /** Mean cosine similarity of a tile's gate vector to the global gate vector. */
  toGlobal: number;
  /** Mean cosine similarity of horizontally or vertically adjacent tiles; null with one tile. */
  neighbours: number | null;
}

export interface SimilarityReport {
  tiles: string;
  images: number;
  /** Short name of the preprocessing used (its preset's, when it is one). */
  preset: string;
  /** Files that could not be decoded (only with `skipBadImages`; absent in reports from before it existed). */
  skipped?: string[];
  blocks: BlockSimilarity[];
}

/**
 * Gate similarities of every SE block of `model` for `tiles`, over the first `limit` images of
 * `dataset`. Throws a QuantflowError when the model has no SE block or no image input.
 */
export async function gateSimilarity(
  model: Model,
  dataset: Dataset,
  tiles: TileOptions,
  options: SimilarityOptions = {},
): Promise<SimilarityReport> {
  checkTileOptions(tiles);
  const { probe, blocks } = probeModel(model, tiles);
  const geometry = imageInputGeometry(probe);
  const { fixedBatch, channels, height, width, size } = geometry;
  const preprocess = resolvePreprocess(model, options.preprocess, channels);
  const items = dataset.items.slice(0, options.limit ?? 100);
  const batch = fixedBatch ?? options.batch ?? 16;
  const sums = blocks.map(() => ({ toGlobal: 0, tiles: 0, neighbours: 0, pairs: 0 }));
  const session = await openSession(probe);
  let done = 0;
  const skipped: string[] = [];
  try {
    for await (const b of imageBatches(items, {
      preprocess: preprocess.spec,
      channels,
      height,
      width,
      batch,
      skipBadImages: options.skipBadImages,
    })) {
      skipped.push(...b.skipped);
      const n = b.items.length;
      if (!n) continue;
      const fed = fixedBatch ?? n;
      const input = { dataType: 'float32' as const, dims: [fed, channels, height, width], data: b.data.subarray(0, fed * size) };
      const out = await runSession(session, imageFeeds(geometry, input));
      blocks.forEach((block, k) => {
        const global = out[block.global]!.data as Float32Array;
        const local = out[block.local]!.data as Float32Array;
        accumulate(sums[k]!, global, local, n, block.channels, block.grid);
      });
      done += n;
      options.onProgress?.(done + skipped.length, items.length);
    }
  } finally {
    await session.release();
  }
  return {
    tiles: describeTile(tiles),
    images: done,
    preset: preprocess.label,
    skipped,
    blocks: blocks.map((b, k) => {
      const s = sums[k]!;
      return {
        block: b.block,
        channels: b.channels,
        height: b.height,
        width: b.width,
        tile: b.tile,
        grid: b.grid,
        toGlobal: s.toGlobal / s.tiles,
        neighbours: s.pairs ? s.neighbours / s.pairs : null,
      };
    }),
  };
}

interface ProbedBlock extends BlockGeometry {
  /** Output names: the SE gate [N, C, 1, 1] and the tile gates [N, C, gh, gw]. */
  global: string;
  local: string;
}

/** `model` with, for every SE block, its gate and the tile gates on the same input as extra outputs. */
function probeModel(model: Model, tiles: TileOptions): { probe: Model; blocks: ProbedBlock[] } {
  const probe = cloneModel(model);
  const view = new GraphView(probe);
  const found = detectSqueezeExcite(probe, view).blocks;
  if (!found.length) throw new QuantflowError(`model '${model.graph.name}' has no squeeze-and-excite block to analyze`);
  const fresh = nameAllocator(probe.graph);
  const blocks = found.map((block): ProbedBlock => {
    const tile = tileFor(block, tiles);
    const gate = emitTiledGate(view, block, tile, fresh, probe.graph.initializers);
    probe.graph.nodes.push(...gate.nodes);
    const { channels, height, width } = block;
    return { block: block.mul.name, channels, height, width, tile, grid: gate.grid, global: block.gateOutput, local: gate.output };
  });
  inferShapes(probe);
  for (const b of blocks) for (const v of [b.global, b.local]) probe.graph.outputs.push(probe.graph.valueInfo.get(v)!);
  return { probe, blocks };
}

/** Adds the cosine similarities of `n` images to `sum`. */
function accumulate(
  sum: { toGlobal: number; tiles: number; neighbours: number; pairs: number },
  global: Float32Array,
  local: Float32Array,
  n: number,
  channels: number,
  [gh, gw]: [number, number],
): void {
  const tiles = gh * gw;
  const vector = (i: number, tile: number) => Float32Array.from({ length: channels }, (_, c) => local[(i * channels + c) * tiles + tile]!);
  for (let i = 0; i < n; i++) {
    const g = global.subarray(i * channels, (i + 1) * channels);
    const vectors = Array.from({ length: tiles }, (_, t) => vector(i, t));
    for (let t = 0; t < tiles; t++) {
      sum.toGlobal += cosine(vectors[t]!, g);
      sum.tiles++;
      const right = (t % gw) + 1 < gw ? [t + 1] : [];
      const below = Math.floor(t / gw) + 1 < gh ? [t + gw] : [];
      for (const other of [...right, ...below]) {
        sum.neighbours += cosine(vectors[t]!, vectors[other]!);
        sum.pairs++;
      }
    }
  }
}

/** Cosine similarity; 1 for two zero vectors (equal), 0 when only one is zero. */
function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  if (aa === 0 || bb === 0) return aa === bb ? 1 : 0;
  return dot / Math.sqrt(aa * bb);
}
