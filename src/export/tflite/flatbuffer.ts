/**
 * A TFLite flatbuffer writer: tensors (float and quantized), builtin and custom operators,
 * buffers and metadata entries of one subgraph. The exporter (export.ts) and the tests'
 * hand-built models both write through it. Field slots are re-derived from schema.fbs here
 * rather than shared with the importer (import/tflite/schema.ts), so a wrong slot on either
 * side shows up as a failing round trip.
 */
import { Builder } from 'flatbuffers';

/** Builtin operator codes (schema.fbs BuiltinOperator). */
export const OP = {
  ADD: 0,
  AVERAGE_POOL_2D: 1,
  CONCATENATION: 2,
  CONV_2D: 3,
  DEPTHWISE_CONV_2D: 4,
  DEPTH_TO_SPACE: 5,
  DEQUANTIZE: 6,
  FULLY_CONNECTED: 9,
  LOGISTIC: 14,
  MAX_POOL_2D: 17,
  MUL: 18,
  RELU: 19,
  RELU_N1_TO_1: 20,
  RELU6: 21,
  RESHAPE: 22,
  RESIZE_BILINEAR: 23,
  SOFTMAX: 25,
  SPACE_TO_DEPTH: 26,
  TANH: 28,
  CUSTOM: 32,
  PAD: 34,
  GATHER: 36,
  TRANSPOSE: 39,
  MEAN: 40,
  SUB: 41,
  DIV: 42,
  SQUEEZE: 43,
  STRIDED_SLICE: 45,
  EXP: 47,
  SPLIT: 49,
  CAST: 53,
  PRELU: 54,
  MAXIMUM: 55,
  ARG_MAX: 56,
  MINIMUM: 57,
  TRANSPOSE_CONV: 67,
  SUM: 74,
  SQRT: 75,
  RSQRT: 76,
  ARG_MIN: 79,
  REDUCE_MAX: 82,
  PACK: 83,
  UNPACK: 88,
  FLOOR_DIV: 90,
  RESIZE_NEAREST_NEIGHBOR: 97,
  LEAKY_RELU: 98,
  SQUARED_DIFFERENCE: 99,
  SPLIT_V: 102,
  GATHER_ND: 107,
  QUANTIZE: 114,
  HARD_SWISH: 117,
  BATCH_MATMUL: 126,
  GELU: 150,
} as const;

const TYPES = { float32: 0, float16: 1, int32: 2, uint8: 3, int64: 4, int16: 7, int8: 9 } as const;
export type ElementType = keyof typeof TYPES;

/** Fused activation codes. */
export const ACT = { NONE: 0, RELU: 1, RELU_N1_TO_1: 2, RELU6: 3, TANH: 4 } as const;
export const SAME = 0;
export const VALID = 1;

export interface TensorSpec {
  name: string;
  shape: number[];
  type?: ElementType;
  /** Constant contents, as the stored (raw, possibly quantized) numbers; float16 takes raw bits. */
  data?: ArrayLike<number>;
  quant?: { scale: number[]; zeroPoint: number[]; axis?: number };
}

type Field =
  { slot: number; kind: 'int8' | 'int32' | 'bool' | 'float32'; value: number } | { slot: number; kind: 'int32s'; value: number[] };

/** A builtin options table: its BuiltinOptions union type and fields. */
export interface OptionsSpec {
  type: number;
  fields: Field[];
}

export interface OpSpec {
  code: number;
  inputs: number[];
  outputs: number[];
  options?: OptionsSpec;
  custom?: string;
  /** custom_options bytes (a flexbuffer for TFLite's own custom ops). */
  customOptions?: Uint8Array;
}

const int8 = (slot: number, value: number): Field => ({ slot, kind: 'int8', value });
const int32 = (slot: number, value: number): Field => ({ slot, kind: 'int32', value });

