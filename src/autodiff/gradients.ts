import type { DataType, Graph, Model, Node, ValueInfo } from '../graph/types.js';
import { nodeError, producerMap, pruneUnusedInitializers } from '../graph/graph.js';
import { formatShape } from '../graph/tensor.js';
import { QuantflowError } from '../util/errors.js';
import { GraphBuilder } from '../graph/builder.js';
import { QUANTFLOW_DOMAIN } from './domain.js';
import { differentiableOps, gradientRule } from './registry.js';
import type { ForwardContext, GradContext } from './rule.js';
import { staticShapes } from './shapes.js';

export interface GradientOptions {
  /** The value to differentiate; a non-scalar loss is summed (its gradient seeded with ones). */
  loss: string;
  /** Initializers or graph inputs to differentiate with respect to. */
  wrt: string[];
}

const FLOAT_TYPES: ReadonlySet<DataType> = new Set(['float32', 'float64', 'float16']);

/**
 * Reverse-mode differentiation of `model` as an ONNX graph: the result computes the forward
 * pass and, from the gradient rule of each operator on the way from `wrt` to `loss`
 * (registry.ts), the backward pass. Its outputs are `loss`, then d loss / d wrt[i] for each
 * i (named `<wrt>_grad` where that name is free), shaped like wrt[i]; a value the loss does
 * not depend on gets zeros. Fake-quantization markers are expanded into ONNX ops. A value
 * read by several nodes receives the Sum of their gradients. `model` is not changed; the
 * result shares its initializer tensors.
 *
 * Needs opset ≥ 13 and static shapes where rules need them (spatial sizes of convolutions
 * and pools, broadcast axes). Throws a QuantflowError naming the node for an operator
 * without a gradient rule.
 */
export function buildGradientGraph(model: Model, options: GradientOptions): Model {
  const { loss, wrt } = options;
  const src = model.graph;
  if (model.opset < 13) throw new QuantflowError(`gradients need opset ≥ 13, model '${src.name}' has ${model.opset}`);
  const shapes = staticShapes(model);
  const lossInfo = floatValue(shapes, loss, 'loss');
  for (const w of wrt) {
    if (!src.initializers.has(w) && !src.inputs.some((v) => v.name === w))
      throw new QuantflowError(`cannot differentiate with respect to '${w}': it is neither an initializer nor an input`);
    floatValue(shapes, w, 'parameter');
  }

  const extraOpsets = { ...model.extraOpsets };
  delete extraOpsets[QUANTFLOW_DOMAIN];
  const graph: Graph = {
    name: `${src.name}_grad`,
    nodes: [...src.nodes],
    initializers: new Map(src.initializers),
    inputs: [...src.inputs],
    outputs: [],
    valueInfo: new Map(),
  };
  const out: Model = { ...model, graph, extraOpsets, metadata: { ...model.metadata } };
  const b = new GraphBuilder(out);
  const shapeOf = (node: Node, name: string) => shapes.get(name)?.shape ?? fail(node, `the shape of '${name}' is unknown`);
  const dimsOf = (node: Node, name: string, what: string) => {
    const shape = shapeOf(node, name);
    if (!shape.every((d): d is number => typeof d === 'number'))
      fail(node, `${what} of '${name}' must be static for gradients, found ${formatShape(shape)}`);
    return shape;
  };

  // Forward: the model's nodes, with marker nodes replaced by their ONNX expansion.
  graph.nodes = [];
  const saved = new Map<Node, Record<string, string>>();
  for (const node of src.nodes) {
    const forward = gradientRule(node)?.forward;
    if (!forward) {
      graph.nodes.push(node);
      continue;
    }
    const ctx: ForwardContext = {
      node,
      b,
      shape: (name) => shapeOf(node, name),
      fail: (message) => fail(node, message),
    };
    saved.set(node, forward(ctx));
  }
  const forwardCount = graph.nodes.length;

  // Only float values computed from `wrt` carry gradients; integer shape arithmetic does not.
  const dependent = new Set(wrt);
  for (const node of src.nodes)
    if (node.inputs.some((i) => dependent.has(i)))
      for (const o of node.outputs) if (o && FLOAT_TYPES.has(shapes.get(o)?.dataType ?? 'bool')) dependent.add(o);
  const ancestors = ancestorsOf(src, loss);

  const grads = new Map<string, string[]>();
  const totals = new Map<string, string>();
  const total = (name: string): string | undefined => {
    const parts = grads.get(name);
    if (!parts) return undefined;
    if (parts.length === 1) return parts[0];
    let sum = totals.get(name);
    if (!sum) totals.set(name, (sum = b.op('Sum', parts, {}, `${name}_grad_sum`)));
    return sum;
  };
  const seed = lossInfo.shape?.length === 0 ? b.scalar(1) : b.op('Expand', [b.scalar(1), b.op('Shape', [loss])]);
  grads.set(loss, [seed]);

  for (const node of [...src.nodes].reverse()) {
    if (!node.outputs.some((o) => ancestors.has(o) && dependent.has(o))) continue;
    const extra = node.outputs.findIndex((o, i) => i > 0 && grads.has(o));
    if (extra > 0) fail(node, `gradients through output ${extra} are not supported`);
    const dy = total(node.outputs[0]!);
    if (!dy) continue;
    const rule = gradientRule(node);
    if (!rule) {
      const domain = node.domain && node.domain !== 'ai.onnx' ? ` (domain '${node.domain}')` : '';
      fail(node, `operator '${node.opType}'${domain} has no gradient rule (rules: ${differentiableOps().join(', ')})`);
    }
    const needs = (i: number) => Boolean(node.inputs[i]) && dependent.has(node.inputs[i]!);
    const ctx: GradContext = {
      node,
      b,
      opset: model.opset,
      dy,
      needs,
      shape: (name) => shapeOf(node, name),
      dims: (name, what) => dimsOf(node, name, what),
      constant: (name) => src.initializers.get(name),
      saved: saved.get(node) ?? {},
      fail: (message) => fail(node, message),
    };
    const inputGrads = rule.backward(ctx);
    node.inputs.forEach((input, i) => {
      if (!needs(i)) return;
      const g = inputGrads[i] ?? fail(node, `operator '${node.opType}' gives no gradient for input ${i} ('${input}')`);
      (grads.get(input) ?? grads.set(input, []).get(input)!).push(g);
    });
  }

  graph.outputs = [{ name: loss, dataType: lossInfo.dataType, ...(lossInfo.shape ? { shape: lossInfo.shape } : {}) }];
  const results = wrt.map((w) => total(w) ?? b.zerosLike(w));
  wrt.forEach((w, i) => {
    const info = shapes.get(w)!;
    const g = results[i]!;
    const shared = results.indexOf(g) !== results.lastIndexOf(g);
    const name = outputName(out, b, forwardCount, g, `${w}_grad`, shared);
    graph.outputs.push({ name, dataType: info.dataType, ...(info.shape ? { shape: info.shape } : {}) });
  });
  prune(graph);
  return out;
}

