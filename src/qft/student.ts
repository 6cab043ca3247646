import { GraphBuilder } from '../graph/builder.js';
import { cloneModel } from '../graph/graph.js';
import { fakeQuant } from '../autodiff/fake-quant.js';
import { staticShapes } from '../autodiff/shapes.js';
import type { QuantizationParams } from '../quantization/qdq.js';
import { floatTensor, toFloat32 } from '../graph/tensor.js';
import { topologicalSort } from '../graph/toposort.js';
import type { Graph, Model, Node } from '../graph/types.js';
import { outputChannelsFirst, weightLayout, type WeightedLayer } from '../quantization/plan.js';
import { equalizablePairs } from '../passes/equalize.js';
import { qmaxOf, quantize, type QuantizedWeights } from '../quantization/weights.js';
import { QuantflowError } from '../util/errors.js';
import { outputTerms, type OutputTerm } from '../eval/output-error.js';
import { upgradeOpset } from '../passes/upgrade-opset.js';

const STUDENT_OPSET = 13;

/**
 * The QFT student: the float graph with every quantizer of the PTQ result as a fake
 * quantization whose weights, biases and step sizes are trainable, plus per-channel
 * equalization factors between convolutions that a factor can pass between.
 *
 * Every trained quantity is p = p₀ + u·θ with p₀ its PTQ value (for weights, a float value
 * that rounds to PTQ's integer: `ptqStart`), u a constant unit and θ the trained
 * initializer, starting at 0. Adam moves each θ by about the learning rate per step
 * whatever the magnitude of p, so the unit decides what a learning rate means:
 * - weights: u = the PTQ step size of their channel, so lr is a fraction of a quantization step;
 * - step sizes: u = ratio·s₀, so lr·ratio is a relative change (one learning rate serves
 *   two groups: ratio = lrScales / lrWeights); equalization factors likewise, from 1;
 * - biases: u = biasRatio·(the step size of the layer's quantized output, that of the clamp
 *   after it if fused; the weight step where there is none), so lr·biasRatio is a fraction of
 *   an output step (biasRatio = lrBiases / lrWeights).
 */

/** One weighted layer's trained values in the student. */
export interface StudentLayer {
  layer: WeightedLayer;
  /** The PTQ quantization, the origin of every trained value. */
  ptq: QuantizedWeights;
  /** The initializer the weights start from (see `ptqStart`), in the weight tensor's layout. */
  origin: string;
  /** θ of the weights: same shape as the weight tensor, in steps of the PTQ scale. */
  weight: string;
  /** θ of the step size: a scalar ('tensor', 'shift') or one per output channel ('channel'). */
  scale: string;
  /** θ of the bias, if the layer has one, with its origin and unit (one per layer). */
  bias?: { theta: string; start: Float32Array; unit: number };
  /** WESS layers: the graph input that carries 2^−k per channel, so shifts can change between epochs. */
  shifts?: string;
}

/** One quantized activation's trained step size. */
export interface StudentActivation {
  tensor: string;
  /** θ of the step size, a scalar. */
  scale: string;
}

/**
 * A trained per-channel equalization factor f between two convolutions (see
 * `equalizablePairs`): output channel c of `first` (weights and bias) is divided by f[c],
 * input channel c of `second` multiplied by it. f = 1 + ratio·θ, like a step size.
 */
export interface StudentEqualization {
  /** Indices into `Student.layers`. */
  first: number;
  second: number;
  /** θ of the factors, one per channel. */
  theta: string;
}

/**
 * The distillation loss: 'auto' compares what the model hands out (`outputTerms`: KL on a
 * classifier's logits or a probability output's, normalized L2 on any other output, summed);
 * 'kl' KL on the logits, 'l2' normalized L2 on chosen features, 'kl+l2' their sum.
 */
export type LossKind = 'auto' | 'kl' | 'l2' | 'kl+l2';

