import { readFileSync } from 'node:fs';
import sharp, { type OutputInfo } from 'sharp';
import type { Model } from '../graph/types.js';
import { QuantflowError } from '../util/errors.js';
import { cropResize, type Normalization, type Rect } from './resample.js';

/**
 * How an image becomes a model input (NCHW float32): decoded, resized with Pillow's bilinear
 * filter (see resample.ts), normalized per colour as (pixel - mean) / std with pixel, mean
 * and std in 0..255 units after resizing, then laid out in `channels` order.
 *
 * `resize`:
 * - `crop`: central crop of `crop` (a fraction) of the short side, resized to HxW. The TF
 *   convention, and exactly the preprocessing of the reference predictions in
 *   ../shared/reference (Python, Pillow): side = crop * short side, box ((w - side) / 2,
 *   (h - side) / 2, (w + side) / 2, (h + side) / 2) with each coordinate rounded half to
 *   even, as `Image.crop` does, so the crop can be one pixel off square. An image already
 *   at HxW is used whole.
 * - `resize-crop`: torchvision's Resize(min(H, W) / crop) of the short side, then
 *   CenterCrop(HxW).
 * - `stretch`: the whole image resized to HxW, aspect ratio not kept.
 * - `letterbox`: the whole image resized to fit HxW keeping its aspect ratio, centred, the
 *   border filled with `padValue` (a pixel value, normalized like the image).
 *
 * `channels`: `gray` is Pillow's convert('L') before resizing and uses mean[0] and std[0].
 */
export interface Preprocess {
  /** Per colour R, G, B, in pixel units, whatever the channel order. */
  mean: number[];
  std: number[];
  channels: Channels;
  resize: ResizeMode;
  /** Fraction of the short side kept by `crop` and `resize-crop`. */
  crop: number;
  /** Border pixel value of `letterbox`. */
  padValue: number;
}

export type Channels = 'rgb' | 'bgr' | 'gray';
export type ResizeMode = 'crop' | 'resize-crop' | 'stretch' | 'letterbox';
export const CHANNELS: readonly Channels[] = ['rgb', 'bgr', 'gray'];
export const RESIZE_MODES: readonly ResizeMode[] = ['crop', 'resize-crop', 'stretch', 'letterbox'];

/**
 * Named specs:
 * - `inception`: crop 87.5%, x/127.5 - 1 (range [-1, 1]), the TF convention.
 * - `unit`: crop 87.5%, x/255 (range [0, 1]).
 * - `raw`: crop 87.5%, x unchanged (range [0, 255]): what a TFLite model with a uint8 input
 *   of scale 1 and zero point 0 sees.
 * - `imagenet-torch`: torchvision's ImageNet evaluation transforms: Resize(256) of the short
 *   side (HxW/0.875 in general), CenterCrop(HxW), ToTensor, Normalize with mean
 *   [0.485, 0.456, 0.406] and std [0.229, 0.224, 0.225].
 */
export type PresetName = 'inception' | 'unit' | 'raw' | 'imagenet-torch';

/** Every preset, in the order the CLI lists them. */
export const PRESETS: readonly PresetName[] = ['inception', 'unit', 'raw', 'imagenet-torch'];

const TORCH_MEAN = [0.485, 0.456, 0.406];
const TORCH_STD = [0.229, 0.224, 0.225];

function spec(mean: number[], std: number[], resize: ResizeMode): Preprocess {
  return { mean, std, channels: 'rgb', resize, crop: 0.875, padValue: 114 };
}

/** Fresh copies: callers may override fields. */
export function presetSpec(name: PresetName): Preprocess {
  switch (name) {
    case 'inception':
      return spec([127.5, 127.5, 127.5], [127.5, 127.5, 127.5], 'crop');
    case 'unit':
      return spec([0, 0, 0], [255, 255, 255], 'crop');
    case 'raw':
      return spec([0, 0, 0], [1, 1, 1], 'crop');
    case 'imagenet-torch':
      // In pixel units: 1 / (255 s) and -255 m / (255 s) give the same floats as torchvision's 1 / 255 then (x - m) / s here.
      return spec(
        TORCH_MEAN.map((m) => 255 * m),
        TORCH_STD.map((s) => 255 * s),
        'resize-crop',
      );
  }
}

