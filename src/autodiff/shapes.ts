import type { Model, ValueInfo } from '../graph/types.js';
import { valueShapes } from '../graph/shapes.js';
import { QUANTFLOW_DOMAIN } from './domain.js';

/**
 * Element types and static shapes of every value of `model`, including its inputs and
 * initializers. quantflow's marker nodes (fake quantization) keep their input's type and
 * shape, so inference sees them as Identity; the model itself is not changed.
 */
export function staticShapes(model: Model): Map<string, ValueInfo> {
  const nodes = model.graph.nodes.map((n) =>
    n.domain === QUANTFLOW_DOMAIN ? { ...n, opType: 'Identity', domain: '', inputs: [n.inputs[0]!], attributes: {} } : n,
  );
  return valueShapes({ ...model, graph: { ...model.graph, nodes } });
}
