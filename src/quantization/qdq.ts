import { attr, cloneModel, makeNode, nameAllocator, producerMap, pruneUnusedInitializers } from '../graph/graph.js';
import { toFloat32 } from '../graph/tensor.js';
import type { AttributeValue, Graph, Model, Node, TensorData } from '../graph/types.js';
import type { Grid } from './grid.js';
import { keepsGrid, weightLayout, type WeightedLayer } from './plan.js';
import { fitBiasScales, type QuantizedWeights } from './weights.js';
import { upgradeOpset } from '../passes/upgrade-opset.js';
import { roundHalfToEven } from './fixedpoint.js';

/** What the quantizer decided, ready to be written into a graph. */
export interface QuantizationParams {
  /** Activation tensor name → its per-tensor grid. */
  activations: Map<string, Grid>;
  /** Weighted layers with their integer weights (layout [C_out, ...], see weights.ts). */
  weights: { layer: WeightedLayer; quantized: QuantizedWeights }[];
}

/** int4 weights and int16/uint16 activations in QuantizeLinear/DequantizeLinear exist from opset 21 on. */
const OPSET_21 = 21;
/** Per-axis DequantizeLinear (per-channel and WESS weights) exists from opset 13 on. */
const PER_AXIS_OPSET = 13;

/**
 * Builds the QDQ model: every quantized activation becomes QuantizeLinear → DequantizeLinear
 * at its producer; every quantized weight is stored as int8/int4 with a (per-axis)
 * DequantizeLinear in front of its layer, and each bias as int32 at scale s_x·s_w[c]. This
 * is the standard form that onnxruntime fuses into integer kernels, and, run without those
 * fusions, the float simulation of the integer target. WESS weights are per-channel scales
 * s·2^−k[c]. The input model is not modified. `floatNames` maps each quantized activation
 * (and the input of each clamp dropped as redundant) to the name its unquantized value has
 * in the new graph.
 */
export function buildQdqModel(model: Model, params: QuantizationParams): { model: Model; floatNames: Map<string, string> } {
  const out = cloneModel(model);
  const graph = out.graph;
  const wide = params.weights.some((w) => w.quantized.bits === 4) || [...params.activations.values()].some(isWide);
  upgradeOpset(out, wide ? OPSET_21 : PER_AXIS_OPSET);
  const fresh = nameAllocator(graph);
  const newNodes = new Map<Node | 'inputs', Node[]>();
  const after = (anchor: Node | 'inputs', nodes: Node[]) => newNodes.set(anchor, [...(newNodes.get(anchor) ?? []), ...nodes]);
  const producers = producerMap(graph);
  // Layer inputs are looked up by their names before any rewiring below.
  const originalProducers = producerMap(model.graph);
  const nodeByName = new Map(graph.nodes.map((n) => [n.name, n]));
  const floatNames = new Map<string, string>();
  const removed = new Set<Node>();

  for (const [name, p] of params.activations) {
    const signed = p.qmin < 0;
    const zpType = isWide(p) ? (signed ? 'int16' : 'uint16') : signed ? 'int8' : 'uint8';
    const scale = fresh(`${name}_scale`);
    const zp = fresh(`${name}_zero_point`);
    graph.initializers.set(scale, { dataType: 'float32', dims: [], data: Float32Array.of(p.scale) });
    graph.initializers.set(zp, scalarOfType(zpType, p.zeroPoint));
    const quantized = fresh(`${name}_quantized`);
    let producer = producers.get(name);
    let bypassed: string | undefined;
    if (producer && !params.activations.has(producer.inputs[0]!) && clampIsSaturation(producer, p, graph)) {
      // The clamp only repeats QuantizeLinear's saturation: drop it, as the NPU does, and
      // keep the DQ → Conv → Q pattern that onnxruntime fuses into one integer kernel.
      const clamp = producer;
      producer = producers.get(clamp.inputs[0]!)!;
      producer.outputs = producer.outputs.map((o) => (o === clamp.inputs[0] ? name : o));
      producers.set(name, producer);
      removed.add(clamp);
      bypassed = clamp.inputs[0];
    }
    if (producer) {
      // Renaming the float value keeps every reader and graph output pointing at `name`.
      const raw = fresh(`${name}_float`);
      floatNames.set(name, raw);
      if (bypassed) floatNames.set(bypassed, raw);
      producer.outputs = producer.outputs.map((o) => (o === name ? raw : o));
      after(producer, [
        makeNode('QuantizeLinear', [raw, scale, zp], [quantized], {}, fresh(`${name}_QuantizeLinear`)),
        makeNode('DequantizeLinear', [quantized, scale, zp], [name], {}, fresh(`${name}_DequantizeLinear`)),
      ]);
    } else {
      const dq = fresh(`${name}_dequantized`);
      for (const n of graph.nodes) n.inputs = n.inputs.map((i) => (i === name ? dq : i));
      after('inputs', [
        makeNode('QuantizeLinear', [name, scale, zp], [quantized], {}, fresh(`${name}_QuantizeLinear`)),
        makeNode('DequantizeLinear', [quantized, scale, zp], [dq], {}, fresh(`${name}_DequantizeLinear`)),
      ]);
    }
  }

  for (const { layer, quantized: chosen } of params.weights) {
    const node = nodeByName.get(layer.node.name)!;
    const inputScale = gridScale(layer.node.inputs[0]!, params.activations, originalProducers, model.graph);
    const bias = layer.bias && inputScale !== undefined ? toFloat32(graph.initializers.get(layer.bias)!) : undefined;
    const quantized = bias ? fitBiasScales(chosen, bias, inputScale!) : chosen;
    const weight = graph.initializers.get(layer.weight)!;
    const prefix = layer.weight;
    const qName = fresh(`${prefix}_quantized`);
    const sName = fresh(`${prefix}_scale`);
    const zName = fresh(`${prefix}_zero_point`);
    const wName = fresh(`${prefix}_dequantized`);
    const perChannel = quantized.scale.length > 1;
    const qType = quantized.bits === 4 ? 'int4' : 'int8';
    const channels = quantized.scale.length;
    graph.initializers.set(qName, {
      dataType: qType,
      dims: [...weight.dims],
      data: weightLayout(quantized.q, weight.dims, layer),
    });
    graph.initializers.set(sName, { dataType: 'float32', dims: perChannel ? [channels] : [], data: Float32Array.from(quantized.scale) });
    graph.initializers.set(zName, { dataType: qType, dims: perChannel ? [channels] : [], data: new Int8Array(channels) });
    const dqAttrs: Record<string, AttributeValue> = perChannel ? { axis: attr.int(layer.channelAxis) } : {};
    const dqNodes = [makeNode('DequantizeLinear', [qName, sName, zName], [wName], dqAttrs, fresh(`${prefix}_DequantizeLinear`))];
    node.inputs[1] = wName;

    if (layer.bias && bias && inputScale !== undefined) {
      const sBias = new Float32Array(bias.length);
      const qBias = new Int32Array(bias.length);
      for (let c = 0; c < bias.length; c++) {
        sBias[c] = inputScale * quantized.scale[perChannel ? c : 0]!;
        qBias[c] = Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(bias[c]! / sBias[c]!)));
      }
      const bq = fresh(`${layer.bias}_quantized`);
      const bs = fresh(`${layer.bias}_scale`);
      const bz = fresh(`${layer.bias}_zero_point`);
      const bOut = fresh(`${layer.bias}_dequantized`);
      graph.initializers.set(bq, { dataType: 'int32', dims: [bias.length], data: qBias });
      graph.initializers.set(bs, { dataType: 'float32', dims: [bias.length], data: sBias });
      graph.initializers.set(bz, { dataType: 'int32', dims: [bias.length], data: new Int32Array(bias.length) });
      dqNodes.push(makeNode('DequantizeLinear', [bq, bs, bz], [bOut], { axis: attr.int(0) }, fresh(`${layer.bias}_DequantizeLinear`)));
      node.inputs[2] = bOut;
    }
    newNodes.set(node, [...dqNodes, ...(newNodes.get(node) ?? [])]);
  }

  const nodes: Node[] = [...(newNodes.get('inputs') ?? [])];
  for (const n of graph.nodes) {
    if (removed.has(n)) continue;
    const extra = newNodes.get(n) ?? [];
    const before = extra.filter((e) => e.outputs.some((o) => n.inputs.includes(o)));
    nodes.push(...before, n, ...extra.filter((e) => !before.includes(e)));
  }
  graph.nodes = nodes;
  graph.valueInfo.clear();
  pruneUnusedInitializers(graph);
  out.producerName = 'quantflow';
  return { model: out, floatNames };
}

