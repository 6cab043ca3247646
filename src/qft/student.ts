import { GraphBuilder } from '../autodiff/builder.js';
import { fakeQuant } from '../autodiff/fake-quant.js';
import { staticShapes } from '../autodiff/shapes.js';
import type { QuantizationParams } from '../export/qdq.js';
import { floatTensor, toFloat32 } from '../graph/tensor.js';
import { topologicalSort } from '../graph/toposort.js';
import type { Graph, Model, Node } from '../graph/types.js';
import type { WeightedLayer } from '../quantization/plan.js';
import type { QuantizedWeights } from '../quantization/weights.js';
import { QuantflowError } from '../util/errors.js';

/**
 * The QFT student: the float graph with every quantizer of the PTQ result as a fake
 * quantization whose weights, biases and step sizes are trainable.
 *
 * Every trained quantity is p = p₀ + u·θ with p₀ its PTQ value, u a constant unit and θ the
 * trained initializer, starting at 0. Adam moves each θ by about the learning rate per step
 * whatever the magnitude of p, so the unit decides what a learning rate means:
 * - weights: u = the PTQ step size of their channel, so lr is a fraction of a quantization step;
 * - step sizes: u = ratio·s₀, so lr·ratio is a relative change (one learning rate serves
 *   two groups: ratio = lrScales / lrWeights);
 * - biases: u = the step size of the layer's quantized output (that of the clamp after it,
 *   if fused), so lr is a fraction of an output step; the weight step where there is none.
 */

/** One weighted layer's trained values in the student. */
export interface StudentLayer {
  layer: WeightedLayer;
  /** The PTQ quantization, the origin of every trained value. */
  ptq: QuantizedWeights;
  /** θ of the weights: same shape as the weight tensor, in steps of the PTQ scale. */
  weight: string;
  /** θ of the step size: a scalar ('tensor', 'shift') or one per output channel ('channel'). */
  scale: string;
  /** θ of the bias, if the layer has one, with its origin and unit (one per layer). */
  bias?: { theta: string; start: Float32Array; unit: number };
}

/** One quantized activation's trained step size. */
export interface StudentActivation {
  tensor: string;
  /** θ of the step size, a scalar. */
  scale: string;
}

export interface Student {
  /** Inputs: the float model's image input and `teacher` (logits); output: `loss`, a scalar. */
  model: Model;
  input: string;
  teacher: string;
  loss: string;
  /** Every trained initializer. */
  params: string[];
  layers: StudentLayer[];
  activations: StudentActivation[];
  /** Relative change of a step size per unit of its θ (lrScales / lrWeights). */
  scaleRatio: number;
}

export interface StudentOptions {
  /** lrScales / lrWeights: see the module comment. */
  scaleRatio: number;
  /** Float biases to start from (name → values), e.g. PTQ's bias-corrected ones; the model's otherwise. */
  biases?: ReadonlyMap<string, Float32Array>;
  /** Images per training batch; the loss is the mean KL divergence over them. */
  batch: number;
}

/**
 * Builds the student of `model` (prepared float, the one PTQ quantized) for the quantization
 * `params`. The distillation loss is KL(teacher ‖ student) of the softmax over `logits`,
 * averaged over the batch.
 */
