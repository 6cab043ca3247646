import type { QuantizationParams } from '../quantization/qdq.js';
import { toFloat32 } from '../graph/tensor.js';
import type { Model, TensorData } from '../graph/types.js';
import {
  dequantize,
  qmaxOf,
  quantize,
  shiftsForReference,
  shiftsForScale,
  sqnrDb,
  type QuantizedWeights,
} from '../quantization/weights.js';
import { outputChannelsFirst, weightLayout } from '../quantization/plan.js';
import type { Student } from './student.js';

/** Smallest step size a trained scale may end at: a θ driven below −1/ratio would flip its sign. */
const MIN_RELATIVE_SCALE = 1e-3;

/**
 * The trained student as quantization parameters: weights re-quantized with their trained
 * step sizes (q = clamp(round(w/s)) on the narrow grid, with the WESS shifts in `shifts`,
 * by weight name, or PTQ's), equalization factors folded into the weights and biases of
 * their layers (the structure does not change), activation step sizes replaced (zero points
 * and grids kept), a shallow copy of `model` carrying the trained float biases
 * (buildQdqModel quantizes them to int32), and the trained float weights by weight name, in
 * the model's layout (what a layer re-quantized at another width starts from).
 */
export function exportStudent(
  model: Model,
  params: QuantizationParams,
  student: Student,
  values: ReadonlyMap<string, TensorData>,
  shifts: ReadonlyMap<string, Int32Array> = new Map(),
): { model: Model; params: QuantizationParams; trainedWeights: Map<string, Float32Array> } {
  const trained = new TrainedValues(model, student, values);
  const trainedWeights = new Map<string, Float32Array>();
  const { theta, relative } = trained;
  const initializers = new Map(model.graph.initializers);

  const weights = student.layers.map(({ layer, ptq, scale, bias }, index) => {
    const w = trained.weights(index);
    trainedWeights.set(layer.weight, weightLayout(w, model.graph.initializers.get(layer.weight)!.dims, layer));
    const ts = theta(scale);
    const divide = trained.factors.out.get(index);
    const layerShifts = shifts.get(layer.weight) ?? ptq.shifts;
    let layerScale: number | undefined;
    let scales: Float32Array;
    if (ptq.granularity === 'channel') scales = ptq.scale.map((s0, c) => relative(s0, ts[c]!));
    else {
      layerScale = relative(ptq.layerScale ?? ptq.scale[0]!, ts[0]!);
      scales =
        ptq.granularity === 'shift'
          ? Float32Array.from(layerShifts!, (k) => Math.fround(layerScale! * 2 ** -k))
          : Float32Array.of(layerScale);
    }
    const qmax = qmaxOf(ptq.bits);
    const q = new Int8Array(w.length);
    const per = w.length / scales.length;
    for (let i = 0; i < w.length; i++) q[i] = quantize(w[i]!, scales[Math.floor(i / per)]!, qmax);
    const quantized: QuantizedWeights = {
      bits: ptq.bits,
      granularity: ptq.granularity,
      scale: scales,
      ...(layerScale === undefined ? {} : { layerScale }),
      ...(layerShifts ? { shifts: layerShifts } : {}),
      ...(ptq.maxShift === undefined ? {} : { maxShift: ptq.maxShift }),
      ...(ptq.shiftReference === undefined ? {} : { shiftReference: ptq.shiftReference }),
      q,
      sqnrDb: 0,
    };
    quantized.sqnrDb = sqnrDb(w, dequantize(quantized));
    if (bias) {
      const tb = theta(bias.theta);
      const data = bias.start.map((b0, c) => (b0 + bias.unit * tb[c]!) / (divide?.[c] ?? 1));
      initializers.set(layer.bias!, { dataType: 'float32', dims: [bias.start.length], data });
    }
    return { layer, quantized };
  });

  const activations = new Map(params.activations);
  for (const { tensor, scale } of student.activations) {
    const p = params.activations.get(tensor)!;
    activations.set(tensor, { ...p, scale: relative(p.scale, theta(scale)[0]!) });
  }
  return { model: { ...model, graph: { ...model.graph, initializers } }, params: { activations, weights }, trainedWeights };
}

