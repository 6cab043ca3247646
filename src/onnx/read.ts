import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, type AttributeProto, type GraphProto, type NodeProto, type TensorProto, type ValueInfoProto } from 'onnx-buf';
import type { AttributeValue, DataType, Dim, Graph, Model, Node, TensorData, ValueInfo } from '../graph/types.js';
import { allocStorage, sizeOf } from '../graph/tensor.js';
import { topologicalSort } from '../graph/toposort.js';
import { QuantflowError } from '../util/errors.js';
import { dataTypeFromCode } from '../graph/datatype.js';
import { MAX_OPSET, MIN_OPSET } from '../graph/ops.js';

interface ReadContext {
  /** File name for messages. */
  source: string;
  /** Folder that external data paths are relative to; undefined when reading from bytes. */
  baseDir?: string;
}

/** Reads an `.onnx` file, resolving external data files next to it. */
export function readOnnxFile(path: string): Model {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new QuantflowError(`${path}: cannot read model file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  return parseOnnx(bytes, { source: path, baseDir: dirname(path) });
}

/**
 * Parses ONNX protobuf bytes into a Model. `Constant` nodes become initializers, so passes
 * see every weight in one place.
 */
export function parseOnnx(bytes: Uint8Array, ctx: ReadContext = { source: '<bytes>' }): Model {
  let proto;
  try {
    proto = fromBinary(ModelProtoSchema, bytes);
  } catch (e) {
    throw new QuantflowError(
      `${ctx.source}: not a valid ONNX model (protobuf decoding failed: ${(e as Error).message}); the file may be truncated or corrupt`,
    );
  }
  if (!proto.graph) throw new QuantflowError(`${ctx.source}: not a valid ONNX model (no graph); the file may be truncated or corrupt`);
  let opset: number | undefined;
  const extraOpsets: Record<string, number> = {};
  for (const o of proto.opsetImport) {
    if (o.domain === '' || o.domain === 'ai.onnx') opset = Number(o.version);
    else extraOpsets[o.domain] = Number(o.version);
  }
  if (opset === undefined) throw new QuantflowError(`${ctx.source}: the model declares no default-domain opset`);
  if (opset < MIN_OPSET || opset > MAX_OPSET)
    throw new QuantflowError(
      `${ctx.source}: opset ${opset} is not supported (quantflow reads opsets ${MIN_OPSET}-${MAX_OPSET}); convert the model with onnx.version_converter`,
    );
  const metadata: Record<string, string> = {};
  for (const p of proto.metadataProps) metadata[p.key] = p.value;
  const graph = readGraph(proto.graph, ctx);
  return {
    graph,
    opset,
    extraOpsets: Object.keys(extraOpsets).length ? extraOpsets : undefined,
    producerName: proto.producerName,
    metadata,
  };
}

function readGraph(g: GraphProto, ctx: ReadContext): Graph {
  const initializers = new Map<string, TensorData>();
  for (const t of g.initializer) initializers.set(t.name, readTensor(t, ctx));
  if (g.sparseInitializer.length)
    throw new QuantflowError(`${ctx.source}: sparse initializers are not supported; densify them before import`);
  const nodes: Node[] = [];
  const names = new Set<string>();
  g.node.forEach((n, i) => {
    const node = readNode(n, i, ctx);
    if (node.opType === 'Constant' && node.domain === '') {
      initializers.set(node.outputs[0]!, constantValue(node, ctx));
      return;
    }
    let name = node.name || `${node.opType}_${i}`;
    while (names.has(name)) name = `${name}_${i}`;
    names.add(name);
    node.name = name;
    nodes.push(node);
  });
  const graph: Graph = {
    name: g.name || 'graph',
    nodes,
    initializers,
    // Older exporters list initializers among the inputs; only real runtime inputs stay.
    inputs: g.input.filter((v) => !initializers.has(v.name)).map((v) => readValueInfo(v, ctx)),
    outputs: g.output.map((v) => readValueInfo(v, ctx)),
    valueInfo: new Map(),
  };
  for (const v of g.valueInfo) {
    const info = tryReadValueInfo(v);
    if (info) graph.valueInfo.set(info.name, info);
  }
  topologicalSort(graph);
  return graph;
}

function readNode(n: NodeProto, index: number, ctx: ReadContext): Node {
  const attributes: Record<string, AttributeValue> = {};
  for (const a of n.attribute) attributes[a.name] = readAttribute(a, n, index, ctx);
  return {
    name: n.name,
    opType: n.opType,
    domain: n.domain === 'ai.onnx' ? '' : n.domain,
    inputs: [...n.input],
    outputs: [...n.output],
    attributes,
  };
}

function readAttribute(a: AttributeProto, n: NodeProto, index: number, ctx: ReadContext): AttributeValue {
  const where = () => `${ctx.source}: node '${n.name || index}' (${n.opType}), attribute '${a.name}'`;
  switch (a.type) {
    case 1:
      return { type: 'float', value: a.f };
    case 2:
      return { type: 'int', value: Number(a.i) };
    case 3:
      return { type: 'string', value: new TextDecoder().decode(a.s) };
    case 4:
      if (!a.t) throw new QuantflowError(`${where()}: tensor attribute without a tensor`);
      return { type: 'tensor', value: readTensor(a.t, ctx) };
    case 6:
      return { type: 'floats', value: [...a.floats] };
    case 7:
      return { type: 'ints', value: a.ints.map(Number) };
    case 8:
      return { type: 'strings', value: a.strings.map((s) => new TextDecoder().decode(s)) };
    case 5:
    case 10:
      throw new QuantflowError(`${where()}: subgraphs (If/Loop/Scan) are not supported`);
    default:
      throw new QuantflowError(`${where()}: attribute type ${a.type} is not supported`);
  }
}

/** The value of a Constant node in any of its spellings. */
function constantValue(node: Node, ctx: ReadContext): TensorData {
  const [key, a] = Object.entries(node.attributes)[0] ?? [];
  const fail = () => new QuantflowError(`${ctx.source}: Constant node '${node.name}' has no usable value (attribute ${key ?? 'missing'})`);
  if (!a) throw fail();
  switch (a.type) {
    case 'tensor':
      return a.value;
    case 'float':
      return { dataType: 'float32', dims: [], data: Float32Array.of(a.value) };
    case 'floats':
      return { dataType: 'float32', dims: [a.value.length], data: Float32Array.from(a.value) };
    case 'int':
      return { dataType: 'int64', dims: [], data: BigInt64Array.of(BigInt(a.value)) };
    case 'ints':
      return { dataType: 'int64', dims: [a.value.length], data: BigInt64Array.from(a.value, BigInt) };
    default:
      throw fail();
  }
}

function readDims(dims: bigint[], what: string, ctx: ReadContext): number[] {
  return dims.map((d) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n) || n < 0) throw new QuantflowError(`${ctx.source}: ${what} has an invalid dimension ${d}`);
    return n;
  });
}

function readTensor(t: TensorProto, ctx: ReadContext): TensorData {
  const what = `tensor '${t.name}'`;
  const dataType = dataTypeFromCode(t.dataType);
  if (!dataType) throw new QuantflowError(`${ctx.source}: ${what} has element type ${t.dataType}, which quantflow does not handle`);
  if (t.segment) throw new QuantflowError(`${ctx.source}: ${what} is segmented, which is not supported`);
  const dims = readDims(t.dims, what, ctx);
  const count = sizeOf(dims);
  if (count > 2 ** 31) throw new QuantflowError(`${ctx.source}: ${what} is too large (${count} elements)`);
  const data = allocStorage(dataType, count);
  if (t.dataLocation === 1) {
    copyRaw(readExternal(t, ctx), dataType, data, what, ctx);
  } else if (t.rawData.length) {
    copyRaw(t.rawData, dataType, data, what, ctx);
  } else {
    const values: ArrayLike<number | bigint> =
      dataType === 'float32'
        ? t.floatData
        : dataType === 'float64'
          ? t.doubleData
          : dataType === 'int64'
            ? t.int64Data
            : dataType === 'uint32' || dataType === 'uint64'
              ? t.uint64Data
              : t.int32Data;
    const packed = dataType === 'int4' || dataType === 'uint4';
    const expected = packed ? Math.ceil(count / 2) : count;
    if (values.length !== expected)
      throw new QuantflowError(`${ctx.source}: ${what} holds ${values.length} values, its shape [${dims}] needs ${expected}`);
    if (packed) unpackNibbles(Uint8Array.from(values as ArrayLike<number>), dataType, data);
    else if (data instanceof BigInt64Array || data instanceof BigUint64Array) for (let i = 0; i < count; i++) data[i] = BigInt(values[i]!);
    else for (let i = 0; i < count; i++) data[i] = Number(values[i]);
  }
  return { dataType, dims, data };
}

function readExternal(t: TensorProto, ctx: ReadContext): Uint8Array {
  const entries = new Map(t.externalData.map((e) => [e.key, e.value]));
  const location = entries.get('location');
  const what = `tensor '${t.name}'`;
  if (!location) throw new QuantflowError(`${ctx.source}: ${what} is stored externally but names no location`);
  if (!ctx.baseDir)
    throw new QuantflowError(`${ctx.source}: ${what} is stored in external file '${location}'; read the model from its file`);
  const rel = normalize(location);
  if (isAbsolute(rel) || rel.startsWith('..'))
    throw new QuantflowError(`${ctx.source}: ${what} points outside the model folder ('${location}')`);
  const path = join(ctx.baseDir, rel);
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch {
    throw new QuantflowError(`${ctx.source}: ${what} needs external data file '${path}', which cannot be read`);
  }
  const offset = Number(entries.get('offset') ?? 0);
  const length = entries.has('length') ? Number(entries.get('length')) : file.length - offset;
  if (!(offset >= 0 && length >= 0 && offset + length <= file.length))
    throw new QuantflowError(`${ctx.source}: ${what} reads bytes ${offset}..${offset + length} of '${path}', which has ${file.length}`);
  return file.subarray(offset, offset + length);
}

/** Copies little-endian raw bytes into typed storage (a copy also fixes alignment). */
function copyRaw(raw: Uint8Array, dataType: DataType, data: TensorData['data'], what: string, ctx: ReadContext): void {
  if (dataType === 'int4' || dataType === 'uint4') {
    if (raw.length !== Math.ceil(data.length / 2))
      throw new QuantflowError(
        `${ctx.source}: ${what} has ${raw.length} bytes of 4-bit data, its shape needs ${Math.ceil(data.length / 2)}`,
      );
    unpackNibbles(raw, dataType, data);
    return;
  }
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (raw.length !== bytes.length)
    throw new QuantflowError(`${ctx.source}: ${what} has ${raw.length} bytes of data, its shape and type need ${bytes.length}`);
  bytes.set(raw);
}

function unpackNibbles(packed: Uint8Array, dataType: DataType, out: TensorData['data']): void {
  const signed = dataType === 'int4';
  for (let i = 0; i < out.length; i++) {
    const nibble = (packed[i >> 1]! >> ((i & 1) * 4)) & 0xf;
    out[i] = signed && nibble >= 8 ? nibble - 16 : nibble;
  }
}

function tryReadValueInfo(v: ValueInfoProto): ValueInfo | undefined {
  const tt = v.type?.value.case === 'tensorType' ? v.type.value.value : undefined;
  const dataType = tt ? dataTypeFromCode(tt.elemType) : undefined;
  if (!tt || !dataType) return undefined;
  const shape: Dim[] | undefined = tt.shape?.dim.map((d) =>
    d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : null,
  );
  return { name: v.name, dataType, shape };
}

function readValueInfo(v: ValueInfoProto, ctx: ReadContext): ValueInfo {
  const info = tryReadValueInfo(v);
  if (!info) throw new QuantflowError(`${ctx.source}: graph input/output '${v.name}' is not a tensor of a supported element type`);
  return info;
}
