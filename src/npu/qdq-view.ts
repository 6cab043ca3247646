import type { Grid } from '../quantization/grid.js';
import { attrInt, nodeError } from '../graph/graph.js';
import { toFloat32 } from '../graph/tensor.js';
import type { Graph, Node, TensorData } from '../graph/types.js';
import { QuantflowError } from '../util/errors.js';

/** A constant fed through DequantizeLinear: integer values and their (per-axis) scales. */
export interface DequantizedConstant {
  values: TensorData;
  scale: Float32Array;
  /** Axis of the per-axis scale (meaningless for one scale). */
  axis: number;
}

/**
 * A QDQ model seen as the integer network it describes (the form src/export/qdq.ts
 * writes, which is ONNX's standard QDQ form):
 * - each QuantizeLinear → DequantizeLinear pair quantizes the float value `raw` into an
 *   integer tensor named after the pair's DequantizeLinear output (or after the model
 *   input it quantizes);
 * - each DequantizeLinear of an initializer is a constant: int8/int4 weights, int32 biases;
 * - every other node is a compute node, reading those tensors and constants.
 */
export interface QuantizedTensor {
  /** The tensor's name: the DequantizeLinear output, or the model input quantized. */
  tensor: string;
  grid: Grid;
  /** The QuantizeLinear output holding the integers, and its type. */
  integers: string;
  dataType: TensorData['dataType'];
}

export interface QdqView {
  /** Compute nodes, in graph order. */
  nodes: Node[];
  /** Integer tensor of each Q/DQ pair, by the name of the float value it quantizes. */
  quantizedAs: Map<string, QuantizedTensor>;
  /** The tensor a compute node reads under each name it uses (DQ outputs). */
  tensorOf: Map<string, string>;
  constants: Map<string, DequantizedConstant>;
  /** Readers of each value among the compute nodes. */
  readers: Map<string, Node[]>;
}

const GRID_RANGES: Partial<Record<TensorData['dataType'], [number, number]>> = {
  uint8: [0, 255],
  int8: [-128, 127],
  uint16: [0, 65535],
  int16: [-32768, 32767],
};

export function qdqView(graph: Graph): QdqView {
  const inputs = new Set(graph.inputs.map((i) => i.name));
  const dqOf = new Map<string, Node>();
  for (const n of graph.nodes) if (n.opType === 'DequantizeLinear') dqOf.set(n.inputs[0]!, n);
  const view: QdqView = { nodes: [], quantizedAs: new Map(), tensorOf: new Map(), constants: new Map(), readers: new Map() };
  for (const n of graph.nodes) {
    if (n.opType === 'QuantizeLinear') {
      const dq = dqOf.get(n.outputs[0]!);
      if (!dq) throw new QuantflowError(`QuantizeLinear '${n.name}' has no DequantizeLinear after it`);
      const tensor = inputs.has(n.inputs[0]!) ? n.inputs[0]! : dq.outputs[0]!;
      const grid = activationGrid(n, graph);
      view.quantizedAs.set(n.inputs[0]!, {
        tensor,
        grid,
        integers: n.outputs[0]!,
        dataType: graph.initializers.get(n.inputs[2]!)!.dataType,
      });
      view.tensorOf.set(dq.outputs[0]!, tensor);
    } else if (n.opType === 'DequantizeLinear') {
      const values = graph.initializers.get(n.inputs[0]!);
      if (values) view.constants.set(n.outputs[0]!, dequantizedConstant(n, values, graph));
    } else {
      view.nodes.push(n);
      for (const i of n.inputs) if (i) view.readers.set(i, [...(view.readers.get(i) ?? []), n]);
    }
  }
  return view;
}

function scalarInput(node: Node, i: number, graph: Graph): TensorData {
  const t = graph.initializers.get(node.inputs[i] ?? '');
  if (!t || t.data.length !== 1) throw nodeError(node, `input ${i} must be a constant scalar`);
  return t;
}

function activationGrid(q: Node, graph: Graph): Grid {
  const zp = scalarInput(q, 2, graph);
  const range = GRID_RANGES[zp.dataType];
  if (!range) throw new QuantflowError(`QuantizeLinear '${q.name}': ${zp.dataType} activations are not supported`);
  return { scale: toFloat32(scalarInput(q, 1, graph))[0]!, zeroPoint: Number(zp.data[0]), qmin: range[0], qmax: range[1] };
}

function dequantizedConstant(dq: Node, values: TensorData, graph: Graph): DequantizedConstant {
  const scale = graph.initializers.get(dq.inputs[1]!);
  const zp = graph.initializers.get(dq.inputs[2] ?? '');
  if (!scale) throw new QuantflowError(`DequantizeLinear '${dq.name}': scale must be a constant`);
  if (zp && Array.from(zp.data as ArrayLike<number>).some((z) => Number(z) !== 0)) {
    throw new QuantflowError(`DequantizeLinear '${dq.name}': constants with a nonzero zero point are not supported`);
  }
  return { values, scale: toFloat32(scale), axis: attrInt(dq, 'axis', 1) };
}
