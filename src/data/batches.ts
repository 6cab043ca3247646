import type { DatasetItem } from './dataset.js';
import type { Model } from '../graph/types.js';
import type { PresetName } from './preprocess.js';
import { DecodePool, sharedFloat32 } from './decode-pool.js';
import { QuantflowError } from '../util/errors.js';

/** A decoded NCHW batch: `items.length` images packed at the front of `data`. */
export interface ImageBatch {
  items: DatasetItem[];
  /** Valid until the next batch is requested. */
  data: Float32Array;
  /** Files that failed to decode (only when skipping bad images). */
  skipped: string[];
}

export interface BatchOptions {
  preset: PresetName;
  height: number;
  width: number;
  batch: number;
  skipBadImages?: boolean;
}

/**
 * Yields decoded batches of `items`. Worker threads decode batch i+1 into one shared buffer
 * while the consumer works on batch i, which is packed out of the other into ordinary memory
 * (onnxruntime does not take shared buffers). Unreadable images fail the batch with a
 * QuantflowError naming the file, or with `skipBadImages` are left out and listed.
 */
export async function* imageBatches(items: DatasetItem[], o: BatchOptions): AsyncGenerator<ImageBatch> {
  const size = 3 * o.height * o.width;
  const shared = [sharedFloat32(o.batch * size), sharedFloat32(o.batch * size)];
  const packed = new Float32Array(o.batch * size);
  const pool = new DecodePool();
  const decode = (index: number) => {
    const chunk = items.slice(index * o.batch, (index + 1) * o.batch);
    const p = pool.decode(chunk.map((it) => it.path), o.preset, o.height, o.width, shared[index % 2]!).then((errors) => ({ chunk, errors }));
    // Awaited one step later; without a handler now, a failure during the consumer's work would count as unhandled.
    p.catch(() => {});
    return p;
  };
  const count = Math.ceil(items.length / o.batch);
  try {
    let next = count > 0 ? decode(0) : undefined;
    for (let i = 0; next; i++) {
      const { chunk, errors } = await next;
      next = i + 1 < count ? decode(i + 1) : undefined;
      const batch: ImageBatch = { items: [], data: packed, skipped: [] };
      const source = shared[i % 2]!;
      chunk.forEach((item, slot) => {
        const error = errors[slot];
        if (error && !o.skipBadImages) throw error;
        if (error) return void batch.skipped.push(item.file);
        packed.set(source.subarray(slot * size, (slot + 1) * size), batch.items.length * size);
        batch.items.push(item);
      });
      yield batch;
    }
  } finally {
    await pool.close();
  }
}

/** Where and how images enter a model: its single NCHW RGB float input. */
export interface ImageInput {
  name: string;
  /** The batch size the model fixes, or null when the batch dimension is dynamic. */
  fixedBatch: number | null;
  height: number;
  width: number;
  /** Elements of one image: 3·height·width. */
  size: number;
}

/** The image input of a model, or a QuantflowError saying why it has none. */
export function imageInputGeometry(model: Model): ImageInput {
  const inputs = model.graph.inputs;
  if (inputs.length !== 1)
    throw new QuantflowError(`this command needs a model with one input (an image batch), this one has ${inputs.length}`);
  const input = inputs[0]!;
  const shape = input.shape;
  const fixed = (d: unknown): d is number => typeof d === 'number' && d > 0;
  if (!shape || shape.length !== 4 || shape[1] !== 3 || !fixed(shape[2]) || !fixed(shape[3])) {
    const shown = shape ? `[${shape.map((d) => d ?? '?').join(', ')}]` : 'unknown';
    throw new QuantflowError(
      `wrong input shape: input '${input.name}' has shape ${shown}, expected [N, 3, H, W] with fixed H and W`,
    );
  }
  if (input.dataType !== 'float32')
    throw new QuantflowError(`input '${input.name}' is ${input.dataType}; quantflow feeds float32 images`);
  return { name: input.name, fixedBatch: fixed(shape[0]) ? shape[0] : null, height: shape[2], width: shape[3], size: 3 * shape[2] * shape[3] };
}
