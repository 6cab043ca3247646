/**
 * Tiled squeeze-and-excite (TSE, arXiv 2107.02145): every SE block pools tiles instead of
 * the whole map, runs its unchanged excitation on each tile descriptor, and scales each
 * pixel by the gate of its tile. A streaming accelerator then needs to hold one band of
 * tile rows instead of the whole map (buffers.ts). No retraining: the weights stay.
 */
import type { Model, Node, TensorData } from '../graph/types.js';
import { attr, cloneModel, makeNode, nameAllocator, pruneUnusedInitializers } from '../graph/graph.js';
import { floatTensor, int64Tensor } from '../graph/tensor.js';
import { inferShapes } from '../graph/shapes.js';
import { validateModel } from '../graph/validate.js';
import { upgradeOpset } from '../passes/upgrade-opset.js';
import { detectSqueezeExcite, type SqueezeExciteBlock } from './detect.js';
import { emitTiledGate } from './tiled-gate.js';
import { checkTileOptions, describeTile, tileFor, type TileOptions } from './tile.js';
import { GraphView } from './view.js';

/** Resize's scales and Slice's inputs in the form opset 13 gives them. */
const MIN_REWRITE_OPSET = 13;

/**
 * A copy of `model` with every squeeze-and-excite block (as `detectSqueezeExcite` finds them)
 * tiled. The gates of the tiles are broadcast back by nearest-neighbour Resize (integer
 * scales), cropped to the map where the last tile is partial, and multiply the block input as
 * before; the Mul keeps its name and output, so the rest of the graph is untouched. A block
 * whose map the tile covers whole is left as it is (one tile is SE itself), so its output is
 * bit-exact. Models below opset 13 are upgraded. Throws a QuantflowError on bad options.
 */
export function tileSqueezeExcite(model: Model, options: TileOptions): Model {
  checkTileOptions(options);
  const out = cloneModel(model);
  if (out.opset < MIN_REWRITE_OPSET) upgradeOpset(out, MIN_REWRITE_OPSET);
  const graph = out.graph;
  const view = new GraphView(out);
  const fresh = nameAllocator(graph);
  /** Each tiled block's Mul is replaced by the block's new nodes; its other nodes go. */
  const replacements = new Map<Node, Node[]>();
  const removed = new Set<Node>();
  for (const block of detectSqueezeExcite(out, view).blocks) {
    const tile = tileFor(block, options);
    if (tile[0] === block.height && tile[1] === block.width) continue;
    const gate = emitTiledGate(view, block, tile, fresh, graph.initializers);
    const perPixel = broadcastBack(block, tile, gate.grid, gate.output, fresh, graph.initializers);
    const mul = { ...block.mul, inputs: block.mul.inputs.map((i) => (i === block.gateOutput ? perPixel.output : i)) };
    replacements.set(block.mul, [...gate.nodes, ...perPixel.nodes, mul]);
    for (const n of [block.squeeze, ...block.excitation]) removed.add(n);
  }
  graph.nodes = graph.nodes.flatMap((n) => replacements.get(n) ?? (removed.has(n) ? [] : [n]));
  pruneUnusedInitializers(graph);
  out.metadata['quantflow.tse'] = describeTile(options);
  validateModel(out);
  inferShapes(out);
  return out;
}

/**
 * Nodes that turn [N, C, gh, gw] tile gates into a gate per pixel: nearest-neighbour Resize by
 * the tile size along axes with more than one tile (axes with one broadcast in the Mul), then a
 * Slice where the tiles overhang the map.
 */
function broadcastBack(
  block: SqueezeExciteBlock,
  tile: readonly [number, number],
  grid: readonly [number, number],
  gates: string,
  fresh: (base: string) => string,
  initializers: Map<string, TensorData>,
): { nodes: Node[]; output: string } {
  const base = block.mul.name;
  const constant = (suffix: string, t: TensorData) => {
    const name = fresh(`${base}_${suffix}`);
    initializers.set(name, t);
    return name;
  };
  const scale = [0, 1].map((a) => (grid[a]! > 1 ? tile[a]! : 1));
  const nodes: Node[] = [];
  let output = gates;
  if (scale.some((s) => s > 1)) {
    const scales = constant('tile_scales', floatTensor([4], [1, 1, ...scale]));
    const resized = fresh(`${base}_tile_gates`);
    nodes.push(
      makeNode(
        'Resize',
        [output, '', scales],
        [resized],
        {
          mode: attr.string('nearest'),
          coordinate_transformation_mode: attr.string('asymmetric'),
          nearest_mode: attr.string('floor'),
        },
        fresh(`${base}_upsample`),
      ),
    );
    output = resized;
  }
  const size = [block.height, block.width];
  const crop = [0, 1].filter((a) => grid[a]! > 1 && grid[a]! * tile[a]! !== size[a]);
  if (crop.length) {
    const cropped = fresh(`${base}_pixel_gates`);
    nodes.push(
      makeNode(
        'Slice',
        [
          output,
          constant(
            'crop_starts',
            int64Tensor(
              [crop.length],
              crop.map(() => 0),
            ),
          ),
          constant(
            'crop_ends',
            int64Tensor(
              [crop.length],
              crop.map((a) => size[a]!),
            ),
          ),
          constant(
            'crop_axes',
            int64Tensor(
              [crop.length],
              crop.map((a) => a + 2),
            ),
          ),
        ],
        [cropped],
        {},
        fresh(`${base}_crop`),
      ),
    );
    output = cropped;
  }
  return { nodes, output };
}
