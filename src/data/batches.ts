import type { DatasetItem } from './dataset.js';
import type { Model } from '../graph/types.js';
import { decodeImage, type PresetName } from './preprocess.js';
import { QuantflowError } from '../util/errors.js';

/** A decoded NCHW batch: `items.length` images packed at the front of `data`. */
export interface ImageBatch {
  items: DatasetItem[];
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
 * Decodes `items` into `data`, all at once: onnxruntime-node runs inference on the JS
 * thread, so only work already queued on libuv's thread pool (sharp's decoders) progresses
 * while a batch runs. Images that fail are dropped (when skipping) and the rest packed.
 */
async function decodeBatch(items: DatasetItem[], data: Float32Array, o: BatchOptions): Promise<ImageBatch> {
  const size = 3 * o.height * o.width;
  const ok = await Promise.all(
    items.map((item, i) =>
      decodeImage(item.path, o.preset, o.height, o.width, data, i * size).then(
        () => true,
        (e: unknown) => {
          if (o.skipBadImages && e instanceof QuantflowError) return false;
          throw e;
        },
      ),
    ),
  );
  const kept: DatasetItem[] = [];
  const skipped: string[] = [];
  items.forEach((item, i) => {
    if (!ok[i]) return void skipped.push(item.file);
    if (kept.length !== i) data.copyWithin(kept.length * size, i * size, (i + 1) * size);
    kept.push(item);
  });
  return { items: kept, data, skipped };
}

/**
 * Yields decoded batches of `items`, decoding batch i+1 while the consumer works on batch i
 * (two buffers, so a yielded batch stays valid until the next one is requested).
 */
export async function* imageBatches(items: DatasetItem[], o: BatchOptions): AsyncGenerator<ImageBatch> {
  const size = 3 * o.height * o.width;
  const buffers = [new Float32Array(o.batch * size), new Float32Array(o.batch * size)];
  const decode = (index: number) => {
    const p = decodeBatch(items.slice(index * o.batch, (index + 1) * o.batch), buffers[index % 2]!, o);
    // Awaited one step later; without a handler now, a failure during the consumer's work would count as unhandled.
    p.catch(() => {});
    return p;
  };
  const count = Math.ceil(items.length / o.batch);
  let next = count > 0 ? decode(0) : undefined;
  for (let i = 0; next; i++) {
    const current = await next;
    next = i + 1 < count ? decode(i + 1) : undefined;
    yield current;
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