export function buildStudent(model: Model, params: QuantizationParams, logits: string, options: StudentOptions): Student {
  const src = model.graph;
  const classes = logitShape(model, logits);
  const input = src.inputs[0]?.name;
  if (!input) throw new QuantflowError(`model '${src.name}' has no input`);
  const graph: Graph = {
    ...src,
    nodes: src.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attributes: { ...n.attributes } })),
    initializers: new Map(src.initializers),
    inputs: [...src.inputs],
    outputs: [],
    valueInfo: new Map(src.valueInfo),
  };
  const student: Model = { ...model, graph, metadata: { ...model.metadata } };
  const b = new GraphBuilder(student);
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  const trainedNames: string[] = [];
  const trained = (hint: string, dims: number[]) => {
    const name = b.tensor(floatTensor(dims), hint);
    trainedNames.push(name);
    return name;
  };
  // p₀ + u·θ; `unit` broadcasts against θ.
  const affine = (origin: string, unit: string, theta: string) => b.op('Add', [origin, b.op('Mul', [theta, unit])]);
  const ratio = options.scaleRatio;

  const layers = params.weights.map(({ layer, quantized }): StudentLayer => {
    const node = byName.get(layer.node.name)!;
    const w = graph.initializers.get(layer.weight)!;
    const dims = [...w.dims];
    const channels = quantized.scale.length;
    const qmax = 2 ** (quantized.bits - 1) - 1;
    // Step per output channel, shaped to broadcast along the channel axis of the weight.
    const unitDims = dims.map((d, i) => (channels > 1 && i === layer.channelAxis ? d : 1));
    const unit = b.tensor(floatTensor(unitDims, quantized.scale.length === 1 ? [quantized.scale[0]!] : quantized.scale), `${layer.weight}_step`);
    const weight = trained(`${layer.weight}_qft`, dims);
    const value = affine(layer.weight, unit, weight);

    let scale: string;
    let effective: string;
    if (quantized.granularity === 'channel') {
      scale = trained(`${layer.weight}_scale_qft`, [channels]);
      const s0 = floatTensor([channels], quantized.scale);
      effective = affine(b.tensor(s0), b.tensor(floatTensor([channels], quantized.scale.map((s) => s * ratio))), scale);
    } else {
      // One trained layer scale; WESS channels keep their fixed power-of-two factors 2^−k[c].
      const s = quantized.layerScale ?? quantized.scale[0]!;
      scale = trained(`${layer.weight}_scale_qft`, []);
      const layerScale = affine(b.scalar(s), b.scalar(s * ratio), scale);
      effective =
        quantized.granularity === 'shift'
          ? b.op('Mul', [layerScale, b.tensor(floatTensor([channels], Float32Array.from(quantized.shifts!, (k) => 2 ** -k)), `${layer.weight}_shifts`)])
          : layerScale;
    }
    node.inputs[1] = fakeQuant(b, value, effective, {
      qmin: -qmax,
      qmax,
      ...(channels > 1 ? { perChannelAxis: layer.channelAxis } : {}),
    });

    let bias: StudentLayer['bias'];
    if (layer.bias) {
      const start = options.biases?.get(layer.bias) ?? toFloat32(graph.initializers.get(layer.bias)!);
      const unit = outputStep(graph, layer, params) ?? Math.max(...quantized.scale);
      const theta = trained(`${layer.bias}_qft`, [start.length]);
      node.inputs[2] = affine(b.tensor(floatTensor([start.length], start), `${layer.bias}_start`), b.scalar(unit), theta);
      bias = { theta, start, unit };
    }
    return { layer, ptq: quantized, weight, scale, bias };
  });

  const activations = [...params.activations].map(([tensor, p]): StudentActivation => {
    const scale = trained(`${tensor}_scale_qft`, []);
    const s = affine(b.scalar(p.scale), b.scalar(p.scale * ratio), scale);
    const readers = graph.nodes.filter((n) => n.inputs.includes(tensor));
    const fq = fakeQuant(b, tensor, s, { qmin: p.qmin, qmax: p.qmax, zeroPoint: p.zeroPoint });
    for (const r of readers) r.inputs = r.inputs.map((i) => (i === tensor ? fq : i));
    if (tensor === logits) logits = fq;
    return { tensor, scale };
  });

  const teacher = b.name('teacher_logits');
  graph.inputs.push({ name: teacher, dataType: 'float32', shape: [options.batch, classes.reduce((p, d) => p * d, 1)] });
  const loss = klLoss(b, teacher, logits, options.batch);
  graph.outputs = [{ name: loss, dataType: 'float32', shape: [] }];
  topologicalSort(graph);
  return { model: student, input, teacher, loss, params: trainedNames, layers, activations, scaleRatio: ratio };
}

/** The step size of a layer's quantized output, directly or after a fused ReLU/Clip. */
function outputStep(graph: Graph, layer: WeightedLayer, params: QuantizationParams): number | undefined {
  const out = layer.node.outputs[0]!;
  const readers = graph.nodes.filter((n) => n.inputs.includes(out));
  const clamp = readers.length === 1 && (readers[0]!.opType === 'Relu' || readers[0]!.opType === 'Clip') ? readers[0]!.outputs[0] : undefined;
  return params.activations.get(out)?.scale ?? (clamp === undefined ? undefined : params.activations.get(clamp)?.scale);
}

/** Static non-batch dims of the logits. */
function logitShape(model: Model, logits: string): number[] {
  const shape = staticShapes(model).get(logits)?.shape?.slice(1);
  if (!shape?.every((d): d is number => typeof d === 'number'))
    throw new QuantflowError(`QFT needs the static shape of the logits '${logits}'`);
  return shape;
}

/**
 * mean over the batch of Σ p_t·(log p_t − log p_s): the teacher's log-softmax is part of the
 * graph but gets no gradient (the teacher logits are an input).
 */
function klLoss(b: GraphBuilder, teacher: string, student: string, batch: number): string {
  const flat = (x: string) => b.reshape(x, [0, -1]);
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
