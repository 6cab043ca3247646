/**
 * The host tail of a QDQ model (graph/host-tail.ts: post-processing the NPU does not run)
 * as the TFLite operators a converter writes for it, reading the integer network's outputs
 * through DEQUANTIZE where they take float.
 *
 * A 4-D value of the integer network is stored NHWC (layout.ts). A host value is stored
 * either so or in its ONNX order: a detector's tail transposes NCHW maps to NHWC and reshapes
 * them into anchor lists, which in ONNX order is one RESHAPE where NHWC storage would need a
 * TRANSPOSE before and after it. Each op takes its inputs in the order it needs and the
 * conversions happen only where the orders differ.
 */
import { attrInt, attrInts, attrString, normalizeAxis } from '../../graph/graph.js';
import { SHAPE_ONLY_OPS } from '../../graph/ops.js';
import { valueShapes } from '../../graph/shapes.js';
import type { Model, Node } from '../../graph/types.js';
import { QuantflowError } from '../../util/errors.js';
import { OP, options, type OptionsSpec, type TfliteBuilder } from './flatbuffer.js';
import { NCHW_TO_TFLITE, NHWC_AXES, sameOrder, tfliteAxis, tfliteShape } from './layout.js';
import { recordedCustomOps, writeCustomOp } from './detection.js';

/** How a host value's tensor lists its elements: NHWC for a 4-D value (the network's convention) or ONNX order. */
type Order = 'nhwc' | 'onnx';

interface HostValue {
  tensor: number;
  order: Order;
}

/**
 * Writes `tail` (in graph order) into `b`; `network(value)` is the TFLite tensor of a value
 * the integer network computes, or undefined. Returns the TFLite tensor of every value the
 * tail computes, 4-D values in NHWC as the graph outputs want them. A tail node without a
 * TFLite form is a QuantflowError naming it.
 */
