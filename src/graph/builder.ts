import type { AttributeValue, Model, TensorData } from './types.js';
import { nameAllocator } from './graph.js';
import { floatTensor, int64Tensor } from './tensor.js';

/**
 * Appends nodes and constants to a model's graph under fresh names. Gradient rules, fake
 * quantization and the optimizer all emit through one builder so that names never collide
 * and identical small constants (axes, shapes, scalars) are stored once.
 */
export class GraphBuilder {
  private readonly fresh: (base: string) => string;
  private readonly constants = new Map<string, string>();

  /** Reserves every name `model.graph` uses now; add nodes through this builder afterwards. */
  constructor(readonly model: Model) {
    this.fresh = nameAllocator(model.graph);
  }

  /** A name not used in the graph yet, derived from `base`. */
  name(base: string): string {
    return this.fresh(base);
  }

  /**
   * Appends a node with `outputs` fresh output names (or the given names) and returns them;
   * `domain` '' is ONNX's.
   */
  nodeN(
    opType: string,
    inputs: string[],
    attributes: Record<string, AttributeValue>,
    outputs: number | string[],
    hint = opType,
    domain = '',
  ): string[] {
    const names = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(hint)) : outputs;
    this.model.graph.nodes.push({ name: names[0] ?? this.fresh(hint), opType, domain, inputs, outputs: names, attributes });
    return names;
  }

  /** Appends a single-output default-domain node and returns its output name. */
  op(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, hint = opType): string {
    return this.nodeN(opType, inputs, attributes, 1, hint)[0]!;
  }

  /** Adds `t` as an initializer under a fresh name. */
  tensor(t: TensorData, hint = 'const'): string {
    const name = this.fresh(hint);
    this.model.graph.initializers.set(name, t);
    return name;
  }

  /** A float32 scalar constant, shared by every caller that asks for the same value. */
  scalar(value: number): string {
    return this.cached(`f:${value}`, () => floatTensor([], [value]), 'scalar');
  }

  /** A 1-D int64 constant (axes, shapes, pads, slice bounds), shared like `scalar`. */
  int64s(values: readonly number[]): string {
    return this.cached(`i:${values.join(',')}`, () => int64Tensor([values.length], values), 'ints');
  }

  private cached(key: string, make: () => TensorData, hint: string): string {
    let name = this.constants.get(key);
    if (!name) {
      name = this.tensor(make(), hint);
      this.constants.set(key, name);
    }
    return name;
  }

  // ---- shorthands for the ops the rules use most; they read like the ONNX spec ----

  /** ReduceSum over `axes` (opset 13+: axes as an input). */
  reduceSum(x: string, axes: readonly number[], keepdims: boolean, hint?: string): string {
    return this.op('ReduceSum', [x, this.int64s(axes)], { keepdims: { type: 'int', value: keepdims ? 1 : 0 } }, hint);
  }

  /** Reshape to a static target (0 copies the input's dim, -1 infers one dim). */
  reshape(x: string, shape: readonly number[], hint?: string): string {
    return this.op('Reshape', [x, this.int64s(shape)], {}, hint);
  }

  /** Reshape to the run-time shape of value `like`. */
  reshapeLike(x: string, like: string, hint?: string): string {
    return this.op('Reshape', [x, this.op('Shape', [like])], {}, hint);
  }

  transpose(x: string, perm: readonly number[], hint?: string): string {
    return this.op('Transpose', [x], { perm: { type: 'ints', value: [...perm] } }, hint);
  }

  /** float32 zeros with the run-time shape of `like`. */
  zerosLike(like: string): string {
    return this.op('ConstantOfShape', [this.op('Shape', [like])], { value: { type: 'tensor', value: floatTensor([1], [0]) } });
  }
}