/** Options tables of the operators under test (slots from schema.fbs). */
export const options = {
  conv2d: (o: { padding?: number; stride?: [number, number]; activation?: number; dilation?: [number, number] }) => ({
    type: 1,
    fields: [
      int8(0, o.padding ?? VALID),
      int32(1, o.stride?.[1] ?? 1),
      int32(2, o.stride?.[0] ?? 1),
      int8(3, o.activation ?? ACT.NONE),
      int32(4, o.dilation?.[1] ?? 1),
      int32(5, o.dilation?.[0] ?? 1),
    ],
  }),
  depthwise: (o: {
    padding?: number;
    stride?: [number, number];
    multiplier: number;
    activation?: number;
    dilation?: [number, number];
  }) => ({
    type: 2,
    fields: [
      int8(0, o.padding ?? VALID),
      int32(1, o.stride?.[1] ?? 1),
      int32(2, o.stride?.[0] ?? 1),
      int32(3, o.multiplier),
      int8(4, o.activation ?? ACT.NONE),
      int32(5, o.dilation?.[1] ?? 1),
      int32(6, o.dilation?.[0] ?? 1),
    ],
  }),
  pool: (o: { padding?: number; stride: [number, number]; filter: [number, number]; activation?: number }) => ({
    type: 5,
    fields: [
      int8(0, o.padding ?? VALID),
      int32(1, o.stride[1]),
      int32(2, o.stride[0]),
      int32(3, o.filter[1]),
      int32(4, o.filter[0]),
      int8(5, o.activation ?? ACT.NONE),
    ],
  }),
  fullyConnected: (activation: number = ACT.NONE) => ({ type: 8, fields: [int8(0, activation)] }),
  softmax: (beta: number) => ({ type: 9, fields: [{ slot: 0, kind: 'float32', value: beta } as Field] }),
  concatenation: (axis: number, activation: number = ACT.NONE) => ({ type: 10, fields: [int32(0, axis), int8(1, activation)] }),
  add: (activation: number = ACT.NONE) => ({ type: 11, fields: [int8(0, activation)] }),
  reshape: (shape: number[]) => ({ type: 17, fields: [{ slot: 0, kind: 'int32s', value: shape } as Field] }),
  mul: (activation: number = ACT.NONE) => ({ type: 21, fields: [int8(0, activation)] }),
  reducer: (keepDims: boolean) => ({ type: 27, fields: [{ slot: 0, kind: 'bool', value: keepDims ? 1 : 0 } as Field] }),
  sub: (activation: number = ACT.NONE) => ({ type: 28, fields: [int8(0, activation)] }),
  squeeze: (dims: number[]) => ({ type: 30, fields: [{ slot: 0, kind: 'int32s', value: dims } as Field] }),
  resizeBilinear: (o: { alignCorners?: boolean; halfPixel?: boolean }) => ({
    type: 15,
    fields: [
      { slot: 2, kind: 'bool', value: o.alignCorners ? 1 : 0 } as Field,
      { slot: 3, kind: 'bool', value: o.halfPixel ? 1 : 0 } as Field,
    ],
  }),
  resizeNearest: (o: { alignCorners?: boolean; halfPixel?: boolean }) => ({
    type: 74,
    fields: [
      { slot: 0, kind: 'bool', value: o.alignCorners ? 1 : 0 } as Field,
      { slot: 1, kind: 'bool', value: o.halfPixel ? 1 : 0 } as Field,
    ],
  }),
  blockSize: (type: 19 | 94, size: number) => ({ type, fields: [int32(0, size)] }),
  gather: (axis: number) => ({ type: 23, fields: [int32(0, axis)] }),
  stridedSlice: (m: { begin?: number; end?: number; ellipsis?: number; shrink?: number }) => ({
    type: 32,
    fields: [int32(0, m.begin ?? 0), int32(1, m.end ?? 0), int32(2, m.ellipsis ?? 0), int32(4, m.shrink ?? 0)],
  }),
  split: (type: 35 | 79, num: number) => ({ type, fields: [int32(0, num)] }),
  argMax: (outputType: ElementType) => ({ type: 40, fields: [int8(0, TYPES[outputType])] }),
  transposeConv: (padding: number, stride: [number, number]) => ({
    type: 49,
    fields: [int8(0, padding), int32(1, stride[1]), int32(2, stride[0])],
  }),
  pack: (type: 59 | 64, count: number, axis: number) => ({ type, fields: [int32(0, count), int32(1, axis)] }),
  leakyRelu: (alpha: number) => ({ type: 75, fields: [{ slot: 0, kind: 'float32', value: alpha } as Field] }),
  /** FullyConnectedOptions with keep_num_dims (slot 2): the output keeps the input's leading dims. */
  fullyConnectedKeepDims: (activation: number = ACT.NONE) => ({
    type: 8,
    fields: [int8(0, activation), { slot: 2, kind: 'bool', value: 1 } as Field],
  }),
};

function encode(type: ElementType, values: ArrayLike<number>): Uint8Array {
  const arrays = {
    float32: Float32Array,
    float16: Uint16Array,
    int32: Int32Array,
    uint8: Uint8Array,
    int16: Int16Array,
    int8: Int8Array,
  } as const;
  if (type === 'int64') return new Uint8Array(BigInt64Array.from(Array.from(values), (v) => BigInt(v)).buffer);
  return new Uint8Array(arrays[type].from(values).buffer);
}

