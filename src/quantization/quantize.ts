import * as ort from 'onnxruntime-node';
import type { Dataset } from '../data/dataset.js';
import { imageBatches, imageFeeds, imageInputGeometry } from '../data/batches.js';
import { preprocessMetadata, resolvePreprocess, type PreprocessChoice, type PreprocessRequest } from '../data/preprocess.js';
import type { Graph, Model, Node, TensorData } from '../graph/types.js';
import { cloneModel, consumerMap, producerMap } from '../graph/graph.js';
import { toFloat32 } from '../graph/tensor.js';
import { buildQdqModel, type QuantizationParams } from './qdq.js';
import { openSession, runSession } from '../runtime/session.js';
import { QuantflowError } from '../util/errors.js';
import { activationQuantParams, HistogramObserver, MinMaxObserver, type Observer, type RangeMethod } from './calibration.js';
import { outputChannelsFirst, planQuantization, type QuantizationPlan, type WeightedLayer } from './plan.js';
import {
  allowedActivationBits,
  allowedWeightBits,
  resolveActivationBits,
  resolveLayer,
  type LayerWeights,
  type TargetProfile,
} from './profile.js';
import { quantizeWeights, sqnrDb, type QuantizedWeights } from './weights.js';
import type { Grid } from './grid.js';
import { gptqQuantize } from './gptq.js';
import { hasPatchMoments, PatchMoments, withPatchMoments } from './patch-moments.js';
import { biasCorrection, ChannelMeans } from './bias-correction.js';
import { equalizeCrossLayer } from '../passes/equalize.js';

/**
 * What PTQ does with an option left out. `resolvePtqOptions` is the one place they apply (for
 * `quantizeModel` and the run's manifest); `quantize --help` shows them from here.
 */
export const PTQ_DEFAULTS = {
  profile: 'w8a8-shift',
  calibration: 'mse',
  calibLimit: 1000,
  batch: 16,
  biasCorrection: true,
  gptq: true,
  equalize: false,
} as const;

type PtqDefaulted = 'calibration' | 'calibLimit' | 'batch' | 'biasCorrection' | 'gptq' | 'equalize';

/** `options` with every option of `PTQ_DEFAULTS` that it leaves out filled in. */
export function resolvePtqOptions<T extends Pick<QuantizeOptions, PtqDefaulted>>(
  options: T,
): T & Required<Pick<QuantizeOptions, PtqDefaulted>> {
  return {
    ...options,
    calibration: options.calibration ?? PTQ_DEFAULTS.calibration,
    calibLimit: options.calibLimit ?? PTQ_DEFAULTS.calibLimit,
    batch: options.batch ?? PTQ_DEFAULTS.batch,
    biasCorrection: options.biasCorrection ?? PTQ_DEFAULTS.biasCorrection,
    gptq: options.gptq ?? PTQ_DEFAULTS.gptq,
    equalize: options.equalize ?? PTQ_DEFAULTS.equalize,
  };
}

