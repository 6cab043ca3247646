/**
 * The host tail of a QDQ model (graph/host-tail.ts: post-processing the NPU does not run)
 * as the TFLite operators a converter writes for it, reading the integer network's outputs
 * through DEQUANTIZE where they take float.
 */
import { attrInt, attrString, normalizeAxis } from '../../graph/graph.js';
import type { Model, Node } from '../../graph/types.js';
import { QuantflowError } from '../../util/errors.js';
import { OP, options, type OptionsSpec, type TfliteBuilder } from './flatbuffer.js';
import { tfliteAxis, tfliteShape } from './layout.js';
import { recordedCustomOps, writeCustomOp } from './detection.js';

/**
 * Writes `tail` (in graph order) into `b`; `network(value)` is the TFLite tensor of a value
 * the integer network computes, or undefined. Returns the TFLite tensor of every value the
 * tail computes. A tail node without a TFLite form is a QuantflowError naming it.
 */
export function exportHostTail(
  b: TfliteBuilder,
  model: Model,
  tail: readonly Node[],
  network: (value: string) => number | undefined,
  used: (code: number) => void,
): Map<string, number> {
  const graph = model.graph;
  const values = new Map<string, number>();
  const dequantized = new Map<number, number>();
  const op = (code: number, inputs: number[], outputs: number[], opts?: OptionsSpec) => {
    used(code);
    b.op(code, inputs, outputs, opts);
  };
  const fail = (node: Node, message: string): never => {
    throw new QuantflowError(`host node '${node.name}' (${node.opType}): ${message}; the QDQ model and the NPU package still hold it`);
  };
  /** The static shape of a value at batch 1. */
  const shapeOf = (node: Node, value: string): number[] => {
    const shape = graph.valueInfo.get(value)?.shape ?? graph.outputs.find((o) => o.name === value)?.shape;
    if (!shape) fail(node, `the shape of '${value}' is unknown`);
    const dims = shape!.map((d, i) => (i === 0 ? 1 : d));
    if (dims.some((d) => typeof d !== 'number')) fail(node, `'${value}' has no static shape`);
    return dims as number[];
  };
  /** A value as a tensor: int8 from the network unless `float`, float through one DEQUANTIZE otherwise. */
  const input = (node: Node, value: string, float: boolean): number => {
    const own = values.get(value);
    if (own !== undefined) return own;
    const t = network(value);
    if (t === undefined) fail(node, `its input '${value}' is neither computed by the integer network nor by the host`);
    if (!float) return t!;
    let f = dequantized.get(t!);
    if (f === undefined) {
      const src = b.tensorAt(t!);
      f = b.tensor({ name: `${src.name}_dequantized`, shape: src.shape, type: 'float32' });
      op(OP.DEQUANTIZE, [t!], [f]);
      dequantized.set(t!, f);
    }
    return f;
  };
  const custom = recordedCustomOps(graph, model.metadata);
  const done = new Set<Node>();
  for (const node of tail) {
    if (done.has(node)) continue;
    const detection = custom.find((c) => c.nodes(tail).includes(node));
    if (detection) {
      for (const n of detection.nodes(tail)) done.add(n);
      writeCustomOp(
        b,
        detection,
        (v) => input(node, v, true),
        (v) => shapeOf(node, v),
        values,
        used,
      );
      continue;
    }
    switch (node.opType) {
      case 'ArgMax': {
        const xShape = shapeOf(node, node.inputs[0]!);
        const axis = normalizeAxis(attrInt(node, 'axis', 0), xShape.length, node);
        if (attrInt(node, 'select_last_index', 0)) fail(node, 'TFLite ARG_MAX takes the first index on ties');
        const x = input(node, node.inputs[0]!, false);
        const tAxis = tfliteAxis(axis, xShape.length);
        const reducedShape = tfliteShape(xShape).filter((_, i) => i !== tAxis);
        const keep = attrInt(node, 'keepdims', 1) === 1;
        const yShape = tfliteShape(shapeOf(node, node.outputs[0]!));
        const reduced = b.tensor({ name: keep ? `${node.outputs[0]}_reduced` : node.outputs[0]!, shape: reducedShape, type: 'int64' });
        const axisT = b.constant(`${node.name}_axis`, [1], [tAxis], 'int32');
        op(OP.ARG_MAX, [x, axisT], [reduced], options.argMax('int64'));
        let y = reduced;
        if (keep) {
          y = b.tensor({ name: node.outputs[0]!, shape: yShape, type: 'int64' });
          op(OP.RESHAPE, [reduced, b.constant(`${node.name}_shape`, [yShape.length], yShape, 'int32')], [y], options.reshape(yShape));
        }
        values.set(node.outputs[0]!, y);
        break;
      }
      case 'Resize': {
        const mode = attrString(node, 'mode', 'nearest');
        const coords = attrString(node, 'coordinate_transformation_mode', 'half_pixel');
        const rule = { alignCorners: coords === 'align_corners', halfPixel: coords === 'half_pixel' || coords === 'pytorch_half_pixel' };
        if (!['align_corners', 'half_pixel', 'pytorch_half_pixel', 'asymmetric'].includes(coords))
          fail(node, `coordinate_transformation_mode '${coords}' has no TFLite resize`);
        const yShape = shapeOf(node, node.outputs[0]!);
        const x = input(node, node.inputs[0]!, true);
        const y = b.tensor({ name: node.outputs[0]!, shape: tfliteShape(yShape), type: 'float32' });
        const size = b.constant(`${node.name}_size`, [2], yShape.slice(2), 'int32');
        if (mode === 'linear') op(OP.RESIZE_BILINEAR, [x, size], [y], options.resizeBilinear(rule));
        else if (mode === 'nearest') op(OP.RESIZE_NEAREST_NEIGHBOR, [x, size], [y], options.resizeNearest(rule));
        else fail(node, `mode '${mode}' has no TFLite resize`);
        values.set(node.outputs[0]!, y);
        break;
      }
      default:
        fail(node, 'has no TFLite form in the exporter');
    }
  }
  return values;
}
