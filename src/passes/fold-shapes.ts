import type { Dim, Graph, Model, Node } from '../graph/types.js';
import { attrInt, attrString, nameAllocator, pruneDeadNodes } from '../graph/graph.js';
import { inferShapes } from '../graph/shapes.js';
import { floatTensor, int64Tensor } from '../graph/tensor.js';
import { foldConstants } from './fold-constants.js';

/** Integer types whose shape arithmetic inference computes exactly. */
const INDEX_TYPES = new Set(['int32', 'int64']);

/** Rounds of fold; each one exposes the shapes of the values the previous one made static. */
const MAX_ROUNDS = 8;

/**
 * Folds the shape subgraphs exporters leave behind (Shape → Gather/Slice → Unsqueeze/Concat →
 * Reshape/Resize/Expand/...) once the input sizes are fixed: every integer value whose
 * elements shape inference knows becomes a constant, onnxruntime folds what then has only
 * constant inputs (Cast, Floor, arithmetic), and nodes nobody reads go. A Reshape that copies
 * a symbolic (batch) dim from the Shape of its own input gets 0 ("copy this dim") in that
 * place, so the usual `[batch, -1, k]` targets fold too; anything else that depends on the
 * batch stays as it is, computed at run time. Returns the number of removed nodes.
 */
export async function foldShapes(model: Model): Promise<number> {
  const before = model.graph.nodes.length;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const elements = inferShapes(model);
    const changed = copyBatchDims(model.graph, elements) + sizesAsScales(model, elements) + constantValues(model.graph, elements);
    if (!changed) break;
    // The Shape nodes the folding bypassed.
    pruneDeadNodes(model.graph);
    inferShapes(model);
    await foldConstants(model);
  }
  return before - model.graph.nodes.length;
}

const isNum = (d: Dim): d is number => typeof d === 'number';

/**
 * Outputs of nodes that read a run-time value but whose integer elements inference knows
 * (Shape of a static map, Gather of its static entries, ...) become initializers. Nodes with
 * only constant inputs are left to `foldConstants`, which follows onnxruntime exactly.
 */
function constantValues(graph: Graph, elements: Map<string, Dim[]>): number {
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  const constant = (name: string) => name === '' || graph.initializers.has(name);
  let count = 0;
  const kept: Node[] = [];
  for (const n of graph.nodes) {
    const outputs = n.outputs.filter(Boolean);
    const values = outputs.map((o) => elements.get(o));
    const info = outputs.map((o) => graph.valueInfo.get(o));
    const folds =
      n.opType !== 'Constant' &&
      !n.inputs.every(constant) &&
      outputs.every((o, i) => {
        const shape = info[i]?.shape;
        return !graphOutputs.has(o) && INDEX_TYPES.has(info[i]!.dataType) && shape?.every(isNum) && values[i]?.every(isNum);
      });
    if (!folds) {
      kept.push(n);
      continue;
    }
    outputs.forEach((o, i) => {
      const [dims, v] = [info[i]!.shape as number[], values[i] as number[]];
      graph.initializers.set(
        o,
        info[i]!.dataType === 'int64' ? int64Tensor(dims, v) : { dataType: 'int32', dims, data: Int32Array.from(v) },
      );
    });
    count++;
  }
  graph.nodes = kept;
  return count;
}

/**
 * Reshape targets computed at run time whose unknown entries are the very symbolic dims of the
 * Reshape's input at the same position: a constant target with 0 there (allowzero = 0 copies
 * the input dim) says the same thing.
 */
function copyBatchDims(graph: Graph, elements: Map<string, Dim[]>): number {
  const inputShapes = new Map(graph.inputs.map((v) => [v.name, v.shape]));
  const shapeOf = (name: string) => graph.valueInfo.get(name)?.shape ?? inputShapes.get(name);
  const newName = nameAllocator(graph);
  let count = 0;
  for (const n of graph.nodes) {
    if (n.opType !== 'Reshape' || graph.initializers.has(n.inputs[1]!) || attrInt(n, 'allowzero', 0) !== 0) continue;
    const target = elements.get(n.inputs[1]!);
    const x = shapeOf(n.inputs[0]!);
    if (!target || !x || target.every(isNum)) continue;
    const copied = target.map((d, i) => (isNum(d) ? d : typeof d === 'string' && x[i] === d ? 0 : null));
    if (!copied.every(isNum)) continue;
    const name = newName(`${n.name}_shape`);
    graph.initializers.set(name, int64Tensor([copied.length], copied as number[]));
    n.inputs[1] = name;
    count++;
  }
  return count;
}

/**
 * Resize sizes computed at run time from the input's own (batch) dims and fixed spatial sizes,
 * as PyTorch exports interpolate: constant scales, out/in in float32, are what onnxruntime
 * derives from sizes itself, so they resize identically wherever floor(in · scale) gives the
 * size back; elsewhere the sizes stay.
 */
function sizesAsScales(model: Model, elements: Map<string, Dim[]>): number {
  const { graph } = model;
  if (model.opset < 11) return 0;
  const newName = nameAllocator(graph);
  let count = 0;
  for (const n of graph.nodes) {
    const sizes = n.inputs[3];
    if (n.opType !== 'Resize' || !sizes || graph.initializers.has(sizes) || n.attributes.axes) continue;
    if (attrString(n, 'keep_aspect_ratio_policy', 'stretch') !== 'stretch') continue;
    if (attrString(n, 'coordinate_transformation_mode', 'half_pixel') === 'tf_crop_and_resize') continue;
    const target = elements.get(sizes);
    const x = graph.valueInfo.get(n.inputs[0]!)?.shape ?? graph.inputs.find((v) => v.name === n.inputs[0])?.shape;
    if (!target || !x || target.length !== x.length || target.every(isNum)) continue;
    const scales = target.map((d, i) => {
      const from = x[i];
      if (typeof d === 'string') return d === from ? 1 : null;
      if (!isNum(d) || !isNum(from) || from === 0) return null;
      const scale = Math.fround(d / from);
      return Math.floor(Math.fround(from * scale)) === d ? scale : null;
    });
    if (!scales.every(isNum)) continue;
    const name = newName(`${n.name}_scales`);
    graph.initializers.set(name, floatTensor([scales.length], scales as number[]));
    n.inputs = [n.inputs[0]!, n.inputs[1] ?? '', name];
    count++;
  }
  return count;
}
