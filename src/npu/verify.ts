import * as ort from 'onnxruntime-node';
import type { DataType, Model } from '../graph/types.js';
import { openSession } from '../runtime/session.js';
import { QuantflowError } from '../util/errors.js';
import { execute, executeLayer } from './executor.js';
import { buildIntegerModel } from './integer-model.js';
import { quantizeTensor, quantizeValue } from '../quantization/grid.js';
import { qdqView } from './qdq-view.js';
import type { NpuPackage } from './types.js';

/** How closely the integer executor reproduces the simulation on one tensor, over all images. */
export interface TensorAgreement {
  tensor: string;
  /** The layer that writes the tensor ('' for package inputs). */
  layer: string;
  elements: number;
  /** Elements with identical integers. */
  exact: number;
  /** Largest |executor − simulation|, in steps of the tensor's grid (LSBs). */
  maxDiff: number;
}

export interface VerifyReport {
  images: number;
  /** The package outputs' entries of `chained`. */
  outputs: TensorAgreement[];
  /** Every package tensor, the executor run end to end from its own quantized input (differences propagate). */
  chained: TensorAgreement[];
  /**
   * Every tensor a layer writes, the layer fed the simulation's own inputs: the
   * disagreement each layer adds by itself.
   */
  isolated: TensorAgreement[];
  /**
   * Every tensor but the inputs, the executor against the package's integer ONNX model
   * (integer-model.ts) run by onnxruntime; present when asked for.
   */
  integerModel?: TensorAgreement[];
  /** Largest |accumulator| per layer over all images. */
  peaks: Record<string, number>;
  seconds: { simulation: number; executor: number; integerModel?: number };
}

export interface VerifyOptions {
  /** Also run the integer ONNX model and compare it with the executor. */
  integerModel?: boolean;
  onImage?: (done: number) => void;
}

/** A batch of preprocessed images (NCHW float32, `count` images at the front of `data`). */
export interface ImageBatchLike {
  data: Float32Array;
  count: number;
}

/**
 * Runs the integer executor and the QDQ model's fake-quant simulation (onnxruntime) on the
 * same images and compares the integers of every package tensor with the simulation's
 * (see `simulatedTensors`): end to end, and layer by layer with the simulation's inputs.
 */
