import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import type { DataType, Model, TensorData } from '../graph/types.js';
import { serializeModel } from '../onnx/write.js';
import { QuantflowError } from '../util/errors.js';

export interface SessionOptions {
  /** Intra-op threads; defaults to every core. */
  threads?: number;
  /**
   * Run QuantizeLinear/DequantizeLinear as float ops instead of fusing them into integer
   * kernels: the fake-quant simulation of a QDQ model.
   */
  simulate?: boolean;
  /**
   * Writes onnxruntime's per-node timings to `<profile>_<date>.json` once the session calls
   * `endProfiling()`: for finding which nodes of a graph cost the time.
   */
  profile?: string;
  /**
   * Plan memory from the first run's allocation pattern (default true). Training graphs turn
   * it off: with it, their first two runs take 20–50 s each in fresh allocations, without it
   * the second run is already as fast as the rest.
   */
  memoryPattern?: boolean;
}

/** The first line of an onnxruntime error, which is the part a user can act on. */
function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0]!;
}

/** True for a model with QuantizeLinear nodes: a QDQ export. */
export function isQdqModel(model: Model): boolean {
  return model.graph.nodes.some((n) => n.opType === 'QuantizeLinear');
}

/** Opens an onnxruntime CPU session on a model held in memory. */
export async function openSession(model: Model, options: SessionOptions = {}): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(serializeModel(model), {
      executionProviders: ['cpu'],
      intraOpNumThreads: options.threads ?? availableParallelism(),
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      extra: options.simulate ? { session: { disable_quant_qdq: '1' } } : {},
      enableMemPattern: options.memoryPattern ?? true,
      ...(options.profile ? { enableProfiling: true, profileFilePrefix: options.profile } : {}),
    });
  } catch (e) {
    throw new QuantflowError(`onnxruntime cannot load model '${model.graph.name}': ${firstLine(e)}`);
  }
}

const ORT_TYPES: Partial<Record<DataType, ort.Tensor.Type>> = {
  float32: 'float32',
  float64: 'float64',
  float16: 'float16',
  int8: 'int8',
  uint8: 'uint8',
  int16: 'int16',
  uint16: 'uint16',
  int32: 'int32',
  uint32: 'uint32',
  int64: 'int64',
  uint64: 'uint64',
  bool: 'bool',
};

/** Wraps a TensorData as an onnxruntime tensor without copying. */
export function toOrtTensor(t: TensorData): ort.Tensor {
  const type = ORT_TYPES[t.dataType];
  if (!type) throw new QuantflowError(`cannot feed a ${t.dataType} tensor to onnxruntime`);
  return new ort.Tensor(type, t.data as ort.Tensor.DataType, t.dims);
}

/** Converts an onnxruntime tensor back to TensorData. */
export function fromOrtTensor(t: ort.Tensor): TensorData {
  const dataType = (Object.keys(ORT_TYPES) as DataType[]).find((k) => ORT_TYPES[k] === t.type);
  if (!dataType) throw new QuantflowError(`onnxruntime returned a ${t.type} tensor, which quantflow does not handle`);
  return { dataType, dims: [...t.dims], data: t.data as TensorData['data'] };
}

/** Runs a session once and returns the outputs named in `fetches` (default: every output). */
export async function runSession(
  session: ort.InferenceSession,
  feeds: Record<string, TensorData>,
  fetches?: string[],
): Promise<Record<string, TensorData>> {
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = toOrtTensor(t);
  let out: ort.InferenceSession.OnnxValueMapType;
  try {
    out = await (fetches ? session.run(ortFeeds, fetches) : session.run(ortFeeds));
  } catch (e) {
    throw new QuantflowError(`onnxruntime failed to run the model: ${firstLine(e)}`);
  }
  const result: Record<string, TensorData> = {};
  for (const [name, t] of Object.entries(out)) result[name] = fromOrtTensor(t as ort.Tensor);
  return result;
}

/** Opens a session, runs it once, and releases it: for tests and one-off checks. */
export async function runModel(model: Model, feeds: Record<string, TensorData>): Promise<Record<string, TensorData>> {
  const session = await openSession(model);
  try {
    return await runSession(session, feeds);
  } finally {
    await session.release();
  }
}
