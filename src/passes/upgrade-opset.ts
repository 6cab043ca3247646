import { attrFloat, attrInts, nameAllocator } from '../graph/graph.js';
import { floatTensor, int64Tensor } from '../graph/tensor.js';
import type { Model, Node } from '../graph/types.js';

/** Reductions whose `axes` moved from an attribute to an input, and the opset that did it. */
const AXES_TO_INPUT: Record<string, number> = {
  ReduceSum: 13,
  Squeeze: 13,
  Unsqueeze: 13,
  ReduceMean: 18,
  ReduceMax: 18,
  ReduceMin: 18,
  ReduceProd: 18,
  ReduceL2: 18,
};

/**
 * Raises the model's default-domain opset to `target`, rewriting the nodes whose signature
 * changed on the way (axes, pads and pad value, clip bounds and split sizes became inputs). Needed when an
 * export uses an operator form that only newer opsets have, such as int4 DequantizeLinear.
 */
export function upgradeOpset(model: Model, target: number): void {
  if (model.opset >= target) return;
  const graph = model.graph;
  const fresh = nameAllocator(graph);
  const constant = (base: string, t: ReturnType<typeof int64Tensor>) => {
    const name = fresh(base);
    graph.initializers.set(name, t);
    return name;
  };
  const moveInts = (node: Node, attribute: string, position: number) => {
    const values = attrInts(node, attribute);
    if (!values) return;
    delete node.attributes[attribute];
    while (node.inputs.length < position) node.inputs.push('');
    node.inputs[position] = constant(`${node.name}_${attribute}`, int64Tensor([values.length], values));
  };
  for (const node of graph.nodes) {
    if (node.domain !== '') continue;
    const since = AXES_TO_INPUT[node.opType];
    if (since !== undefined && model.opset < since && target >= since) moveInts(node, 'axes', 1);
    if (node.opType === 'Split' && model.opset < 13 && target >= 13) moveInts(node, 'split', 1);
    if (node.opType === 'Pad' && model.opset < 11 && target >= 11) {
      moveInts(node, 'pads', 1);
      // The constant fill moved to input 2 as well; 0 is its default there too.
      const value = attrFloat(node, 'value', 0);
      delete node.attributes.value;
      if (value !== 0) {
        const name = fresh(`${node.name}_value`);
        graph.initializers.set(name, floatTensor([], [value]));
        node.inputs[2] = name;
      }
    }
    if (node.opType === 'Clip' && model.opset < 11 && target >= 11) {
      const min = attrFloat(node, 'min', -3.4028234663852886e38);
      const max = attrFloat(node, 'max', 3.4028234663852886e38);
      delete node.attributes.min;
      delete node.attributes.max;
      const lo = fresh(`${node.name}_min`);
      const hi = fresh(`${node.name}_max`);
      graph.initializers.set(lo, floatTensor([], [min]));
      graph.initializers.set(hi, floatTensor([], [max]));
      node.inputs = [node.inputs[0]!, lo, hi];
    }
  }
  model.opset = target;
}