/** Planes an image takes in the model input under `spec`. */
export function imageChannels(spec: Preprocess): number {
  return spec.channels === 'gray' ? 1 : 3;
}

/**
 * Short name for messages and reports: the preset it equals, else the closest preset and the
 * fields that differ from it (`inception + channels=bgr`).
 */
export function describePreprocess(spec: Preprocess): string {
  const show = (v: unknown) => (Array.isArray(v) ? v.map((x: number) => +x.toFixed(4)).join(',') : String(v));
  const keys = Object.keys(spec) as (keyof Preprocess)[];
  const differing = (p: PresetName) => keys.filter((k) => show(spec[k]) !== show(presetSpec(p)[k]));
  const closest = PRESETS.reduce((a, b) => (differing(b).length < differing(a).length ? b : a));
  const fields = differing(closest);
  return fields.length ? `${closest} + ${fields.map((k) => `${k}=${show(spec[k])}`).join(' ')}` : closest;
}

function normalization(spec: Preprocess): Normalization {
  return { scale: spec.std.map((s) => 1 / s), bias: spec.mean.map((m, c) => -m / spec.std[c]!) };
}

/** Python's round(): half to even. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

interface Geometry {
  crop: Rect;
  size: { width: number; height: number };
  window: Rect;
  /** Where the window lands in the HxW output (letterbox), else at (0, 0) filling it. */
  at?: { left: number; top: number };
}

/** Crop, resize and output window of `spec` for a `width`x`height` image and an `outH`x`outW` model. */
function geometry(spec: Preprocess, width: number, height: number, outH: number, outW: number): Geometry {
  const whole = { left: 0, top: 0, width, height };
  const short = Math.min(width, height);
  if (spec.resize === 'resize-crop') {
    // torchvision: the short side becomes `resized`, the long side is truncated, CenterCrop rounds its offset.
    const resized = Math.round(Math.min(outH, outW) / spec.crop);
    const newW = width === short ? resized : Math.trunc((resized * width) / short);
    const newH = height === short ? resized : Math.trunc((resized * height) / short);
    return {
      crop: whole,
      size: { width: newW, height: newH },
      window: { left: roundHalfEven((newW - outW) / 2), top: roundHalfEven((newH - outH) / 2), width: outW, height: outH },
    };
  }
  if (spec.resize === 'letterbox') {
    const scale = Math.min(outW / width, outH / height);
    const newW = Math.min(outW, Math.max(1, Math.round(width * scale)));
    const newH = Math.min(outH, Math.max(1, Math.round(height * scale)));
    return {
      crop: whole,
      size: { width: newW, height: newH },
      window: { left: 0, top: 0, width: newW, height: newH },
      at: { left: Math.floor((outW - newW) / 2), top: Math.floor((outH - newH) / 2) },
    };
  }
  const size = { width: outW, height: outH };
  const window = { left: 0, top: 0, width: outW, height: outH };
  if (spec.resize === 'stretch') return { crop: whole, size, window };
  // Images stored at the network's resolution (CIFAR-style sets) are fed whole: the central
  // crop exists to mimic ImageNet's evaluation protocol on larger photos.
  if (width === outW && height === outH) return { crop: window, size, window };
  const side = spec.crop * short;
  const left = roundHalfEven((width - side) / 2);
  const top = roundHalfEven((height - side) / 2);
  return {
    crop: { left, top, width: roundHalfEven((width + side) / 2) - left, height: roundHalfEven((height + side) / 2) - top },
    size,
    window,
  };
}

/** Pillow's convert('L') (ITU-R 601-2 luma in 16-bit fixed point), kept as three equal channels for cropResize. */
function toGray(rgb: Buffer): Buffer {
  const out = Buffer.allocUnsafe(rgb.length);
  for (let p = 0; p < rgb.length; p += 3) {
    const l = (rgb[p]! * 19595 + rgb[p + 1]! * 38470 + rgb[p + 2]! * 7471 + 0x8000) >> 16;
    out[p] = l;
    out[p + 1] = l;
    out[p + 2] = l;
  }
  return out;
}

