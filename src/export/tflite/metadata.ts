/**
 * The metadata buffers of an exported model: TFLite's `min_runtime_version`, the
 * `TFLITE_METADATA` flatbuffer of tflite-support's metadata_schema.fbs (file identifier
 * M001) that TFLite's task libraries read the input normalization from, and quantflow's
 * own JSON entry.
 */
import { Builder } from 'flatbuffers';
import type { Preprocess } from '../../data/preprocess.js';
import type { TargetProfile } from '../../quantization/profile.js';
import { minRuntimeVersion } from './versions.js';

/** A weighted layer's width as written: 4-bit weights are int8 values on the 4-bit grid. */
export interface LayerBits {
  layer: string;
  bits: 4 | 8;
  granularity: 'tensor' | 'channel';
}

/** `min_runtime_version` of operators with these versions, a 16-byte zero-padded string as TFLite's converter writes it. */
export function runtimeVersion(versions: ReadonlyMap<number, number>): Uint8Array {
  const out = new Uint8Array(16);
  out.set(new TextEncoder().encode(minRuntimeVersion(versions)));
  return out;
}

/**
 * ModelMetadata with one SubGraphMetadata whose first input is an RGB image with
 * NormalizationOptions mean/std in pixel units ((x − mean)/std, per channel), the form the
 * task libraries apply before quantizing with the input tensor's own parameters.
 */
export function modelMetadata(name: string, preprocess: Preprocess | undefined, inputs: number): Uint8Array {
  const b = new Builder(256);
  const floats = (values: number[]): number => {
    b.startVector(4, values.length, 4);
    for (let i = values.length - 1; i >= 0; i--) b.addFloat32(values[i]!);
    return b.endVector();
  };
  const tables = (offsets: number[]): number => {
    b.startVector(4, offsets.length, 4);
    for (let i = offsets.length - 1; i >= 0; i--) b.addOffset(offsets[i]!);
    return b.endVector();
  };
  const inputMeta = Array.from({ length: inputs }, (_, k) => {
    const tensorName = b.createString(k === 0 ? 'image' : `input_${k}`);
    let units = 0;
    let content = 0;
    if (k === 0 && preprocess) {
      const mean = floats(preprocess.mean);
      const std = floats(preprocess.std);
      b.startObject(2); // NormalizationOptions
      b.addFieldOffset(0, mean, 0);
      b.addFieldOffset(1, std, 0);
      const normalization = b.endObject();
      b.startObject(2); // ProcessUnit { options: ProcessUnitOptions }
      b.addFieldInt8(0, 1, 0); // NormalizationOptions
      b.addFieldOffset(1, normalization, 0);
      units = tables([b.endObject()]);
      b.startObject(2); // ImageProperties
      b.addFieldInt8(0, preprocess.channels === 'gray' ? 2 : preprocess.channels === 'rgb' ? 1 : 0, 0);
      const image = b.endObject();
      b.startObject(3); // Content
      b.addFieldInt8(0, 2, 0); // ImageProperties
      b.addFieldOffset(1, image, 0);
      content = b.endObject();
    }
    b.startObject(5); // TensorMetadata
    b.addFieldOffset(0, tensorName, 0);
    if (content) b.addFieldOffset(3, content, 0);
    if (units) b.addFieldOffset(4, units, 0);
    return b.endObject();
  });
  const inputsVec = tables(inputMeta);
  b.startObject(3); // SubGraphMetadata
  b.addFieldOffset(2, inputsVec, 0);
  const subgraph = b.endObject();
  const subgraphs = tables([subgraph]);
  const modelName = b.createString(name);
  const parser = b.createString('1.0.0');
  b.startObject(8); // ModelMetadata
  b.addFieldOffset(0, modelName, 0);
  b.addFieldOffset(3, subgraphs, 0);
  b.addFieldOffset(7, parser, 0);
  b.finish(b.endObject(), 'M001');
  return b.asUint8Array().slice();
}

/** quantflow's JSON metadata entry: profile, each weighted layer's width, preprocessing, I/O type. */
export function quantflowMetadata(
  profile: TargetProfile,
  layers: LayerBits[],
  preprocess: Preprocess | undefined,
  ioType: string,
): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({ format: 'quantflow-tflite', version: 1, profile: profile.name, ioType, preprocess: preprocess ?? null, layers }),
  );
}
