import type { OutputErrorMeter } from '../eval/output-error.js';
import { attrInt, makeNode, nameAllocator, normalizeAxis, producerMap, pruneUnusedInitializers } from '../graph/graph.js';
import { valueShapes } from '../graph/shapes.js';
import type { Model, Node, TensorData } from '../graph/types.js';
import type { AllocationLayer } from './allocation.js';
import { allowedWeightBits } from './profile.js';
import type { Grid } from './grid.js';
import { scalarOfType } from './qdq.js';
import { activationOwners, qdqOfLayers, quantizeLayer, type Calibration, type QuantizedLayer } from './quantize.js';

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
  const { baseError, growth } = await errorGrowths(
    meter,
    withWeightInputs(models[0]!, names),
    highest,
    widths,
    (i, bits) => values[i]!.get(bits as 4 | 8)!,
    options.onProgress,
  );
  const result = names.map((name, i) => ({ name, size: candidates[i]!.size, widths: widths[i]!, errorGrowth: growth[i]! }));
  return { baseError, layers: result, quantized, seconds: (performance.now() - t0) / 1000 };
}

/**
 * After QFT, for every layer below its highest allowed weight width, how much the output error
 * falls when that layer alone is raised to its next width, the others as finetuned. `cal`
 * carries the finetuned model (trained float weights and biases) and activation grids, and no
 * bias-correction means (QFT trained the biases); `current` the finetuned layers. A raised
 * layer is its trained float weights quantized at the wider width. In the result, a layer
 * that may rise has widths [current, next] and the error it keeps at the current one as its
 * growth there, which is what `allocateGreedy` raises by; `errorBefore` is the finetuned
 * model's measured error and `baseError` the error predicted with every such layer raised.
 */
export async function raiseSensitivity(
  cal: Calibration,
  current: QuantizedLayer[],
  meter: OutputErrorMeter,
  options: { onProgress?: (done: number, total: number) => void },
): Promise<{ errorBefore: number; baseError: number; layers: AllocationLayer[]; raised: Map<number, QuantizedLayer>; seconds: number }> {
  const t0 = performance.now();
  const candidates = allocationLayers(cal);
  const raised = new Map<number, QuantizedLayer>();
  current.forEach(({ quantized }, i) => {
    const next = candidates[i]!.widths.find((bits) => bits > quantized.bits);
    if (next !== undefined) raised.set(i, quantizeLayer(cal, i, { ...cal.specs[i]!, bits: next }));
  });
  const names = candidates.map((c) => c.name);
  const now = qdqOfLayers(cal, current);
  const up = qdqOfLayers(
    cal,
    current.map((l, i) => raised.get(i) ?? l),
  );
  const base = Object.assign({}, ...names.map((name) => layerValues(now, name))) as Record<string, TensorData>;
  // Each rising layer is measured at its next width; `base` holds every layer at its current one.
  const widths = current.map(({ quantized }, i) => (raised.has(i) ? [raised.get(i)!.quantized.bits, quantized.bits] : [quantized.bits]));
  const { baseError, growth } = await errorGrowths(
    meter,
    withWeightInputs(now, names),
    base,
    widths,
    (i) => layerValues(up, names[i]!),
    options.onProgress,
  );
  const layers = current.map(({ quantized }, i) => ({
    name: names[i]!,
    size: candidates[i]!.size,
    widths: raised.has(i) ? [quantized.bits, raised.get(i)!.quantized.bits] : [quantized.bits],
    errorGrowth: raised.has(i) ? [-growth[i]![0]!, 0] : [0],
  }));
  // As `allocateGreedy` reads it: the error with every rising layer raised, by adding up the growths.
  const raisedError = baseError - layers.reduce((sum, l) => sum + l.errorGrowth[0]!, 0);
  return { errorBefore: baseError, baseError: raisedError, layers, raised, seconds: (performance.now() - t0) / 1000 };
}

/**
 * The output error of `model` fed `base`, and per entry the change of that error at each of
 * its `widths` but the last (then 0), which `base` holds, with only that entry's `feeds`
 * changed: one session for every measurement.
 */
