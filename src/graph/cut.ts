/**
 * Cutting a model short: the inputs of a named operator (or a named value) become the
 * graph's outputs and everything computed from them is dropped. This is how a model ending
 * in an operator quantflow does not support (a custom post-processing op) is still imported.
 */
import { pruneDeadNodes } from './graph.js';
import { inferShapes } from './shapes.js';
import type { Model, ValueInfo } from './types.js';
import { QuantflowError } from '../util/errors.js';

/**
 * Cuts `model` before `name` (in place): an operator type or node name first, so that all
 * nodes of a custom operator go at once (and a node named after its output is cut with its
 * inputs); otherwise a value name. The cut nodes' inputs that
 * are computed (not initializers) or the named value become graph outputs, after the
 * original outputs that do not depend on the cut. `source` names the file in errors.
 */
export function cutBefore(model: Model, name: string, source: string): void {
  const { graph } = model;
  const atNode = graph.nodes.filter((n) => n.name === name || n.opType === name);
  const isValue = graph.inputs.some((v) => v.name === name) || graph.nodes.some((n) => n.outputs.includes(name));
  if (!atNode.length && !isValue)
    throw new QuantflowError(`${source}: --cut-before '${name}': no node, operator type or value of that name in the model`);

  const dropped = new Set<string>();
  const cutPoints: string[] = [];
  const addCutPoint = (value: string) => {
    if (value && !graph.initializers.has(value) && !dropped.has(value) && !cutPoints.includes(value)) cutPoints.push(value);
  };
  if (!atNode.length) addCutPoint(name);
  for (const node of graph.nodes) {
    const reads = node.inputs.some((i) => dropped.has(i) || (!atNode.length && i === name));
    if (!atNode.includes(node) && !reads) continue;
    if (atNode.includes(node)) node.inputs.forEach(addCutPoint);
    for (const o of node.outputs) if (o) dropped.add(o);
  }
  const known = new Map<string, ValueInfo>(graph.valueInfo);
  for (const v of graph.inputs) known.set(v.name, v);
  graph.outputs = [
    ...graph.outputs.filter((o) => !dropped.has(o.name)),
    ...cutPoints.map((v) => known.get(v) ?? { name: v, dataType: 'float32' as const }),
  ];
  pruneDeadNodes(graph);

  // The new outputs take the types and shapes that inference finds for them.
  const probe: Model = { ...model, graph: { ...graph, valueInfo: new Map() } };
  inferShapes(probe);
  graph.outputs = graph.outputs.map((o) => {
    const inferred = probe.graph.valueInfo.get(o.name);
    return cutPoints.includes(o.name) && inferred ? { ...inferred, name: o.name } : o;
  });
}
