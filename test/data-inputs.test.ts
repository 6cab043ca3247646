import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { preprocessRequest } from '../src/cli/preprocess-options.js';
import { decodeInput } from '../src/data/decode-input.js';
import { loadDataset } from '../src/data/dataset.js';
import { readNpy } from '../src/data/npy.js';
import {
  decodeImage,
  defaultPreprocess,
  presetSpec,
  readPreprocessFile,
  resolvePreprocess,
  type Preprocess,
} from '../src/data/preprocess.js';
import { createGraph, makeNode } from '../src/graph/graph.js';
import type { Model } from '../src/graph/types.js';
import { prepareModel } from '../src/import/prepare.js';
import { loadProfile } from '../src/quantization/profile.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import { decodeImages } from '../src/data/images.js';
import { QuantflowError } from '../src/util/errors.js';
import { tinyCnn } from './fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'quantflow-data-inputs-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A lossless RGB PNG of `width`x`height` from `pixel`. */
async function png(path: string, width: number, height: number, pixel: (x: number, y: number) => number[]): Promise<string> {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * 3);
  await sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toFile(path);
  return path;
}

async function decode(path: string, spec: Preprocess, height: number, width: number): Promise<Float32Array> {
  const planes = spec.channels === 'gray' ? 1 : 3;
  const out = new Float32Array(planes * height * width);
  await decodeImage(path, spec, height, width, out, 0);
  return out;
}

/** Row y of plane c of a CHW image. */
function row(image: Float32Array, width: number, height: number, c: number, y: number): number[] {
  return [...image.subarray(c * width * height + y * width, c * width * height + (y + 1) * width)];
}

function raw(fields: Partial<Preprocess> = {}): Preprocess {
  return { ...presetSpec('raw'), ...fields };
}