async function errorGrowths(
  meter: OutputErrorMeter,
  model: Model,
  base: Record<string, TensorData>,
  widths: number[][],
  feeds: (index: number, bits: number) => Record<string, TensorData>,
  onProgress?: (done: number, total: number) => void,
): Promise<{ baseError: number; growth: number[][] }> {
  const session = await meter.open(model);
  try {
    const baseError = await session.measure(base);
    const total = widths.reduce((s, w) => s + w.length - 1, 0);
    let done = 0;
    const growth: number[][] = [];
    for (const [i, w] of widths.entries()) {
      const row: number[] = [];
      for (const bits of w.slice(0, -1)) {
        row.push((await session.measure({ ...base, ...feeds(i, bits) })) - baseError);
        onProgress?.(++done, total);
      }
      growth.push([...row, 0]);
    }
    return { baseError, growth };
  } finally {
    await session.release();
  }
}

/** Per-activation sensitivity of the model's output error to its grid width. */
export interface ActivationSensitivity {
  /** Output error with every activation at its highest allowed width. */
  baseError: number;
  /** One entry per planned activation, named by the layer an override selects it with (`activationOwners`). */
  layers: AllocationLayer[];
  /** The activation tensor of each entry of `layers`. */
  tensors: string[];
  /**
   * The same activations measured from the other end: every one at its lowest width, each
   * raised alone to its highest; a growth is the error that raise removes (two widths at most),
   * and `baseError` what would remain with every raise added up. Where the errors of several
   * activations at 8 bits do not add up, the two ends rank them differently.
   */
  fromLowest: { baseError: number; layers: AllocationLayer[] };
  seconds: number;
}

/**
 * For every activation, how much the output error grows when it alone drops from its highest
 * allowed grid width to each lower one, with the weights of `layers` (and, in `fromLowest`,
 * how much it falls when it alone rises from the lowest). One session serves every
 * measurement: each activation's QuantizeLinear/DequantizeLinear keeps the widest type and
 * takes its scale and zero point as inputs, and a Clip after it, whose bounds are inputs too,
 * saturates at the narrower grid's ends, which is the narrower QuantizeLinear exactly. Biases
 * stay on the scale of the widest input grid (a difference of one rounding of the bias).
 */
export async function activationSensitivity(
  cal: Calibration,
  layers: QuantizedLayer[],
  meter: OutputErrorMeter,
  options: { onProgress?: (done: number, total: number) => void },
): Promise<ActivationSensitivity> {
  const t0 = performance.now();
  const candidates = activationCandidates(cal);
  const tensors = candidates.map((c) => c.tensor);
  const widths = candidates.map((c) => c.widths);
  const highest = tensors.map((a, i) => cal.activationGrids.get(a)!.get(widths[i]!.at(-1)!)!);
  const qdq = qdqOfLayers({ ...cal, activations: new Map(tensors.map((a, i) => [a, highest[i]!])) }, layers);
  const free = widths.flatMap((w, i) => (w.length > 1 ? [i] : []));
  const { model, feedsOf } = withGridInputs(
    qdq,
    free.map((i) => tensors[i]!),
  );
  const gridFeeds = (i: number, bits: number) =>
    feedsOf(tensors[i]!, cal.activationGrids.get(tensors[i]!)!.get(bits as 8 | 16)!, highest[i]!);
  const allAt = (end: (w: (8 | 16)[]) => number) =>
    Object.assign({}, ...free.map((i) => gridFeeds(i, end(widths[i]!)))) as Record<string, TensorData>;
  const base = allAt((w) => w.at(-1)!);
  const total = 2 * widths.reduce((n, w) => n + w.length - 1, 0);
  const { baseError, growth } = await errorGrowths(meter, model, base, widths, gridFeeds, (done) => options.onProgress?.(done, total));
  const result = candidates.map((c, i) => ({ name: c.name, size: c.size, widths: c.widths, errorGrowth: growth[i]! }));
  // From the other end: every activation at its lowest width, each raised alone to its highest.
  const lowest = allAt((w) => w[0]!);
  const up = await errorGrowths(
    meter,
    model,
    lowest,
    widths.map((w) => (w.length > 1 ? [w.at(-1)!, w[0]!] : w)),
    gridFeeds,
    (done) => options.onProgress?.(total / 2 + done, total),
  );
  const gains = up.growth.map((g) => (g.length > 1 ? -g[0]! : 0));
  const fromLowest = {
    baseError: up.baseError - gains.reduce((sum, g) => sum + g, 0),
    layers: candidates.map((c, i) => ({
      name: c.name,
      size: c.size,
      widths: c.widths,
      errorGrowth: c.widths.length > 1 ? [gains[i]!, 0] : [0],
    })),
  };
  return { baseError, layers: result, tensors, fromLowest, seconds: (performance.now() - t0) / 1000 };
}

