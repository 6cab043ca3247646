/**
 * Bounds-checked reading of the parts of the TFLite flatbuffer schema that the importer needs
 * (tensorflow/compiler/mlir/lite/schema/schema.fbs). Field slots are the declaration indices of
 * that schema; a union field takes two slots (its type, then its value).
 *
 * The flatbuffers runtime trusts its input: out-of-range reads return `undefined`-derived
 * garbage instead of failing. Every offset is therefore checked here before it is read, so
 * a truncated or corrupted file fails with a QuantflowError naming the file.
 */
import { ByteBuffer } from 'flatbuffers';
import { QuantflowError } from '../../util/errors.js';

/** Reads little-endian scalars from the file, failing on any access outside it. */
class Reader {
  readonly bb: ByteBuffer;
  readonly size: number;

  constructor(
    readonly bytes: Uint8Array,
    readonly source: string,
  ) {
    this.bb = new ByteBuffer(bytes);
    this.size = bytes.length;
  }

  fail(what: string): never {
    throw new QuantflowError(`${this.source}: corrupt TFLite file: ${what}`);
  }

  need(pos: number, length: number, what: string): void {
    if (!Number.isInteger(pos) || pos < 0 || length < 0 || pos + length > this.size)
      this.fail(`${what} lies outside the file (offset ${pos}, ${length} bytes, file ${this.size} bytes)`);
  }

  u8(pos: number, what: string): number {
    this.need(pos, 1, what);
    return this.bb.readUint8(pos);
  }
  i8(pos: number, what: string): number {
    this.need(pos, 1, what);
    return this.bb.readInt8(pos);
  }
  u16(pos: number, what: string): number {
    this.need(pos, 2, what);
    return this.bb.readUint16(pos);
  }
  i32(pos: number, what: string): number {
    this.need(pos, 4, what);
    return this.bb.readInt32(pos);
  }
  u32(pos: number, what: string): number {
    this.need(pos, 4, what);
    return this.bb.readUint32(pos);
  }
  i64(pos: number, what: string): bigint {
    this.need(pos, 8, what);
    return this.bb.readInt64(pos);
  }
  u64(pos: number, what: string): bigint {
    this.need(pos, 8, what);
    return this.bb.readUint64(pos);
  }
  f32(pos: number, what: string): number {
    this.need(pos, 4, what);
    return this.bb.readFloat32(pos);
  }
}

/** A vector's element count and the file offset of its first element. */
interface VectorRef {
  start: number;
  length: number;
}

/** One flatbuffer table, with its vtable validated on construction. */
export class Table {
  private readonly vtable: number;
  private readonly vtableSize: number;
  private readonly objectSize: number;

  constructor(
    private readonly r: Reader,
    private readonly pos: number,
    /** What this table is, for error messages ("tensor 3 of subgraph 0"). */
    readonly what: string,
  ) {
    this.vtable = pos - r.i32(pos, `${what}`);
    this.vtableSize = r.u16(this.vtable, `vtable of ${what}`);
    this.objectSize = r.u16(this.vtable + 2, `vtable of ${what}`);
    if (this.vtableSize < 4 || this.vtableSize % 2 !== 0) r.fail(`${what} has a malformed vtable`);
    r.need(this.vtable, this.vtableSize, `vtable of ${what}`);
    r.need(pos, this.objectSize, what);
  }

  /** File offset of a field's inline value, or 0 when absent; checks `size` bytes fit in the object. */
  private field(slot: number, size: number): number {
    const entry = 4 + 2 * slot;
    if (entry >= this.vtableSize) return 0;
    const rel = this.r.u16(this.vtable + entry, `vtable of ${this.what}`);
    if (rel === 0) return 0;
    if (rel + size > this.objectSize) this.r.fail(`field ${slot} of ${this.what} overruns the table`);
    return this.pos + rel;
  }

  /** The file name, for error messages. */
  get source(): string {
    return this.r.source;
  }

