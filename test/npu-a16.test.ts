import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, sizeOf } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { buildQdqModel } from '../src/quantization/qdq.js';
import { activationQuantParams } from '../src/quantization/calibration.js';
import { planQuantization } from '../src/quantization/plan.js';
import { activationWidths } from '../src/quantization/quantize.js';
import { loadProfile, parseProfile, profileJson, resolveLayer, type TargetProfile } from '../src/quantization/profile.js';
import { quantizeWeights, sqnrDb } from '../src/quantization/weights.js';
import { multiplyByQuantizedMultiplier } from '../src/quantization/fixedpoint.js';
import { runModel } from '../src/runtime/session.js';
import { accumulatorBound } from '../src/npu/accumulator.js';
import { buildNpuPackage } from '../src/npu/package.js';
import { execute } from '../src/npu/executor.js';
import { buildIntegerModel } from '../src/npu/integer-model.js';
import type { NpuPackage } from '../src/npu/types.js';
import { verifyPackage, type TensorAgreement } from '../src/npu/verify.js';
import { QuantflowError } from '../src/util/errors.js';
import { randomFloats, randomTensor } from './fixtures.js';

/**
 * Conv+ReLU → depthwise Conv+Clip → HardSwish (a 65536-entry table at 16 bits) → 1x1 Conv →
 * residual Add → GlobalAveragePool → Mul by itself (SE-style product) → Flatten → Gemm.
 * Input [batch, 3, 8, 8].
 */
function smallCnn(): Model {
  const g = createGraph('small');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['batch', 3, 8, 8] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: ['batch', 4] });
  const weights: [string, number[], number][] = [
    ['w1', [8, 3, 3, 3], 0.4],
    ['wd', [8, 1, 3, 3], 0.6],
    ['wp', [8, 8, 1, 1], 0.5],
    ['wf', [4, 8], 0.3],
  ];
  weights.forEach(([name, dims, gain], i) => {
    g.initializers.set(
      name,
      floatTensor(
        dims,
        randomFloats(sizeOf(dims), 30 + i).map((v) => v * gain),
      ),
    );
    g.initializers.set(`${name}_b`, randomTensor([dims[0]!], 40 + i));
  });
  g.initializers.set('zero', floatTensor([], [0]));
  g.initializers.set('six', floatTensor([], [6]));
  g.initializers.set('shape', { dataType: 'int64', dims: [2], data: BigInt64Array.of(0n, -1n) });
  const conv = (x: string, w: string, out: string, attrs: Record<string, ReturnType<typeof attr.int>> = {}) =>
    makeNode('Conv', [x, w, `${w}_b`], [out], { kernel_shape: attr.ints(g.initializers.get(w)!.dims.slice(2)), ...attrs }, out);
  g.nodes.push(
    conv('x', 'w1', 'c1', { pads: attr.ints([1, 1, 1, 1]) }),
    makeNode('Relu', ['c1'], ['r1'], {}, 'r1'),
    conv('r1', 'wd', 'dw', { group: attr.int(8), pads: attr.ints([1, 1, 1, 1]) }),
    makeNode('Clip', ['dw', 'zero', 'six'], ['r2'], {}, 'r2'),
    makeNode('HardSwish', ['r2'], ['hs'], {}, 'hs'),
    conv('hs', 'wp', 'p'),
    makeNode('Add', ['p', 'r1'], ['sum'], {}, 'sum'),
    makeNode('GlobalAveragePool', ['sum'], ['gp'], {}, 'gp'),
    makeNode('Mul', ['gp', 'gp'], ['sq'], {}, 'sq'),
    makeNode('Reshape', ['sq', 'shape'], ['flat'], {}, 'flat'),
    makeNode('Gemm', ['flat', 'wf', 'wf_b'], ['y'], { transB: attr.int(1) }, 'fc'),
  );
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

const IMAGES = 4;
const images = () => randomFloats(IMAGES * 3 * 8 * 8, 77);
const feed = () => ({ x: { dataType: 'float32' as const, dims: [IMAGES, 3, 8, 8], data: images() } });

/** quantizeModel's steps: min-max ranges at each tensor's width (overrides included), weights as the profile says, QDQ export. */
async function quantize(model: Model, profile: TargetProfile): Promise<{ qdq: Model; widths: Map<string, 8 | 16> }> {
  const plan = planQuantization(model.graph);
  const outputs = plan.activations.map((name) => ({ name, dataType: 'float32' as const }));
  const values = await runModel({ ...model, graph: { ...model.graph, outputs } }, feed());
  const widths = activationWidths(plan, model.graph, profile);
  const activations = new Map(
    plan.activations.map((name) => {
      const v = values[name]!.data as Float32Array;
      return [name, activationQuantParams({ min: Math.min(...v), max: Math.max(...v) }, widths.get(name)!, profile.activations.symmetric)];
    }),
  );
  const weights = plan.layers.map((layer, i) => {
    const spec = resolveLayer(profile, layer.node.name, { isFirst: i === 0, isLast: i === plan.layers.length - 1 });
    const w = model.graph.initializers.get(layer.weight)!;
    const channels = w.dims[layer.channelAxis]!;
    const data = layer.channelAxis === 0 ? (w.data as Float32Array) : transposed(w.data as Float32Array, w.dims[0]!, w.dims[1]!);
    return { layer, quantized: quantizeWeights(data, channels, spec, { method: 'minmax' }) };
  });
  return { qdq: buildQdqModel(model, { activations, weights }).model, widths };
}

