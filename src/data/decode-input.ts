import { QuantflowError } from '../util/errors.js';
import { readNpy } from './npy.js';
import { decodeImage, imageChannels, type Preprocess } from './preprocess.js';

/** Files fed as tensors, not decoded as images. */
export const TENSOR_FILE = /\.npy$/i;

/**
 * Writes one model input of `channels`x`height`x`width` into `out` at `offset`: a .npy
 * tensor as stored ([C, H, W] or [1, C, H, W], no preprocessing), or an image preprocessed
 * by `spec`. A mismatch between the file and the input is a QuantflowError naming the file.
 */
export async function decodeInput(
  path: string,
  spec: Preprocess,
  channels: number,
  height: number,
  width: number,
  out: Float32Array,
  offset: number,
): Promise<void> {
  if (TENSOR_FILE.test(path)) {
    const { dims, data } = readNpy(path);
    const chw = dims.length === 4 && dims[0] === 1 ? dims.slice(1) : dims;
    if (chw.length !== 3 || chw[0] !== channels || chw[1] !== height || chw[2] !== width)
      throw new QuantflowError(
        `'${path}' holds shape [${dims.join(', ')}], the model input needs [${channels}, ${height}, ${width}] (or [1, ${channels}, ${height}, ${width}])`,
      );
    out.set(data, offset);
    return;
  }
  if (imageChannels(spec) !== channels)
    throw new QuantflowError(
      `'${path}' is an image but the model input has ${channels} channels: feed .npy tensors of shape [${channels}, ${height}, ${width}] instead`,
    );
  await decodeImage(path, spec, height, width, out, offset);
}
