import type { Dim, Node, TensorData } from '../graph/types.js';
import type { GraphBuilder } from '../graph/builder.js';
import type { OpType } from '../graph/ops.js';
import type { MarkerOp } from './domain.js';

/** What a gradient rule sees of one forward node while the backward pass is built. */
export interface GradContext {
  readonly node: Node;
  /** Emits backward ops into the gradient graph. */
  readonly b: GraphBuilder;
  readonly opset: number;
  /** Gradient of the loss with respect to the node's (first) output. */
  readonly dy: string;
  /** Whether the loss gradient of input `i` is wanted (it leads back to a `wrt` value). */
  needs(i: number): boolean;
  /** Static shape of a forward value; throws naming the node when the rank is unknown. */
  shape(name: string): Dim[];
  /** Static shape whose every dim is a number; throws naming the node and `what` otherwise. */
  dims(name: string, what: string): number[];
  /** The value of a constant (initializer) input, undefined when it is computed at run time. */
  constant(name: string): TensorData | undefined;
  /** Names saved by the rule's own `forward`, when it has one. */
  readonly saved: Readonly<Record<string, string>>;
  fail(message: string): never;
}

/** What `forward` of a composite rule sees: the node to expand and where to emit. */
export interface ForwardContext {
  readonly node: Node;
  readonly b: GraphBuilder;
  shape(name: string): Dim[];
  fail(message: string): never;
}

/**
 * The gradient of one operator. `backward` returns, index-aligned with `node.inputs`, the
 * name of each input's gradient, and may leave out inputs for which `needs(i)` is false.
 */
export interface GradientRule {
  backward(ctx: GradContext): (string | undefined)[];
  /**
   * For marker nodes that are not ONNX operators (fake quantization): emits their ONNX
   * forward computation (which must define the node's outputs) and returns intermediate
   * values that `backward` reuses as `ctx.saved`. Ordinary operators are copied as they are.
   */
  forward?(ctx: ForwardContext): Record<string, string>;
}

/** Rules of one op family, keyed by ONNX operator type: each has a schema and a shape function. */
export type RuleTable = Readonly<Partial<Record<OpType, GradientRule>>>;

/** Rules of quantflow's marker operators (domain `QUANTFLOW_DOMAIN`), which are not ONNX's. */
export type MarkerRuleTable = Readonly<Record<MarkerOp, GradientRule>>;
