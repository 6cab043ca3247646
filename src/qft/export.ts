import type { QuantizationParams } from '../export/qdq.js';
import { toFloat32 } from '../graph/tensor.js';
import type { Model, TensorData } from '../graph/types.js';
import { roundHalfToEven } from '../quantization/fixedpoint.js';
import { dequantize, sqnrDb, type QuantizedWeights } from '../quantization/weights.js';
import type { Student } from './student.js';

/** Smallest step size a trained scale may end at: a θ driven below −1/ratio would flip its sign. */
const MIN_RELATIVE_SCALE = 1e-3;

/**
 * The trained student as quantization parameters: weights re-quantized with their trained
 * step sizes (q = clamp(round(w/s)) on the narrow grid, WESS shifts kept), activation step
 * sizes replaced (zero points and grids kept), and a shallow copy of `model` carrying the
 * trained float biases (buildQdqModel quantizes them to int32).
 */
export function exportStudent(
  model: Model,
  params: QuantizationParams,
  student: Student,
  values: ReadonlyMap<string, TensorData>,
): { model: Model; params: QuantizationParams } {
  const theta = (name: string) => toFloat32(values.get(name)!);
  const relative = (s0: number, t: number) => Math.fround(s0 * Math.max(MIN_RELATIVE_SCALE, 1 + student.scaleRatio * t));
  const initializers = new Map(model.graph.initializers);

  const weights = student.layers.map(({ layer, ptq, weight, scale, bias }) => {
    const w0 = toFloat32(model.graph.initializers.get(layer.weight)!);
    const dims = model.graph.initializers.get(layer.weight)!.dims;
    const t = theta(weight);
    const ts = theta(scale);
    // Learned float weights, output channels first as QuantizedWeights lays them out.
    const channels = ptq.scale.length;
    const rows = layer.channelAxis === 0 ? 1 : dims[0]!;
    const cols = layer.channelAxis === 0 ? 1 : dims[1]!;
    const w = new Float32Array(w0.length);
    const n = w0.length / channels;
    for (let i = 0; i < w0.length; i++) {
      const c = channels === 1 ? 0 : layer.channelAxis === 0 ? Math.floor(i / n) : i % cols;
      const target = layer.channelAxis === 0 ? i : (i % cols) * rows + Math.floor(i / cols);
      w[target] = w0[i]! + t[i]! * ptq.scale[c]!;
    }
    let layerScale: number | undefined;
    let scales: Float32Array;
    if (ptq.granularity === 'channel') scales = ptq.scale.map((s0, c) => relative(s0, ts[c]!));
    else {
      layerScale = relative(ptq.layerScale ?? ptq.scale[0]!, ts[0]!);
      scales = ptq.granularity === 'shift' ? Float32Array.from(ptq.shifts!, (k) => Math.fround(layerScale! * 2 ** -k)) : Float32Array.of(layerScale);
    }
    const qmax = 2 ** (ptq.bits - 1) - 1;
    const q = new Int8Array(w.length);
    const per = w.length / scales.length;
    for (let i = 0; i < w.length; i++) q[i] = Math.max(-qmax, Math.min(qmax, roundHalfToEven(w[i]! / scales[Math.floor(i / per)]!)));
    const quantized: QuantizedWeights = {
      bits: ptq.bits,
      granularity: ptq.granularity,
      scale: scales,
      ...(layerScale === undefined ? {} : { layerScale }),
      ...(ptq.shifts ? { shifts: ptq.shifts } : {}),
      q,
      sqnrDb: 0,
    };
    quantized.sqnrDb = sqnrDb(w, dequantize(quantized));
    if (bias) {
      const tb = theta(bias.theta);
      initializers.set(layer.bias!, { dataType: 'float32', dims: [bias.start.length], data: bias.start.map((b0, c) => b0 + bias.unit * tb[c]!) });
    }
    return { layer, quantized };
  });

  const activations = new Map(params.activations);
  for (const { tensor, scale } of student.activations) {
    const p = params.activations.get(tensor)!;
    activations.set(tensor, { ...p, scale: relative(p.scale, theta(scale)[0]!) });
  }
  return { model: { ...model, graph: { ...model.graph, initializers } }, params: { activations, weights } };
}
