/**
 * The squeeze and excitation of a block, computed per tile: one gate vector per tile, as a
 * [N, C, gh, gw] map. The excitation is carried over unchanged in what it computes; only its
 * form changes where a form works on [N, C] descriptors alone (Gemm/MatMul become 1x1 Conv,
 * Reshape/Flatten disappear, per-channel constants get [C, 1, 1] shape), so that it runs on
 * every tile descriptor at once.
 */
import type { Node, TensorData } from '../graph/types.js';
import { attr, attrFloat, attrInt, makeNode } from '../graph/graph.js';
import { floatTensor, sizeOf, toFloat32 } from '../graph/tensor.js';
import type { SqueezeExciteBlock } from './detect.js';
import { SHAPE_ONLY_OPS } from '../graph/ops.js';
import { tileGrid } from './tile.js';
import type { GraphView } from './view.js';

export interface TiledGate {
  /** New nodes, in order; their constants are already in the initializers. */
  nodes: Node[];
  /** The tile gates, [N, C, gh, gw]. */
  output: string;
  grid: [number, number];
}

/**
 * Emits the tiled squeeze and excitation of `block` for `tile` = [kh, kw]. The squeeze is an
 * AveragePool with kernel = stride = tile; its bottom and right padding, excluded from the
 * count (count_include_pad = 0), make a partial tile at the border average its valid pixels
 * only. New names come from `fresh`, new constants go into `initializers`.
 */
export function emitTiledGate(
  view: GraphView,
  block: SqueezeExciteBlock,
  tile: readonly [number, number],
  fresh: (base: string) => string,
  initializers: Map<string, TensorData>,
): TiledGate {
  const [kh, kw] = tile;
  const grid = tileGrid(block, tile);
  const constant = (base: string, t: TensorData) => {
    const name = fresh(base);
    initializers.set(name, t);
    return name;
  };
  const descriptors = fresh(`${block.squeeze.outputs[0]}_tiles`);
  const nodes: Node[] = [
    makeNode(
      'AveragePool',
      [block.squeeze.inputs[0]!],
      [descriptors],
      {
        kernel_shape: attr.ints([kh, kw]),
        strides: attr.ints([kh, kw]),
        pads: attr.ints([0, 0, grid[0] * kh - block.height, grid[1] * kw - block.width]),
        count_include_pad: attr.int(0),
      },
      fresh(`${block.squeeze.name}_tiles`),
    ),
  ];
  const renamed = new Map([[block.squeeze.outputs[0]!, descriptors]]);
  const input = (name: string) => renamed.get(name) ?? name;
  for (const node of block.excitation) {
    if (SHAPE_ONLY_OPS.has(node.opType)) {
      renamed.set(node.outputs[0]!, input(node.inputs[0]!));
      continue;
    }
    const outputs = node.outputs.map((o) => (o ? fresh(`${o}_tiles`) : ''));
    node.outputs.forEach((o, i) => o && renamed.set(o, outputs[i]!));
    const name = fresh(`${node.name}_tiles`);
    if (node.opType === 'Gemm' || node.opType === 'MatMul') {
      const { weight, bias } = asConvWeights(view, node);
      const w = constant(`${node.name}_tiles_weight`, weight);
      const b = bias ? [constant(`${node.name}_tiles_bias`, bias)] : [];
      nodes.push(makeNode('Conv', [input(node.inputs[0]!), w, ...b], outputs, {}, name));
      continue;
    }
    const inputs = node.inputs.map((i) => {
      const t = i && node.opType !== 'Conv' ? view.constant(i) : undefined;
      // Per-channel constants of [N, C] descriptors ([C] or [1, C]) would align with W on a map;
      // detection made sure that their one non-unit dim is the channel axis.
      if (!t || sizeOf(t.dims) === 1 || (t.dims.length >= 3 && t.dims.at(-1) === 1 && t.dims.at(-2) === 1)) return input(i);
      return constant(`${i}_per_channel`, { ...t, dims: [sizeOf(t.dims), 1, 1] });
    });
    nodes.push({ ...node, name, inputs, outputs, attributes: { ...node.attributes } });
  }
  return { nodes, output: input(block.gateOutput), grid };
}

/** Gemm/MatMul weights as a 1x1 Conv's [out, in, 1, 1] weights and [out] bias (alpha and beta folded in). */
function asConvWeights(view: GraphView, node: Node): { weight: TensorData; bias?: TensorData } {
  const b = view.constant(node.inputs[1]!)!;
  const values = toFloat32(b);
  const gemm = node.opType === 'Gemm';
  // Conv weights are [out, in]: Gemm's B as is with transB, MatMul's and plain Gemm's transposed.
  const transposed = gemm && attrInt(node, 'transB', 0) !== 0;
  const [rows, cols] = b.dims as [number, number];
  const [outs, ins] = transposed ? [rows, cols] : [cols, rows];
  const alpha = gemm ? attrFloat(node, 'alpha', 1) : 1;
  const weight = floatTensor([outs, ins, 1, 1]);
  for (let o = 0; o < outs; o++)
    for (let i = 0; i < ins; i++) weight.data[o * ins + i] = alpha * values[transposed ? o * cols + i : i * cols + o]!;
  const c = gemm && node.inputs[2] ? view.constant(node.inputs[2]) : undefined;
  if (!c) return { weight };
  const beta = attrFloat(node, 'beta', 1);
  const cv = toFloat32(c);
  return {
    weight,
    bias: floatTensor(
      [outs],
      Array.from({ length: outs }, (_, o) => beta * cv[cv.length === 1 ? 0 : o]!),
    ),
  };
}
