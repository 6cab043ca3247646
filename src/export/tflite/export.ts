/**
 * A quantize run as a fully-integer TFLite model: the QDQ model, lowered to the integer NPU
 * package (npu/package.ts), written layer by layer as TFLite builtin operators on int8
 * tensors in NHWC layout. The package supplies what is integer (weights, biases, grids,
 * fused clamps, static shapes, window geometry); the QDQ model supplies what the package
 * folds away (which operator a lookup table computes, weight scales, a final Softmax, the
 * host tail).
 *
 * TFLite's int8 scheme: activations int8 asymmetric per tensor (a uint8 grid with zero point
 * z is the int8 grid with z − 128), weights int8 symmetric per tensor or per output channel
 * (4-bit weights are int8 values on the same grid), biases int32 at s_x·s_w. Where an
 * operator's TFLite kernel wants equal input and output grids, or a fixed output grid
 * (LOGISTIC, SOFTMAX), a QUANTIZE moves the value onto quantflow's grid.
 */
import { attrFloat, attrInt, normalizeAxis } from '../../graph/graph.js';
import { hostTail } from '../../graph/host-tail.js';
import type { Model, Node } from '../../graph/types.js';
import { toFloat32 } from '../../graph/tensor.js';
import type { Preprocess } from '../../data/preprocess.js';
import { buildNpuPackage } from '../../npu/package.js';
import { qdqView, type QdqView } from '../../npu/qdq-view.js';
import { TFLITE_LOGISTIC_SCALE, TFLITE_LOGISTIC_ZERO_POINT } from '../../npu/tflite-lut.js';
import type { ConvLayer, NpuLayer, NpuPackage, TensorInfo, Window } from '../../npu/types.js';
import type { Grid } from '../../quantization/grid.js';
import type { TargetProfile } from '../../quantization/profile.js';
import { QuantflowError } from '../../util/errors.js';
import { ACT, OP, options, SAME, TfliteBuilder, VALID, type OptionsSpec, type TensorSpec } from './flatbuffer.js';
import { exportHostTail } from './host-ops.js';
import { NCHW_TO_TFLITE, NHWC_AXES, sameOrder, tfliteAxis, tfliteShape, toNhwc } from './layout.js';
import { modelMetadata, quantflowMetadata, runtimeVersion, type LayerBits } from './metadata.js';
import { builtinVersion } from './versions.js';

/** Element type of the exported model's inputs and outputs. */
export type IoType = 'int8' | 'uint8' | 'float32';
export const IO_TYPES: readonly IoType[] = ['int8', 'uint8', 'float32'];

export interface TfliteExportOptions {
  /** Type of the graph inputs and outputs (default int8); QUANTIZE/DEQUANTIZE convert at the boundary. */
  ioType?: IoType;
  /** The preprocessing of the run, for the input's NormalizationOptions (default: the QDQ model's metadata). */
  preprocess?: Preprocess;
  /** The run's NPU package when the caller has built it already. */
  npu?: NpuPackage;
  /**
   * Package tensors to expose as further graph outputs after the model's (converted to
   * `ioType` like them), so a runtime can be compared with the integer executor tensor by
   * tensor (`npm run bench:tflite-layers`).
   */
  probes?: string[];
  /**
   * Whether the file carries the host tail (ARG_MAX, SSD's TFLite_Detection_PostProcess; default
   * true). With false it ends at the NPU package's outputs, all integer, and the caller runs the
   * post-processing: what toolchains that take only the integer part expect.
   */
  hostTail?: boolean;
}

/** The metadata entry with quantflow's own description of the export (JSON). */
export const QUANTFLOW_METADATA = 'quantflow';

/**
 * Writes the quantized model `qdq` (a quantize run's `model.qdq.onnx`) for target `profile` as
 * a fully-integer TFLite flatbuffer: builtin operators, int8 activations, int8 weights per
 * tensor or per output channel, int32 biases, NHWC; host post-processing (ARG_MAX, SSD's
 * TFLite_Detection_PostProcess) as the TFLite operators of the original, fed through
 * DEQUANTIZE where they take float. Metadata: `min_runtime_version`, `TFLITE_METADATA` (the
 * input's normalization mean/std, so TFLite's task libraries preprocess as the run did) and
 * `quantflow` (profile, each layer's weight bits, preprocessing). Whatever TFLite's int8
 * scheme cannot express (16-bit activations, an operator without a builtin) is a one-line
 * QuantflowError naming the layer.
 */
