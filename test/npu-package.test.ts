import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor, sizeOf } from '../src/graph/tensor.js';
import type { Model, Node } from '../src/graph/types.js';
import { loadProfile, type TargetProfile } from '../src/quantization/profile.js';
import { readOnnxFile } from '../src/onnx/read.js';
import { writeOnnxFile } from '../src/onnx/write.js';
import { buildNpuPackage } from '../src/npu/package.js';
import { readNpuPackage, writeNpuPackage } from '../src/npu/io.js';
import { verifyPackage, type TensorAgreement } from '../src/npu/verify.js';
import type { NpuPackage } from '../src/npu/types.js';
import { QuantflowError } from '../src/util/errors.js';
import { minMaxQdq, randomFloats, randomTensor } from './fixtures.js';

/**
 * A small CNN with every op the package lowers: Conv+ReLU, depthwise Conv+Clip, an SE block
 * (GlobalAveragePool, 1x1 Convs, HardSigmoid, Mul), a residual Add, HardSwish, MaxPool,
 * padded AveragePool, Concat, Flatten, Gemm and a final Softmax. Input [batch, 3, 8, 8].
 */
function zooCnn(extra?: (nodes: Node[]) => void): Model {
  const g = createGraph('zoo');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['batch', 3, 8, 8] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: ['batch', 5] });
  const weights: [string, number[], number][] = [
    ['w1', [8, 3, 3, 3], 0.4],
    ['wd', [8, 1, 3, 3], 0.6],
    ['ws1', [2, 8, 1, 1], 0.7],
    ['ws2', [8, 2, 1, 1], 1.5],
    ['wp', [8, 8, 1, 1], 0.5],
    ['wf', [5, 64], 0.3],
  ];
  weights.forEach(([name, dims, gain], i) => {
    g.initializers.set(
      name,
      floatTensor(
        dims,
        randomFloats(sizeOf(dims), 10 + i).map((v) => v * gain),
      ),
    );
    g.initializers.set(`${name}_b`, randomTensor([dims[0]!], 20 + i));
  });
  // One depthwise channel far larger than the others: the case WESS shifts exist for.
  (g.initializers.get('wd')!.data as Float32Array).subarray(0, 9).forEach((_, i, a) => (a[i]! *= 12));
  g.initializers.set('zero', floatTensor([], [0]));
  g.initializers.set('six', floatTensor([], [6]));
  const conv = (x: string, w: string, out: string, attrs: Record<string, ReturnType<typeof attr.int>> = {}) =>
    makeNode('Conv', [x, w, `${w}_b`], [out], { kernel_shape: attr.ints(g.initializers.get(w)!.dims.slice(2)), ...attrs });
  const nodes = [
    conv('x', 'w1', 'c1', { pads: attr.ints([1, 1, 1, 1]) }),
    makeNode('Relu', ['c1'], ['r1']),
    conv('r1', 'wd', 'dw', { group: attr.int(8), strides: attr.ints([2, 2]), pads: attr.ints([0, 0, 1, 1]) }),
    makeNode('Clip', ['dw', 'zero', 'six'], ['r2']),
    makeNode('GlobalAveragePool', ['r2'], ['gp']),
    conv('gp', 'ws1', 's1'),
    makeNode('Relu', ['s1'], ['s1r']),
    conv('s1r', 'ws2', 's2'),
    makeNode('HardSigmoid', ['s2'], ['gate'], { alpha: attr.float(1 / 6) }),
    makeNode('Mul', ['r2', 'gate'], ['se']),
    conv('se', 'wp', 'p'),
    makeNode('Add', ['p', 'r2'], ['sum']),
    makeNode('HardSwish', ['sum'], ['hs']),
    makeNode('MaxPool', ['hs'], ['mp'], { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) }),
    makeNode('AveragePool', ['hs'], ['ap'], { kernel_shape: attr.ints([3, 3]), strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 1, 1]) }),
    makeNode('Concat', ['mp', 'ap'], ['cat'], { axis: attr.int(1) }),
    makeNode('Flatten', ['cat'], ['flat']),
    makeNode('Gemm', ['flat', 'wf', 'wf_b'], ['logits'], { transB: attr.int(1) }),
    makeNode('Softmax', ['logits'], ['y'], { axis: attr.int(-1) }),
  ];
  extra?.(nodes);
  g.nodes.push(...nodes);
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

const IMAGES = 4;
const images = () => randomFloats(IMAGES * 3 * 8 * 8, 99);