/** PTQ options; those left out take their value from `PTQ_DEFAULTS`. */
export interface QuantizeOptions {
  profile: TargetProfile;
  /** How activation ranges are chosen; weights use min-max for 'minmax', MSE otherwise. */
  calibration?: RangeMethod;
  /** Calibration images used. */
  calibLimit?: number;
  /** Images per calibration batch. */
  batch?: number;
  /** Preprocessing: a preset and/or fields; the rest is chosen from the model (`resolvePreprocess`). */
  preprocess?: PreprocessRequest;
  /** Leave out unreadable calibration images (listed in `skipped`) instead of failing on the first. */
  skipBadImages?: boolean;
  /** Cross-layer equalization of conv pairs around ReLUs before quantizing. */
  equalize?: boolean;
  /** Subtract the expected output shift that weight rounding causes from each bias. */
  biasCorrection?: boolean;
  /**
   * Round the weights of convolutions without groups below 8 bits for the least output error
   * on the calibration images (`gptqQuantize` on their patch moments, which also picks each
   * WESS channel's shift) instead of to nearest.
   */
  gptq?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/** Per-layer facts for the report. */
export interface LayerReport {
  name: string;
  opType: string;
  weightBits: number;
  granularity: string;
  /** Effective weight scales (one, or one per output channel). */
  weightScales: number[];
  /** WESS shifts k[c] ('shift' only). */
  shifts?: number[];
  weightSqnrDb: number;
  /** Scale and zero point of the layer's quantized output activation, if it has one. */
  outputActivation?: { tensor: string; scale: number; zeroPoint: number };
  /** SQNR of the layer output in the quantized simulation vs float, on one calibration batch. */
  outputSqnrDb?: number;
}

/** Per-output facts for the report: how far the quantized model moved each model output. */
export interface OutputReport {
  name: string;
  dataType: string;
  /** Float outputs: SQNR (dB) of the quantized simulation against the float model, on the sample batch. */
  sqnrDb?: number;
  /** Non-float outputs (indices, class maps): fraction of elements equal to the float model's. */
  agreement?: number;
  /** The output's grid, when it is quantized (not on the host tail, not a final Softmax). */
  activation?: { scale: number; zeroPoint: number };
}

export interface QuantizeResult {
  model: Model;
  params: QuantizationParams;
  plan: QuantizationPlan;
  layers: LayerReport[];
  outputs: OutputReport[];
  /** The float model `params` quantize (equalized if asked; biases as in the input, the QDQ model has the corrected ones): QFT's teacher and starting point. */
  float: Model;
  /** The first calibration batch, as fed to the model: the per-layer SQNRs are measured on it. */
  sample: TensorData;
  /** The preprocessing used, also recorded in the metadata of `float` and `model` (`quantflow.preprocess`). */
  preprocess: PreprocessChoice;
  calibrationImages: number;
  /** Calibration files that could not be decoded (only with `skipBadImages`). */
  skipped: string[];
  seconds: { calibration: number; weights: number; export: number; evaluation: number };
}

/** Elements fed to a histogram per tensor and batch: a strided sample bounds JS work per batch. */
const HISTOGRAM_SAMPLE = 1 << 16;

/**
 * Post-training quantization of a prepared float model for a target profile: plans what gets
 * quantized, calibrates activation ranges on `calib` images (streaming: observers keep
 * bounded state), quantizes weights (per-tensor, per-channel or WESS, as the profile says per
 * layer), and builds the QDQ model.
 */
export async function quantizeModel(input: Model, calib: Dataset, given: QuantizeOptions): Promise<QuantizeResult> {
  const calibration = await calibrateModel(input, calib, given);
  const t0 = performance.now();
  const weights = calibration.specs.map((spec, i) => quantizeLayer(calibration, i, spec));
  return assembleQuantization(calibration, weights, t0);
}

/**
 * What calibration leaves for the weights: activation grids, and the statistics weight
 * quantization reads (input means for bias correction, patch moments for GPTQ). Collected
 * once, so that the weights can be quantized at any width the profile allows without
 * calibrating again.
 */
export interface Calibration {
  /** The float model quantized (equalized if asked, preprocessing recorded in its metadata). */
  model: Model;
  profile: TargetProfile;
  plan: QuantizationPlan;
  /** Each layer's weight quantization as the profile resolves it. */
  specs: LayerWeights[];
  activations: Map<string, Grid>;
  /** Each activation's grid at every width an activation allocation may give it (`allowedActivationWidths`). */
  activationGrids: Map<string, Map<8 | 16, Grid>>;
  method: RangeMethod;
  means: Map<string, ChannelMeans>;
  /** Patch moments of the layers GPTQ may round (those allowed below 8 bits), by layer name. */
  moments: Map<string, PatchMoments>;
  sample: TensorData;
  preprocess: PreprocessChoice;
  calibrationImages: number;
  skipped: string[];
  seconds: number;
}

/** The calibration pass of `quantizeModel`. */
export async function calibrateModel(input: Model, calib: Dataset, given: QuantizeOptions): Promise<Calibration> {
  const options = resolvePtqOptions(given);
  const geometry = imageInputGeometry(input);
  const preprocess = resolvePreprocess(input, options.preprocess, geometry.channels);
  // Recorded in the float model, so that the QDQ models PTQ and QFT build from it carry it.
  const prepared = options.equalize ? equalized(input) : input;
  const model: Model = { ...prepared, metadata: { ...prepared.metadata, ...preprocessMetadata(preprocess.spec) } };
  const method = options.calibration;
  const profile = options.profile;
  const plan = planQuantization(model.graph);
  if (!plan.layers.length)
    throw new QuantflowError(`model '${model.graph.name}' has no Conv/Gemm/MatMul layer with constant weights to quantize`);
  const items = calib.items.slice(0, options.calibLimit);

  const t0 = performance.now();
  const observers = new Map<string, Observer>(
    plan.activations.map((a) => [a, method === 'minmax' ? new MinMaxObserver() : new HistogramObserver()]),
  );
  const layerInputs = options.biasCorrection ? [...new Set(plan.layers.map((l) => l.node.inputs[0]!))] : [];
  const means = new Map(layerInputs.map((name) => [name, new ChannelMeans()]));
  const position = (i: number) => ({ isFirst: i === 0, isLast: i === plan.layers.length - 1 });
  const specs = plan.layers.map((layer, i) => resolveLayer(profile, layer.node.name, position(i)));
  const gptqLayers = options.gptq
    ? plan.layers.filter((l, i) => Math.min(...allowedWeightBits(profile, l.node.name, position(i))) < 8 && hasPatchMoments(l, model.graph))
    : [];
  const fetched = [...new Set([...plan.activations, ...layerInputs])];
  const probed = withPatchMoments(withOutputs(model, fetched), gptqLayers);
  const moments = new Map([...new Set(probed.outputs.values())].map((output) => [output, new PatchMoments()]));
  const session = await openSession(probed.model);
  let done = 0;
  const skipped: string[] = [];
  let firstBatch: Float32Array | undefined;
  try {
    for await (const b of imageBatches(items, {
      ...geometry,
      preprocess: preprocess.spec,
      batch: options.batch,
      skipBadImages: options.skipBadImages,
    })) {
      skipped.push(...b.skipped);
      const n = b.items.length;
      if (!n) continue;
      const input = new ort.Tensor('float32', b.data.subarray(0, n * geometry.size), [
        n,
        geometry.channels,
        geometry.height,
        geometry.width,
      ]);
      firstBatch ??= b.data.slice(0, n * geometry.size);
      const out = await session.run(imageFeeds(geometry, input), [...fetched, ...moments.keys()]);
      for (const a of plan.activations) {
        const values = (out[a] as ort.Tensor).data as Float32Array;
        observers.get(a)!.observe(method === 'minmax' ? values : strided(values, HISTOGRAM_SAMPLE));
      }
      for (const [name, m] of means) m.observe((out[name] as ort.Tensor).data as Float32Array, (out[name] as ort.Tensor).dims);
      for (const [output, m] of moments) m.observe((out[output] as ort.Tensor).data as Float32Array);
      done += n;
      options.onProgress?.(done + skipped.length, items.length);
    }
  } finally {
    await session.release();
  }
  if (!done) throw new QuantflowError(`calibration folder '${calib.dir}' gave no images`);
  const widths = activationWidths(plan, model.graph, profile);
  const allowed = allowedActivationWidths(plan, model.graph, profile);
  const gridAt = (a: string, bits: 8 | 16) =>
    activationQuantParams(observers.get(a)!.range(method, bits, profile.activations.symmetric), bits, profile.activations.symmetric, {
      powerOfTwo: profile.powerOfTwoScales,
    });
  const activationGrids = new Map(plan.activations.map((a) => [a, new Map(allowed.get(a)!.map((bits) => [bits, gridAt(a, bits)]))]));
  const activations = new Map(plan.activations.map((a) => [a, activationGrids.get(a)!.get(widths.get(a)!)!]));
  const layerMoments = new Map<string, PatchMoments>();
  for (const [layer, output] of probed.outputs) layerMoments.set(layer, moments.get(output)!);
  return {
    model,
    profile,
    plan,
    specs,
    activations,
    activationGrids,
    method,
    means,
    moments: layerMoments,
    sample: {
      dataType: 'float32' as const,
      dims: [firstBatch!.length / geometry.size, geometry.channels, geometry.height, geometry.width],
      data: firstBatch!,
    },
    preprocess,
    calibrationImages: done,
    skipped,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** One layer's weights quantized as `spec` says, from the calibration statistics, with its bias correction. */
export interface QuantizedLayer {
  layer: WeightedLayer;
  quantized: QuantizedWeights;
  correction?: Float64Array;
}

/** Quantizes layer `index` of `cal.plan` as `spec` says (GPTQ below 8 bits when its moments were collected). */
export function quantizeLayer(cal: Calibration, index: number, spec: LayerWeights): QuantizedLayer {
  const { model, method, profile } = cal;
  const layer = cal.plan.layers[index]!;
  const tensor = model.graph.initializers.get(layer.weight)!;
  const original = outputChannelsFirst(toFloat32(tensor), tensor.dims, layer);
  const channels = tensor.dims[layer.channelAxis]!;
  const patchMoments = spec.bits < 8 ? cal.moments.get(layer.node.name) : undefined;
  const quantized = quantizeWeights(original, channels, spec, {
    method: method === 'minmax' ? 'minmax' : 'mse',
    powerOfTwo: profile.powerOfTwoScales,
    // GPTQ re-rounds these layers anyway, kernel sums included in what it minimizes.
    kernelTaps: layer.node.opType === 'Conv' && !patchMoments ? tensor.dims.slice(2).reduce((p, d) => p * d, 1) : 1,
  });
  if (patchMoments) gptqQuantize(original, quantized, patchMoments.total());
  const inputMeans = cal.means.get(layer.node.inputs[0]!);
  const correction = inputMeans && layer.bias ? biasCorrection(layer, channels, original, quantized, inputMeans.means()) : undefined;
  return { layer, quantized, correction };
}

/**
 * The QDQ model of quantized layers on the calibrated activation grids, without the report's
 * measurements: what a sensitivity pass builds for each mixed allocation it tries.
 */
export function qdqOfLayers(cal: Calibration, layers: QuantizedLayer[]): Model {
  const params: QuantizationParams = {
    activations: cal.activations,
    weights: layers.map(({ layer, quantized }) => ({ layer, quantized })),
  };
  return buildQdqModel(correctedBiases(cal.model, layers), params).model;
}

/**
 * The QDQ model, with the report's per-layer facts, of layers quantized from `cal` (by
 * `quantizeLayer`; an allocation picks them from the sensitivity pass, which quantized each at
 * every width it may take); `t0` is when their quantization began.
 */
export async function assembleQuantization(cal: Calibration, weights: QuantizedLayer[], t0 = performance.now()): Promise<QuantizeResult> {
  const corrected = correctedBiases(cal.model, weights);
  const weightSeconds = (performance.now() - t0) / 1000;
  const params: QuantizationParams = {
    activations: cal.activations,
    weights: weights.map(({ layer, quantized }) => ({ layer, quantized })),
  };
  const built = await buildQuantizedModel(corrected, params, cal.profile, cal.sample, cal.model);
  return {
    model: built.model,
    params,
    plan: cal.plan,
    layers: built.layers,
    outputs: built.outputs,
    float: cal.model,
    sample: cal.sample,
    preprocess: cal.preprocess,
    calibrationImages: cal.calibrationImages,
    skipped: cal.skipped,
    seconds: { calibration: cal.seconds, weights: weightSeconds, export: built.seconds.export, evaluation: built.seconds.evaluation },
  };
}

/**
 * The QDQ model of `params` on the float `model` (whose biases it quantizes), with the facts
 * the report shows per layer; output SQNRs against the float `reference` (the model before
 * bias correction) are measured on `sample`, one batch of model inputs. PTQ and QFT both end
 * here.
 */
export async function buildQuantizedModel(
  model: Model,
  params: QuantizationParams,
  profile: TargetProfile,
  sample: TensorData,
  reference: Model,
): Promise<{ model: Model; layers: LayerReport[]; outputs: OutputReport[]; seconds: { export: number; evaluation: number } }> {
  let t0 = performance.now();
  const { model: qdq, floatNames } = buildQdqModel(model, params);
  qdq.metadata['quantflow.profile'] = profile.name;
  const exportSeconds = (performance.now() - t0) / 1000;

  t0 = performance.now();
  const outputSqnr = await layerOutputSqnr(
    reference,
    qdq,
    floatNames,
    params.weights.map((w) => w.layer),
    sample,
  );
  const readers = consumerMap(model.graph);
  const layers: LayerReport[] = params.weights.map(({ layer, quantized }) => {
    const out = layer.node.outputs[0]!;
    const actTensor = params.activations.has(out) ? out : followingClamp(readers, out);
    const act = actTensor === undefined ? undefined : params.activations.get(actTensor);
    return {
      name: layer.node.name,
      opType: layer.node.opType,
      weightBits: quantized.bits,
      granularity: quantized.granularity,
      weightScales: Array.from(quantized.scale),
      shifts: quantized.shifts && Array.from(quantized.shifts),
      weightSqnrDb: quantized.sqnrDb,
      outputActivation: act && actTensor ? { tensor: actTensor, scale: act.scale, zeroPoint: act.zeroPoint } : undefined,
      outputSqnrDb: outputSqnr.get(layer.node.outputs[0]!),
    };
  });
  const outputs = await modelOutputErrors(reference, qdq, params, sample);
  return { model: qdq, layers, outputs, seconds: { export: exportSeconds, evaluation: (performance.now() - t0) / 1000 } };
}

/** Every model output of the quantized simulation against the float model on `sample` (see OutputReport). */
async function modelOutputErrors(float: Model, quantized: Model, params: QuantizationParams, sample: TensorData): Promise<OutputReport[]> {
  // Every input is an image input fed the same image (imageInputGeometry refuses anything else).
  const feed = Object.fromEntries(float.graph.inputs.map((i) => [i.name, sample]));
  const run = async (m: Model, simulate: boolean) => {
    const s = await openSession(m, { simulate });
    try {
      return await runSession(s, feed);
    } finally {
      await s.release();
    }
  };
  const ref = await run(float, false);
  const sim = await run(quantized, true);
  return float.graph.outputs.map(({ name }) => {
    const [want, got] = [ref[name]!, sim[name]!];
    const grid = params.activations.get(name);
    const activation = grid && { scale: grid.scale, zeroPoint: grid.zeroPoint };
    if (want.dataType === 'float32')
      return {
        name,
        dataType: want.dataType,
        sqnrDb: sqnrDb(want.data as Float32Array, got.data as Float32Array),
        ...(activation && { activation }),
      };
    let equal = 0;
    for (let i = 0; i < want.data.length; i++) if (want.data[i] === got.data[i]) equal++;
    return { name, dataType: want.dataType, agreement: want.data.length ? equal / want.data.length : 1 };
  });
}

/**
 * The grid width of every planned activation: the profile's, or an override's that matches
 * the layer writing it (see `activationOwners`).
 */
export function activationWidths(plan: QuantizationPlan, graph: Graph, profile: TargetProfile): Map<string, 8 | 16> {
  return new Map([...activationOwners(plan, graph)].map(([a, o]) => [a, resolveActivationBits(profile, o.names, o.position)]));
}

/** The widths an activation allocation may choose for every planned activation (one, where an override fixes it). */
export function allowedActivationWidths(plan: QuantizationPlan, graph: Graph, profile: TargetProfile): Map<string, (8 | 16)[]> {
  return new Map([...activationOwners(plan, graph)].map(([a, o]) => [a, allowedActivationBits(profile, o.names, o.position)]));
}

/**
 * The names an override matches to select an activation: the layer writing it; a clamp the
 * target fuses (Relu/Clip alone after its producer) writes the activation on behalf of that
 * producer, so both names match; a model input matches by its own name. `position` is that of
 * the weighted layer among them.
 */
export function activationOwners(
  plan: QuantizationPlan,
  graph: Graph,
): Map<string, { names: string[]; position: { isFirst: boolean; isLast: boolean } }> {
  const producers = producerMap(graph);
  const readers = consumerMap(graph);
  const weighted = plan.layers.map((l) => l.node.name);
  return new Map(
    plan.activations.map((a) => {
      const producer = producers.get(a);
      const names = producer ? [producer.name] : [a];
      if (producer && (producer.opType === 'Relu' || producer.opType === 'Clip')) {
        const before = producers.get(producer.inputs[0]!);
        if (before && readers.get(producer.inputs[0]!)?.length === 1) names.push(before.name);
      }
      const index = weighted.findIndex((name) => names.includes(name));
      return [a, { names, position: { isFirst: index === 0, isLast: index >= 0 && index === weighted.length - 1 } }];
    }),
  );
}

/** A copy of `model` (sharing unchanged tensors) with cross-layer equalization applied. */
function equalized(model: Model): Model {
  const copy = cloneModel(model);
  equalizeCrossLayer(copy.graph);
  return copy;
}

/** `model` with each layer's bias reduced by its bias correction (a shallow copy when any applies). */
function correctedBiases(model: Model, layers: { layer: WeightedLayer; correction?: Float64Array }[]): Model {
  const todo = layers.filter((l) => l.correction && l.layer.bias);
  if (!todo.length) return model;
  const initializers = new Map(model.graph.initializers);
  for (const { layer, correction } of todo) {
    const bias = toFloat32(initializers.get(layer.bias!)!);
    initializers.set(layer.bias!, { dataType: 'float32', dims: [bias.length], data: bias.map((b, c) => b - correction![c]!) });
  }
  return { ...model, graph: { ...model.graph, initializers } };
}

/** A copy of `model` whose outputs are `names` (intermediate values made observable). */
function withOutputs(model: Model, names: string[]): Model {
  const outputs = names.map((name) => ({ name, dataType: 'float32' as const }));
  return { ...model, graph: { ...model.graph, outputs } };
}

function strided(values: Float32Array, target: number): Float32Array {
  if (values.length <= target) return values;
  const step = Math.ceil(values.length / target);
  const out = new Float32Array(Math.ceil(values.length / step));
  for (let i = 0, j = 0; i < values.length; i += step, j++) out[j] = values[i]!;
  return out;
}

/** The output of the ReLU/Clip that reads `value`, if that is its only reader. */
function followingClamp(readers: Map<string, Node[]>, value: string): string | undefined {
  const next = readers.get(value) ?? [];
  return next.length === 1 && (next[0]!.opType === 'Relu' || next[0]!.opType === 'Clip') ? next[0]!.outputs[0] : undefined;
}

/**
 * SQNR (dB) of each layer's output in the quantized model against the float model, on one
 * calibration batch. The QDQ model runs as a float simulation, so this is the error the
 * target's integer arithmetic introduces up to that layer.
 */
async function layerOutputSqnr(
  float: Model,
  quantized: Model,
  floatNames: Map<string, string>,
  layers: WeightedLayer[],
  sample: TensorData,
): Promise<Map<string, number>> {
  const names = layers.map((l) => l.node.outputs[0]!);
  // A quantized layer output keeps its name after Q/DQ; compare the value before rounding.
  const qNames = names.map((n) => floatNames.get(n) ?? n);
  const feed = Object.fromEntries(float.graph.inputs.map((i) => [i.name, sample]));
  const run = async (m: Model, outs: string[], simulate: boolean) => {
    const s = await openSession(withOutputs(m, outs), { simulate });
    try {
      return await runSession(s, feed, outs);
    } finally {
      await s.release();
    }
  };
  const ref = await run(float, names, false);
  const sim = await run(quantized, qNames, true);
  return new Map(names.map((name, i) => [name, sqnrDb(ref[name]!.data as Float32Array, sim[qNames[i]!]!.data as Float32Array)]));
}