export async function exportTflite(qdq: Model, profile: TargetProfile, opts: TfliteExportOptions = {}): Promise<Uint8Array> {
  const pkg = opts.npu ?? (await buildNpuPackage(qdq, profile));
  const w = new Writer(qdq, pkg);
  const ioType = opts.ioType ?? 'int8';
  const inputs = pkg.inputs.map((name) => w.graphInput(name, ioType));
  for (const layer of pkg.layers) w.layer(layer);
  const outputs = opts.hostTail === false ? pkg.outputs.map((name) => w.probe(name, ioType)) : w.graphOutputs(ioType);
  for (const name of opts.probes ?? []) outputs.push(w.probe(name, ioType));
  const b = w.builder;
  b.description = `quantflow ${profile.name} export of ${qdq.graph.name}`;
  const preprocess = opts.preprocess ?? recordedPreprocess(qdq);
  b.versionOf = builtinVersion;
  b.metadata('min_runtime_version', runtimeVersion(b.operatorVersions()));
  b.metadata('TFLITE_METADATA', modelMetadata(qdq.graph.name, preprocess, pkg.inputs.length));
  b.metadata(QUANTFLOW_METADATA, quantflowMetadata(profile, w.layerBits, preprocess, ioType));
  return b.build(inputs, outputs);
}

function recordedPreprocess(qdq: Model): Preprocess | undefined {
  const json = qdq.metadata['quantflow.preprocess'];
  return json === undefined ? undefined : (JSON.parse(json) as Preprocess);
}

/** TFLite's fixed output grids of LOGISTIC and SOFTMAX (int8). */
const LOGISTIC_GRID = { scale: TFLITE_LOGISTIC_SCALE, zeroPoint: TFLITE_LOGISTIC_ZERO_POINT };
const TANH_GRID = { scale: 1 / 128, zeroPoint: 0 };

/** An int8 grid as TFLite stores it: uint8 grids move down by 128. */
interface Int8Grid {
  scale: number;
  zeroPoint: number;
}

class Writer {
  readonly builder = new TfliteBuilder();
  readonly layerBits: LayerBits[] = [];
  private readonly view: QdqView;
  private readonly nodes = new Map<string, Node>();
  /** TFLite tensor of each package tensor (and of each QDQ value the tail reads). */
  private readonly index = new Map<string, number>();
  private readonly fresh = new Map<string, number>();

  constructor(
    private readonly qdq: Model,
    private readonly pkg: NpuPackage,
  ) {
    this.view = qdqView(qdq.graph);
    for (const n of qdq.graph.nodes) this.nodes.set(n.name, n);
  }

  private op(code: number, inputs: number[], outputs: number[], opts?: OptionsSpec): void {
    this.builder.op(code, inputs, outputs, opts);
  }

  private name(base: string): string {
    const k = this.fresh.get(base) ?? 0;
    this.fresh.set(base, k + 1);
    return k ? `${base}_${k}` : base;
  }

  private node(layer: { name: string }): Node {
    const n = this.nodes.get(layer.name);
    if (!n) throw new QuantflowError(`layer '${layer.name}' has no node of that name in the QDQ model`);
    return n;
  }

  private fail(layer: { name: string }, message: string): never {
    throw new QuantflowError(`layer '${layer.name}': ${message}; the QDQ model and the NPU package still hold it`);
  }

  /** The package tensor's grid as TFLite int8, or an error for anything wider than 8 bits. */
  private grid(layer: { name: string }, g: Grid): Int8Grid {
    if (g.qmax - g.qmin !== 255)
      this.fail(
        layer,
        `its ${Math.log2(g.qmax - g.qmin + 1)}-bit activations have no form in TFLite's int8 scheme (8-bit activations only)`,
      );
    return { scale: g.scale, zeroPoint: g.qmin === 0 ? g.zeroPoint - 128 : g.zeroPoint };
  }

  private activation(name: string, shape: number[], g: Int8Grid, type: TensorSpec['type'] = 'int8'): number {
    return this.builder.tensor({ name: this.name(name), shape, type, quant: { scale: [g.scale], zeroPoint: [g.zeroPoint] } });
  }

  /** The TFLite tensor of package tensor `name`, created on first use. */
  private tensor(layer: { name: string }, name: string): number {
    const known = this.index.get(name);
    if (known !== undefined) return known;
    const info = this.pkg.tensors[name];
    if (!info) this.fail(layer, `reads '${name}', which the package does not compute`);
    const i = this.activation(name, tfliteShape(info.shape), this.grid(layer, info.grid));
    this.index.set(name, i);
    return i;
  }

  private info(name: string): TensorInfo {
    return this.pkg.tensors[name]!;
  }

  private int32Constant(name: string, values: number[]): number {
    return this.builder.constant(this.name(name), [values.length], values, 'int32');
  }

  /** `from` requantized onto grid `to` by a QUANTIZE, into a new tensor (or `into`). */
  private requantize(from: number, to: Int8Grid, into?: number): number {
    const src = this.builder.tensorAt(from);
    const out = into ?? this.activation(`${src.name}_requantized`, src.shape, to);
    this.op(OP.QUANTIZE, [from], [out]);
    return out;
  }