function transposed(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

async function* batches() {
  yield { data: images(), count: IMAGES };
}

const share = (list: TensorAgreement[]) => list.reduce((n, a) => n + a.exact, 0) / list.reduce((n, a) => n + a.elements, 0);

/** w8a8-channel with a 24-bit multiplier (16-bit outputs need it for 1 LSB) and `overrides`. */
function mixedProfile(overrides: unknown[]): TargetProfile {
  const base = JSON.parse(profileJson(loadProfile('w8a8-channel'))) as Record<string, unknown>;
  return parseProfile({ ...base, requantization: { multiplierBits: 24, shiftRange: [0, 63] }, overrides }, 'mixed.json');
}

async function checkPackage(profile: TargetProfile, qdq: Model) {
  const pkg = await buildNpuPackage(qdq, profile);
  const report = await verifyPackage(pkg, qdq, batches(), { integerModel: true });
  assert.equal(share(report.integerModel!), 1, 'integer ONNX model vs executor: bit-exact');
  for (const a of report.isolated) assert.ok(a.maxDiff <= 1, `${a.layer}: ${a.maxDiff} LSB`);
  return { pkg, report };
}

test('w8a16-channel: int16 Q/DQ at opset 21 runs in onnxruntime; the package (65536-entry tables) is bit-exact against its integer ONNX model and within 1 LSB per layer', async () => {
  const profile = loadProfile('w8a16-channel');
  const { qdq } = await quantize(smallCnn(), profile);
  assert.ok(qdq.opset >= 21, `opset ${qdq.opset}`);
  const zeroPoints = qdq.graph.nodes
    .filter((n) => n.opType === 'QuantizeLinear')
    .map((n) => qdq.graph.initializers.get(n.inputs[2]!)!.dataType);
  assert.ok(zeroPoints.length > 0 && zeroPoints.every((t) => t === 'uint16'), zeroPoints.join());
  const out = await runModel(qdq, feed());
  assert.equal(out.y!.data.length, IMAGES * 4);
  const { pkg, report } = await checkPackage(profile, qdq);
  const table = pkg.layers.find((l) => l.op === 'lut')!;
  assert.equal(table.op === 'lut' && table.table.data.length, 65536);
  const sums = pkg.layers.filter((l) => l.op === 'conv' || l.op === 'fc' || l.op === 'avgpool').map((l) => report.peaks[l.name] ?? 0);
  assert.ok(Math.max(...sums) >= 2 ** 24, `largest sum ${Math.max(...sums)}: beyond float32, so the byte split is exercised`);
});

test('WESS (w4a8-shift weights, int4 included) with 16-bit activations: shifts lower, the package verifies', async () => {
  const base = JSON.parse(profileJson(loadProfile('w4a8-shift'))) as Record<string, unknown>;
  const profile = parseProfile(
    {
      ...base,
      activations: { bits: 16, symmetric: false },
      requantization: { multiplierBits: 24, shiftRange: [0, 63] },
      accumulatorBits: 48,
    },
    'w4a16-shift.json',
  );
  const { qdq } = await quantize(smallCnn(), profile);
  const { pkg } = await checkPackage(profile, qdq);
  const convs = pkg.layers.filter((l) => l.op === 'conv');
  assert.ok(convs.some((l) => l.requant.channelShift && l.weights.dtype === 'int4'));
});

test('one layer at 16 bits in an 8-bit model: grids of both widths meet in conv, add, table and pool', async () => {
  const profile = mixedProfile([{ match: 'c1', activations: { bits: 16 } }]);
  const { qdq, widths } = await quantize(smallCnn(), profile);
  assert.equal(widths.get('r1'), 16, 'the override on c1 sets the output of its fused ReLU');
  assert.deepEqual(
    [...widths].filter(([, b]) => b === 16).map(([t]) => t),
    ['r1'],
  );
  assert.ok(qdq.opset >= 21);
  const { pkg } = await checkPackage(profile, qdq);
  assert.deepEqual(pkg.tensors.r1!.grid, { ...pkg.tensors.r1!.grid, qmin: 0, qmax: 65535 });
  assert.equal(pkg.tensors.x!.grid.qmax, 255);
});

test('16-bit activations cut the simulation error far below 8-bit on the same model (SQNR)', async () => {
  const model = smallCnn();
  const float = (await runModel(model, feed())).y!.data as Float32Array;
  const sqnr = async (profile: TargetProfile) => {
    const { qdq } = await quantize(model, profile);
    return sqnrDb(float, (await runModel(qdq, feed())).y!.data as Float32Array);
  };
  const a8 = await sqnr(mixedProfile([]));
  const a16 = await sqnr(mixedProfile([{ match: '*', activations: { bits: 16 } }]));
  // Weights stay 8-bit, so their error bounds the gain; activations alone would give ~48 dB.
  assert.ok(a16 > a8 + 6, `a8 ${a8.toFixed(1)} dB, a16 ${a16.toFixed(1)} dB`);
});

test('a layer whose worst-case accumulator exceeds the profile width is refused in one line naming it', async () => {
  const profile = { ...loadProfile('w8a16-channel'), accumulatorBits: 24 };
  const { qdq } = await quantize(smallCnn(), profile);
  await assert.rejects(buildNpuPackage(qdq, profile), (e: Error) => {
    assert.ok(e instanceof QuantflowError);
    assert.match(
      e.message,
      /^layer 'c1': its worst-case accumulator ±\d+ needs \d+ bits, more than the 24-bit accumulator of profile w8a16-channel; /,
    );
    assert.ok(!e.message.includes('\n'));
    return true;
  });
});

test('a TFLite profile lowers such a layer (TFLite accumulates in int32 unchecked); the executor stops only at an accumulator that gets there', async () => {
  const profile = { ...loadProfile('tflite-int8'), accumulatorBits: 16 };
  const { qdq } = await quantize(smallCnn(), profile);
  const pkg = await buildNpuPackage(qdq, profile);
  assert.ok(pkg.layers.some((l) => accumulatorBound(l, pkg.tensors) >= 2 ** 15));
  const input = pkg.tensors[pkg.inputs[0]!]!;
  const full = new Int32Array(input.shape.reduce((a, b) => a * b, 1)).fill(input.grid.qmax);
  assert.throws(() => execute(pkg, { [pkg.inputs[0]!]: full }), /accumulator reached ±\d+, beyond the 16-bit accumulator/);
});

test('multiplyByQuantizedMultiplier stays exact for accumulators beyond 2^36', () => {
  for (const acc of [2 ** 40 + 12345, -(2 ** 44) - 7, 2 ** 36, 3 * 2 ** 38 + 1]) {
    for (const [m, s] of [
      [8388607, 40],
      [12345678, 31],
      [5000000, 10],
      [4194304, 23],
    ] as const) {
      const p = BigInt(acc) * BigInt(m);
      const want = Number((p + (1n << BigInt(s - 1))) >> BigInt(s));
      assert.equal(multiplyByQuantizedMultiplier(acc, m, s), want, `${acc}·${m}·2^−${s}`);
    }
  }
});

test('integer ONNX model: 16-bit sums beyond float32 and products acc·M beyond 2^53 stay bit-exact with the executor', async () => {
  const wide = { scale: 1, zeroPoint: 0, qmin: 0, qmax: 65535 };
  const int32 = (...v: number[]) => ({ dtype: 'int32' as const, shape: [v.length], data: Int32Array.from(v) });
  const window = {
    strides: [1, 1] as [number, number],
    pads: [0, 0, 0, 0] as [number, number, number, number],
    dilations: [1, 1] as [number, number],
  };
  const weights = [127, 125, 123, 121, 119, 117, 115, 113, 111];
  const pkg: NpuPackage = {
    format: 'quantflow-npu',
    version: 1,
    model: 'wide',
    profile: loadProfile('w8a16-channel'),
    inputs: ['x', 'v'],
    outputs: ['c', 'm'],
    tensors: {
      x: { shape: [1, 1, 6, 6], grid: wide },
      v: { shape: [1, 1, 1, 2], grid: wide },
      c: { shape: [1, 1, 4, 4], grid: { ...wide, zeroPoint: 30000 } },
      m: { shape: [1, 1, 1, 2], grid: wide },
    },
    layers: [
      {
        // Inputs near 65535 make sums of about 2^26, which float32 cannot hold to the unit; the
        // bias takes their mean back out and the multiplier ½ keeps every unit in the output.
        op: 'conv',
        name: 'conv',
        inputs: ['x'],
        output: 'c',
        kernel: [3, 3],
        ...window,
        group: 1,
        weights: { dtype: 'int8', shape: [1, 1, 3, 3], data: Int8Array.from(weights) },
        bias: int32(-Math.round(weights.reduce((a, b) => a + b) * 65517.5)),
        requant: { multiplier: int32(2 ** 30), shift: int32(31) },
        clamp: [0, 65535],
      },
      // 36281²·M = 48832.5·2^40 − 1, within float64's rounding of a tie: one product would round up.
      { op: 'mul', name: 'mul', inputs: ['v', 'v'], output: 'm', multiplier: 40789679, shift: 40, clamp: [0, 65535] },
    ],
  };
  const x = Float32Array.from(randomFloats(36, 5), (r) => 65500 + Math.round((r + 1) * 17.5));
  const v = Float32Array.of(36281, 34787);
  const want = execute(pkg, { x, v }).tensors;
  assert.equal(want.get('m')![0], 48832);
  const got = await runModel(buildIntegerModel(pkg, { allTensors: true }), {
    x: { dataType: 'float32', dims: [1, 1, 6, 6], data: x },
    v: { dataType: 'float32', dims: [1, 1, 1, 2], data: v },
  });
  for (const name of ['c', 'm']) assert.deepEqual([...(got[name]!.data as Float32Array)], [...want.get(name)!], name);
});
