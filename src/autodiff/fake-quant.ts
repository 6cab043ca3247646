/**
 * Fake quantization: y = s·(clamp(round(x/s) + z, qmin, qmax) − z) with straight-through
 * rounding and a learnable scale (LSQ).
 *
 * `fakeQuant` records the operation as one marker node, `FakeQuant` in the `com.quantflow`
 * domain, with inputs (x, scale) and attributes qmin, qmax, zero_point, axis (per-channel
 * scales only) and grad_scale. The marker keeps the parameters of the quantizer in one
 * place, where passes can find and rewrite them; it is not an ONNX operator, so
 * `buildGradientGraph` replaces it by its forward ops plus its gradient rule
 * (rules/quantize.ts), and `expandFakeQuant` replaces it by its forward ops for evaluation.
 */
import { attr, attrInt, nodeError, normalizeAxis } from '../graph/graph.js';
import type { Model, Node } from '../graph/types.js';
import { QuantflowError } from '../util/errors.js';
import { GraphBuilder } from '../graph/builder.js';
import { QUANTFLOW_DOMAIN } from './domain.js';
import { staticShapes } from './shapes.js';

export { QUANTFLOW_DOMAIN };

export interface FakeQuantOptions {
  /** Integer range of the quantized values, e.g. -8..7 for int4, 0..255 for uint8. */
  qmin: number;
  qmax: number;
  /** Integer zero point inside [qmin, qmax] (default 0); fixed, not learned. */
  zeroPoint?: number;
  /** Axis of `x` along which `scale` holds one value per channel; per-tensor when absent. */
  perChannelAxis?: number;
  /**
   * Factor on the scale's gradient (default 1). LSQ uses `lsqGradScale(N, qmax)` so that
   * step sizes learn at the pace of the weights.
   */
  gradScale?: number;
}

/** LSQ's gradient scale 1/√(N·qmax) for N elements sharing one scale. */
export function lsqGradScale(elementsPerScale: number, qmax: number): number {
  return 1 / Math.sqrt(elementsPerScale * qmax);
}

/** True for a fake-quantization marker node. */
export function isFakeQuant(node: Node): boolean {
  return node.domain === QUANTFLOW_DOMAIN && node.opType === 'FakeQuant';
}

/**
 * Appends a fake quantization of `x` with step size `scale` (a positive scalar, or a 1-D
 * tensor for per-channel scales) and returns the output's name.
 */
export function fakeQuant(b: GraphBuilder, x: string, scale: string, options: FakeQuantOptions): string {
  const { qmin, qmax, zeroPoint = 0, perChannelAxis, gradScale = 1 } = options;
  if (![qmin, qmax, zeroPoint].every(Number.isInteger) || qmin >= qmax || zeroPoint < qmin || zeroPoint > qmax)
    throw new QuantflowError(
      `fake quantization of '${x}': need integers qmin < qmax with qmin ≤ zero point ≤ qmax, got ${qmin}, ${qmax}, ${zeroPoint}`,
    );
  b.model.extraOpsets = { ...b.model.extraOpsets, [QUANTFLOW_DOMAIN]: 1 };
  const attributes = {
    qmin: attr.int(qmin),
    qmax: attr.int(qmax),
    zero_point: attr.int(zeroPoint),
    grad_scale: attr.float(gradScale),
    ...(perChannelAxis === undefined ? {} : { axis: attr.int(perChannelAxis) }),
  };
  return b.nodeN('FakeQuant', [x, scale], attributes, 1, `${x}_fq`, QUANTFLOW_DOMAIN)[0]!;
}

/** Intermediates of the forward expansion that the gradient reuses. */
export type FakeQuantValues = {
  /** x/s */
  t: string;
  /** clamp(x/s, qmin − z, qmax − z) */
  clipped: string;
  /** round(clipped) = the quantized value minus the zero point */
  rounded: string;
};

/**
 * Emits the marker's forward ops, defining its output: x/s → Clip → Round → ·s. Clipping
 * before rounding is exact for integer bounds and leaves x/s and its clamp side by side,
 * so the backward pass gets its straight-through mask from one comparison.
 */
export function emitFakeQuant(b: GraphBuilder, node: Node, rank: number | undefined): FakeQuantValues {
  const [x, scale] = node.inputs as [string, string];
  const z = attrInt(node, 'zero_point', 0);
  let s = scale;
  if (node.attributes.axis) {
    if (rank === undefined) throw nodeError(node, `per-channel scales need the rank of '${x}'`);
    const axis = normalizeAxis(attrInt(node, 'axis', 0), rank, node);
    // One scale per channel broadcasts against x when the trailing axes are 1.
    s = b.reshape(scale, [-1, ...new Array<number>(rank - 1 - axis).fill(1)]);
  }
  const t = b.op('Div', [x, s], {}, `${node.name}_t`);
  if (!node.attributes.qmin || !node.attributes.qmax) throw nodeError(node, 'attributes qmin and qmax are required');
  const bounds = [b.scalar(attrInt(node, 'qmin', 0) - z), b.scalar(attrInt(node, 'qmax', 0) - z)];
  const clipped = b.op('Clip', [t, ...bounds], {}, `${node.name}_clip`);
  const rounded = b.op('Round', [clipped], {}, `${node.name}_round`);
  b.nodeN('Mul', [rounded, s], {}, [node.outputs[0]!]);
  return { t, clipped, rounded };
}

/** Replaces every fake-quantization marker of `model` by its ONNX forward ops, in place. */
export function expandFakeQuant(model: Model): void {
  const shapes = staticShapes(model);
  const b = new GraphBuilder(model);
  const nodes = model.graph.nodes;
  model.graph.nodes = [];
  for (const node of nodes) {
    if (isFakeQuant(node)) emitFakeQuant(b, node, shapes.get(node.inputs[0]!)?.shape?.length);
    else model.graph.nodes.push(node);
  }
  const opsets = { ...model.extraOpsets };
  delete opsets[QUANTFLOW_DOMAIN];
  model.extraOpsets = opsets;
}