  int8(slot: number, fallback = 0): number {
    const p = this.field(slot, 1);
    return p ? this.r.i8(p, this.what) : fallback;
  }
  uint8(slot: number, fallback = 0): number {
    const p = this.field(slot, 1);
    return p ? this.r.u8(p, this.what) : fallback;
  }
  bool(slot: number, fallback = false): boolean {
    const p = this.field(slot, 1);
    return p ? this.r.u8(p, this.what) !== 0 : fallback;
  }
  int32(slot: number, fallback = 0): number {
    const p = this.field(slot, 4);
    return p ? this.r.i32(p, this.what) : fallback;
  }
  uint32(slot: number, fallback = 0): number {
    const p = this.field(slot, 4);
    return p ? this.r.u32(p, this.what) : fallback;
  }
  uint64(slot: number, fallback = 0n): bigint {
    const p = this.field(slot, 8);
    return p ? this.r.u64(p, this.what) : fallback;
  }
  float32(slot: number, fallback = 0): number {
    const p = this.field(slot, 4);
    return p ? this.r.f32(p, this.what) : fallback;
  }

  /** Follows the uoffset stored at file offset `p`. */
  private indirect(p: number, what: string): number {
    return p + this.r.u32(p, what);
  }

  table(slot: number, what: string): Table | null {
    const p = this.field(slot, 4);
    return p ? new Table(this.r, this.indirect(p, what), what) : null;
  }

  private vector(slot: number, elementSize: number, what: string): VectorRef | null {
    const p = this.field(slot, 4);
    if (!p) return null;
    const at = this.indirect(p, what);
    const length = this.r.u32(at, what);
    this.r.need(at + 4, length * elementSize, what);
    return { start: at + 4, length };
  }

  string(slot: number, what: string): string | null {
    const v = this.vector(slot, 1, what);
    return v ? new TextDecoder().decode(this.r.bytes.subarray(v.start, v.start + v.length)) : null;
  }

  /** A [ubyte] vector as a view into the file (not a copy). */
  bytes(slot: number, what: string): Uint8Array | null {
    const v = this.vector(slot, 1, what);
    return v ? this.r.bytes.subarray(v.start, v.start + v.length) : null;
  }

  int32s(slot: number, what: string): number[] {
    const v = this.vector(slot, 4, what);
    return v ? Array.from({ length: v.length }, (_, i) => this.r.i32(v.start + 4 * i, what)) : [];
  }
  float32s(slot: number, what: string): number[] {
    const v = this.vector(slot, 4, what);
    return v ? Array.from({ length: v.length }, (_, i) => this.r.f32(v.start + 4 * i, what)) : [];
  }
  int64s(slot: number, what: string): bigint[] {
    const v = this.vector(slot, 8, what);
    return v ? Array.from({ length: v.length }, (_, i) => this.r.i64(v.start + 8 * i, what)) : [];
  }

  /** A vector of tables; `list` names the vector and `what(i)` element i, for error messages. */
  tables(slot: number, list: string, what: (i: number) => string): Table[] {
    const v = this.vector(slot, 4, list);
    if (!v) return [];
    return Array.from({ length: v.length }, (_, i) => {
      const p = v.start + 4 * i;
      return new Table(this.r, this.indirect(p, what(i)), what(i));
    });
  }
}

/** TFLite TensorType enum values we can read, by code. */
export const TENSOR_TYPES: Record<number, string> = {
  0: 'float32',
  1: 'float16',
  2: 'int32',
  3: 'uint8',
  4: 'int64',
  5: 'string',
  6: 'bool',
  7: 'int16',
  8: 'complex64',
  9: 'int8',
  10: 'float64',
  11: 'complex128',
  12: 'uint64',
  13: 'resource',
  14: 'variant',
  15: 'uint32',
  16: 'uint16',
  17: 'int4',
  18: 'bfloat16',
};