/** Collects tensors and operators, then writes the flatbuffer. */
export class TfliteBuilder {
  private readonly tensors: TensorSpec[] = [];
  private readonly ops: OpSpec[] = [];
  /** Named byte blobs of `Model.metadata` (min_runtime_version, TFLITE_METADATA, ...). */
  private readonly metadataEntries: { name: string; data: Uint8Array }[] = [];
  /** Write operator codes as pre-2.4 converters did: the byte field only. */
  legacyOpcodes = false;
  /** `Model.description`. */
  description = 'quantflow test model';
  /** The version written for a builtin operator; each operator code gets the highest among its operators. */
  versionOf: (op: OpSpec, tensor: (i: number) => TensorSpec) => number = () => 1;

  /** The tensor added as index `i`. */
  tensorAt(i: number): TensorSpec {
    const t = this.tensors[i];
    if (!t) throw new Error(`no tensor ${i}`);
    return t;
  }

  /** Adds a metadata entry: a named buffer. */
  metadata(name: string, data: Uint8Array): this {
    this.metadataEntries.push({ name, data });
    return this;
  }

  /** Adds a tensor and returns its index. */
  tensor(spec: TensorSpec): number {
    return this.tensors.push(spec) - 1;
  }

  /** Shorthand for a float32 activation tensor. */
  activation(name: string, shape: number[], quant?: TensorSpec['quant'], type: ElementType = 'float32'): number {
    return this.tensor({ name, shape, type, quant });
  }

  /** Shorthand for a constant tensor. */
  constant(name: string, shape: number[], data: ArrayLike<number>, type: ElementType = 'float32', quant?: TensorSpec['quant']): number {
    return this.tensor({ name, shape, type, data, quant });
  }

  op(code: number, inputs: number[], outputs: number[], opts?: OptionsSpec): this {
    this.ops.push({ code, inputs, outputs, options: opts });
    return this;
  }

  custom(name: string, inputs: number[], outputs: number[], customOptions?: Uint8Array): this {
    this.ops.push({ code: 32, inputs, outputs, custom: name, customOptions });
    return this;
  }

  /** Each builtin operator code used, with the version `versionOf` gives it. */
  operatorVersions(): Map<number, number> {
    const versions = new Map<number, number>();
    for (const op of this.ops) {
      if (op.custom !== undefined) continue;
      versions.set(
        op.code,
        Math.max(
          versions.get(op.code) ?? 1,
          this.versionOf(op, (i) => this.tensorAt(i)),
        ),
      );
    }
    return versions;
  }