/**
 * True when a Relu/Clip whose output is quantized with `p` changes nothing after
 * quantization: its bounds quantize to the grid's ends (or beyond), so QuantizeLinear's
 * saturation already applies them. Its input must have no other reader and be produced by
 * a node, so that the clamp can be bypassed.
 */
function clampIsSaturation(node: Node, p: Grid, graph: Graph): boolean {
  if (node.opType !== 'Relu' && node.opType !== 'Clip') return false;
  const input = node.inputs[0]!;
  if (graph.inputs.some((v) => v.name === input) || graph.outputs.some((v) => v.name === input)) return false;
  if (graph.nodes.filter((n) => n.inputs.includes(input)).length !== 1) return false;
  const bound = (i: number, fallback: number) => {
    const name = node.inputs[i];
    if (!name) return fallback;
    const t = graph.initializers.get(name);
    return t && t.data.length === 1 ? Number(t.data[0]) : undefined;
  };
  const lo = node.opType === 'Relu' ? 0 : bound(1, -Infinity);
  const hi = node.opType === 'Relu' ? Infinity : bound(2, Infinity);
  if (lo === undefined || hi === undefined) return false;
  const q = (x: number) => roundHalfToEven(x / p.scale) + p.zeroPoint;
  return q(lo) <= p.qmin && q(hi) >= p.qmax;
}

/**
 * The scale of the integer grid a layer input lies on: its own activation scale, or that of
 * the nearest quantized tensor upstream through grid-preserving ops.
 */
function gridScale(name: string, activations: Map<string, Grid>, producers: Map<string, Node>, graph: Graph): number | undefined {
  for (let current: string | undefined = name; current;) {
    const p = activations.get(current);
    if (p) return p.scale;
    const producer = producers.get(current);
    current = producer && keepsGrid(producer, graph) ? producer.inputs[0] : undefined;
  }
  return undefined;
}

/** A grid of more than 8 bits: stored as int16/uint16. */
function isWide(g: Grid): boolean {
  return g.qmax > 255 || g.qmin < -128;
}

/** A scalar zero point of a QuantizeLinear/DequantizeLinear pair's integer type. */
export function scalarOfType(dataType: 'int8' | 'uint8' | 'int16' | 'uint16', value: number): TensorData {
  const data =
    dataType === 'int8'
      ? Int8Array.of(value)
      : dataType === 'uint8'
        ? Uint8Array.of(value)
        : dataType === 'int16'
          ? Int16Array.of(value)
          : Uint16Array.of(value);
  return { dataType, dims: [], data };
}
