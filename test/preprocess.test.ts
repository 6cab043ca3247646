import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import sharp from 'sharp';
import { choosePreset, decodeImage, presetSpec, type PresetName } from '../src/data/preprocess.js';
import { createGraph } from '../src/graph/graph.js';
import type { Model } from '../src/graph/types.js';
import { QuantflowError } from '../src/util/errors.js';

const root = mkdtempSync(join(tmpdir(), 'quantflow-preprocess-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** Pixel (x, y) of the synthetic test pattern: distinct, exact values per channel. */
function pattern(x: number, y: number): [number, number, number] {
  return [(x * 37 + y * 23) % 256, (x * 11 + y * 53 + 5) % 256, 255 - ((x * 29 + y * 17) % 256)];
}

/**
 * Pillow 12.3's output for `pattern` images, as base64 RGB bytes, from:
 *   inception: img.crop(((w-s)/2, (h-s)/2, (w+s)/2, (h+s)/2)).resize((S, S), Image.BILINEAR), s = 0.875*min(w, h)
 *   torch: img.resize((int(9*w/h), 9), Image.BILINEAR) (short side 9 = round(8/0.875)),
 *          then crop((l, t, l+8, t+8)) with l, t = round((new size - 8) / 2)
 */
const PILLOW: { preset: PresetName; width: number; height: number; size: number; bytes: string }[] = [
  // Shrinks (antialiased) from a 7x7 crop at (1, 0).
  {
    preset: 'raw',
    width: 9,
    height: 7,
    size: 5,
    bytes: 'OSbSZzOvnEOF0VNbVGA4VWa+g3ObuINxrpNHQaAkdrOlpMCC0KpYg7EuPL4ql46MxZtpgzc/Ly1IXTrDs0B44U1VRV0rS21zeXre',
  },
  // Enlarges a 4x4 crop at (1, 0).
  {
    preset: 'raw',
    width: 6,
    height: 4,
    size: 10,
    bytes:
      'JRDiKRHfOBbURhrIVR68ZCOxcyelgiyakDCOlDGLJxXgKxbdOhvSSB/GVyO6ZiivdSyjhDGYkjWMljaJMSvaNSzXRDHMUjXAYTm0cD6pf0KdjkeSnEuGoEyDOkDTPkHQTUbFW0q5ak6teVOiiFeWl1yLpWB/qWF8Q1XMR1bJVlu+ZF+yc2OmgmibkWyPoHGErnV4snZ1TGrFUGvCX3C3bXSrfHifi32UmoGIqYZ9t4pxu4tuVX++WYC7aIWwdomkhY2YlJKNo5aBspt2wJ9qxKBnX5W4Y5a1cpuqgJ+ej6OSnqiHrax7vLFwyrVkzrZhaKqxbKuue7CjibSXmLiLp72AtsF0xcZp08pd18taaq+vbrCsfbWhi7mVmr2JqcJ+uMZyx8tn1c9b2dBY',
  },
  // Box (2, 0.5, 9, 7.5) rounds half to even to a 7x8 crop at (2, 0), then enlarges.
  { preset: 'raw', width: 11, height: 8, size: 4, bytes: 'bUeqp1h9pWxHMH0tl6SMyJ1fZKsvULx/v4tqfVQ9TFV3fWbGsm5LRX89bJPApqS7' },
  // Resizes to 13x9, crops at (2, 0): round(2.5) is 2, half to even.
  {
    preset: 'imagenet-torch',
    width: 30,
    height: 20,
    size: 8,
    bytes:
      'rGpXR4NTgJ3DsbKPS6ZNgJ5Ztme/T2+DjJo9W6GIp2uwaXVtXFhFqWKvb2ykXYRhS1RojWzCqn+LTJJIjqNyr668UJd+jntGbamnrpioZY1lbYBRsVq2a2icbl1Ys3Vbmly7jGGDUmpEm4OOkp26VJ53nKk9mJiXqaWeSpldeqhErXa7TnmUemBTslxdU2q5hWl4WlJCqWKPjHGuXIZuqJk/Z6yvXJqkR5JSjZ9cpabAS4uKjpNLq1xpTme6jlh+',
  },
  // Already 9 high: no resize, crop at (2, 0) of 12x9 (round(0.5) is 0).
  {
    preset: 'imagenet-torch',
    width: 12,
    height: 9,
    size: 8,
    bytes:
      'ShvFbyaolDGLuTxu3kdRA1I0KF0XTWj6YVC0hluXq2Z60HFd9XxAGocjP5IGZJ3peIWjnZCGwptp56ZMDLEvMbwSVsf1e9LYj7qStMV12dBY/ts7I+YeSPEBbfzkkgfHpu+By/pk8AVHFRAqOhsNXybwhDHTqTy2vSRw4i9TBzo2LEUZUVD8dlvfm2bCwHGl1Flf+WRCHm8lQ3oIaIXrjZDOspux16aU645OEJkxNaQUWq/3f7rapMW9ydCg7tuD',
  },
];

const TORCH_MEAN = [0.485, 0.456, 0.406];
const TORCH_STD = [0.229, 0.224, 0.225];

/** Writes a lossless PNG of `width`x`height` with `channels` from `pixel`. */
async function png(name: string, width: number, height: number, pixel: (x: number, y: number) => number[]): Promise<string> {
  const channels = pixel(0, 0).length as 1 | 2 | 3 | 4;
  const data = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * channels);
  let image = sharp(data, { raw: { width, height, channels } });
  if (channels <= 2) image = image.toColourspace('b-w');
  const path = join(root, name);
  await image.png().toFile(path);
  return path;
}

async function decode(path: string, preset: PresetName, height: number, width: number): Promise<Float32Array> {
  const out = new Float32Array(3 * height * width + 2).fill(NaN);
  await decodeImage(path, presetSpec(preset), height, width, out, 1);
  assert.ok(Number.isNaN(out[0]!) && Number.isNaN(out[out.length - 1]!), 'writes only its own slot');
  return out.subarray(1, out.length - 1);
}

/** Value of channel c at (x, y) of a CHW image. */
function at(image: Float32Array, height: number, width: number, c: number, x: number, y: number): number {
  return image[c * height * width + y * width + x]!;
}

function close(actual: number, expected: number, what: string, tolerance = 1e-5): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} != ${expected}`);
}

describe('decodeImage', () => {
  it('inception: central crop of 87.5% of the short side, scaled to [-1, 1]', async () => {
    // 20x16: a 14x14 crop at (3, 1); a 14x14 output is that crop, unscaled.
    const path = await png('crop.png', 20, 16, pattern);
    const out = await decode(path, 'inception', 14, 14);
    for (let y = 0; y < 14; y++)
      for (let x = 0; x < 14; x++)
        for (let c = 0; c < 3; c++) close(at(out, 14, 14, c, x, y), pattern(x + 3, y + 1)[c]! / 127.5 - 1, `(${c},${x},${y})`);
  });

  it('inception: uses an image already at the model size whole', async () => {
    const path = await png('exact.png', 12, 10, pattern);
    const out = await decode(path, 'raw', 10, 12);
    for (const [x, y] of [
      [0, 0],
      [11, 9],
      [5, 3],
    ] as const)
      for (let c = 0; c < 3; c++) close(at(out, 10, 12, c, x, y), pattern(x, y)[c]!, `(${c},${x},${y})`);
  });

  it('raw and unit keep the inception geometry and scale to [0, 255] and [0, 1]', async () => {
    const path = await png('crop2.png', 16, 20, pattern);
    const raw = await decode(path, 'raw', 14, 14);
    const unit = await decode(path, 'unit', 14, 14);
    for (let c = 0; c < 3; c++) {
      close(at(raw, 14, 14, c, 5, 7), pattern(6, 10)[c]!, 'raw');
      close(at(unit, 14, 14, c, 5, 7), pattern(6, 10)[c]! / 255, 'unit');
    }
  });

  for (const f of PILLOW) {
    it(`matches Pillow bit for bit: ${f.preset} ${f.width}x${f.height} -> ${f.size}x${f.size}`, async () => {
      const path = await png(`pillow-${f.width}x${f.height}.png`, f.width, f.height, pattern);
      const out = await decode(path, f.preset, f.size, f.size);
      const expected = Buffer.from(f.bytes, 'base64');
      const toPixel = (v: number, c: number) => (f.preset === 'raw' ? v : (v * TORCH_STD[c]! + TORCH_MEAN[c]!) * 255);
      for (let i = 0; i < f.size * f.size; i++)
        for (let c = 0; c < 3; c++) close(toPixel(out[c * f.size * f.size + i]!, c), expected[i * 3 + c]!, `pixel ${i} channel ${c}`, 1e-3);
    });
  }

  it('imagenet-torch: short side to 256, central 224 crop, ImageNet mean and std', async () => {
    // 320x256 needs no resize for a 224 model: the crop starts at (48, 16).
    const path = await png('torch.png', 320, 256, pattern);
    const out = await decode(path, 'imagenet-torch', 224, 224);
    for (const [x, y] of [
      [0, 0],
      [223, 223],
      [100, 37],
    ] as const)
      for (let c = 0; c < 3; c++)
        close(at(out, 224, 224, c, x, y), (pattern(x + 48, y + 16)[c]! / 255 - TORCH_MEAN[c]!) / TORCH_STD[c]!, `(${c},${x},${y})`, 1e-4);
  });

  it('imagenet-torch: antialiased shrink averages fine stripes', async () => {
    // 512x512 of alternating columns shrinks to 256: a wide triangle filter leaves mid grey, point sampling would not.
    const path = await png('torch-stripes.png', 512, 512, (x) => [x % 2 ? 255 : 0, 128, 128]);
    const out = await decode(path, 'imagenet-torch', 224, 224);
    for (const x of [0, 57, 111, 223]) close(at(out, 224, 224, 0, x, 100), (127.5 / 255 - 0.485) / 0.229, `x=${x}`, 0.05);
  });

  // 16x16 crops to 14x14 at (1, 1): output (3, 2) is source (4, 3).
  it('turns grayscale into RGB', async () => {
    const path = await png('gray.png', 16, 16, (x, y) => [x * 10 + y]);
    const out = await decode(path, 'raw', 14, 14);
    for (let c = 0; c < 3; c++) close(at(out, 14, 14, c, 3, 2), 4 * 10 + 3, `channel ${c}`);
  });

  it('drops alpha without compositing', async () => {
    const path = await png('alpha.png', 16, 16, (x, y) => [...pattern(x, y), x === 4 ? 0 : 255]);
    const out = await decode(path, 'raw', 14, 14);
    for (let c = 0; c < 3; c++) close(at(out, 14, 14, c, 3, 2), pattern(4, 3)[c]!, `channel ${c}`);
    const grayAlpha = await png('gray-alpha.png', 16, 16, () => [90, 0]);
    const ga = await decode(grayAlpha, 'raw', 14, 14);
    for (let c = 0; c < 3; c++) close(at(ga, 14, 14, c, 1, 1), 90, `gray+alpha channel ${c}`);
  });

  it('decodes JPEG and WebP', async () => {
    for (const format of ['jpeg', 'webp'] as const) {
      const path = join(root, `solid.${format}`);
      await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 100, b: 50 } } })
        [format]({ quality: 95 })
        .toFile(path);
      const out = await decode(path, 'raw', 10, 10);
      [200, 100, 50].forEach((v, c) => close(at(out, 10, 10, c, 5, 5), v, `${format} channel ${c}`, 3));
    }
  });

  it('names an unreadable or missing file', async () => {
    const bad = join(root, 'broken.jpg');
    writeFileSync(bad, 'not an image');
    const missing = join(root, 'missing.png');
    for (const [path, message] of [
      [bad, `cannot decode image '${bad}': `],
      [missing, `cannot read image '${missing}': ENOENT`],
    ] as const) {
      await assert.rejects(decodeImage(path, presetSpec('inception'), 4, 4, new Float32Array(48), 0), (e: unknown) => {
        assert.ok(e instanceof QuantflowError);
        assert.ok(e.message.startsWith(message), e.message);
        assert.ok(!e.message.includes('\n'), 'one line');
        return true;
      });
    }
  });
});

function modelWith(metadata: Record<string, string>): Model {
  return { graph: createGraph('m'), opset: 17, producerName: 'test', metadata };
}

function tfliteInput(realMin: number | null, realMax: number | null, dtype = 'uint8'): Model {
  return modelWith({ 'tflite.input': JSON.stringify({ name: 'input', dtype, scale: 1, zeroPoint: 0, realMin, realMax }) });
}

describe('choosePreset', () => {
  it('picks imagenet-torch for ONNX models', () => {
    const c = choosePreset(modelWith({}));
    assert.equal(c.preset, 'imagenet-torch');
    assert.match(c.reason, /ONNX/);
  });

  it('picks inception for float TFLite models', () => {
    const c = choosePreset(tfliteInput(null, null, 'float32'));
    assert.equal(c.preset, 'inception');
    assert.match(c.reason, /float input 'input'/);
  });

  it('follows the real range of a quantized TFLite input', () => {
    assert.equal(choosePreset(tfliteInput(-1, 0.9921875)).preset, 'inception');
    assert.equal(choosePreset(tfliteInput(0, 255)).preset, 'raw');
    assert.equal(choosePreset(tfliteInput(0, 1)).preset, 'unit');
    assert.match(choosePreset(tfliteInput(-1, 0.9921875)).reason, /real range \[-1\.000, 0\.9922\], which matches 'inception'/);
  });

  it('says when no preset matches the range', () => {
    const c = choosePreset(tfliteInput(-128, 127, 'int8'));
    assert.equal(c.preset, 'raw');
    assert.match(c.reason, /matches no preset; closest is 'raw'/);
  });
});