export function exportHostTail(
  b: TfliteBuilder,
  model: Model,
  tail: readonly Node[],
  network: (value: string) => number | undefined,
): Map<string, number> {
  const graph = model.graph;
  const shapes = valueShapes(model);
  const values = new Map<string, HostValue>();
  const dequantized = new Map<number, number>();
  const op = (code: number, inputs: number[], outputs: number[], opts?: OptionsSpec) => void b.op(code, inputs, outputs, opts);
  const fail = (node: Node, message: string): never => {
    throw new QuantflowError(`host node '${node.name}' (${node.opType}): ${message}; the QDQ model and the NPU package still hold it`);
  };
  /** The static shape of a value at batch 1. */
  const shapeOf = (node: Node, value: string): number[] => {
    const shape = shapes.get(value)?.shape ?? graph.outputs.find((o) => o.name === value)?.shape;
    if (!shape) fail(node, `the shape of '${value}' is unknown`);
    const dims = shape!.map((d, i) => (i === 0 ? 1 : d));
    if (dims.some((d) => typeof d !== 'number')) fail(node, `'${value}' has no static shape`);
    return dims as number[];
  };
  const int32s = (name: string, v: number[]) => b.constant(name, [v.length], v, 'int32');
  /** A value as a tensor: int8 from the network unless `float`, float through one DEQUANTIZE otherwise. */
  const source = (node: Node, value: string, float: boolean): HostValue => {
    const own = values.get(value);
    if (own) return own;
    const t = network(value);
    if (t === undefined) fail(node, `its input '${value}' is neither computed by the integer network nor by the host`);
    if (!float) return { tensor: t!, order: 'nhwc' };
    let f = dequantized.get(t!);
    if (f === undefined) {
      const src = b.tensorAt(t!);
      f = b.tensor({ name: `${src.name}_dequantized`, shape: src.shape, type: 'float32' });
      op(OP.DEQUANTIZE, [t!], [f]);
      dequantized.set(t!, f);
    }
    return { tensor: f, order: 'nhwc' };
  };
  /** Whether the two orders of a value of this ONNX shape list its elements differently. */
  const differs = (shape: number[]) => shape.length === 4 && !sameOrder(shape);
  const converted = new Map<string, number>();
  /** `value` stored in `order`: a TRANSPOSE (once) where its tensor lists the elements otherwise, named `name` if given. */
  const inOrder = (node: Node, value: string, order: Order, float = true, name?: string): number => {
    const v = source(node, value, float);
    const shape = shapeOf(node, value);
    if (v.order === order || !differs(shape)) return v.tensor;
    const key = `${order}:${value}`;
    const known = converted.get(key);
    if (known !== undefined) return known;
    const src = b.tensorAt(v.tensor);
    const t = b.tensor({ ...src, name: name ?? `${src.name}_${order}`, shape: order === 'nhwc' ? tfliteShape(shape) : shape });
    op(OP.TRANSPOSE, [v.tensor, int32s(`${src.name}_${order}_perm`, order === 'nhwc' ? [...NHWC_AXES] : [...NCHW_TO_TFLITE])], [t]);
    converted.set(key, t);
    return t;
  };
  /** A float output tensor of `node` listed in `order`. */
  const output = (node: Node, order: Order, type: 'float32' | 'int64' = 'float32', k = 0): number => {
    const name = node.outputs[k]!;
    const shape = shapeOf(node, name);
    const tensor = b.tensor({ name, shape: order === 'nhwc' ? tfliteShape(shape) : shape, type });
    values.set(name, { tensor, order });
    return tensor;
  };

  const custom = recordedCustomOps(graph, model.metadata).map((c) => ({ ...c, nodes: new Set(c.nodes(tail)) }));
  const done = new Set<Node>();
  for (const node of tail) {
    if (done.has(node)) continue;
    const detection = custom.find((c) => c.nodes.has(node));
    if (detection) {
      for (const n of detection.nodes) done.add(n);
      const outputs = writeCustomOp(
        b,
        detection.op,
        (v) => inOrder(node, v, 'onnx'),
        (v) => shapeOf(node, v),
      );
      detection.op.outputs.forEach((v, k) => values.set(v, { tensor: outputs[k]!, order: 'onnx' }));
      continue;
    }
    const x = node.inputs[0]!;
    const rank = () => shapeOf(node, x).length;
    switch (node.opType) {
      case 'ArgMax': {
        const xShape = shapeOf(node, x);
        const axis = normalizeAxis(attrInt(node, 'axis', 0), xShape.length, node);
        if (attrInt(node, 'select_last_index', 0)) fail(node, 'TFLite ARG_MAX takes the first index on ties');
        // Integer class scores are compared as they are: the network's int8 tensor, no DEQUANTIZE.
        const input = inOrder(node, x, 'nhwc', false);
        const tAxis = tfliteAxis(axis, xShape.length);
        const keep = attrInt(node, 'keepdims', 1) === 1;
        const reducedShape = tfliteShape(xShape).filter((_, i) => i !== tAxis);
        const reduced = keep
          ? b.tensor({ name: `${node.outputs[0]}_reduced`, shape: reducedShape, type: 'int64' })
          : b.tensor({ name: node.outputs[0]!, shape: reducedShape, type: 'int64' });
        op(OP.ARG_MAX, [input, b.constant(`${node.name}_axis`, [1], [tAxis], 'int32')], [reduced], options.argMax('int64'));
        if (!keep) {
          values.set(node.outputs[0]!, { tensor: reduced, order: 'nhwc' });
          break;
        }
        const y = output(node, 'nhwc', 'int64');
        const yShape = b.tensorAt(y).shape;
        op(OP.RESHAPE, [reduced, int32s(`${node.name}_shape`, yShape)], [y], options.reshape(yShape));
        break;
      }
      case 'Resize': {
        const mode = attrString(node, 'mode', 'nearest');
        const coords = attrString(node, 'coordinate_transformation_mode', 'half_pixel');
        const rule = { alignCorners: coords === 'align_corners', halfPixel: coords === 'half_pixel' || coords === 'pytorch_half_pixel' };
        if (!['align_corners', 'half_pixel', 'pytorch_half_pixel', 'asymmetric'].includes(coords))
          fail(node, `coordinate_transformation_mode '${coords}' has no TFLite resize`);
        if (mode !== 'linear' && mode !== 'nearest') fail(node, `mode '${mode}' has no TFLite resize`);
        const input = inOrder(node, x, 'nhwc');
        const y = output(node, 'nhwc');
        const size = b.constant(`${node.name}_size`, [2], shapeOf(node, node.outputs[0]!).slice(2), 'int32');
        if (mode === 'linear') op(OP.RESIZE_BILINEAR, [input, size], [y], options.resizeBilinear(rule));
        else op(OP.RESIZE_NEAREST_NEIGHBOR, [input, size], [y], options.resizeNearest(rule));
        break;
      }
      case 'Transpose': {
        const v = source(node, x, true);
        const r = rank();
        const perm = attrInts(node, 'perm') ?? Array.from({ length: r }, (_, i) => r - 1 - i);
        // The permutation from the stored input to the output in ONNX order.
        const stored = v.order === 'nhwc' && r === 4 ? perm.map((a) => NCHW_TO_TFLITE[a]!) : perm;
        if (stored.every((a, i) => a === i)) {
          values.set(node.outputs[0]!, { tensor: v.tensor, order: 'onnx' });
          break;
        }
        op(OP.TRANSPOSE, [v.tensor, int32s(`${node.name}_perm`, stored)], [output(node, 'onnx')]);
        break;
      }
      case 'Concat': {
        const r = rank();
        const axis = normalizeAxis(attrInt(node, 'axis', 0), r, node);
        const order: Order = node.inputs.every((i) => source(node, i, true).order === 'nhwc') ? 'nhwc' : 'onnx';
        const inputs = node.inputs.map((i) => inOrder(node, i, order));
        const y = output(node, order);
        op(OP.CONCATENATION, inputs, [y], options.concatenation(order === 'nhwc' ? tfliteAxis(axis, r) : axis));
        break;
      }
      case 'Sigmoid': {
        const v = source(node, x, true);
        op(OP.LOGISTIC, [v.tensor], [output(node, v.order)]);
        break;
      }
      default: {
        if (!SHAPE_ONLY_OPS.has(node.opType)) fail(node, 'has no TFLite form in the exporter');
        const input = inOrder(node, x, 'onnx');
        const y = output(node, 'onnx');
        const shape = b.tensorAt(y).shape;
        op(OP.RESHAPE, [input, int32s(`${node.name}_shape`, shape)], [y], options.reshape(shape));
      }
    }
  }
  // Graph outputs keep the network's convention (a 4-D value in NHWC) and their ONNX names.
  const tensors = new Map<string, number>();
  for (const o of graph.outputs) {
    const v = values.get(o.name);
    if (!v) continue;
    const node = tail.find((n) => n.outputs.includes(o.name))!;
    if (v.order === 'onnx' && differs(shapeOf(node, o.name))) b.tensorAt(v.tensor).name = `${o.name}_onnx`;
    tensors.set(o.name, inOrder(node, o.name, 'nhwc', true, o.name));
  }
  return tensors;
}