/** A float-model value the loss compares the student with, and the graph input that carries the teacher's. */
export interface StudentTarget {
  tensor: string;
  input: string;
  /** 'kl' for logits, 'l2' for a feature or an output that is not class scores. */
  kind: 'kl' | 'l2';
}

/** Groups of trained quantities, which QFT can train or freeze independently (the ablation). */
export type TrainedGroup = 'weights' | 'biases' | 'scales' | 'equalization';

export const TRAINED_GROUPS: readonly TrainedGroup[] = ['weights', 'biases', 'scales', 'equalization'];

export interface Student {
  /** Inputs: the float model's image input, each target's teacher values and each WESS layer's shifts; output: `loss`, a scalar. */
  model: Model;
  input: string;
  targets: StudentTarget[];
  loss: string;
  /** Every trained initializer, by group. */
  params: Record<TrainedGroup, string[]>;
  layers: StudentLayer[];
  activations: StudentActivation[];
  equalization: StudentEqualization[];
  /** Relative change of a step size (or equalization factor) per unit of its θ (lrScales / lrWeights). */
  scaleRatio: number;
}

export interface StudentOptions {
  /** lrScales / lrWeights: see the module comment. */
  scaleRatio: number;
  /** lrBiases / lrWeights: see the module comment. */
  biasRatio: number;
  /** Float biases to start from (name → values), e.g. PTQ's bias-corrected ones; the model's otherwise. */
  biases?: ReadonlyMap<string, Float32Array>;
  /** Images per training batch; losses are means over them. */
  batch: number;
  /** Default 'auto'. */
  loss?: LossKind;
  /** The logits 'kl' and 'kl+l2' compare (default `logitsOf(model)`). */
  logits?: string;
  /** Float-model values the L2 loss compares ('l2', 'kl+l2'; default: the input of the last weighted layer); 'auto' adds them to its terms. */
  lossLayers?: readonly string[];
}

/**
 * Builds the student of `model` (prepared float, the one PTQ quantized) for the quantization
 * `params`. The distillation loss (see LossKind) adds terms: KL(teacher ‖ student) of the
 * softmax over rows of logits, summed over rows, and ‖s − t‖² / ‖t‖² per image for each L2
 * value; each is averaged over the batch.
 */
