import { imageBatches, imageInputGeometry } from './batches.js';
import type { Dataset } from './dataset.js';
import type { Preprocess } from './preprocess.js';
import type { Model, TensorData } from '../graph/types.js';
import { QuantflowError } from '../util/errors.js';

/** Decoded calibration images, held in memory for every epoch. */
export class ImageSet {
  /** Floats per image. */
  readonly size: number;

  /** `data` holds `count` images of shape `dims` ([C, H, W]) back to back, fed to model input `input`. */
  constructor(
    readonly input: string,
    readonly dims: readonly number[],
    readonly data: Float32Array,
  ) {
    this.size = dims.reduce((p, d) => p * d, 1);
    if (!this.size || data.length % this.size) throw new RangeError(`${data.length} floats are not whole images of ${dims.join('x')}`);
  }

  get count(): number {
    return this.data.length / this.size;
  }

  /** Images start..start+n as one NCHW batch (a view, no copy). */
  slice(start: number, n: number): TensorData {
    return { dataType: 'float32', dims: [n, ...this.dims], data: this.data.subarray(start * this.size, (start + n) * this.size) };
  }

  /** The listed images gathered into `out` as one NCHW batch. */
  gather(indices: readonly number[], out: Float32Array): TensorData {
    indices.forEach((img, j) => out.set(this.data.subarray(img * this.size, (img + 1) * this.size), j * this.size));
    return { dataType: 'float32', dims: [indices.length, ...this.dims], data: out.subarray(0, indices.length * this.size) };
  }
}

/** Decoding everything up front must stay within this many bytes (about 4000 images at 224x224). */
const MAX_BYTES = 2.5e9;

/**
 * Decodes up to `limit` images of `calib` for `model`'s image input, all into memory;
 * unreadable ones fail, or with `skipBadImages` are left out.
 */
export async function decodeImages(
  model: Model,
  calib: Dataset,
  options: { limit: number; preprocess: Preprocess; batch: number; skipBadImages?: boolean },
): Promise<ImageSet> {
  const geometry = imageInputGeometry(model);
  // The student graph QFT trains has one input.
  if (geometry.names.length > 1)
    throw new QuantflowError(
      `QFT trains models with one image input; '${model.graph.name}' has ${geometry.names.length}: quantize it without --qft`,
    );
  const items = calib.items.slice(0, options.limit);
  if (items.length * geometry.size * 4 > MAX_BYTES)
    throw new QuantflowError(
      `QFT holds its calibration images in memory: ${items.length} images exceed ${MAX_BYTES / 1e9} GB, lower the calibration limit`,
    );
  const data = new Float32Array(items.length * geometry.size);
  let count = 0;
  for await (const b of imageBatches(items, {
    ...geometry,
    preprocess: options.preprocess,
    batch: options.batch,
    skipBadImages: options.skipBadImages,
  })) {
    data.set(b.data.subarray(0, b.items.length * geometry.size), count * geometry.size);
    count += b.items.length;
  }
  if (!count) throw new QuantflowError(`calibration folder '${calib.dir}' gave no images`);
  return new ImageSet(geometry.names[0]!, [geometry.channels, geometry.height, geometry.width], data.subarray(0, count * geometry.size));
}
