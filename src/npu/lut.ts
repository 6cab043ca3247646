import { createGraph } from '../graph/graph.js';
import type { Graph, Model, Node } from '../graph/types.js';
import { runModel } from '../runtime/session.js';
import { gridLevels, quantizeValue, type Grid } from '../quantization/grid.js';

/** A unary elementwise node to tabulate: `input` is its one non-constant input. */
export interface TableRequest {
  node: Node;
  input: string;
  inGrid: Grid;
  outGrid: Grid;
}

/**
 * Lookup tables of unary nodes: each node is evaluated by onnxruntime on every level of its
 * input grid, dequantized exactly as DequantizeLinear does, and the results are quantized
 * onto the output grid. The QDQ simulation computes the same float32 op on the same inputs,
 * so table and simulation agree by construction, whatever the op's float rounding. All
 * requests run in one session. Profiles with TFLite's rounding take HardSwish and Sigmoid
 * from TFLite's integer kernels instead (tflite-lut.ts).
 */
export async function unaryTables(source: Graph, opset: number, requests: TableRequest[]): Promise<Int32Array[]> {
  if (!requests.length) return [];
  const graph = createGraph('quantflow_luts');
  const feeds: Record<string, { dataType: 'float32'; dims: number[]; data: Float32Array }> = {};
  requests.forEach((r, i) => {
    const levels = gridLevels(r.inGrid);
    feeds[`x${i}`] = { dataType: 'float32', dims: [levels.length], data: levels };
    graph.inputs.push({ name: `x${i}`, dataType: 'float32', shape: [levels.length] });
    graph.outputs.push({ name: `y${i}`, dataType: 'float32' });
    for (const c of r.node.inputs) if (c && c !== r.input) graph.initializers.set(c, source.initializers.get(c)!);
    graph.nodes.push({ ...r.node, inputs: r.node.inputs.map((n) => (n === r.input ? `x${i}` : n)), outputs: [`y${i}`] });
  });
  const model: Model = { graph, opset, producerName: 'quantflow', metadata: {} };
  const out = await runModel(model, feeds);
  return requests.map((r, i) => Int32Array.from(out[`y${i}`]!.data as Float32Array, (y) => quantizeValue(y, r.outGrid)));
}

/** The table that moves integers from one grid to another (Q(DQ(q)), as the simulation does). */
export function regridTable(inGrid: Grid, outGrid: Grid): Int32Array {
  return Int32Array.from(gridLevels(inGrid), (x) => quantizeValue(x, outGrid));
}
