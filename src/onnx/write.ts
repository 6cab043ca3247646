import { create, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProtoSchema,
  ModelProtoSchema,
  TensorProtoSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type TensorProto,
  type ValueInfoProto,
} from 'onnx-buf';
import type { AttributeValue, Model, TensorData, ValueInfo } from '../graph/types.js';
import { writeFileAtomic } from '../util/fs.js';
import { onnxTypeCode } from '../graph/datatype.js';

/** The lowest IR version that carries the features of `opset` (int4 needs IR 10). */
function irVersionFor(opset: number): bigint {
  return opset >= 21 ? 10n : 8n;
}

/** Serializes a Model to ONNX protobuf bytes. */
export function serializeModel(model: Model): Uint8Array {
  const g = model.graph;
  const proto = create(ModelProtoSchema, {
    irVersion: irVersionFor(model.opset),
    producerName: model.producerName || 'quantflow',
    opsetImport: [
      { domain: '', version: BigInt(model.opset) },
      ...Object.entries(model.extraOpsets ?? {}).map(([domain, v]) => ({ domain, version: BigInt(v) })),
    ],
    metadataProps: Object.entries(model.metadata).map(([key, value]) => ({ key, value })),
    graph: {
      name: g.name,
      node: g.nodes.map((n) => ({
        name: n.name,
        opType: n.opType,
        domain: n.domain,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attributes).map(([name, a]) => writeAttribute(name, a)),
      })),
      initializer: [...g.initializers].map(([name, t]) => writeTensor(t, name)),
      input: g.inputs.map(writeValueInfo),
      output: g.outputs.map(writeValueInfo),
      valueInfo: [...g.valueInfo.values()].map(writeValueInfo),
    },
  });
  return toBinary(ModelProtoSchema, proto);
}

/** Writes a model atomically. */
export function writeOnnxFile(model: Model, path: string): void {
  writeFileAtomic(path, serializeModel(model));
}

function writeTensor(t: TensorData, name = ''): TensorProto {
  let raw: Uint8Array<ArrayBuffer>;
  if (t.dataType === 'int4' || t.dataType === 'uint4') {
    raw = new Uint8Array(Math.ceil(t.data.length / 2));
    for (let i = 0; i < t.data.length; i++) raw[i >> 1]! |= ((t.data[i] as number) & 0xf) << ((i & 1) * 4);
  } else {
    raw = new Uint8Array(t.data.byteLength);
    raw.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return create(TensorProtoSchema, { name, dims: t.dims.map(BigInt), dataType: onnxTypeCode(t.dataType), rawData: raw });
}

function writeAttribute(name: string, a: AttributeValue): AttributeProto {
  switch (a.type) {
    case 'int':
      return create(AttributeProtoSchema, { name, type: 2, i: BigInt(a.value) });
    case 'ints':
      return create(AttributeProtoSchema, { name, type: 7, ints: a.value.map(BigInt) });
    case 'float':
      return create(AttributeProtoSchema, { name, type: 1, f: a.value });
    case 'floats':
      return create(AttributeProtoSchema, { name, type: 6, floats: a.value });
    case 'string':
      return create(AttributeProtoSchema, { name, type: 3, s: new TextEncoder().encode(a.value) });
    case 'strings':
      return create(AttributeProtoSchema, { name, type: 8, strings: a.value.map((s) => new TextEncoder().encode(s)) });
    case 'tensor':
      return create(AttributeProtoSchema, { name, type: 4, t: writeTensor(a.value) });
  }
}

function writeValueInfo(v: ValueInfo): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name: v.name,
    type: {
      value: {
        case: 'tensorType',
        value: {
          elemType: onnxTypeCode(v.dataType),
          shape: v.shape && {
            dim: v.shape.map((d) => ({
              value:
                typeof d === 'number'
                  ? { case: 'dimValue' as const, value: BigInt(d) }
                  : typeof d === 'string'
                    ? { case: 'dimParam' as const, value: d }
                    : { case: undefined },
            })),
          },
        },
      },
    },
  });
}
