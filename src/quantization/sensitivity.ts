import type { OutputErrorMeter } from '../eval/output-error.js';
import { attrInt, normalizeAxis, producerMap, pruneUnusedInitializers } from '../graph/graph.js';
import type { Model, Node, TensorData } from '../graph/types.js';
import type { AllocationLayer } from './allocation.js';
import { allowedWeightBits } from './profile.js';
import { qdqOfLayers, quantizeLayer, type Calibration, type QuantizedLayer } from './quantize.js';

/** Per-layer sensitivity of the model's output error to its weight width. */
export interface WeightSensitivity {
  /** Output error with every layer at its highest allowed width. */
  baseError: number;
  layers: AllocationLayer[];
  /** Each layer quantized at each allowed width, by layer index then width: what an allocation picks from. */
  quantized: Map<number, QuantizedLayer>[];
  seconds: number;
}

/**
 * For every layer, how much the output error (`meter`: KL for a classifier, normalized L2
 * otherwise, on images held apart from calibration) grows when that layer alone drops from
 * its highest allowed weight width to each lower one. Runs in the fake-quant simulation on
 * the calibration's activation grids and statistics: each layer is quantized once per width,
 * and one session, whose weights and biases are inputs, runs every mixed model by swapping
 * one layer's dequantized values.
 */
export async function weightSensitivity(
  cal: Calibration,
  meter: OutputErrorMeter,
  options: { onProgress?: (done: number, total: number) => void },
): Promise<WeightSensitivity> {
  const t0 = performance.now();
  const layers = cal.plan.layers;
  const candidates = allocationLayers(cal);
  const widths = candidates.map((l) => l.widths);
  const quantized = layers.map((_, i) => new Map(widths[i]!.map((bits) => [bits, quantizeLayer(cal, i, { ...cal.specs[i]!, bits })])));
  // Model k has every layer at its k-th width (or its last): each layer's values at each width come from one of them.
  const levels = Math.max(...widths.map((w) => w.length));
  const models = Array.from({ length: levels }, (_, k) =>
    qdqOfLayers(
      cal,
      quantized.map((q, i) => q.get(widths[i]![Math.min(k, widths[i]!.length - 1)]!)!),
    ),
  );
  const names = layers.map((l) => l.node.name);
  const values = widths.map((w, i) => new Map(w.map((bits, k) => [bits, layerValues(models[k]!, names[i]!)])));
  const highest = Object.assign({}, ...values.map((v, i) => v.get(widths[i]!.at(-1)!)!)) as Record<string, TensorData>;
  const session = await meter.open(withWeightInputs(models[0]!, names));
  try {
    const baseError = await session.measure(highest);
    const total = widths.reduce((s, w) => s + w.length - 1, 0);
    let done = 0;
    const result: AllocationLayer[] = [];
    for (const [i, name] of names.entries()) {
      const growth: number[] = [];
      for (const bits of widths[i]!.slice(0, -1)) {
        growth.push((await session.measure({ ...highest, ...values[i]!.get(bits)! })) - baseError);
        options.onProgress?.(++done, total);
      }
      result.push({ name, size: candidates[i]!.size, widths: widths[i]!, errorGrowth: [...growth, 0] });
    }
    return { baseError, layers: result, quantized, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await session.release();
  }
}

/** Each layer's name, weight count and allowed widths: what a budget is checked against before anything is measured. */
export function allocationLayers(cal: Calibration): { name: string; size: number; widths: (4 | 8)[] }[] {
  const layers = cal.plan.layers;
  return layers.map((l, i) => ({
    name: l.node.name,
    size: weightCount(cal, i),
    widths: allowedWeightBits(cal.profile, l.node.name, { isFirst: i === 0, isLast: i === layers.length - 1 }),
  }));
}

function weightCount(cal: Calibration, index: number): number {
  return cal.model.graph.initializers.get(cal.plan.layers[index]!.weight)!.dims.reduce((p, d) => p * d, 1);
}

/** The DequantizeLinear nodes that feed a layer's weights and bias in a QDQ model. */
function layerDequantizers(qdq: Model, layer: string, producers = producerMap(qdq.graph)): Node[] {
  const node = qdq.graph.nodes.find((n) => n.name === layer)!;
  return node.inputs
    .slice(1)
    .map((v) => producers.get(v))
    .filter((p): p is Node => p?.opType === 'DequantizeLinear');
}

/** `qdq` with the DequantizeLinear outputs of the layers' weights and biases as float inputs. */
function withWeightInputs(qdq: Model, layers: string[]): Model {
  const producers = producerMap(qdq.graph);
  const removed = new Set(layers.flatMap((l) => layerDequantizers(qdq, l, producers)));
  const inputs = [...removed].map((dq) => ({
    name: dq.outputs[0]!,
    dataType: 'float32' as const,
    shape: [...qdq.graph.initializers.get(dq.inputs[0]!)!.dims],
  }));
  const graph = {
    ...qdq.graph,
    nodes: qdq.graph.nodes.filter((n) => !removed.has(n)),
    inputs: [...qdq.graph.inputs, ...inputs],
    initializers: new Map(qdq.graph.initializers),
  };
  pruneUnusedInitializers(graph);
  return { ...qdq, graph };
}

/** A layer's dequantized weights and bias in `qdq`, by the names `withWeightInputs` makes inputs of. */
function layerValues(qdq: Model, layer: string): Record<string, TensorData> {
  return Object.fromEntries(layerDequantizers(qdq, layer).map((dq) => [dq.outputs[0]!, dequantize(qdq, dq)]));
}

/** What a DequantizeLinear of constant inputs computes: (q − zero point) · scale, per tensor or along its axis, in float32. */
function dequantize(qdq: Model, dq: Node): TensorData {
  const [q, scale, zero] = dq.inputs.map((name) => (name ? qdq.graph.initializers.get(name) : undefined));
  const dims = q!.dims;
  const axis = normalizeAxis(attrInt(dq, 'axis', 1), dims.length, dq);
  const perAxis = scale!.dims.length === 1;
  const inner = perAxis ? dims.slice(axis + 1).reduce((p, d) => p * d, 1) : 1;
  const channels = perAxis ? dims[axis]! : 1;
  const out = new Float32Array(q!.data.length);
  for (let i = 0; i < out.length; i++) {
    const c = perAxis ? Math.floor(i / inner) % channels : 0;
    const zp = zero ? Number(zero.data[c]) : 0;
    out[i] = Math.fround(Math.fround(Number(q!.data[i]) - zp) * Number(scale!.data[c]));
  }
  return { dataType: 'float32', dims: [...dims], data: out };
}
