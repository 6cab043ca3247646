/**
 * Activation buffering of squeeze-and-excite blocks under the line-buffer model of a
 * streaming (row-by-row) dataflow accelerator.
 *
 * SE: the block's Mul cannot emit its first row before the mean of the whole map exists, so
 * the block input is held whole while the pool reads it: C·H·W elements.
 *
 * TSE with [kh, kw] tiles: the Mul can emit row r once the gates of r's band of tile rows
 * exist, so one band, kh full rows, is held: C·kh·W. This is the same for row tiles [K, W]
 * and square tiles [K, K]: the rows stream in whole, so every column tile of the band is
 * pending at once and its pixels must stay until the band's last row arrives. Narrower tiles
 * only change how many gate vectors exist (W/kw per band), not how many pixels wait. Column
 * tiles [H, K] span every row and so need the whole map, like SE. The gate vectors themselves
 * (C per tile) and double buffering of bands are left out, as the paper's figure does.
 */
import type { SqueezeExciteBlock } from './detect.js';
import { describeTile, tileFor, type TileOptions } from './tile.js';

/** Buffering of one block, in elements. */
export interface BlockBuffer {
  /** The block's Mul node. */
  block: string;
  /** The buffered feature map (the block input). */
  input: string;
  channels: number;
  height: number;
  width: number;
  /** The [kh, kw] tile at this map's size. */
  tile: [number, number];
  /** C·H·W. */
  se: number;
  /** C·kh·W. */
  tse: number;
}

export interface BufferReport {
  /** The tiling, as written by `describeTile`. */
  tiles: string;
  blocks: BlockBuffer[];
  /** Totals over the blocks, in elements. */
  se: number;
  tse: number;
  /** 1 - tse / se (0 when there are no blocks). */
  reduction: number;
}

/** SE and TSE buffering of `blocks` tiled as `options` says. */
export function bufferReport(blocks: readonly SqueezeExciteBlock[], options: TileOptions): BufferReport {
  const rows = blocks.map((b): BlockBuffer => {
    const tile = tileFor(b, options);
    return {
      block: b.mul.name,
      input: b.input,
      channels: b.channels,
      height: b.height,
      width: b.width,
      tile,
      se: b.channels * b.height * b.width,
      tse: b.channels * tile[0] * b.width,
    };
  });
  const se = rows.reduce((s, r) => s + r.se, 0);
  const tse = rows.reduce((s, r) => s + r.tse, 0);
  return { tiles: describeTile(options), blocks: rows, se, tse, reduction: se ? 1 - tse / se : 0 };
}