function fail(node: Node, message: string): never {
  throw nodeError(node, message);
}

function floatValue(shapes: Map<string, ValueInfo>, name: string, what: string): ValueInfo {
  const info = shapes.get(name);
  if (!info) throw new QuantflowError(`${what} '${name}' is not a value of the model`);
  if (!FLOAT_TYPES.has(info.dataType)) throw new QuantflowError(`${what} '${name}' is ${info.dataType}, gradients need floats`);
  return info;
}

/** Every value `name` is computed from, itself included. */
function ancestorsOf(graph: Graph, name: string): Set<string> {
  const producers = producerMap(graph);
  const seen = new Set<string>();
  const stack = [name];
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    for (const i of producers.get(v)?.inputs ?? []) if (i) stack.push(i);
  }
  return seen;
}

/**
 * Gives gradient value `g` the output name `wanted` (made unique) by renaming its producer's
 * output when nothing else reads it (and no other parameter `shared` it), else through an
 * Identity.
 */
function outputName(model: Model, b: GraphBuilder, forwardCount: number, g: string, wanted: string, shared: boolean): string {
  const { graph } = model;
  const producer = shared ? undefined : graph.nodes.slice(forwardCount).find((n) => n.outputs.includes(g));
  const read = graph.nodes.some((n) => n.inputs.includes(g)) || graph.outputs.some((o) => o.name === g);
  const name = b.name(wanted);
  if (producer && !read) producer.outputs[producer.outputs.indexOf(g)] = name;
  else b.nodeN('Identity', [g], {}, [name]);
  return name;
}

/** Drops nodes and initializers that no graph output needs. */
function prune(graph: Graph): void {
  const needed = new Set(graph.outputs.map((o) => o.name));
  const kept: Node[] = [];
  for (const node of [...graph.nodes].reverse()) {
    if (!node.outputs.some((o) => needed.has(o))) continue;
    kept.push(node);
    for (const i of node.inputs) needed.add(i);
  }
  graph.nodes = kept.reverse();
  pruneUnusedInitializers(graph);
}
