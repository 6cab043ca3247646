import type { DatasetItem } from './dataset.js';
import type { Model } from '../graph/types.js';
import type { Preprocess } from './preprocess.js';
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
  preprocess: Preprocess;
  /** Planes per input: 1 or 3 for images, any depth for .npy tensors. */
  channels: number;
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
  const size = o.channels * o.height * o.width;
  const shared = [sharedFloat32(o.batch * size), sharedFloat32(o.batch * size)];
  const packed = new Float32Array(o.batch * size);
  const pool = new DecodePool();
  const decode = (index: number) => {
    const chunk = items.slice(index * o.batch, (index + 1) * o.batch);
    const p = pool
      .decode(
        chunk.map((it) => it.path),
        o.preprocess,
        o.channels,
        o.height,
        o.width,
        shared[index % 2]!,
      )
      .then((errors) => ({ chunk, errors }));
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

/**
 * Where and how images enter a model: its float NCHW inputs, all of one [C, H, W], each fed
 * the same image (a model with a second view of its input, or a stereo pair given one image).
 */
export interface ImageInput {
  /** Every graph input, in graph order. */
  names: string[];
  /** The batch size the model fixes, or null when the batch dimension is dynamic. */
  fixedBatch: number | null;
  channels: number;
  height: number;
  width: number;
  /** Elements of one image: channels·height·width. */
  size: number;
}

/** The image inputs of a model, or a QuantflowError naming the input that is not one. */
export function imageInputGeometry(model: Model): ImageInput {
  const inputs = model.graph.inputs;
  if (inputs.length === 0) throw new QuantflowError(`this command needs a model with an image input, this one has none`);
  const fixed = (d: unknown): d is number => typeof d === 'number' && d > 0;
  const shown = (shape: unknown[] | undefined) => (shape ? `[${shape.map((d) => d ?? '?').join(', ')}]` : 'unknown');
  const first = inputs[0]!;
  for (const input of inputs) {
    const shape = input.shape;
    if (!shape || shape.length !== 4 || !fixed(shape[1]) || !fixed(shape[2]) || !fixed(shape[3])) {
      throw new QuantflowError(
        `wrong input shape: input '${input.name}' has shape ${shown(shape)}, expected [N, C, H, W] with fixed C, H and W (an image batch)`,
      );
    }
    if (input.dataType !== 'float32')
      throw new QuantflowError(`input '${input.name}' is ${input.dataType}; quantflow feeds float32 images`);
    if (shape.slice(1).join() !== first.shape!.slice(1).join())
      throw new QuantflowError(
        `input '${input.name}' has shape ${shown(shape)}, input '${first.name}' ${shown(first.shape)}: quantflow feeds every input the same image, so they must agree`,
      );
  }
  const [batch, channels, height, width] = first.shape! as number[];
  return {
    names: inputs.map((i) => i.name),
    fixedBatch: fixed(batch) ? batch : null,
    channels: channels!,
    height: height!,
    width: width!,
    size: channels! * height! * width!,
  };
}

/** The feeds of one batch: the same tensor for every image input. */
export function imageFeeds<T>(geometry: ImageInput, tensor: T): Record<string, T> {
  return Object.fromEntries(geometry.names.map((name) => [name, tensor]));
}