/** quantizeModel's steps on a tensor model (min-max ranges over `images`), the QDQ model. */
async function quantizeZoo(model: Model, profile: TargetProfile): Promise<Model> {
  return (await minMaxQdq(model, profile, { dataType: 'float32', dims: [IMAGES, 3, 8, 8], data: images() })).qdq;
}

async function* batches() {
  yield { data: images(), count: IMAGES };
}

const share = (list: TensorAgreement[]) => list.reduce((n, a) => n + a.exact, 0) / list.reduce((n, a) => n + a.elements, 0);

for (const profileName of ['w8a8-shift', 'w8a8-channel', 'w4a8-shift']) {
  test(`${profileName}: every op lowers; the integer ONNX model reproduces the executor exactly, the QDQ simulation within 1 LSB per layer`, async () => {
    const profile = loadProfile(profileName);
    const qdq = await quantizeZoo(zooCnn(), profile);
    const pkg = await buildNpuPackage(qdq, profile);
    assert.deepEqual(
      new Set(pkg.layers.map((l) => l.op)),
      new Set(['conv', 'avgpool', 'lut', 'mul', 'add', 'maxpool', 'concat', 'reshape', 'fc']),
    );
    assert.deepEqual(pkg.outputs, ['logits'], 'the final Softmax is left to the host');
    const report = await verifyPackage(pkg, qdq, batches(), { integerModel: true });
    assert.equal(report.images, IMAGES);
    assert.equal(share(report.integerModel!), 1, 'integer ONNX model vs executor');
    for (const a of report.isolated) assert.ok(a.maxDiff <= 1, `${a.layer}: ${a.maxDiff} LSB`);
    assert.ok(share(report.isolated) > 0.99, `per layer ${share(report.isolated)}`);
    const tables = pkg.layers.filter((l) => l.op === 'lut' || l.op === 'concat').map((l) => l.output);
    for (const a of report.isolated.filter((x) => tables.includes(x.tensor)))
      assert.equal(a.exact, a.elements, `${a.layer} is a table: exact by construction`);
  });
}

test('WESS layers get one multiplier and shift plus per-channel shifts k[c]', async () => {
  const profile = loadProfile('w8a8-shift');
  const qdq = await quantizeZoo(zooCnn(), profile);
  const pkg = await buildNpuPackage(qdq, profile);
  const dw = pkg.layers.find((l) => l.name === 'dw');
  assert.ok(dw?.op === 'conv');
  assert.equal(dw.requant.multiplier.data.length, 1);
  assert.equal(dw.requant.shift.data.length, 1);
  const k = [...dw.requant.channelShift!.data];
  assert.equal(k[0], 0, 'the large channel sets the layer scale');
  assert.ok(
    k.slice(1).every((s) => s >= 3),
    `shifts ${k}`,
  );
  // M·2^−(n + k[c]) is the real multiplier s_x·s_w[c]/s_y to the multiplier's precision.
  const scale = readScales(qdq, 'wd');
  const [sx, sy] = [pkg.tensors['r1']!.grid.scale, pkg.tensors['r2']!.grid.scale];
  k.forEach((kc, c) => {
    const fixed = dw.requant.multiplier.data[0]! * 2 ** -(dw.requant.shift.data[0]! + kc);
    const real = (sx * scale[c]!) / sy;
    assert.ok(Math.abs(fixed / real - 1) < 2 ** -14, `channel ${c}: ${fixed} vs ${real}`);
  });
});

function readScales(qdq: Model, weight: string): Float32Array {
  const dq = qdq.graph.nodes.find((n) => n.opType === 'DequantizeLinear' && n.inputs[0] === `${weight}_quantized`)!;
  return qdq.graph.initializers.get(dq.inputs[1]!)!.data as Float32Array;
}

test('package folder round trip (int4 weights packed), and built from a QDQ file read back', async () => {
  const profile = loadProfile('w4a8-shift');
  const qdq = await quantizeZoo(zooCnn(), profile);
  const pkg = await buildNpuPackage(qdq, profile, { preset: 'raw' });
  assert.ok(pkg.layers.some((l) => l.op === 'conv' && l.weights.dtype === 'int4'));
  const dir = mkdtempSync(join(tmpdir(), 'quantflow-npu-'));
  try {
    writeNpuPackage(join(dir, 'npu'), pkg);
    const back: NpuPackage = readNpuPackage(join(dir, 'npu'));
    assert.deepEqual(back, pkg);
    writeOnnxFile(qdq, join(dir, 'model.qdq.onnx'));
    assert.deepEqual(await buildNpuPackage(readOnnxFile(join(dir, 'model.qdq.onnx')), profile, { preset: 'raw' }), pkg);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => readNpuPackage(join(dir, 'missing')), QuantflowError);
});