/**
 * Decodes `path` and writes it, preprocessed by `spec` to `height`x`width`, as CHW float32
 * into `out` at `offset` (one image of a preallocated NCHW batch; `imageChannels(spec)`
 * planes). Grayscale files become RGB, alpha is dropped, EXIF orientation is ignored (as
 * Pillow's loader does). Throws a QuantflowError naming the file when it cannot be read or
 * decoded.
 */
export async function decodeImage(
  path: string,
  spec: Preprocess,
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
  const g = geometry(spec, image.info.width, image.info.height, height, width);
  const norm = normalization(spec);
  const plane = height * width;
  if (spec.channels === 'rgb' && !g.at) return cropResize(image.data, image.info.width, g.crop, g.size, g.window, norm, out, offset);
  const pixels = spec.channels === 'gray' ? toGray(image.data) : image.data;
  const resized = new Float32Array(3 * g.window.width * g.window.height);
  cropResize(pixels, image.info.width, g.crop, g.size, g.window, norm, resized, 0);
  const order = spec.channels === 'gray' ? [0] : spec.channels === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const at = g.at ?? { left: 0, top: 0 };
  const w = g.window.width;
  const h = g.window.height;
  order.forEach((colour, c) => {
    const base = offset + c * plane;
    if (g.at) out.fill(Math.fround(spec.padValue * norm.scale[colour]! + norm.bias[colour]!), base, base + plane);
    for (let y = 0; y < h; y++) {
      const from = colour * w * h + y * w;
      out.set(resized.subarray(from, from + w), base + (at.top + y) * width + at.left);
    }
  });
}

/** The preset the model's input suggests, and why (printed to the user). */
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

/** Preprocessing asked for: a preset (or the model's default) with fields replaced. */
export interface PreprocessRequest extends Partial<Preprocess> {
  preset?: PresetName;
}

/** The preprocessing a command uses, its short name and why it was chosen. */
export interface PreprocessChoice {
  spec: Preprocess;
  label: string;
  reason: string;
}

/** ONNX metadata_props key holding a JSON preprocessing request; quantflow writes it into its QDQ models. */
export const PREPROCESS_METADATA = 'quantflow.preprocess';

const FIELDS = ['preset', 'mean', 'std', 'channels', 'resize', 'crop', 'padValue'] as const;

/**
 * Checks the fields of a preprocessing request read from JSON or the command line; `where`
 * names a field's origin (an option, or a file and field) in the one-line error.
 */
