import { readFileSync } from 'node:fs';
import sharp, { type OutputInfo } from 'sharp';
import type { Model } from '../graph/types.js';
import { QuantflowError } from '../util/errors.js';
import { cropResize, type Normalization } from './resample.js';

/**
 * How an image becomes a model input. All presets output RGB, NCHW, float32, and resize
 * with Pillow's bilinear filter (see resample.ts).
 *
 * - `inception`: central crop of 87.5% of the short side, resized to HxW, x/127.5 - 1
 *   (range [-1, 1]). The TF convention, and exactly the preprocessing of the reference
 *   predictions in ../shared/reference (Python, Pillow): side = 0.875 * short side, box
 *   ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2) with each coordinate
 *   rounded half to even, as `Image.crop` does, so the crop can be one pixel off square.
 *   An image already at HxW is used whole.
 * - `unit`: the inception geometry, x/255 (range [0, 1]).
 * - `raw`: the inception geometry, x unchanged (range [0, 255]): what a TFLite model with a
 *   uint8 input of scale 1 and zero point 0 sees.
 * - `imagenet-torch`: torchvision's ImageNet evaluation transforms: Resize(256) of the short
 *   side (HxW/0.875 in general), CenterCrop(HxW), ToTensor (x/255), Normalize with mean
 *   [0.485, 0.456, 0.406] and std [0.229, 0.224, 0.225].
 */
export type PresetName = 'inception' | 'unit' | 'raw' | 'imagenet-torch';

/** Every preset, in the order the CLI lists them. */
export const PRESETS: readonly PresetName[] = ['inception', 'unit', 'raw', 'imagenet-torch'];

const TORCH_MEAN = [0.485, 0.456, 0.406];
const TORCH_STD = [0.229, 0.224, 0.225];

function uniform(scale: number, bias: number): Normalization {
  return { scale: [scale, scale, scale], bias: [bias, bias, bias] };
}

const NORMALIZATION: Record<PresetName, Normalization> = {
  inception: uniform(1 / 127.5, -1),
  unit: uniform(1 / 255, 0),
  raw: uniform(1, 0),
  'imagenet-torch': {
    scale: TORCH_STD.map((s) => 1 / (255 * s)),
    bias: TORCH_MEAN.map((m, c) => -m / TORCH_STD[c]!),
  },
};

/** Python's round(): half to even. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Crop, resize and output window of `preset` for a `width`x`height` image and an `outH`x`outW` model. */
function geometry(preset: PresetName, width: number, height: number, outH: number, outW: number) {
  const short = Math.min(width, height);
  if (preset === 'imagenet-torch') {
    // torchvision: the short side becomes `resized`, the long side is truncated, CenterCrop rounds its offset.
    const resized = Math.round(Math.min(outH, outW) / 0.875);
    const newW = width === short ? resized : Math.trunc((resized * width) / short);
    const newH = height === short ? resized : Math.trunc((resized * height) / short);
    return {
      crop: { left: 0, top: 0, width, height },
      size: { width: newW, height: newH },
      window: { left: roundHalfEven((newW - outW) / 2), top: roundHalfEven((newH - outH) / 2), width: outW, height: outH },
    };
  }
  const size = { width: outW, height: outH };
  const window = { left: 0, top: 0, width: outW, height: outH };
  // Images stored at the network's resolution (CIFAR-style sets) are fed whole: the central
  // crop exists to mimic ImageNet's evaluation protocol on larger photos.
  if (width === outW && height === outH) return { crop: window, size, window };
  const side = 0.875 * short;
  const left = roundHalfEven((width - side) / 2);
  const top = roundHalfEven((height - side) / 2);
  return {
    crop: { left, top, width: roundHalfEven((width + side) / 2) - left, height: roundHalfEven((height + side) / 2) - top },
    size,
    window,
  };
}

/**
 * Decodes `path` and writes it, preprocessed by `preset` to `height`x`width`, as CHW float32
 * into `out` at `offset` (one image of a preallocated NCHW batch). Grayscale becomes RGB,
 * alpha is dropped, EXIF orientation is ignored (as Pillow's loader does). Throws a
 * QuantflowError naming the file when it cannot be read or decoded.
 */
export async function decodeImage(
  path: string,
  preset: PresetName,
  height: number,
  width: number,
  out: Float32Array,
  offset: number,
): Promise<void> {
  // Read synchronously so the decode is queued on libuv's pool before this returns: a
  // caller that then blocks the JS thread (an onnxruntime run) still gets it decoded.
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new QuantflowError(`cannot read image '${path}': ${(e as NodeJS.ErrnoException).code ?? e}`, { cause: e });
  }
  let image: { data: Buffer; info: OutputInfo };
  try {
    image = await sharp(bytes).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new QuantflowError(`cannot decode image '${path}': ${(e as Error).message}`, { cause: e });
  }
  const g = geometry(preset, image.info.width, image.info.height, height, width);
  cropResize(image.data, image.info.width, g.crop, g.size, g.window, NORMALIZATION[preset], out, offset);
}

/** The preset `evaluate` uses when none is given, and why (printed to the user). */
export interface PresetChoice {
  preset: PresetName;
  reason: string;
}

/** Real input range of a TFLite model, as the TFLite importer records it in metadata. */
interface TfliteInput {
  name: string;
  dtype: string;
  realMin: number | null;
  realMax: number | null;
}

const RANGES: { preset: PresetName; min: number; max: number }[] = [
  { preset: 'inception', min: -1, max: 1 },
  { preset: 'unit', min: 0, max: 1 },
  { preset: 'raw', min: 0, max: 255 },
];

/**
 * Picks the preprocessing a model most likely expects. A quantized TFLite input declares
 * its real range (scale and zero point over the integer range), which names the
 * normalization; float TFLite models follow the TF convention ([-1, 1]); ONNX models
 * without TFLite metadata are assumed to come from PyTorch.
 */
export function choosePreset(model: Model): PresetChoice {
  const json = model.metadata['tflite.input'];
  if (json === undefined) {
    return { preset: 'imagenet-torch', reason: 'ONNX model without TFLite input metadata: assuming torchvision ImageNet preprocessing' };
  }
  const input = JSON.parse(json) as TfliteInput;
  if (input.realMin === null || input.realMax === null) {
    return { preset: 'inception', reason: `TFLite float input '${input.name}': TF convention, RGB scaled to [-1, 1]` };
  }
  const { realMin: lo, realMax: hi } = input;
  const range = `[${lo.toPrecision(4)}, ${hi.toPrecision(4)}]`;
  // The distance is relative to each candidate's width, so [-1, 0.992] (uint8, zero point 128) matches [-1, 1].
  const distance = (r: (typeof RANGES)[number]) => (Math.abs(lo - r.min) + Math.abs(hi - r.max)) / (r.max - r.min);
  const best = RANGES.reduce((a, b) => (distance(b) < distance(a) ? b : a));
  const verdict = distance(best) < 0.05 ? 'matches' : 'matches no preset; closest is';
  return {
    preset: best.preset,
    reason: `TFLite ${input.dtype} input '${input.name}' has real range ${range}, which ${verdict} '${best.preset}' [${best.min}, ${best.max}]`,
  };
}