export function buildStudent(model: Model, params: QuantizationParams, options: StudentOptions): Student {
  const src = model.graph;
  const input = src.inputs[0]?.name;
  if (!input) throw new QuantflowError(`model '${src.name}' has no input`);
  const lossKind = options.loss ?? 'auto';
  const shapes = staticShapes(model);
  const klOn = (logits: string): OutputTerm[] => [{ tensor: logits, kind: 'kl', classes: logitClasses(shapes, logits) }];
  const outputs: OutputTerm[] = lossKind === 'auto' ? outputTerms(model) : lossKind === 'l2' ? [] : klOn(options.logits ?? logitsOf(model));
  const features = lossKind === 'kl' ? [] : (options.lossLayers ?? (lossKind === 'auto' ? [] : [defaultFeature(params)]));
  // 'auto' compares each output once; 'kl+l2' may add L2 on the logits themselves.
  const l2Layers = lossKind === 'auto' ? features.filter((f) => !outputs.some((o) => o.tensor === f)) : [...features];
  if (!outputs.length && !l2Layers.length)
    throw new QuantflowError(`QFT: model '${src.name}' has no float output to distil; pass --loss-layers`);
  for (const t of [...l2Layers, ...outputs.filter((o) => o.kind === 'l2').map((o) => o.tensor)])
    if (
      !shapes
        .get(t)
        ?.shape?.slice(1)
        .every((d) => typeof d === 'number')
    )
      throw new QuantflowError(`--loss-layers: '${t}' is not a value of the model with a static shape (see \`quantflow inspect\`)`);
  const student = cloneModel(model);
  const graph = student.graph;
  graph.outputs = [];
  // Gradient rules are written for opset 13 forms (e.g. ReduceSum axes as an input).
  upgradeOpset(student, STUDENT_OPSET);
  const b = new GraphBuilder(student);
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  const trainedNames: Record<TrainedGroup, string[]> = { weights: [], biases: [], scales: [], equalization: [] };
  const trained = (group: TrainedGroup, hint: string, dims: number[]) => {
    const name = b.tensor(floatTensor(dims), hint);
    trainedNames[group].push(name);
    return name;
  };
  const graphInput = (hint: string, shape: number[]) => {
    const name = b.name(hint);
    graph.inputs.push({ name, dataType: 'float32', shape });
    return name;
  };
  // p₀ + u·θ; `unit` broadcasts against θ.
  const affine = (origin: string, unit: string, theta: string) => b.op('Add', [origin, b.op('Mul', [theta, unit])]);
  const ratio = options.scaleRatio;

  // Equalization factors first: they scale the weights the layers below quantize.
  const layerIndex = new Map(params.weights.map(({ layer }, i) => [layer.node.name, i]));
  const outFactor = new Map<number, string>();
  const inFactor = new Map<number, string>();
  const equalization: StudentEqualization[] = [];
  for (const { first, second } of equalizablePairs(src)) {
    const i1 = layerIndex.get(first.name);
    const i2 = layerIndex.get(second.name);
    if (i1 === undefined || i2 === undefined || outFactor.has(i1) || inFactor.has(i2)) continue;
    const [outs, perGroup] = src.initializers.get(second.inputs[1]!)!.dims as [number, number];
    const channels = src.initializers.get(first.inputs[1]!)!.dims[0]!;
    // Input channel c of the second layer as a broadcastable axis: [1, C, 1, 1] for a dense
    // conv, [C, 1, 1, 1] for a depthwise one; other groupings are left alone.
    const depthwise = perGroup === 1 && outs === channels;
    if (perGroup !== channels && !depthwise) continue;
    const theta = trained('equalization', `${first.name}_equalization_qft`, [channels]);
    const f = affine(b.scalar(1), b.scalar(ratio), theta);
    outFactor.set(i1, b.op('Div', [b.scalar(1), f]));
    inFactor.set(i2, b.reshape(f, depthwise ? [channels, 1, 1, 1] : [1, channels, 1, 1]));
    equalization.push({ first: i1, second: i2, theta });
  }

  const layers = params.weights.map(({ layer, quantized }, index): StudentLayer => {
    const node = byName.get(layer.node.name)!;
    const w = graph.initializers.get(layer.weight)!;
    const dims = [...w.dims];
    const channels = quantized.scale.length;
    const qmax = qmaxOf(quantized.bits);
    // Per-output-channel values shaped to broadcast along the channel axis of the weight.
    const channelDims = (n: number) => dims.map((d, i) => (n > 1 && i === layer.channelAxis ? d : 1));
    const unit = b.tensor(
      floatTensor(channelDims(channels), quantized.scale.length === 1 ? [quantized.scale[0]!] : quantized.scale),
      `${layer.weight}_step`,
    );
    const weight = trained('weights', `${layer.weight}_qft`, dims);
    const origin = b.tensor(floatTensor(dims, ptqStart(toFloat32(w), dims, layer, quantized)), `${layer.weight}_ptq`);
    let value = affine(origin, unit, weight);
    const divide = outFactor.get(index);
    if (divide) value = b.op('Mul', [value, b.reshape(divide, channelDims(dims[layer.channelAxis]!))]);
    const multiply = inFactor.get(index);
    if (multiply) value = b.op('Mul', [value, multiply]);

    let scale: string;
    let effective: string;
    let shifts: string | undefined;
    if (quantized.granularity === 'channel') {
      scale = trained('scales', `${layer.weight}_scale_qft`, [channels]);
      const s0 = floatTensor([channels], quantized.scale);
      effective = affine(
        b.tensor(s0),
        b.tensor(
          floatTensor(
            [channels],
            quantized.scale.map((s) => s * ratio),
          ),
        ),
        scale,
      );
    } else {
      // One trained layer scale; WESS channels get their power-of-two factors 2^−k[c] as an input.
      const s = quantized.layerScale ?? quantized.scale[0]!;
      scale = trained('scales', `${layer.weight}_scale_qft`, []);
      const layerScale = affine(b.scalar(s), b.scalar(s * ratio), scale);
      if (quantized.granularity === 'shift') shifts = graphInput(`${layer.weight}_shifts`, [channels]);
      effective = shifts ? b.op('Mul', [layerScale, shifts]) : layerScale;
    }
    node.inputs[1] = fakeQuant(b, value, effective, {
      qmin: -qmax,
      qmax,
      ...(channels > 1 ? { perChannelAxis: layer.channelAxis } : {}),
    });

    let bias: StudentLayer['bias'];
    if (layer.bias) {
      const start = options.biases?.get(layer.bias) ?? toFloat32(graph.initializers.get(layer.bias)!);
      const unit = options.biasRatio * (outputStep(graph, layer, params) ?? Math.max(...quantized.scale));
      const theta = trained('biases', `${layer.bias}_qft`, [start.length]);
      const trainedBias = affine(b.tensor(floatTensor([start.length], start), `${layer.bias}_start`), b.scalar(unit), theta);
      node.inputs[2] = divide ? b.op('Mul', [trainedBias, divide]) : trainedBias;
      bias = { theta, start, unit };
    }
    return { layer, ptq: quantized, origin, weight, scale, bias, ...(shifts ? { shifts } : {}) };
  });

  const studentValue = new Map<string, string>();
  const activations = [...params.activations].map(([tensor, p]): StudentActivation => {
    const scale = trained('scales', `${tensor}_scale_qft`, []);
    const s = affine(b.scalar(p.scale), b.scalar(p.scale * ratio), scale);
    const readers = graph.nodes.filter((n) => n.inputs.includes(tensor));
    const fq = fakeQuant(b, tensor, s, { qmin: p.qmin, qmax: p.qmax, zeroPoint: p.zeroPoint });
    for (const r of readers) r.inputs = r.inputs.map((i) => (i === tensor ? fq : i));
    studentValue.set(tensor, fq);
    return { tensor, scale };
  });
  // The loss sees what the next layer sees: the quantized value where there is one.
  const seen = (tensor: string) => studentValue.get(tensor) ?? tensor;

  const targets: StudentTarget[] = [];
  const terms: string[] = [];
  for (const o of outputs) {
    const dims = shapes.get(o.tensor)!.shape!.slice(1) as number[];
    const teacher = graphInput(o.kind === 'kl' && outputs.length === 1 ? 'teacher_logits' : `teacher_${o.tensor}`, [
      options.batch,
      ...dims,
    ]);
    targets.push({ tensor: o.tensor, input: teacher, kind: o.kind });
    terms.push(o.kind === 'kl' ? klLoss(b, teacher, seen(o.tensor), o.classes!, options.batch) : normalizedL2(b, teacher, seen(o.tensor)));
  }
  for (const tensor of l2Layers) {
    const dims = shapes.get(tensor)!.shape!.slice(1) as number[];
    const teacher = graphInput(`teacher_${tensor}`, [options.batch, ...dims]);
    targets.push({ tensor, input: teacher, kind: 'l2' });
    terms.push(normalizedL2(b, teacher, seen(tensor)));
  }
  const loss = terms.length === 1 ? terms[0]! : terms.reduce((sum, t) => b.op('Add', [sum, t]));
  graph.outputs = [{ name: loss, dataType: 'float32', shape: [] }];
  topologicalSort(graph);
  return { model: student, input, targets, loss, params: trainedNames, layers, activations, equalization, scaleRatio: ratio };
}

