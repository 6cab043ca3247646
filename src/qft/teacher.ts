import type * as ort from 'onnxruntime-node';
import type { Model, TensorData } from '../graph/types.js';
import { openSession, runSession } from '../runtime/session.js';
import type { ImageSet } from '../data/images.js';

/** Teacher values are held in memory up to this many bytes, else recomputed for every batch. */
const CACHE_BYTES = 2e9;

/**
 * The float model's values of `tensors` (logits, features) for the images of an ImageSet.
 * The teacher never changes, so they are computed once and cached when they fit; otherwise
 * (large feature maps, many images) the float model runs on each batch again.
 */
export class TeacherTargets {
  private constructor(
    /** The model input the images feed. */
    private readonly input: string,
    private readonly tensors: readonly string[],
    /** Per tensor: values of one image's [dims]. */
    readonly dims: ReadonlyMap<string, number[]>,
    private readonly cache: Map<string, Float32Array> | undefined,
    private readonly session: ort.InferenceSession | undefined,
  ) {}

  static async create(
    model: Model,
    tensors: readonly string[],
    images: ImageSet,
    batch: number,
    cacheBytes = CACHE_BYTES,
  ): Promise<TeacherTargets> {
    const outputs = tensors.map((name) => ({ name, dataType: 'float32' as const }));
    const session = await openSession({ ...model, graph: { ...model.graph, outputs } });
    try {
      const run = async (start: number, n: number) => runSession(session, { [images.input]: images.slice(start, n) });
      const first = await run(0, Math.min(batch, images.count));
      const n0 = Math.min(batch, images.count);
      const dims = new Map(tensors.map((t) => [t, first[t]!.dims.slice(1)]));
      const perImage = tensors.reduce((sum, t) => sum + first[t]!.data.length / n0, 0);
      if (perImage * images.count * 4 > cacheBytes) return new TeacherTargets(images.input, tensors, dims, undefined, session);
      const cache = new Map(tensors.map((t) => [t, new Float32Array((first[t]!.data.length / n0) * images.count)]));
      for (let start = 0; start < images.count; start += batch) {
        const n = Math.min(batch, images.count - start);
        const out = start === 0 ? first : await run(start, n);
        for (const t of tensors) cache.get(t)!.set(out[t]!.data as Float32Array, start * (out[t]!.data.length / n));
      }
      await session.release();
      return new TeacherTargets(images.input, tensors, dims, cache, undefined);
    } catch (e) {
      await session.release();
      throw e;
    }
  }

  /** Whether every value is held in memory (false: the float model runs per batch). */
  get cached(): boolean {
    return this.cache !== undefined;
  }

  /**
   * The teacher's values of the listed images, one batch per tensor. `batch` holds those
   * images as the student's input batch: the float model runs on it when nothing is cached.
   */
  async gather(indices: readonly number[], batch: TensorData): Promise<Record<string, TensorData>> {
    const out: Record<string, TensorData> = {};
    if (!this.cache) {
      const values = await runSession(this.session!, { [this.input]: batch });
      for (const t of this.tensors) out[t] = values[t]!;
      return out;
    }
    for (const t of this.tensors) {
      const dims = this.dims.get(t)!;
      const size = dims.reduce((p, d) => p * d, 1);
      const data = new Float32Array(indices.length * size);
      const all = this.cache.get(t)!;
      indices.forEach((img, j) => data.set(all.subarray(img * size, (img + 1) * size), j * size));
      out[t] = { dataType: 'float32', dims: [indices.length, ...dims], data };
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session?.release();
  }
}