  build(inputs: number[], outputs: number[]): Uint8Array {
    const b = new Builder(1024);
    const ints = (values: number[]): number => {
      b.startVector(4, values.length, 4);
      for (let i = values.length - 1; i >= 0; i--) b.addInt32(values[i]!);
      return b.endVector();
    };
    const tables = (offsets: number[]): number => {
      b.startVector(4, offsets.length, 4);
      for (let i = offsets.length - 1; i >= 0; i--) b.addOffset(offsets[i]!);
      return b.endVector();
    };

    // Buffer 0 is the empty sentinel; constants get one buffer each.
    const bufferData: (Uint8Array | null)[] = [null];
    const bufferOf = this.tensors.map((t) => (t.data ? bufferData.push(encode(t.type ?? 'float32', t.data)) - 1 : 0));
    const metadataBuffers = this.metadataEntries.map((m) => bufferData.push(m.data) - 1);
    const buffers = bufferData.map((data) => {
      let vec = 0;
      if (data) {
        // Aligned to 16 bytes, as TFLite's converter writes them, so runtimes may map the data in place.
        b.prep(16, data.length);
        vec = b.createByteVector(data);
      }
      b.startObject(1);
      if (vec) b.addFieldOffset(0, vec, 0);
      return b.endObject();
    });

    const tensors = this.tensors.map((t, i) => {
      const shape = ints(t.shape);
      const name = b.createString(t.name);
      let quant = 0;
      if (t.quant) {
        const scale = (() => {
          b.startVector(4, t.quant.scale.length, 4);
          for (let k = t.quant.scale.length - 1; k >= 0; k--) b.addFloat32(t.quant.scale[k]!);
          return b.endVector();
        })();
        b.startVector(8, t.quant.zeroPoint.length, 8);
        for (let k = t.quant.zeroPoint.length - 1; k >= 0; k--) b.addInt64(BigInt(t.quant.zeroPoint[k]!));
        const zeroPoint = b.endVector();
        b.startObject(7);
        b.addFieldOffset(2, scale, 0);
        b.addFieldOffset(3, zeroPoint, 0);
        b.addFieldInt32(6, t.quant.axis ?? 0, 0);
        quant = b.endObject();
      }
      b.startObject(5);
      b.addFieldOffset(0, shape, 0);
      b.addFieldInt8(1, TYPES[t.type ?? 'float32'], 0);
      b.addFieldInt32(2, bufferOf[i]!, 0);
      b.addFieldOffset(3, name, 0);
      if (quant) b.addFieldOffset(4, quant, 0);
      return b.endObject();
    });

    const codes: { code: number; custom?: string }[] = [];
    const codeIndex = this.ops.map((op) => {
      const k = codes.findIndex((c) => c.code === op.code && c.custom === op.custom);
      return k >= 0 ? k : codes.push({ code: op.code, custom: op.custom }) - 1;
    });
    const versions = this.operatorVersions();
    const operatorCodes = codes.map((c) => {
      const custom = c.custom ? b.createString(c.custom) : 0;
      b.startObject(4);
      // Codes past the byte range put the placeholder 127 in the old field.
      b.addFieldInt8(0, Math.min(c.code, 127), null);
      if (custom) b.addFieldOffset(1, custom, 0);
      b.addFieldInt32(2, c.custom === undefined ? (versions.get(c.code) ?? 1) : 1, null);
      if (!this.legacyOpcodes) b.addFieldInt32(3, c.code, null);
      return b.endObject();
    });

    const operators = this.ops.map((op, i) => {
      const inputsVec = ints(op.inputs);
      const outputsVec = ints(op.outputs);
      let customOptions = 0;
      if (op.customOptions) {
        b.startVector(1, op.customOptions.length, 1);
        for (let k = op.customOptions.length - 1; k >= 0; k--) b.addInt8(op.customOptions[k]!);
        customOptions = b.endVector();
      }
      let opts = 0;
      if (op.options) {
        const vectors = op.options.fields.map((f) => (f.kind === 'int32s' ? ints(f.value) : 0));
        b.startObject(Math.max(0, ...op.options.fields.map((f) => f.slot + 1)));
        op.options.fields.forEach((f, k) => {
          if (f.kind === 'int32s') b.addFieldOffset(f.slot, vectors[k]!, 0);
          else if (f.kind === 'int32') b.addFieldInt32(f.slot, f.value, null);
          else if (f.kind === 'float32') b.addFieldFloat32(f.slot, f.value, null);
          else b.addFieldInt8(f.slot, f.value, null);
        });
        opts = b.endObject();
      }
      b.startObject(6);
      b.addFieldInt32(0, codeIndex[i]!, null);
      b.addFieldOffset(1, inputsVec, 0);
      b.addFieldOffset(2, outputsVec, 0);
      if (op.options) {
        b.addFieldInt8(3, op.options.type, 0);
        b.addFieldOffset(4, opts, 0);
      }
      if (customOptions) b.addFieldOffset(5, customOptions, 0);
      return b.endObject();
    });

    const tensorsVec = tables(tensors);
    const inputsVec = ints(inputs);
    const outputsVec = ints(outputs);
    const operatorsVec = tables(operators);
    const sgName = b.createString('main');
    b.startObject(5);
    b.addFieldOffset(0, tensorsVec, 0);
    b.addFieldOffset(1, inputsVec, 0);
    b.addFieldOffset(2, outputsVec, 0);
    b.addFieldOffset(3, operatorsVec, 0);
    b.addFieldOffset(4, sgName, 0);
    const subgraph = b.endObject();

    const codesVec = tables(operatorCodes);
    const subgraphsVec = tables([subgraph]);
    const buffersVec = tables(buffers);
    const description = b.createString(this.description);
    const metadata = this.metadataEntries.map((m, i) => {
      const name = b.createString(m.name);
      b.startObject(2);
      b.addFieldOffset(0, name, 0);
      b.addFieldInt32(1, metadataBuffers[i]!, null);
      return b.endObject();
    });
    const metadataVec = metadata.length ? tables(metadata) : 0;
    b.startObject(7);
    b.addFieldInt32(0, 3, null);
    b.addFieldOffset(1, codesVec, 0);
    b.addFieldOffset(2, subgraphsVec, 0);
    b.addFieldOffset(3, description, 0);
    b.addFieldOffset(4, buffersVec, 0);
    if (metadataVec) b.addFieldOffset(6, metadataVec, 0);
    b.finish(b.endObject(), 'TFL3');
    return b.asUint8Array().slice();
  }
}
