/**
 * A read-only view of a model for pattern matching: who produces and reads each value, the
 * inferred shape of every value, and the value of constants. Shapes are inferred on a copy,
 * so matching works on any valid model and never touches the caller's `valueInfo`.
 */
import type { Dim, Graph, Model, Node, TensorData } from '../graph/types.js';
import { attrFloat, attrFloats, attrInt, attrInts, attrTensor, consumerMap, producerMap } from '../graph/graph.js';
import { valueShapes } from '../graph/shapes.js';
import { floatTensor, int64Tensor } from '../graph/tensor.js';

export class GraphView {
  readonly graph: Graph;
  readonly opset: number;
  private readonly producers: Map<string, Node>;
  private readonly consumers: Map<string, Node[]>;
  private readonly shapes = new Map<string, Dim[] | undefined>();
  private readonly graphOutputs: Set<string>;

  constructor(model: Model) {
    this.graph = model.graph;
    this.opset = model.opset;
    this.producers = producerMap(model.graph);
    this.consumers = consumerMap(model.graph);
    this.graphOutputs = new Set(model.graph.outputs.map((o) => o.name));
    for (const [name, v] of valueShapes(model)) this.shapes.set(name, v.shape);
  }

  producer(name: string): Node | undefined {
    return this.producers.get(name);
  }

  readers(name: string): Node[] {
    return this.consumers.get(name) ?? [];
  }

  isGraphOutput(name: string): boolean {
    return this.graphOutputs.has(name);
  }

  /** Inferred shape; undefined when the rank is unknown. */
  shape(name: string): Dim[] | undefined {
    return this.shapes.get(name);
  }

  /** The value of an initializer or a Constant node's output; undefined for anything computed. */
  constant(name: string): TensorData | undefined {
    const init = this.graph.initializers.get(name);
    if (init) return init;
    const node = this.producers.get(name);
    return node?.opType === 'Constant' ? constantNodeValue(node) : undefined;
  }

  isConstant(name: string): boolean {
    return this.constant(name) !== undefined;
  }
}

function constantNodeValue(node: Node): TensorData | undefined {
  const tensor = attrTensor(node, 'value');
  if (tensor) return tensor;
  if (node.attributes.value_float) return floatTensor([], [attrFloat(node, 'value_float', 0)]);
  const floats = attrFloats(node, 'value_floats');
  if (floats) return floatTensor([floats.length], floats);
  if (node.attributes.value_int) return int64Tensor([], [attrInt(node, 'value_int', 0)]);
  const ints = attrInts(node, 'value_ints');
  return ints ? int64Tensor([ints.length], ints) : undefined;
}

/**
 * A squeeze-and-excite descriptor: [N, C] or [N, C, 1, ...], one value per channel. The
 * excitation runs on these, which tells its nodes apart from the feature-map path.
 */
export function isDescriptor(shape: Dim[] | undefined): boolean {
  return !!shape && shape.length >= 2 && shape.slice(2).every((d) => d === 1);
}