/** Asymmetric linear quantization: real = scale * (q - zeroPoint), per channel along `axis`. */
export interface Quantization {
  scale: number[];
  zeroPoint: number[];
  axis: number;
}

export interface TfliteTensor {
  index: number;
  name: string;
  shape: number[];
  /** Name from TENSOR_TYPES, or `type <n>` for unknown codes. */
  type: string;
  buffer: number;
  quantization: Quantization | null;
}

export interface TfliteOperator {
  index: number;
  opcodeIndex: number;
  /** Tensor indices; -1 marks an omitted optional input. */
  inputs: number[];
  outputs: number[];
  /** BuiltinOptions union type code (0 = none) and table. */
  optionsType: number;
  options: Table | null;
  /** A custom operator's options (a flexbuffer for TFLite's own custom ops); null when absent. */
  customOptions: Uint8Array | null;
}

export interface TfliteSubgraph {
  index: number;
  name: string;
  tensors: TfliteTensor[];
  inputs: number[];
  outputs: number[];
  operators: TfliteOperator[];
}

export interface TfliteOperatorCode {
  builtin: number;
  customCode: string | null;
  /** The operator version (op_version.cc); 1 when absent. */
  version: number;
}

export interface TfliteModel {
  operatorCodes: TfliteOperatorCode[];
  subgraphs: TfliteSubgraph[];
  /** Buffer contents as views into the file; empty for the sentinel buffer 0 and activations. */
  buffers: Uint8Array[];
}

function readQuantization(t: Table | null): Quantization | null {
  if (!t) return null;
  const scale = t.float32s(2, `scales of ${t.what}`);
  const zeroPoint = t.int64s(3, `zero points of ${t.what}`).map(Number);
  const detailsType = t.uint8(4);
  if (scale.length === 0) return null;
  if (detailsType !== 0) throw new QuantflowError(`${t.source}: unsupported custom quantization on ${t.what}`);
  return { scale, zeroPoint: zeroPoint.length ? zeroPoint : scale.map(() => 0), axis: t.int32(6) };
}

function readTensor(t: Table, index: number): TfliteTensor {
  const code = t.int8(1);
  return {
    index,
    name: t.string(3, `name of ${t.what}`) ?? `tensor_${index}`,
    shape: t.int32s(0, `shape of ${t.what}`),
    type: TENSOR_TYPES[code] ?? `type ${code}`,
    buffer: t.uint32(2),
    quantization: readQuantization(t.table(4, `quantization of ${t.what}`)),
  };
}

function readOperator(t: Table, index: number): TfliteOperator {
  const optionsType = t.uint8(3);
  return {
    index,
    opcodeIndex: t.uint32(0),
    inputs: t.int32s(1, `inputs of ${t.what}`),
    outputs: t.int32s(2, `outputs of ${t.what}`),
    optionsType,
    options: optionsType ? t.table(4, `options of ${t.what}`) : null,
    customOptions: t.bytes(5, `custom options of ${t.what}`),
  };
}

function readSubgraph(t: Table, index: number): TfliteSubgraph {
  const of = ` of subgraph ${index}`;
  return {
    index,
    name: t.string(4, `name${of}`) ?? '',
    tensors: t.tables(0, `tensors${of}`, (i) => `tensor ${i}${of}`).map(readTensor),
    inputs: t.int32s(1, `inputs${of}`),
    outputs: t.int32s(2, `outputs${of}`),
    operators: t.tables(3, `operators${of}`, (i) => `operator ${i}${of}`).map(readOperator),
  };
}

function readBuffer(r: Reader, t: Table, index: number): Uint8Array {
  const data = t.bytes(0, `data of buffer ${index}`);
  if (data && data.length) return data;
  // Models over 2 GB keep buffer data after the flatbuffer, addressed from the file start.
  const offset = t.uint64(1);
  const size = t.uint64(2);
  if (offset > 1n) {
    const start = Number(offset);
    const length = Number(size);
    r.need(start, length, `data of buffer ${index}`);
    return r.bytes.subarray(start, start + length);
  }
  return new Uint8Array(0);
}