/**
 * WESS shifts re-chosen for the student's current weights and layer scales by the rule of
 * PTQ's scale choice (`shiftsForScale`, or `shiftsForReference` with PTQ's reference scaled as
 * the layer scale trained; GPTQ's own choice needs input moments that QFT does not keep), by
 * weight name, for every 'shift' layer.
 */
export function trainedShifts(model: Model, student: Student, values: ReadonlyMap<string, TensorData>): Map<string, Int32Array> {
  const trained = new TrainedValues(model, student, values);
  const out = new Map<string, Int32Array>();
  student.layers.forEach(({ layer, ptq, scale }, index) => {
    if (ptq.granularity !== 'shift') return;
    const layerScale = trained.relative(ptq.layerScale!, trained.theta(scale)[0]!);
    const maxShift = ptq.maxShift ?? Math.max(...ptq.shifts!);
    const weights = trained.weights(index);
    const channels = ptq.scale.length;
    out.set(
      layer.weight,
      ptq.shiftReference === undefined
        ? shiftsForScale(weights, channels, layerScale, { bits: ptq.bits, maxShift })
        : shiftsForReference(weights, channels, ptq.shiftReference * (layerScale / ptq.layerScale!), maxShift),
    );
  });
  return out;
}

/** The student's trained quantities in the float model's terms. */
class TrainedValues {
  /** Each equalized layer's factors f, by layer index: those dividing its outputs and those multiplying its inputs. */
  readonly factors = { out: new Map<number, Float32Array>(), in: new Map<number, Float32Array>() };

  constructor(
    private readonly model: Model,
    private readonly student: Student,
    private readonly values: ReadonlyMap<string, TensorData>,
  ) {
    for (const { first, second, theta } of student.equalization) {
      const f = this.theta(theta).map((t) => this.relative(1, t));
      this.factors.out.set(first, f);
      this.factors.in.set(second, f);
    }
  }

  readonly theta = (name: string): Float32Array => toFloat32(this.values.get(name)!);

  /** s₀·(1 + ratio·θ), kept positive. */
  readonly relative = (s0: number, t: number): number => Math.fround(s0 * Math.max(MIN_RELATIVE_SCALE, 1 + this.student.scaleRatio * t));

  /** Learned float weights of layer `index`, equalization factors applied, output channels first as QuantizedWeights lays them out. */
  weights(index: number): Float32Array {
    const { layer, ptq, origin, weight } = this.student.layers[index]!;
    const dims = this.model.graph.initializers.get(layer.weight)!.dims;
    const w0 = outputChannelsFirst(toFloat32(this.student.model.graph.initializers.get(origin)!), dims, layer);
    const t = outputChannelsFirst(this.theta(weight), dims, layer);
    const n = w0.length / ptq.scale.length;
    const w = w0.map((v, i) => v + t[i]! * ptq.scale[Math.floor(i / n)]!);
    const divide = this.factors.out.get(index);
    const multiply = this.factors.in.get(index);
    if (divide) scaleConvChannels(w, dims, divide, 0, (v, f) => v / f);
    if (multiply) scaleConvChannels(w, dims, multiply, 1, (v, f) => v * f);
    return w;
  }
}

/**
 * Applies `op(w, f[c])` to channel c along `axis` of conv weights [O, I/g, kh, kw] (axis 0:
 * output channels; axis 1: input channels, or output channels of a depthwise conv, whose
 * input channel c is its output channel c).
 */
function scaleConvChannels(
  w: Float32Array,
  dims: readonly number[],
  f: Float32Array,
  axis: 0 | 1,
  op: (v: number, f: number) => number,
): void {
  const [outs, perGroup] = dims as [number, number];
  const kernel = w.length / (outs * perGroup);
  const depthwise = axis === 1 && perGroup === 1 && f.length === outs;
  for (let i = 0; i < w.length; i++) {
    const o = Math.floor(i / (perGroup * kernel));
    const c = axis === 0 || depthwise ? o : Math.floor(i / kernel) % perGroup;
    w[i] = op(w[i]!, f[c]!);
  }
}