/**
 * Where a layer's trained weights start: its float weights, except those PTQ did not round
 * to nearest (kernel sums, GPTQ), which start at their integer, the center of its bin.
 * Rounding the start gives PTQ's integers, so QFT starts where PTQ ended. Those integers are
 * a joint solution; started nearer a bin's edge, many of them crossed it together and single
 * steps' losses jumped (docs/RESULTS.md, "GPTQ rounding").
 */
function ptqStart(w: Float32Array, dims: readonly number[], layer: WeightedLayer, quantized: QuantizedWeights): Float32Array {
  const qmax = qmaxOf(quantized.bits);
  const n = w.length / quantized.scale.length;
  const start = outputChannelsFirst(w, dims, layer).map((v, i) => {
    const s = quantized.scale[Math.floor(i / n)]!;
    const q = quantized.q[i]!;
    return quantize(v, s, qmax) === q ? v : q * s;
  });
  return weightLayout(start, dims, layer);
}

/** The input of the last weighted layer: the features the classifier reads. */
function defaultFeature(params: QuantizationParams): string {
  const last = params.weights.at(-1);
  if (!last) throw new QuantflowError('the L2 loss needs --loss-layers: the model has no weighted layer');
  return last.layer.node.inputs[0]!;
}

/** Mean over the batch of ‖s − t‖² / ‖t‖² (each image's features flattened). */
function normalizedL2(b: GraphBuilder, teacher: string, student: string): string {
  const flat = (x: string) => b.reshape(x, [0, -1]);
  const diff = flat(b.op('Sub', [student, teacher]));
  const t = flat(teacher);
  const error = b.reduceSum(b.op('Mul', [diff, diff]), [1], false);
  const energy = b.op('Add', [b.reduceSum(b.op('Mul', [t, t]), [1], false), b.scalar(1e-12)]);
  return b.op('ReduceMean', [b.op('Div', [error, energy])], { keepdims: { type: 'int', value: 0 } }, 'l2_loss');
}