  private sameGrid(a: number, g: Int8Grid): boolean {
    const q = this.builder.tensorAt(a).quant!;
    return q.scale[0] === g.scale && q.zeroPoint[0] === g.zeroPoint;
  }

  graphInput(name: string, ioType: IoType): number {
    const where = { name };
    const t = this.tensor(where, name);
    if (ioType === 'int8') return t;
    const spec = this.builder.tensorAt(t);
    const g = { scale: spec.quant!.scale[0]!, zeroPoint: spec.quant!.zeroPoint[0]! };
    const input =
      ioType === 'uint8'
        ? this.activation(`${name}_uint8`, spec.shape, { scale: g.scale, zeroPoint: g.zeroPoint + 128 }, 'uint8')
        : this.builder.tensor({ name: this.name(`${name}_float`), shape: spec.shape, type: 'float32' });
    this.op(OP.QUANTIZE, [input], [t]);
    return input;
  }

  /**
   * The graph outputs: each model output the package computes (a final Softmax as SOFTMAX on
   * TFLite's fixed grid), then the host tail's outputs; converted to `ioType`.
   */
  graphOutputs(ioType: IoType): number[] {
    const graph = this.qdq.graph;
    const tail = hostTail(graph);
    const tailOutputs = new Set(tail.flatMap((n) => n.outputs));
    const producers = new Map(graph.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
    const valueTensor = (value: string): number | undefined => {
      const name = this.view.tensorOf.get(value) ?? this.view.quantizedAs.get(value)?.tensor ?? value;
      return this.pkg.tensors[name] ? this.tensor({ name: value }, name) : undefined;
    };
    const tailValues = tail.length ? exportHostTail(this.builder, this.qdq, tail, valueTensor) : new Map();
    const outputs: number[] = [];
    for (const o of graph.outputs) {
      if (tailOutputs.has(o.name)) {
        outputs.push(tailValues.get(o.name)!);
        continue;
      }
      const producer = producers.get(o.name);
      let t = valueTensor(o.name);
      if (t === undefined && producer?.opType === 'Softmax') t = this.softmax(producer, valueTensor(producer.inputs[0]!));
      if (t === undefined)
        throw new QuantflowError(`model output '${o.name}' is not computed in integers, so it has no place in an int8 TFLite model`);
      outputs.push(this.boundaryOutput(t, ioType));
    }
    return outputs;
  }

  /** Package tensor `name` as a graph output (a probe, or a package output without the host tail). */
  probe(name: string, ioType: IoType): number {
    if (!this.pkg.tensors[name]) throw new QuantflowError(`probe '${name}' is not a tensor of the NPU package`);
    return this.boundaryOutput(this.tensor({ name }, name), ioType);
  }

  private softmax(node: Node, logits: number | undefined): number {
    if (logits === undefined) this.fail(node, 'its input is not an integer tensor of the package');
    const x = this.builder.tensorAt(logits);
    const axis = normalizeAxis(attrInt(node, 'axis', -1), x.shape.length, node);
    if (axis !== x.shape.length - 1) this.fail(node, 'TFLite SOFTMAX runs over the last axis only');
    const y = this.activation(node.outputs[0]!, x.shape, LOGISTIC_GRID);
    this.op(OP.SOFTMAX, [logits], [y], options.softmax(1));
    return y;
  }

  private boundaryOutput(t: number, ioType: IoType): number {
    if (ioType === 'int8') return t;
    const spec = this.builder.tensorAt(t);
    const q = spec.quant!;
    const out =
      ioType === 'uint8'
        ? this.activation(`${spec.name}_uint8`, spec.shape, { scale: q.scale[0]!, zeroPoint: q.zeroPoint[0]! + 128 }, 'uint8')
        : this.builder.tensor({ name: this.name(`${spec.name}_float`), shape: spec.shape, type: 'float32' });
    this.op(ioType === 'uint8' ? OP.QUANTIZE : OP.DEQUANTIZE, [t], [out]);
    return out;
  }

  layer(layer: NpuLayer): void {
    switch (layer.op) {
      case 'conv':
        return this.conv(layer);
      case 'fc':
        return this.fullyConnected(layer);
      case 'add':
        return this.binary(layer, layer.multipliers[1] < 0 ? OP.SUB : OP.ADD, layer.clamp);
      case 'tflite-add':
        return this.binary(layer, layer.subtract ? OP.SUB : OP.ADD, layer.clamp);
      case 'mul':
        return this.binary(layer, OP.MUL, layer.clamp);
      case 'avgpool':
      case 'tflite-avgpool':
        return this.averagePool(layer);
      case 'tflite-mean':
        return this.mean(layer);
      case 'maxpool':
        return this.maxPool(layer);
      case 'lut':
        return this.unary(layer);
      case 'reshape':
        return this.reshape(layer);
      case 'transpose':
        return this.transpose(layer);
      case 'select':
        return this.node(layer).opType === 'Resize' ? this.resizeNearest(layer) : this.stridedSlice(layer);
      case 'pad':
        return this.pad(layer);
      case 'concat':
        return this.concat(layer);
    }
    const unwritten: never = layer;
    this.fail(unwritten, 'its layer type has no TFLite form in the exporter');
  }

  /** The output tensor of a layer that computes new values. */
  private output(layer: NpuLayer): number {
    return this.tensor(layer, layer.output);
  }

  /** TFLite's fused activation that clamps to [lo, hi] on output grid g, or an error. */
  private fusedActivation(layer: NpuLayer, clamp: [number, number], g: Grid): number {
    const at = (x: number) => Math.min(g.qmax, Math.max(g.qmin, g.zeroPoint + Math.round(x / g.scale)));
    const candidates: [number, number, number][] = [
      [ACT.NONE, g.qmin, g.qmax],
      [ACT.RELU, at(0), g.qmax],
      [ACT.RELU6, at(0), at(6)],
      [ACT.RELU_N1_TO_1, at(-1), at(1)],
    ];
    const hit = candidates.find(([, lo, hi]) => lo === clamp[0] && hi === clamp[1]);
    if (!hit)
      this.fail(layer, `its fused clamp [${clamp}] on the output grid is none of TFLite's fused activations (RELU, RELU6, RELU_N1_TO_1)`);
    return hit[0];
  }

  /** SAME or VALID padding of a window, or null when neither gives its pads. */
  private padding(w: Window, inHw: number[], outHw: number[]): number | null {
    if (
      w.pads.every((p) => p === 0) &&
      outHw.every((o, i) => o === Math.floor((inHw[i]! - ((w.kernel[i]! - 1) * w.dilations[i]! + 1)) / w.strides[i]!) + 1)
    )
      return VALID;
    const same = [0, 1].map((i) => {
      const extent = (w.kernel[i]! - 1) * w.dilations[i]! + 1;
      const out = Math.ceil(inHw[i]! / w.strides[i]!);
      const total = Math.max(0, (out - 1) * w.strides[i]! + extent - inHw[i]!);
      return { out, before: Math.floor(total / 2), after: total - Math.floor(total / 2) };
    });
    const matches =
      same[0]!.out === outHw[0] &&
      same[1]!.out === outHw[1] &&
      w.pads[0] === same[0]!.before &&
      w.pads[2] === same[0]!.after &&
      w.pads[1] === same[1]!.before &&
      w.pads[3] === same[1]!.after;
    return matches ? SAME : null;
  }

  /** The input of a windowed layer, explicitly zero-padded (with its zero point) when TFLite's SAME/VALID cannot say the pads. */
  private windowInput(layer: NpuLayer & Window, x: number, outHw: number[]): { input: number; padding: number } {
    const inShape = this.info(layer.inputs[0]!).shape;
    const padding = this.padding(layer, inShape.slice(2), outHw);
    if (padding !== null) return { input: x, padding };
    const [top, left, bottom, right] = layer.pads;
    const src = this.builder.tensorAt(x);
    const shape = [src.shape[0]!, src.shape[1]! + top + bottom, src.shape[2]! + left + right, src.shape[3]!];
    const padded = this.builder.tensor({ name: this.name(`${layer.name}_padded`), shape, type: 'int8', quant: src.quant });
    const pads = this.builder.constant(this.name(`${layer.name}_pads`), [4, 2], [0, 0, top, bottom, left, right, 0, 0], 'int32');
    this.op(OP.PAD, [x, pads], [padded]);
    return { input: padded, padding: VALID };
  }

  private weightScales(layer: { name: string }, node: Node): Float32Array {
    const c = this.view.constants.get(node.inputs[1] ?? '');
    if (!c) this.fail(layer, 'its weights are not a constant behind DequantizeLinear');
    return c.scale;
  }

  private bias(layer: ConvLayer | Extract<NpuLayer, { op: 'fc' }>, sx: number, sw: Float32Array, outC: number): number {
    const scale = Array.from({ length: outC }, (_, c) => Math.fround(sx * sw[sw.length > 1 ? c : 0]!));
    const data = layer.bias ? Array.from(layer.bias.data) : new Array<number>(outC).fill(0);
    return this.builder.constant(this.name(`${layer.name}_bias`), [outC], data, 'int32', {
      scale: sw.length > 1 ? scale : [scale[0]!],
      zeroPoint: new Array<number>(sw.length > 1 ? outC : 1).fill(0),
      axis: 0,
    });
  }

  private recordBits(layer: NpuLayer & { weights: { dtype: string } }, granularity: 'tensor' | 'channel'): void {
    this.layerBits.push({ layer: layer.name, bits: layer.weights.dtype === 'int4' ? 4 : 8, granularity });
  }

  private conv(layer: ConvLayer): void {
    const node = this.node(layer);
    const x = this.tensor(layer, layer.inputs[0]!);
    const xInfo = this.info(layer.inputs[0]!);
    const yInfo = this.info(layer.output);
    const [outC, inPerGroup, kh, kw] = layer.weights.shape as [number, number, number, number];
    const inC = xInfo.shape[1]!;
    const depthwise = layer.group > 1 && layer.group === inC && inPerGroup === 1;
    if (layer.group > 1 && !depthwise)
      this.fail(
        layer,
        `a convolution with ${layer.group} groups of ${inPerGroup} channels has no TFLite builtin (CONV_2D or DEPTHWISE_CONV_2D)`,
      );
    const sw = this.weightScales(layer, node);
    const sx = xInfo.grid.scale;
    const q = layer.weights.data;
    let weights: number;
    const wq = { scale: Array.from(sw), zeroPoint: new Array<number>(sw.length).fill(0) };
    if (depthwise) {
      // [C_out, 1, kh, kw] → [1, kh, kw, C_out], quantized along the last axis.
      const data = new Int8Array(q.length);
      for (let o = 0; o < outC; o++) for (let p = 0; p < kh * kw; p++) data[p * outC + o] = q[o * kh * kw + p]!;
      weights = this.builder.constant(this.name(`${layer.name}_weights`), [1, kh, kw, outC], data, 'int8', { ...wq, axis: 3 });
    } else {
      const data = toNhwc(q, [outC, inPerGroup, kh, kw], new Int8Array(q.length));
      weights = this.builder.constant(this.name(`${layer.name}_weights`), [outC, kh, kw, inPerGroup], data, 'int8', { ...wq, axis: 0 });
    }
    this.recordBits(layer, sw.length > 1 ? 'channel' : 'tensor');
    const bias = this.bias(layer, sx, sw, outC);
    const outHw = yInfo.shape.slice(2);
    const { input, padding } = this.windowInput(layer, x, outHw);
    const y = this.output(layer);
    const activation = this.fusedActivation(layer, layer.clamp, yInfo.grid);
    const stride = layer.strides;
    if (depthwise) {
      this.op(
        OP.DEPTHWISE_CONV_2D,
        [input, weights, bias],
        [y],
        options.depthwise({ padding, stride, multiplier: outC / inC, activation, dilation: layer.dilations }),
      );
    } else this.op(OP.CONV_2D, [input, weights, bias], [y], options.conv2d({ padding, stride, activation, dilation: layer.dilations }));
  }

  /**
   * FULLY_CONNECTED with per-tensor weights; per-channel weights as a 1x1 CONV_2D between
   * reshapes, since per-channel FULLY_CONNECTED is recent (TFLite 2.10) and runtimes such as
   * Arm NN refuse it, while per-channel CONV_2D is the int8 spec's baseline.
   */
  private fullyConnected(layer: Extract<NpuLayer, { op: 'fc' }>): void {
    const node = this.node(layer);
    const x = this.tensor(layer, layer.inputs[0]!);
    const xInfo = this.info(layer.inputs[0]!);
    const [outC, k] = layer.weights.shape as [number, number];
    const sw = this.weightScales(layer, node);
    const perChannel = sw.length > 1;
    const wq = { scale: Array.from(sw), zeroPoint: new Array<number>(sw.length).fill(0), axis: 0 };
    const weights = this.builder.constant(
      this.name(`${layer.name}_weights`),
      perChannel ? [outC, 1, 1, k] : [outC, k],
      layer.weights.data,
      'int8',
      wq,
    );
    this.recordBits(layer, perChannel ? 'channel' : 'tensor');
    const bias = this.bias(layer, xInfo.grid.scale, sw, outC);
    const y = this.output(layer);
    const activation = this.fusedActivation(layer, layer.clamp, this.info(layer.output).grid);
    if (!perChannel) {
      const opts = xInfo.shape.length > 2 ? options.fullyConnectedKeepDims(activation) : options.fullyConnected(activation);
      return this.op(OP.FULLY_CONNECTED, [x, weights, bias], [y], opts);
    }
    const rows = xInfo.shape.slice(0, -1).reduce((a, b) => a * b, 1);
    const x4 = this.reshapeTo(x, [rows, 1, 1, k], `${layer.name}_rows`);
    const ySpec = this.builder.tensorAt(y);
    const y4 = this.builder.tensor({ ...ySpec, name: this.name(`${layer.name}_conv`), shape: [rows, 1, 1, outC] });
    this.op(OP.CONV_2D, [x4, weights, bias], [y4], options.conv2d({ padding: VALID, activation }));
    this.reshapeTo(y4, ySpec.shape, `${layer.name}_out`, y);
  }

  /** ADD/SUB/MUL of two tensors; a lower-rank operand of a 4-D one is first made 4-D (NHWC broadcasting aligns trailing axes). */
  private binary(layer: Extract<NpuLayer, { op: 'add' | 'tflite-add' | 'mul' }>, code: number, clamp: [number, number]): void {
    const outRank = this.info(layer.output).shape.length;
    const [a, b] = layer.inputs.map((name) => this.broadcastOperand(layer, name, outRank)) as [number, number];
    const y = this.output(layer);
    const activation = this.fusedActivation(layer, clamp, this.info(layer.output).grid);
    const opts = code === OP.ADD ? options.add(activation) : code === OP.SUB ? options.sub(activation) : options.mul(activation);
    this.op(code, [a, b], [y], opts);
  }

  private broadcastOperand(layer: NpuLayer, name: string, outRank: number): number {
    const t = this.tensor(layer, name);
    const shape = this.info(name).shape;
    if (outRank !== 4 || shape.length === 4) return t;
    const nchw = [...new Array<number>(4 - shape.length).fill(1), ...shape];
    return this.reshapeTo(t, tfliteShape(nchw), `${name}_4d`);
  }

  private reshapeTo(x: number, shape: number[], base: string, into?: number): number {
    const src = this.builder.tensorAt(x);
    const out = into ?? this.builder.tensor({ name: this.name(base), shape, type: src.type, quant: src.quant });
    this.op(OP.RESHAPE, [x, this.int32Constant(`${base}_shape`, shape)], [out], options.reshape(shape));
    return out;
  }

  private averagePool(layer: Extract<NpuLayer, { op: 'avgpool' | 'tflite-avgpool' }>): void {
    const node = this.node(layer);
    const x = this.tensor(layer, layer.inputs[0]!);
    const xInfo = this.info(layer.inputs[0]!);
    const yInfo = this.info(layer.output);
    const y = this.output(layer);
    const [h, w] = xInfo.shape.slice(2) as [number, number];
    if (node.opType !== 'AveragePool' && layer.kernel[0] === h && layer.kernel[1] === w) return this.mean(layer);
    if (layer.op === 'avgpool' && layer.countIncludePad && layer.pads.some((p) => p > 0))
      this.fail(layer, 'average pooling that counts padded cells has no TFLite form (AVERAGE_POOL_2D averages the valid cells only)');
    const outHw = yInfo.shape.slice(2);
    const padding = this.padding(layer, [h, w], outHw);
    if (padding === null) this.fail(layer, `pads [${layer.pads}] are neither TFLite's SAME nor VALID`);
    const activation = this.fusedActivation(layer, layer.clamp, yInfo.grid);
    const xg = this.grid(layer, xInfo.grid);
    // AVERAGE_POOL_2D keeps its input's grid (TFLite's int8 spec).
    const pooled = this.sameGrid(y, xg) ? y : this.activation(`${layer.name}_pooled`, tfliteShape(yInfo.shape), xg);
    this.op(OP.AVERAGE_POOL_2D, [x], [pooled], options.pool({ padding, stride: layer.strides, filter: layer.kernel, activation }));
    if (pooled !== y) this.requantize(pooled, this.grid(layer, yInfo.grid), y);
  }

  /** A global average pool as MEAN over height and width, which requantizes to any output grid. */
  private mean(layer: Extract<NpuLayer, { op: 'avgpool' | 'tflite-avgpool' | 'tflite-mean' }>): void {
    const yInfo = this.info(layer.output);
    if (this.fusedActivation(layer, layer.clamp, yInfo.grid) !== ACT.NONE)
      this.fail(layer, 'a clamp after a global mean has no TFLite form');
    const x = this.tensor(layer, layer.inputs[0]!);
    this.op(
      OP.MEAN,
      [x, this.int32Constant(`${layer.name}_axes`, [1, 2])],
      [this.output(layer)],
      options.reducer(yInfo.shape.length === 4),
    );
  }

  private maxPool(layer: Extract<NpuLayer, { op: 'maxpool' }>): void {
    const x = this.tensor(layer, layer.inputs[0]!);
    const xInfo = this.info(layer.inputs[0]!);
    const yInfo = this.info(layer.output);
    const padding = this.padding(layer, xInfo.shape.slice(2), yInfo.shape.slice(2));
    if (padding === null) this.fail(layer, `pads [${layer.pads}] are neither TFLite's SAME nor VALID`);
    if (layer.dilations.some((d) => d !== 1)) this.fail(layer, 'TFLite MAX_POOL_2D has no dilation');
    this.op(OP.MAX_POOL_2D, [x], [this.output(layer)], options.pool({ padding, stride: layer.strides, filter: layer.kernel }));
  }

  /** A lookup-table layer as the TFLite operator its QDQ node is. */
  private unary(layer: Extract<NpuLayer, { op: 'lut' }>): void {
    const node = this.node(layer);
    const x = this.tensor(layer, layer.inputs[0]!);
    const y = this.output(layer);
    const yg = this.grid(layer, this.info(layer.output).grid);
    const fixed = (code: number, grid: Int8Grid, opts?: OptionsSpec) => {
      const direct = this.sameGrid(y, grid);
      const out = direct ? y : this.activation(`${layer.name}_${node.opType.toLowerCase()}`, this.builder.tensorAt(y).shape, grid);
      this.op(code, [x], [out], opts);
      if (!direct) this.requantize(out, yg, y);
    };
    switch (node.opType) {
      case 'Relu':
        return this.op(OP.RELU, [x], [y]);
      case 'Clip': {
        const lo = node.inputs[1] ? this.scalar(layer, node.inputs[1]) : attrFloat(node, 'min', -Infinity);
        const hi = node.inputs[2] ? this.scalar(layer, node.inputs[2]) : attrFloat(node, 'max', Infinity);
        const code = lo === 0 && hi === 6 ? OP.RELU6 : lo === -1 && hi === 1 ? OP.RELU_N1_TO_1 : lo === 0 && hi === Infinity ? OP.RELU : -1;
        if (code < 0) this.fail(layer, `Clip(${lo}, ${hi}) is none of TFLite's RELU, RELU6, RELU_N1_TO_1`);
        return this.op(code, [x], [y]);
      }
      case 'HardSwish':
        return this.op(OP.HARD_SWISH, [x], [y]);
      case 'Sigmoid':
        return fixed(OP.LOGISTIC, LOGISTIC_GRID);
      case 'Tanh':
        return fixed(OP.TANH, TANH_GRID);
      case 'LeakyRelu':
        return this.op(OP.LEAKY_RELU, [x], [y], options.leakyRelu(attrFloat(node, 'alpha', 0.01)));
      case 'Add':
      case 'Sub':
      case 'Mul':
      case 'Div':
        return this.constantOperand(layer, node, x, y);
    }
    this.fail(layer, `${node.opType} has no TFLite builtin`);
  }

  private scalar(layer: NpuLayer, name: string): number {
    const t = this.qdq.graph.initializers.get(name);
    if (!t || t.data.length !== 1) this.fail(layer, `'${name}' is not a constant scalar`);
    return toFloat32(t)[0]!;
  }

  /** Add/Sub/Mul/Div by a scalar constant: the binary TFLite op with the constant as a one-element int8 tensor (±127 on scale |c|/127, exact up to float32). */
  private constantOperand(layer: NpuLayer, node: Node, x: number, y: number): void {
    const constantAt = node.inputs.findIndex((i) => this.qdq.graph.initializers.has(i) && !this.pkg.tensors[i]);
    let c = this.scalar(layer, node.inputs[constantAt]!);
    const code: number = { Add: OP.ADD, Sub: OP.SUB, Mul: OP.MUL, Div: OP.MUL }[node.opType as 'Add'];
    if (node.opType === 'Div') {
      if (constantAt === 0) this.fail(layer, 'a constant divided by a tensor has no TFLite int8 form');
      c = 1 / c;
    }
    const constant = this.builder.constant(this.name(`${layer.name}_constant`), [1], [c === 0 ? 0 : Math.sign(c) * 127], 'int8', {
      scale: [c === 0 ? 1 : Math.abs(c) / 127],
      zeroPoint: [0],
    });
    const inputs = constantAt === 0 ? [constant, x] : [x, constant];
    this.op(code, inputs, [y], code === OP.MUL ? options.mul() : code === OP.SUB ? options.sub() : options.add());
  }

  private reshape(layer: Extract<NpuLayer, { op: 'reshape' }>): void {
    const x = this.tensor(layer, layer.inputs[0]!);
    const xs = this.info(layer.inputs[0]!).shape;
    const ys = this.info(layer.output).shape;
    const y = this.output(layer);
    let from = x;
    if (!sameOrder(xs)) {
      // Back to NCHW order first, so the reshape lists elements as the ONNX model does.
      from = this.builder.tensor({ ...this.builder.tensorAt(x), name: this.name(`${layer.name}_nchw`), shape: [...xs] });
      this.op(OP.TRANSPOSE, [x, this.int32Constant(`${layer.name}_to_nchw`, [0, 3, 1, 2])], [from]);
    }
    if (sameOrder(ys)) return void this.reshapeTo(from, tfliteShape(ys), `${layer.name}_reshaped`, y);
    const nchw = this.reshapeTo(from, ys, `${layer.name}_reshaped_nchw`);
    this.op(OP.TRANSPOSE, [nchw, this.int32Constant(`${layer.name}_to_nhwc`, [...NHWC_AXES])], [y]);
  }

  private transpose(layer: Extract<NpuLayer, { op: 'transpose' }>): void {
    const x = this.tensor(layer, layer.inputs[0]!);
    const p = layer.perm;
    const perm = p.length === 4 ? NHWC_AXES.map((a) => NCHW_TO_TFLITE[p[a]!]!) : p;
    this.op(OP.TRANSPOSE, [x, this.int32Constant(`${layer.name}_perm`, perm)], [this.output(layer)]);
  }

  private pad(layer: Extract<NpuLayer, { op: 'pad' }>): void {
    const x = this.tensor(layer, layer.inputs[0]!);
    const rank = layer.pads.length / 2;
    const axes = rank === 4 ? [...NHWC_AXES] : Array.from({ length: rank }, (_, i) => i);
    const pads = axes.flatMap((a) => [layer.pads[a]!, layer.pads[a + rank]!]);
    const padsT = this.builder.constant(this.name(`${layer.name}_pads`), [rank, 2], pads, 'int32');
    this.op(OP.PAD, [x, padsT], [this.output(layer)]);
  }

  /** Slice as STRIDED_SLICE: each axis's index map is begin, begin + stride, ... */
  private stridedSlice(layer: Extract<NpuLayer, { op: 'select' }>): void {
    const x = this.tensor(layer, layer.inputs[0]!);
    const rank = layer.index.length;
    const axes = rank === 4 ? [...NHWC_AXES] : Array.from({ length: rank }, (_, i) => i);
    const begin: number[] = [];
    const end: number[] = [];
    const strides: number[] = [];
    for (const a of axes) {
      const idx = layer.index[a]!;
      const stride = idx.length > 1 ? idx[1]! - idx[0]! : 1;
      if (stride === 0 || idx.some((v, i) => v !== idx[0]! + i * stride))
        this.fail(layer, `axis ${a} does not select an arithmetic progression`);
      begin.push(idx[0]!);
      strides.push(stride);
      // An end one stride past the last index; -1 past the front ends a negative stride at index 0.
      const last = idx[0]! + (idx.length - 1) * stride;
      end.push(stride < 0 && last === 0 ? -this.info(layer.inputs[0]!).shape[a]! - 1 : last + Math.sign(stride));
    }
    const t = (n: string, v: number[]) => this.int32Constant(`${layer.name}_${n}`, v);
    this.op(OP.STRIDED_SLICE, [x, t('begin', begin), t('end', end), t('strides', strides)], [this.output(layer)], options.stridedSlice({}));
  }

  /** Nearest-neighbour Resize as RESIZE_NEAREST_NEIGHBOR, with whichever of its coordinate rules gives the package's index maps. */
  private resizeNearest(layer: Extract<NpuLayer, { op: 'select' }>): void {
    const x = this.tensor(layer, layer.inputs[0]!);
    const xs = this.info(layer.inputs[0]!).shape;
    const ys = this.info(layer.output).shape;
    if (xs.length !== 4 || xs[0] !== ys[0] || xs[1] !== ys[1]) this.fail(layer, 'only a resize of height and width has a TFLite builtin');
    const rules = [
      { alignCorners: false, halfPixel: false },
      { alignCorners: false, halfPixel: true },
      { alignCorners: true, halfPixel: false },
    ];
    const rule = rules.find((r) => [2, 3].every((a) => nearestIndex(xs[a]!, ys[a]!, r).every((v, i) => v === layer.index[a]![i])));
    if (!rule)
      this.fail(
        layer,
        'its nearest-neighbour coordinates match none of RESIZE_NEAREST_NEIGHBOR’s rules (align_corners, half_pixel_centers)',
      );
    const size = this.int32Constant(`${layer.name}_size`, ys.slice(2));
    this.op(OP.RESIZE_NEAREST_NEIGHBOR, [x, size], [this.output(layer)], options.resizeNearest(rule));
  }

  /** CONCATENATION, each input first moved onto the output grid when its own differs (TFLite's int8 spec: one grid). */
  private concat(layer: Extract<NpuLayer, { op: 'concat' }>): void {
    const y = this.output(layer);
    const yInfo = this.info(layer.output);
    const yg = this.grid(layer, yInfo.grid);
    const inputs = layer.inputs.map((name) => {
      const t = this.tensor(layer, name);
      return this.sameGrid(t, yg) ? t : this.requantize(t, yg);
    });
    this.op(OP.CONCATENATION, inputs, [y], options.concatenation(tfliteAxis(layer.axis, yInfo.shape.length)));
  }
}

/** TFLite's reference RESIZE_NEAREST_NEIGHBOR source index of each output coordinate. */
function nearestIndex(inSize: number, outSize: number, r: { alignCorners: boolean; halfPixel: boolean }): number[] {
  const scale = Math.fround(r.alignCorners && outSize > 1 ? (inSize - 1) / (outSize - 1) : inSize / outSize);
  const offset = r.halfPixel ? 0.5 : 0;
  return Array.from({ length: outSize }, (_, o) => {
    const v = Math.fround((o + offset) * scale);
    const i = Math.min(r.alignCorners ? Math.round(v) : Math.floor(v), inSize - 1);
    return r.halfPixel ? Math.max(0, i) : i;
  });
}