function oneLine(pattern: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof QuantflowError, `expected a QuantflowError, got ${e}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  };
}

describe('preprocessing fields on tiny images', () => {
  let halves: string;
  let colours: string;
  before(async () => {
    // 8x4: columns 0-3 black, 4-7 white in red; green 100; blue 200.
    halves = await png(join(root, 'halves.png'), 8, 4, (x) => [x < 4 ? 0 : 255, 100, 200]);
    // 2x2 at the model size, used whole: (10,20,30) (40,50,60) / (255,0,0) (0,255,0).
    const px = [
      [10, 20, 30],
      [40, 50, 60],
      [255, 0, 0],
      [0, 255, 0],
    ];
    colours = await png(join(root, 'colours.png'), 2, 2, (x, y) => px[y * 2 + x]!);
  });

  it('mean and std: (pixel - mean) / std per colour, in pixel units', async () => {
    const out = await decode(colours, raw({ mean: [10, 20, 30], std: [2, 4, 5] }), 2, 2);
    assert.deepEqual(row(out, 2, 2, 0, 0), [0, 15]);
    assert.deepEqual(row(out, 2, 2, 1, 0), [0, 7.5]);
    assert.deepEqual(row(out, 2, 2, 2, 1), [-6, -6]);
  });

  it('bgr: blue first, each colour normalized with its own mean', async () => {
    const out = await decode(colours, raw({ channels: 'bgr', mean: [0, 0, 60] }), 2, 2);
    assert.deepEqual(row(out, 2, 2, 0, 0), [-30, 0]);
    assert.deepEqual(row(out, 2, 2, 1, 0), [20, 50]);
    assert.deepEqual(row(out, 2, 2, 2, 1), [255, 0]);
  });

  it("gray: Pillow's luma (0.299 R + 0.587 G + 0.114 B in 16-bit fixed point), one plane", async () => {
    // (10,20,30): 18.15 -> 18; (40,50,60): 48.15 -> 48; red 76.2 -> 76; green 149.7 -> 150.
    const out = await decode(colours, raw({ channels: 'gray', mean: [1, 0, 0] }), 2, 2);
    assert.deepEqual([...out], [17, 47, 75, 149]);
  });

  it('crop: the central fraction of the short side', async () => {
    // crop 0.5 of 8x8: box (2, 2, 6, 6), taken at 4x4 without resampling.
    const path = await png(join(root, 'grid.png'), 8, 8, (x, y) => [x * 10, y * 10, 0]);
    const out = await decode(path, raw({ crop: 0.5 }), 4, 4);
    assert.deepEqual(row(out, 4, 4, 0, 0), [20, 30, 40, 50]);
    assert.deepEqual(row(out, 4, 4, 1, 3), [50, 50, 50, 50]);
  });

  it('crop (87.5%) keeps the middle, stretch squeezes the whole width', async () => {
    // crop: side 3.5 of 8x4 rounds to the box (2, 0, 6, 4): columns 2-5, unresampled.
    const cropped = await decode(halves, raw(), 4, 4);
    assert.deepEqual(row(cropped, 4, 4, 0, 2), [0, 0, 255, 255]);
    // stretch 8 -> 4 columns: Pillow's triangle filter of width 2; output 1 takes 1/8 of
    // column 4 (32 after fixed-point rounding), output 2 takes 7/8 (223).
    const stretched = await decode(halves, raw({ resize: 'stretch' }), 4, 4);
    for (let y = 0; y < 4; y++) assert.deepEqual(row(stretched, 4, 4, 0, y), [0, 32, 223, 255]);
    assert.deepEqual(row(stretched, 4, 4, 1, 0), [100, 100, 100, 100]);
  });

  it('letterbox: fit, centre and pad with the pad value, normalized like the image', async () => {
    // 8x4 into 4x4: scaled to 4x2 at rows 1-2; rows 0 and 3 are the pad, (50 - 10) / 2 = 20.
    const out = await decode(halves, raw({ resize: 'letterbox', padValue: 50, mean: [10, 10, 10], std: [2, 2, 2] }), 4, 4);
    assert.deepEqual(row(out, 4, 4, 0, 0), [20, 20, 20, 20]);
    assert.deepEqual(row(out, 4, 4, 0, 1), [-5, 11, 106.5, 122.5]);
    assert.deepEqual(row(out, 4, 4, 2, 2), [95, 95, 95, 95]);
    assert.deepEqual(row(out, 4, 4, 2, 3), [20, 20, 20, 20]);
    // A tall image pads left and right: 2x4 into 4x4 is 2x4 at columns 1-2, default pad 114.
    const tall = await png(join(root, 'tall.png'), 2, 4, () => [7, 7, 7]);
    const padded = await decode(tall, raw({ resize: 'letterbox' }), 4, 4);
    assert.deepEqual(row(padded, 4, 4, 1, 3), [114, 7, 7, 114]);
  });
});

function modelWith(metadata: Record<string, string>): Model {
  return { graph: createGraph('m'), opset: 17, producerName: 'test', metadata };
}

describe('choosing the preprocessing', () => {
  it('flags override the file, which overrides its preset', () => {
    const file = join(root, 'pre.json');
    writeFileSync(file, JSON.stringify({ preset: 'unit', mean: [1, 2, 3], resize: 'letterbox', padValue: 0 }));
    const request = preprocessRequest({ preprocess: file, mean: '4', channels: 'bgr' });
    assert.deepEqual(request, { preset: 'unit', mean: [4, 4, 4], resize: 'letterbox', padValue: 0, channels: 'bgr' });
    const choice = resolvePreprocess(modelWith({}), request, 3);
    assert.deepEqual(choice.spec, {
      mean: [4, 4, 4],
      std: [255, 255, 255],
      channels: 'bgr',
      resize: 'letterbox',
      crop: 0.875,
      padValue: 0,
    });
    assert.equal(choice.reason, "preset 'unit' given; mean, channels, resize, padValue given");
    assert.equal(preprocessRequest({}), undefined);
  });

  it('fields without a preset replace those of the model default', () => {
    const choice = resolvePreprocess(modelWith({}), { std: [1, 1, 1] }, 3);
    assert.deepEqual(choice.spec.mean, presetSpec('imagenet-torch').mean);
    assert.deepEqual(choice.spec.std, [1, 1, 1]);
    assert.match(choice.reason, /^ONNX model .*; std given$/);
  });

  it('the preset name labels a spec equal to it, whatever its origin', () => {
    assert.equal(resolvePreprocess(modelWith({}), { preset: 'raw', std: [1, 1, 1] }, 3).label, 'raw');
    assert.equal(resolvePreprocess(modelWith({}), { preset: 'raw', mean: [5, 5, 5] }, 3).label, 'raw + mean=5,5,5');
    assert.equal(
      resolvePreprocess(modelWith({}), { preset: 'inception', channels: 'bgr', resize: 'letterbox' }, 3).label,
      'inception + channels=bgr resize=letterbox',
    );
  });

  it('a model that records its preprocessing (quantflow.preprocess) defaults to it', () => {
    const spec = raw({ channels: 'bgr', resize: 'stretch' });
    const c = defaultPreprocess(modelWith({ 'quantflow.preprocess': JSON.stringify(spec) }));
    assert.deepEqual(c.spec, spec);
    assert.match(c.reason, /recorded in the model's metadata/);
    // Partial: the rest from the preset it names.
    assert.deepEqual(defaultPreprocess(modelWith({ 'quantflow.preprocess': '{"preset":"unit","channels":"bgr"}' })).spec, {
      ...presetSpec('unit'),
      channels: 'bgr',
    });
    assert.throws(
      () => defaultPreprocess(modelWith({ 'quantflow.preprocess': '{"colour":1}' })),
      oneLine(/model metadata 'quantflow\.preprocess' field 'colour': unknown field/),
    );
  });

  for (const [flags, pattern] of [
    [{ mean: '1,2' }, /^--mean: expected 1 or 3 numbers \(r,g,b in pixel units 0-255\), got 1,2$/],
    [{ mean: '1,x,3' }, /^--mean: expected 1 or 3 numbers/],
    [{ std: '1,0,1' }, /^--std: std must be positive, got 1,0,1$/],
    [{ channels: 'rgba' }, /^--channels: expected one of rgb, bgr, gray, got "rgba"$/],
    [{ resize: 'fit' }, /^--resize: expected one of crop, resize-crop, stretch, letterbox/],
    [{ padValue: '300' }, /^--pad-value: expected a pixel value in 0\.\.255, got 300$/],
    [{ preset: 'tf' }, /^--preset: unknown preset 'tf'/],
  ] as const) {
    it(`rejects ${JSON.stringify(flags)} naming the option`, () => {
      assert.throws(() => preprocessRequest(flags), oneLine(pattern));
    });
  }

  it('rejects a bad file naming it and the field', () => {
    const write = (name: string, text: string) => {
      const path = join(root, name);
      writeFileSync(path, text);
      return path;
    };
    const unknown = write('unknown.json', '{"mean": [1, 2, 3], "colour": "red"}');
    assert.throws(
      () => readPreprocessFile(unknown),
      oneLine(new RegExp(`^${unknown}: field 'colour': unknown field \\(expected preset, mean, std, channels, resize, crop, padValue\\)$`)),
    );
    const zero = write('zero.json', '{"std": 0}');
    assert.throws(() => readPreprocessFile(zero), oneLine(new RegExp(`^${zero}: field 'std': std must be positive`)));
    const count = write('count.json', '{"mean": [1, 2, 3, 4]}');
    assert.throws(() => readPreprocessFile(count), oneLine(new RegExp(`^${count}: field 'mean': expected 1 or 3 numbers`)));
    const broken = write('broken.json', '{"mean": ');
    assert.throws(() => readPreprocessFile(broken), oneLine(new RegExp(`^${broken}: not valid JSON`)));
    const list = write('list.json', '[1]');
    assert.throws(() => readPreprocessFile(list), oneLine(new RegExp(`^${list}: expected a JSON object`)));
    assert.throws(() => readPreprocessFile(join(root, 'none.json')), oneLine(/none\.json: cannot read the preprocessing file \(ENOENT\)$/));
  });

  it('a 1-channel input gets gray, a 3-channel input refuses it', () => {
    const gray = resolvePreprocess(modelWith({}), { preset: 'raw' }, 1);
    assert.equal(gray.spec.channels, 'gray');
    assert.throws(
      () => resolvePreprocess(modelWith({}), { channels: 'gray' }, 3),
      oneLine(/channels 'gray' gives 1 plane but the model's image input has 3 channels/),
    );
  });
});

/** A .npy file (format 1.0) of `dims` holding `values` as `descr`. */
function npy(name: string, descr: string, dims: number[], bytes: Buffer, fortran = false): string {
  let header = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': (${dims.join(', ')}${dims.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head.writeUInt16LE(header.length, 8);
  const path = join(root, name);
  writeFileSync(path, Buffer.concat([head, Buffer.from(header, 'latin1'), bytes]));
  return path;
}

describe('.npy inputs', () => {
  it('reads float32, float64 and uint8 back', () => {
    const f4 = npy('f4.npy', '<f4', [1, 2, 2, 1], Buffer.from(new Float32Array([1.5, -2, 3.25, 4]).buffer));
    assert.deepEqual(readNpy(f4), { dims: [1, 2, 2, 1], data: new Float32Array([1.5, -2, 3.25, 4]) });
    const f8 = npy('f8.npy', '<f8', [3], Buffer.from(new Float64Array([0.5, 1e3, -7]).buffer));
    assert.deepEqual(readNpy(f8), { dims: [3], data: new Float32Array([0.5, 1000, -7]) });
    const u1 = npy('u1.npy', '|u1', [2, 2], Buffer.from([0, 7, 200, 255]));
    assert.deepEqual(readNpy(u1), { dims: [2, 2], data: new Float32Array([0, 7, 200, 255]) });
  });

  it('rejects what it cannot read, naming the file', () => {
    const fortran = npy('fortran.npy', '<f4', [2, 2], Buffer.alloc(16), true);
    assert.throws(() => readNpy(fortran), oneLine(/fortran\.npy' is not a readable \.npy file: Fortran order/));
    const big = npy('big.npy', '>f4', [2], Buffer.alloc(8));
    assert.throws(() => readNpy(big), oneLine(/big\.npy' is not a readable \.npy file: dtype '>f4'/));
    const short = npy('short.npy', '<f4', [4], Buffer.alloc(8));
    assert.throws(() => readNpy(short), oneLine(/short\.npy' .*the file is shorter/));
    const text = join(root, 'text.npy');
    writeFileSync(text, 'hello world');
    assert.throws(() => readNpy(text), oneLine(/text\.npy' is not a readable \.npy file: no NumPy magic string/));
  });

  it('feeds a tensor of the input shape as stored, refuses another shape', async () => {
    const values = Float32Array.from({ length: 5 * 2 * 2 }, (_, i) => i - 3);
    const path = npy('five.npy', '<f4', [1, 5, 2, 2], Buffer.from(values.buffer));
    const out = new Float32Array(21).fill(NaN);
    await decodeInput(path, presetSpec('raw'), 5, 2, 2, out, 1);
    assert.deepEqual(out.subarray(1), values);
    await assert.rejects(
      decodeInput(path, presetSpec('raw'), 5, 4, 1, out, 0),
      oneLine(/five\.npy' holds shape \[1, 5, 2, 2\], the model input needs \[5, 4, 1\]/),
    );
    const image = await png(join(root, 'five.png'), 2, 2, () => [1, 2, 3]);
    await assert.rejects(
      decodeInput(image, presetSpec('raw'), 5, 2, 2, out, 0),
      oneLine(/five\.png' is an image but the model input has 5 channels: feed \.npy tensors of shape \[5, 2, 2\] instead/),
    );
  });
});

describe('calibration on a flat folder with a broken image', () => {
  let dir: string;
  before(async () => {
    dir = join(root, 'calib');
    mkdirSync(join(dir, 'nested'), { recursive: true });
    for (let i = 0; i < 4; i++)
      await png(join(dir, i < 2 ? '' : 'nested', `${i}.png`), 7, 6, (x, y) => [(x * 30 + i * 20) % 256, (y * 40) % 256, 90]);
    writeFileSync(join(dir, 'nested', 'broken.jpg'), 'not a jpeg');
  });

  it('fails naming the file, or with skipBadImages leaves it out and lists it', async () => {
    const model = await prepareModel(tinyCnn());
    const calib = await loadDataset(dir);
    assert.equal(calib.labelled, false);
    const profile = loadProfile('w8a8-shift');
    await assert.rejects(
      quantizeModel(model, calib, { profile, batch: 2, preprocess: { preset: 'unit' } }),
      oneLine(/cannot decode image '.*nested\/broken\.jpg'/),
    );
    const r = await quantizeModel(model, calib, {
      profile,
      batch: 2,
      preprocess: { preset: 'unit', channels: 'bgr' },
      skipBadImages: true,
    });
    assert.deepEqual(r.skipped, ['nested/broken.jpg']);
    assert.equal(r.calibrationImages, 4);
    // The QDQ model records what it was calibrated with, and later commands default to it.
    assert.deepEqual(JSON.parse(r.model.metadata['quantflow.preprocess']!), { ...presetSpec('unit'), channels: 'bgr' });
    assert.equal(resolvePreprocess(r.model, undefined, 3).spec.channels, 'bgr');
  });

  it('calibrates a model with two image inputs, feeding both the same image', async () => {
    // x + x2 doubles the image: the first layer's input range is twice that of the one-input model.
    const two = tinyCnn();
    two.graph.inputs.push({ name: 'x2', dataType: 'float32', shape: ['batch', 3, 5, 5] });
    two.graph.nodes.unshift(makeNode('Add', ['x', 'x2'], ['xx']));
    two.graph.nodes[1]!.inputs[0] = 'xx';
    const calib = await loadDataset(dir);
    const options = {
      profile: loadProfile('w8a8-shift'),
      batch: 2,
      calibration: 'minmax' as const,
      skipBadImages: true,
      preprocess: { preset: 'unit' as const },
    };
    const r = await quantizeModel(await prepareModel(two), calib, options);
    assert.deepEqual(
      r.model.graph.inputs.map((i) => i.name),
      ['x', 'x2'],
    );
    const one = await quantizeModel(await prepareModel(tinyCnn()), calib, options);
    const scale = (q: typeof r, name: string) => q.params.activations.get(name)!.scale;
    assert.ok(Math.abs(scale(r, 'xx') / scale(one, 'x') - 2) < 1e-6, `${scale(r, 'xx')} vs ${scale(one, 'x')}`);
  });

  it('QFT decodes the same images, skipping the broken one only when asked', async () => {
    const model = await prepareModel(tinyCnn());
    const calib = await loadDataset(dir);
    const options = { limit: 10, preprocess: presetSpec('unit'), batch: 2 };
    await assert.rejects(decodeImages(model, calib, options), oneLine(/cannot decode image '.*nested\/broken\.jpg'/));
    const images = await decodeImages(model, calib, { ...options, skipBadImages: true });
    assert.equal(images.count, 4);
    assert.deepEqual(images.dims, [3, 5, 5]);
  });
});
