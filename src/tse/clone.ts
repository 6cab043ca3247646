import type { Model } from '../graph/types.js';

/**
 * A copy of `model` that passes may edit freely: nodes, lists and maps are new, constant
 * tensors are shared (passes replace tensors, they never write into one).
 */
export function cloneModel(model: Model): Model {
  const g = model.graph;
  return {
    ...model,
    metadata: { ...model.metadata },
    graph: {
      ...g,
      nodes: g.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attributes: { ...n.attributes } })),
      initializers: new Map(g.initializers),
      inputs: g.inputs.map((v) => ({ ...v, shape: v.shape && [...v.shape] })),
      outputs: g.outputs.map((v) => ({ ...v, shape: v.shape && [...v.shape] })),
      valueInfo: new Map(g.valueInfo),
    },
  };
}
