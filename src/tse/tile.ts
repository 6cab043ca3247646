/** Tile shapes for tiled squeeze-and-excite, in rows and columns of each block's feature map. */
import { QuantflowError } from '../util/errors.js';

/**
 * Exactly one of: `tileRows` K (tiles of K full-width rows: [K, W]), `tileCols` K (full-height
 * columns: [H, K]) or `tile` [kh, kw]. Sizes are clamped to each block's map, so a tile
 * larger than a map covers it whole.
 */
export interface TileOptions {
  tileRows?: number;
  tileCols?: number;
  tile?: readonly [number, number];
}

/** Throws a QuantflowError unless exactly one positive-integer tile size is given. */
export function checkTileOptions(o: TileOptions): void {
  const given = [o.tileRows, o.tileCols, o.tile].filter((v) => v !== undefined);
  if (given.length !== 1) throw new QuantflowError(`give exactly one tile size (rows, columns or KxK), found ${given.length}`);
  const sizes = o.tile ? [...o.tile] : [(o.tileRows ?? o.tileCols)!];
  if ((o.tile && o.tile.length !== 2) || !sizes.every((s) => Number.isInteger(s) && s > 0))
    throw new QuantflowError(`tile sizes must be positive integers, got ${sizes.join('x')}`);
}

/** The [kh, kw] tile for a `height`x`width` map. */
export function tileFor(map: { height: number; width: number }, o: TileOptions): [number, number] {
  const [kh, kw] = o.tile ?? (o.tileRows !== undefined ? [o.tileRows, map.width] : [map.height, o.tileCols!]);
  return [Math.min(kh, map.height), Math.min(kw, map.width)];
}

/** How many tiles cover a `height`x`width` map along each axis (the last ones may be partial). */
export function tileGrid(map: { height: number; width: number }, tile: readonly [number, number]): [number, number] {
  return [Math.ceil(map.height / tile[0]), Math.ceil(map.width / tile[1])];
}

/** The options as a user would write them: "rows 7", "columns 7", "7x7". */
export function describeTile(o: TileOptions): string {
  return o.tile ? `${o.tile[0]}x${o.tile[1]} tiles` : o.tileRows !== undefined ? `${o.tileRows}-row tiles` : `${o.tileCols}-column tiles`;
}