test('a node without an integer lowering is an error naming it', async () => {
  const profile = loadProfile('w8a8-channel');
  const model = zooCnn((nodes) => {
    const at = nodes.findIndex((n) => n.name === 'gp');
    nodes.splice(at, 1, makeNode('LRN', ['r2'], ['lrn'], { size: attr.int(3) }), makeNode('GlobalAveragePool', ['lrn'], ['gp']));
  });
  const qdq = await quantizeZoo(model, profile);
  await assert.rejects(
    buildNpuPackage(qdq, profile),
    (e: unknown) => e instanceof QuantflowError && /node 'lrn' \(LRN\): has no integer lowering/.test(e.message),
  );
});

test('a nonlinearity the profile runs on the host is refused', async () => {
  const profile = loadProfile('w8a8-channel');
  const qdq = await quantizeZoo(zooCnn(), profile);
  const host = { ...profile, nonlinearities: { ...profile.nonlinearities, hardSwish: 'float' as const } };
  await assert.rejects(buildNpuPackage(qdq, host), /node 'hs' \(HardSwish\).*'float'/);
});

test("a tiled gate (nearest Resize, then a crop Slice) lowers to select layers on the gate's grid, exact against the simulation", async () => {
  const profile = loadProfile('w8a8-shift');
  const model = zooCnn((nodes) => {
    const mul = nodes.findIndex((n) => n.outputs[0] === 'se');
    nodes.splice(
      mul,
      1,
      makeNode('Resize', ['gate', '', 'tile_scales'], ['gate_up'], {
        mode: attr.string('nearest'),
        coordinate_transformation_mode: attr.string('asymmetric'),
        nearest_mode: attr.string('floor'),
      }),
      makeNode('Slice', ['gate_up', 'crop_starts', 'crop_ends', 'crop_axes'], ['gate_px']),
      makeNode('Mul', ['r2', 'gate_px'], ['se']),
    );
  });
  model.graph.initializers.set('tile_scales', floatTensor([4], [1, 1, 5, 5]));
  model.graph.initializers.set('crop_starts', int64Tensor([2], [0, 0]));
  model.graph.initializers.set('crop_ends', int64Tensor([2], [4, 4]));
  model.graph.initializers.set('crop_axes', int64Tensor([2], [2, 3]));
  const qdq = await quantizeZoo(model, profile);
  const pkg = await buildNpuPackage(qdq, profile);
  const selects = pkg.layers.filter((l) => l.op === 'select');
  assert.deepEqual(
    selects.map((l) => pkg.tensors[l.output]!.shape),
    [
      [1, 8, 5, 5],
      [1, 8, 4, 4],
    ],
  );
  for (const l of selects) assert.deepEqual(pkg.tensors[l.output]!.grid, pkg.tensors[l.inputs[0]!]!.grid, 'no requantization');
  const report = await verifyPackage(pkg, qdq, batches(), { integerModel: true });
  assert.equal(share(report.integerModel!), 1, 'integer ONNX model vs executor');
  for (const a of report.isolated.filter((x) => selects.some((l) => l.output === x.tensor)))
    assert.equal(a.exact, a.elements, `${a.layer} only moves integers`);
  assert.ok(share(report.isolated) > 0.99, `per layer ${share(report.isolated)}`);
});

test('reshape constants: Reshape with 0 and −1 keeps the grid', async () => {
  const profile = loadProfile('w8a8-channel');
  const model = zooCnn((nodes) => {
    const at = nodes.findIndex((n) => n.opType === 'Flatten');
    nodes.splice(at, 1, makeNode('Reshape', ['cat', 'shape'], ['flat']));
  });
  model.graph.initializers.set('shape', int64Tensor([2], [0, -1]));
  const pkg = await buildNpuPackage(await quantizeZoo(model, profile), profile);
  const reshape = pkg.layers.find((l) => l.op === 'reshape')!;
  assert.deepEqual(pkg.tensors[reshape.output]!.shape, [1, 64]);
  assert.deepEqual(pkg.tensors[reshape.output]!.grid, pkg.tensors['cat']!.grid);
});