/**
 * Each activation's tensor, the layer name an override selects it by, its elements per image
 * and its allowed widths: what an activation budget is checked against before anything is
 * measured.
 */
export function activationCandidates(cal: Calibration): { name: string; tensor: string; size: number; widths: (8 | 16)[] }[] {
  const owners = activationOwners(cal.plan, cal.model.graph);
  const shapes = valueShapes(cal.model);
  return [...cal.activationGrids].map(([tensor, grids]) => ({
    name: owners.get(tensor)!.names[0]!,
    tensor,
    // Per image: the batch axis and any other symbolic axis count once.
    size: (shapes.get(tensor)?.shape ?? []).slice(1).reduce<number>((p, d) => p * (typeof d === 'number' ? d : 1), 1),
    widths: [...grids.keys()].sort((x, y) => x - y),
  }));
}

/**
 * `qdq` with the scale and zero point of each of `tensors`' QuantizeLinear/DequantizeLinear
 * pair made inputs, and a Clip with input bounds after the DequantizeLinear; `feedsOf` gives
 * the feeds that put a tensor on `grid` through a pair of the type of `widest`.
 */
function withGridInputs(
  qdq: Model,
  tensors: string[],
): { model: Model; feedsOf(tensor: string, grid: Grid, widest: Grid): Record<string, TensorData> } {
  const graph = { ...qdq.graph, nodes: [...qdq.graph.nodes], inputs: [...qdq.graph.inputs], initializers: new Map(qdq.graph.initializers) };
  const fresh = nameAllocator(graph);
  const names = new Map<
    string,
    { scale: string; zeroPoint: string; zeroType: 'int8' | 'uint8' | 'int16' | 'uint16'; lo: string; hi: string }
  >();
  for (const a of tensors) {
    // The pair's DequantizeLinear writes `a` at a producer; at a model input, its QuantizeLinear reads `a`.
    const byOutput = graph.nodes.find((n) => n.opType === 'DequantizeLinear' && n.outputs[0] === a);
    const quantizer = byOutput
      ? graph.nodes.find((n) => n.opType === 'QuantizeLinear' && n.outputs[0] === byOutput.inputs[0])
      : graph.nodes.find((n) => n.opType === 'QuantizeLinear' && n.inputs[0] === a);
    const dq = byOutput ?? graph.nodes.find((n) => n.opType === 'DequantizeLinear' && n.inputs[0] === quantizer?.outputs[0]);
    if (!quantizer || !dq) throw new Error(`no QuantizeLinear/DequantizeLinear pair for activation '${a}'`);
    const [scale, zeroPoint] = [quantizer.inputs[1]!, quantizer.inputs[2]!];
    const zeroType = graph.initializers.get(zeroPoint)!.dataType as 'int8' | 'uint8' | 'int16' | 'uint16';
    graph.initializers.delete(scale);
    graph.initializers.delete(zeroPoint);
    const lo = fresh(`${a}_clip_min`);
    const hi = fresh(`${a}_clip_max`);
    graph.inputs.push(
      { name: scale, dataType: 'float32', shape: [] },
      { name: zeroPoint, dataType: zeroType, shape: [] },
      { name: lo, dataType: 'float32', shape: [] },
      { name: hi, dataType: 'float32', shape: [] },
    );
    const unclipped = fresh(`${dq.outputs[0]!}_unclipped`);
    const clip = makeNode('Clip', [unclipped, lo, hi], [dq.outputs[0]!], {}, fresh(`${a}_grid_clip`));
    graph.nodes.splice(graph.nodes.indexOf(dq), 1, { ...dq, outputs: [unclipped] }, clip);
    names.set(a, { scale, zeroPoint, zeroType, lo, hi });
  }
  const scalar = (value: number): TensorData => ({ dataType: 'float32', dims: [], data: Float32Array.of(value) });
  return {
    model: { ...qdq, graph },
    feedsOf(tensor, grid, widest) {
      const n = names.get(tensor)!;
      return {
        [n.scale]: scalar(grid.scale),
        [n.zeroPoint]: scalarOfType(n.zeroType, grid.zeroPoint),
        // (q − z)·s in float32, as DequantizeLinear computes the grid's ends.
        [n.lo]: scalar(Math.fround((Math.max(grid.qmin, widest.qmin) - grid.zeroPoint) * grid.scale)),
        [n.hi]: scalar(Math.fround((Math.min(grid.qmax, widest.qmax) - grid.zeroPoint) * grid.scale)),
      };
    },
  };
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