export function validatePreprocess(fields: Record<string, unknown>, where: (field: string) => string): PreprocessRequest {
  const request: PreprocessRequest = {};
  for (const [field, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const fail = (what: string): never => {
      throw new QuantflowError(`${where(field)}: ${what}`);
    };
    switch (field) {
      case 'preset':
        if (!PRESETS.includes(value as PresetName)) fail(`unknown preset '${String(value)}' (one of ${PRESETS.join(', ')})`);
        request.preset = value as PresetName;
        break;
      case 'mean':
      case 'std': {
        const list = Array.isArray(value) ? value : [value];
        if ((list.length !== 1 && list.length !== 3) || !list.every((v) => typeof v === 'number' && Number.isFinite(v)))
          fail(
            `expected 1 or 3 numbers (r,g,b in pixel units 0-255), got ${Array.isArray(value) ? value.join(',') : JSON.stringify(value)}`,
          );
        if (field === 'std' && list.some((v) => v <= 0)) fail(`std must be positive, got ${list.join(',')}`);
        request[field] = list.length === 1 ? [list[0], list[0], list[0]] : [...list];
        break;
      }
      case 'channels':
        if (!CHANNELS.includes(value as Channels)) fail(`expected one of ${CHANNELS.join(', ')}, got ${JSON.stringify(value)}`);
        request.channels = value as Channels;
        break;
      case 'resize':
        if (!RESIZE_MODES.includes(value as ResizeMode)) fail(`expected one of ${RESIZE_MODES.join(', ')}, got ${JSON.stringify(value)}`);
        request.resize = value as ResizeMode;
        break;
      case 'crop':
        if (typeof value !== 'number' || !(value > 0 && value <= 1)) fail(`expected a fraction in (0, 1], got ${JSON.stringify(value)}`);
        request.crop = value as number;
        break;
      case 'padValue':
        if (typeof value !== 'number' || !(value >= 0 && value <= 255))
          fail(`expected a pixel value in 0..255, got ${JSON.stringify(value)}`);
        request.padValue = value as number;
        break;
      default:
        fail(`unknown field (expected ${FIELDS.join(', ')})`);
    }
  }
  return request;
}

/** Reads a `--preprocess` JSON file: an object with the fields of `PreprocessRequest`. */
export function readPreprocessFile(file: string): PreprocessRequest {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new QuantflowError(`${file}: cannot read the preprocessing file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new QuantflowError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new QuantflowError(`${file}: expected a JSON object with fields ${FIELDS.join(', ')}`);
  return validatePreprocess(json as Record<string, unknown>, (field) => `${file}: field '${field}'`);
}

/** Metadata recording `spec` in a model quantflow writes, so that later commands default to it. */
export function preprocessMetadata(spec: Preprocess): Record<string, string> {
  return { [PREPROCESS_METADATA]: JSON.stringify(spec) };
}

function overridden(base: Preprocess, request: PreprocessRequest): Preprocess {
  const spec = { ...base };
  for (const field of FIELDS) if (field !== 'preset' && request[field] !== undefined) Object.assign(spec, { [field]: request[field] });
  return spec;
}

/**
 * The preprocessing a model most likely expects: the one recorded in its metadata
 * (`quantflow.preprocess`), else the preset its input suggests (`choosePreset`).
 */
export function defaultPreprocess(model: Model): PreprocessChoice {
  const recorded = model.metadata[PREPROCESS_METADATA];
  if (recorded !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(recorded);
    } catch {
      throw new QuantflowError(`model metadata '${PREPROCESS_METADATA}' is not valid JSON: remove it or pass the preprocessing options`);
    }
    const request = validatePreprocess(json as Record<string, unknown>, (f) => `model metadata '${PREPROCESS_METADATA}' field '${f}'`);
    const spec = overridden(request.preset ? presetSpec(request.preset) : presetSpec(choosePreset(model).preset), request);
    return { spec, label: describePreprocess(spec), reason: `recorded in the model's metadata (${PREPROCESS_METADATA})` };
  }
  const choice = choosePreset(model);
  return { spec: presetSpec(choice.preset), label: choice.preset, reason: choice.reason };
}

/**
 * The preprocessing to use for `model`: `request`'s preset, else the model's default, with
 * `request`'s fields replacing the preset's. `inputChannels` is the model's image input
 * depth: a 1-channel input gets grayscale unless channels were asked for; inputs with
 * other depths are fed from .npy files and ignore it.
 */
export function resolvePreprocess(model: Model, request: PreprocessRequest | undefined, inputChannels: number): PreprocessChoice {
  const base: PreprocessChoice = request?.preset
    ? { spec: presetSpec(request.preset), label: request.preset, reason: `preset '${request.preset}' given` }
    : defaultPreprocess(model);
  const given = FIELDS.filter((f) => f !== 'preset' && request?.[f] !== undefined);
  const spec = overridden(base.spec, request ?? {});
  let reason = given.length ? `${base.reason}; ${given.join(', ')} given` : base.reason;
  if (inputChannels === 1 && spec.channels !== 'gray') {
    if (request?.channels !== undefined)
      throw new QuantflowError(`channels '${spec.channels}' gives 3 planes but the model's image input has 1 channel: use channels gray`);
    spec.channels = 'gray';
    reason += '; grayscale for its 1-channel input';
  } else if (inputChannels === 3 && spec.channels === 'gray') {
    throw new QuantflowError(`channels 'gray' gives 1 plane but the model's image input has 3 channels: use rgb or bgr`);
  }
  return { spec, label: describePreprocess(spec), reason };
}