/**
 * Parses a TFLite flatbuffer's structure (not yet its semantics). Throws a QuantflowError
 * naming `source` when the bytes are not a TFLite model or are damaged.
 */
export function readTfliteModel(bytes: Uint8Array, source: string): TfliteModel {
  // A plain view, so that buffers handed out are Uint8Arrays even when `bytes` is a Node Buffer.
  const r = new Reader(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), source);
  if (bytes.length < 8) r.fail(`only ${bytes.length} bytes`);
  const id = String.fromCharCode(...bytes.subarray(4, 8));
  if (id !== 'TFL3')
    throw new QuantflowError(`${source}: not a TFLite model (file identifier ${JSON.stringify(id)} at bytes 4-7, expected "TFL3")`);
  const root = new Table(r, r.u32(0, 'root table offset'), 'model');
  return {
    operatorCodes: root
      .tables(1, 'operator codes', (i) => `operator code ${i}`)
      .map((t) => ({
        // builtin_code (int32) superseded the byte-sized field; older writers fill only the latter.
        builtin: Math.max(t.int8(0), t.int32(3)),
        customCode: t.string(1, `custom code of ${t.what}`),
        version: t.int32(2, 1),
      })),
    subgraphs: root.tables(2, 'subgraphs', (i) => `subgraph ${i}`).map(readSubgraph),
    buffers: root.tables(4, 'buffers', (i) => `buffer ${i}`).map((t, i) => readBuffer(r, t, i)),
  };
}

/** Slots of the builtin options tables the importer reads, and their union type codes. */
export const Options = {
  conv2d: { type: 1, padding: 0, strideW: 1, strideH: 2, activation: 3, dilationW: 4, dilationH: 5 },
  depthwiseConv2d: {
    type: 2,
    padding: 0,
    strideW: 1,
    strideH: 2,
    depthMultiplier: 3,
    activation: 4,
    dilationW: 5,
    dilationH: 6,
  },
  pool2d: { type: 5, padding: 0, strideW: 1, strideH: 2, filterW: 3, filterH: 4, activation: 5 },
  fullyConnected: { type: 8, activation: 0, weightsFormat: 1, keepNumDims: 2 },
  softmax: { type: 9, beta: 0 },
  concatenation: { type: 10, axis: 0, activation: 1 },
  add: { type: 11, activation: 0 },
  resizeBilinear: { type: 15, alignCorners: 2, halfPixelCenters: 3 },
  reshape: { type: 17, newShape: 0 },
  spaceToDepth: { type: 19, blockSize: 0 },
  mul: { type: 21, activation: 0 },
  gather: { type: 23, axis: 0, batchDims: 1 },
  reducer: { type: 27, keepDims: 0 },
  sub: { type: 28, activation: 0 },
  div: { type: 29, activation: 0 },
  squeeze: { type: 30, squeezeDims: 0 },
  stridedSlice: { type: 32, beginMask: 0, endMask: 1, ellipsisMask: 2, newAxisMask: 3, shrinkAxisMask: 4, offset: 5 },
  split: { type: 35, numSplits: 0 },
  argMax: { type: 40, outputType: 0 },
  transposeConv: { type: 49, padding: 0, strideW: 1, strideH: 2, activation: 3 },
  argMin: { type: 57, outputType: 0 },
  pack: { type: 59, valuesCount: 0, axis: 1 },
  unpack: { type: 64, num: 0, axis: 1 },
  resizeNearestNeighbor: { type: 74, alignCorners: 0, halfPixelCenters: 1 },
  leakyRelu: { type: 75, alpha: 0 },
  splitV: { type: 79, numSplits: 0 },
  depthToSpace: { type: 94, blockSize: 0 },
} as const;