export async function verifyPackage(
  pkg: NpuPackage,
  qdq: Model,
  batches: AsyncIterable<ImageBatchLike>,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  if (pkg.inputs.length !== 1) throw new QuantflowError(`verify needs a package with one image input, this one has ${pkg.inputs.length}`);
  const input = pkg.inputs[0]!;
  const inputInfo = pkg.tensors[input]!;
  const imageSize = inputInfo.shape.reduce((a, b) => a * b, 1);
  const simulated = simulatedTensors(qdq, pkg);
  const producers = new Map(pkg.layers.map((l) => [l.output, l.name]));
  const stats = (names: string[]) =>
    new Map(names.map((t) => [t, { tensor: t, layer: producers.get(t) ?? '', elements: 0, exact: 0, maxDiff: 0 }]));
  const tensors = Object.keys(pkg.tensors);
  const chained = stats(tensors);
  const isolated = stats(tensors.filter((t) => t !== input));
  const integer = options.integerModel ? stats(tensors.filter((t) => t !== input)) : undefined;
  const peaks: Record<string, number> = {};
  const seconds = { simulation: 0, executor: 0, integerModel: options.integerModel ? 0 : undefined };
  let images = 0;

  const session = await openSession(
    { ...qdq, graph: { ...qdq.graph, outputs: [...simulated.values()].map(({ name, dataType }) => ({ name, dataType })) } },
    { simulate: true },
  );
  const integerSession = integer && (await openSession(buildIntegerModel(pkg, { allTensors: true })));
  try {
    for await (const batch of batches) {
      let t0 = performance.now();
      const feed = new ort.Tensor('float32', batch.data.subarray(0, batch.count * imageSize), [batch.count, ...inputInfo.shape.slice(1)]);
      const sim = await session.run({ [input]: feed });
      seconds.simulation += (performance.now() - t0) / 1000;
      t0 = performance.now();
      const integerRun = integerSession && (await integerSession.run({ [input]: feed }));
      if (integerRun) seconds.integerModel! += (performance.now() - t0) / 1000;
      for (let n = 0; n < batch.count; n++) {
        const simTensor = (name: string) => {
          const where = simulated.get(name)!;
          const data = sim[where.name]!.data as ArrayLike<number>;
          const grid = pkg.tensors[name]!.grid;
          // Float values of grid-preserving ops lie exactly on the grid: quantizing them back is exact.
          return imageSlice(data, batch.count, n, where.quantize ? (v) => quantizeValue(v, grid) : undefined);
        };
        const reference = new Map(tensors.map((t) => [t, simTensor(t)]));
        t0 = performance.now();
        const image = quantizeTensor(batch.data.subarray(n * imageSize, (n + 1) * imageSize), inputInfo.grid);
        const run = execute(pkg, { [input]: image });
        for (const [t, s] of chained) accumulate(s, run.tensors.get(t)!, reference.get(t)!);
        for (const [layer, peak] of run.peaks) peaks[layer] = Math.max(peaks[layer] ?? 0, peak);
        for (const [t, s] of integer ?? [])
          accumulate(s, run.tensors.get(t)!, imageSlice(integerRun![t]!.data as Float32Array, batch.count, n));
        for (const layer of pkg.layers) {
          const out = executeLayer(
            pkg,
            layer,
            layer.inputs.map((i) => reference.get(i)!),
          ).output;
          accumulate(isolated.get(layer.output)!, out, reference.get(layer.output)!);
        }
        seconds.executor += (performance.now() - t0) / 1000;
        images++;
        options.onImage?.(images);
      }
    }
  } finally {
    await session.release();
    await integerSession?.release();
  }
  return {
    images,
    outputs: pkg.outputs.map((t) => chained.get(t)!),
    chained: [...chained.values()],
    isolated: [...isolated.values()],
    integerModel: integer && [...integer.values()],
    peaks,
    seconds,
  };
}

/** Image `n` of a batch of `count` stacked in `data`, as integers (through `map` when given). */
function imageSlice(data: ArrayLike<number>, count: number, n: number, map?: (v: number) => number): Int32Array {
  const size = data.length / count;
  return Int32Array.from({ length: size }, (_, i) => (map ? map(data[n * size + i]!) : data[n * size + i]!));
}

function accumulate(s: TensorAgreement, got: Int32Array, want: Int32Array): void {
  const d = integerDifferences(got, want);
  s.exact += d.equal;
  s.maxDiff = Math.max(s.maxDiff, d.max);
  s.elements += got.length;
}

/** How many elements of two integer tensors are equal, and their largest difference. */
export function integerDifferences(a: ArrayLike<number>, b: ArrayLike<number>): { equal: number; max: number } {
  let equal = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d === 0) equal++;
    else if (d > max) max = d;
  }
  return { equal, max };
}

interface SimulatedTensor {
  /** Output of the QDQ model to fetch. */
  name: string;
  dataType: DataType;
  /** The value is float (on the grid) and must be quantized back. */
  quantize: boolean;
}

/**
 * Where the simulation holds each package tensor's integers: the QuantizeLinear output of a
 * quantized tensor, or — for outputs of grid-preserving ops (Reshape, MaxPool), which keep
 * their names and lie on their input's grid — the float value itself, quantized back exactly.
 */
function simulatedTensors(qdq: Model, pkg: NpuPackage): Map<string, SimulatedTensor> {
  const quantized = new Map([...qdqView(qdq.graph).quantizedAs.values()].map((q) => [q.tensor, q]));
  const values = new Set(qdq.graph.nodes.flatMap((n) => n.outputs));
  return new Map(
    Object.keys(pkg.tensors).map((t): [string, SimulatedTensor] => {
      const q = quantized.get(t);
      if (q) return [t, { name: q.integers, dataType: q.dataType, quantize: false }];
      if (!values.has(t))
        throw new QuantflowError(`the QDQ model has no value for package tensor '${t}': is it the model the package was built from?`);
      return [t, { name: t, dataType: 'float32', quantize: true }];
    }),
  );
}