/** The step size of a layer's quantized output, directly or after a fused ReLU/Clip. */
function outputStep(graph: Graph, layer: WeightedLayer, params: QuantizationParams): number | undefined {
  const out = layer.node.outputs[0]!;
  const readers = graph.nodes.filter((n) => n.inputs.includes(out));
  const clamp =
    readers.length === 1 && (readers[0]!.opType === 'Relu' || readers[0]!.opType === 'Clip') ? readers[0]!.outputs[0] : undefined;
  return params.activations.get(out)?.scale ?? (clamp === undefined ? undefined : params.activations.get(clamp)?.scale);
}

/** The classes of the logits: the product of their static non-batch dims. */
function logitClasses(shapes: ReturnType<typeof staticShapes>, logits: string): number {
  const shape = shapes.get(logits)?.shape?.slice(1);
  if (!shape?.every((d): d is number => typeof d === 'number'))
    throw new QuantflowError(`QFT needs the static shape of the logits '${logits}'`);
  return shape.reduce((p, d) => p * d, 1);
}

/**
 * mean over the batch of Σ p_t·(log p_t − log p_s), the softmax over rows of `classes`
 * values, summed over rows: the teacher's log-softmax is part of the graph but gets no
 * gradient (the teacher logits are an input).
 */
function klLoss(b: GraphBuilder, teacher: string, student: string, classes: number, batch: number): string {
  const flat = (x: string) => b.reshape(x, [-1, classes]);
  const logSoftmax = (x: string) => b.op('LogSoftmax', [flat(x)], { axis: { type: 'int', value: 1 } });
  const lt = logSoftmax(teacher);
  const pointwise = b.op('Mul', [b.op('Exp', [lt]), b.op('Sub', [lt, logSoftmax(student)])]);
  const total = b.op('ReduceSum', [pointwise], { keepdims: { type: 'int', value: 0 } });
  return b.op('Mul', [total, b.scalar(1 / batch)], {}, 'kl_loss');
}

/** The value distillation compares: the input of a final Softmax, else the first output. */
export function logitsOf(model: Model): string {
  const out = model.graph.outputs[0]?.name;
  if (!out) throw new QuantflowError(`model '${model.graph.name}' has no output`);
  const producer: Node | undefined = model.graph.nodes.find((n) => n.outputs.includes(out));
  return producer?.opType === 'Softmax' ? producer.inputs[0]! : out;
}
