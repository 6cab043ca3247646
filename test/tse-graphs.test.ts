/**
 * Tiled squeeze-and-excite on hand-built graphs: detection of every SE form exporters
 * produce and of near misses, the rewrite (exact when a tile covers the map, hand-computed
 * partial tiles, every excitation form tiled alike), buffer figures, and the CLI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor } from '../src/graph/tensor.js';
import type { Graph, Model, TensorData } from '../src/graph/types.js';
import { writeOnnxFile } from '../src/onnx/write.js';
import { runModel } from '../src/runtime/session.js';
import { detectSqueezeExcite } from '../src/tse/detect.js';
import { tileSqueezeExcite } from '../src/tse/rewrite.js';
import { bufferReport } from '../src/tse/buffers.js';
import { withInputSize } from '../src/tse/input-size.js';
import { checkTileOptions } from '../src/tse/tile.js';
import { QuantflowError } from '../src/util/errors.js';
import { maxAbsDiff, randomFloats, randomTensor } from './fixtures.js';

type Squeeze = 'gap' | 'reducemean-attr' | 'reducemean-input' | 'avgpool';
type Excitation = 'conv' | 'gemm' | 'matmul';
type Activation = 'relu' | 'swish' | 'hardswish';
type GateForm = 'sigmoid' | 'hardsigmoid' | 'add-clip-mul' | 'add-clip-div';

interface SeSpec {
  squeeze?: Squeeze;
  excitation?: Excitation;
  activation?: Activation;
  gate?: GateForm | 'none';
  /** Range clamps after every layer, as the TFLite importer writes them. */
  clamps?: boolean;
  /** Mul(gate, X) instead of Mul(X, gate). */
  gateFirst?: boolean;
  height?: number;
  width?: number;
}

const C = 4;
const HIDDEN = 2;
/** Excitation weights shared by every form, so that all forms compute the same function. */
const W1 = randomFloats(HIDDEN * C, 11);
const B1 = randomFloats(HIDDEN, 12);
const W2 = randomFloats(C * HIDDEN, 13);
const B2 = randomFloats(C, 14);

/** [rows, cols] weights `w` (row-major [out, in]) transposed to [in, out]. */
function transposed(w: Float32Array, out: number, inputs: number): TensorData {
  return floatTensor(
    [inputs, out],
    Array.from({ length: out * inputs }, (_, k) => w[(k % out) * inputs + Math.floor(k / out)]!),
  );
}

/** Adds nodes to `g` one after another; `add` returns the new value's name. */
function chain(g: Graph) {
  let n = 0;
  const constant = (t: TensorData) => {
    const name = `k${n++}`;
    g.initializers.set(name, t);
    return name;
  };
  const add = (op: string, inputs: string[], attributes = {}) => {
    const out = `v${n++}`;
    g.nodes.push(makeNode(op, inputs, [out], attributes));
    return out;
  };
  return { constant, add };
}

/**
 * x [N, 4, H, W] → Conv 3x3 → X → SE(X) → y. Every spec field picks one of the forms real
 * exporters write; all forms compute the same function.
 */
function seModel(spec: SeSpec = {}): Model {
  const { squeeze = 'gap', excitation = 'conv', activation = 'relu', gate = 'sigmoid', height = 6, width = 5 } = spec;
  const g = createGraph('se');
  const opset = squeeze === 'reducemean-input' ? 18 : 17;
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['N', C, height, width] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: ['N', C, height, width] });
  const { constant, add } = chain(g);
  const clamp = (v: string) => (spec.clamps ? add('Clip', [v, constant(floatTensor([], [-8])), constant(floatTensor([], [8]))]) : v);
  const X = add('Conv', ['x', constant(randomTensor([C, C, 3, 3], 2))], { pads: attr.ints([1, 1, 1, 1]) });

  let s: string;
  let flat = false;
  if (squeeze === 'gap') s = add('GlobalAveragePool', [X]);
  else if (squeeze === 'avgpool') s = add('AveragePool', [X], { kernel_shape: attr.ints([height, width]) });
  else if (squeeze === 'reducemean-attr') s = add('ReduceMean', [X], { axes: attr.ints([2, 3]) });
  else {
    s = add('ReduceMean', [X, constant(int64Tensor([2], [-1, -2]))], { keepdims: attr.int(0) });
    flat = true;
  }

  const act = (v: string) =>
    activation === 'relu' ? add('Relu', [v]) : activation === 'hardswish' ? add('HardSwish', [v]) : add('Mul', [v, add('Sigmoid', [v])]);
  let e: string;
  if (excitation === 'conv') {
    if (flat) s = add('Reshape', [s, constant(int64Tensor([4], [0, -1, 1, 1]))]);
    e = add('Conv', [s, constant(floatTensor([HIDDEN, C, 1, 1], W1)), constant(floatTensor([HIDDEN], B1))]);
    e = add('Conv', [act(clamp(e)), constant(floatTensor([C, HIDDEN, 1, 1], W2)), constant(floatTensor([C], B2))]);
  } else if (excitation === 'gemm') {
    if (!flat) s = add('Flatten', [s]);
    e = add('Gemm', [s, constant(floatTensor([HIDDEN, C], W1)), constant(floatTensor([HIDDEN], B1))], { transB: attr.int(1) });
    // The second layer in Gemm's default layout, with alpha and beta to fold.
    e = add(
      'Gemm',
      [
        act(clamp(e)),
        constant(transposed(W2, C, HIDDEN)),
        constant(
          floatTensor(
            [1, C],
            B2.map((b) => b * 2),
          ),
        ),
      ],
      {
        alpha: attr.float(1),
        beta: attr.float(0.5),
      },
    );
  } else {
    if (!flat) s = add('Flatten', [s]);
    e = add('Add', [add('MatMul', [s, constant(transposed(W1, HIDDEN, C))]), constant(floatTensor([HIDDEN], B1))]);
    e = add('Add', [add('MatMul', [act(clamp(e)), constant(transposed(W2, C, HIDDEN))]), constant(floatTensor([1, C], B2))]);
  }
  e = clamp(e);

  const scalar = (v: number) => constant(floatTensor([], [v]));
  let gated =
    gate === 'none'
      ? e
      : gate === 'sigmoid'
        ? add('Sigmoid', [e])
        : gate === 'hardsigmoid'
          ? add('HardSigmoid', [e], { alpha: attr.float(1 / 6), beta: attr.float(0.5) })
          : gate === 'add-clip-mul'
            ? add('Mul', [add('Clip', [add('Add', [e, scalar(3)]), scalar(0), scalar(6)]), scalar(1 / 6)])
            : add('Div', [add('Clip', [add('Add', [e, scalar(3)]), scalar(0), scalar(6)]), scalar(6)]);
  gated = clamp(gated);
  if (excitation === 'gemm') gated = add('Reshape', [gated, constant(int64Tensor([4], [0, C, 1, 1]))]);
  if (excitation === 'matmul') gated = add('Unsqueeze', [gated, constant(int64Tensor([2], [2, 3]))]);
  g.nodes.push(makeNode('Mul', spec.gateFirst ? [gated, X] : [X, gated], ['y'], {}, 'se_mul'));
  return { graph: g, opset, producerName: 'test', metadata: {} };
}

function input(height = 6, width = 5, batch = 2, seed = 7): TensorData {
  return randomTensor([batch, C, height, width], seed);
}

async function run(model: Model, x: TensorData): Promise<Float32Array> {
  return (await runModel(model, { x })).y!.data as Float32Array;
}

const FORMS: SeSpec[] = [
  { squeeze: 'gap', excitation: 'conv', activation: 'relu', gate: 'sigmoid' },
  { squeeze: 'reducemean-attr', excitation: 'conv', activation: 'swish', gate: 'hardsigmoid', gateFirst: true },
  { squeeze: 'reducemean-input', excitation: 'conv', activation: 'hardswish', gate: 'add-clip-mul' },
  { squeeze: 'avgpool', excitation: 'conv', activation: 'relu', gate: 'add-clip-div', clamps: true },
  { squeeze: 'gap', excitation: 'gemm', activation: 'swish', gate: 'sigmoid' },
  { squeeze: 'reducemean-input', excitation: 'gemm', activation: 'relu', gate: 'add-clip-mul', clamps: true },
  { squeeze: 'avgpool', excitation: 'matmul', activation: 'hardswish', gate: 'hardsigmoid', clamps: true },
  { squeeze: 'reducemean-attr', excitation: 'matmul', activation: 'relu', gate: 'add-clip-div' },
];

const GATE_KINDS: Record<GateForm, string> = {
  sigmoid: 'sigmoid',
  hardsigmoid: 'hard-sigmoid',
  'add-clip-mul': 'hard-sigmoid-arithmetic',
  'add-clip-div': 'hard-sigmoid-arithmetic',
};

for (const spec of FORMS) {
  const label = `${spec.squeeze} → ${spec.excitation}/${spec.activation} → ${spec.gate}${spec.clamps ? ' (clamped)' : ''}`;
  test(`detects SE: ${label}`, () => {
    const model = seModel(spec);
    const { blocks, nearMisses } = detectSqueezeExcite(model);
    assert.deepEqual(nearMisses, []);
    assert.equal(blocks.length, 1);
    const b = blocks[0]!;
    assert.equal(b.mul.name, 'se_mul');
    assert.equal(b.input, model.graph.nodes[0]!.outputs[0]);
    assert.deepEqual([b.channels, b.height, b.width], [C, 6, 5]);
    assert.equal(b.gate.kind, GATE_KINDS[spec.gate as GateForm]);
    assert.equal(b.excitation.length, model.graph.nodes.length - 3, 'all but the first Conv, the squeeze and the Mul');
  });
}

/**
 * TSE computed directly for the Relu/Sigmoid forms: each pixel of X [N, C, H, W] times
 * sigmoid(W2 · relu(W1 · m + B1) + B2), m the mean of X over the pixel's [kh, kw] tile.
 */
function tseReference(X: Float32Array, [n, h, w]: readonly number[], [kh, kw]: readonly number[]): Float32Array {
  const y = new Float32Array(X.length);
  const at = (b: number, c: number, i: number, j: number) => ((b * C + c) * h + i) * w + j;
  for (let b = 0; b < n; b++)
    for (let ti = 0; ti < h; ti += kh)
      for (let tj = 0; tj < w; tj += kw) {
        const [i1, j1] = [Math.min(ti + kh, h), Math.min(tj + kw, w)];
        const mean = Array.from({ length: C }, (_, c) => {
          let sum = 0;
          for (let i = ti; i < i1; i++) for (let j = tj; j < j1; j++) sum += X[at(b, c, i, j)]!;
          return sum / ((i1 - ti) * (j1 - tj));
        });
        const hidden = Array.from({ length: HIDDEN }, (_, o) => Math.max(0, B1[o]! + mean.reduce((a, m, c) => a + W1[o * C + c]! * m, 0)));
        for (let c = 0; c < C; c++) {
          const gate = 1 / (1 + Math.exp(-(B2[c]! + hidden.reduce((a, v, o) => a + W2[c * HIDDEN + o]! * v, 0))));
          for (let i = ti; i < i1; i++) for (let j = tj; j < j1; j++) y[at(b, c, i, j)] = X[at(b, c, i, j)]! * gate;
        }
      }
  return y;
}

test('every SE form tiles to the same function, the direct TSE computation (Gemm/MatMul become 1x1 Conv)', async () => {
  const x = input();
  const se = seModel(FORMS[0]);
  const mapOnly: Model = { ...se, graph: { ...se.graph, outputs: [{ name: se.graph.nodes[0]!.outputs[0]!, dataType: 'float32' }] } };
  const X = Object.values(await runModel(mapOnly, { x }))[0]!.data as Float32Array;
  for (const tile of [{ tileRows: 4 }, { tile: [4, 2] as const }, { tileCols: 2 }]) {
    const expected = tseReference(X, [2, 6, 5], tile.tile ?? (tile.tileRows ? [tile.tileRows, 5] : [6, tile.tileCols!]));
    assert.ok(maxAbsDiff(await run(tileSqueezeExcite(se, tile), x), expected) < 1e-5, `conv with ${JSON.stringify(tile)}`);
    for (const excitation of ['gemm', 'matmul'] as const) {
      const got = await run(tileSqueezeExcite(seModel({ squeeze: 'gap', excitation, activation: 'relu', gate: 'sigmoid' }), tile), x);
      assert.ok(maxAbsDiff(got, expected) < 1e-5, `${excitation} with ${JSON.stringify(tile)}`);
    }
  }
});

test('a tile that covers the map reproduces SE exactly', async () => {
  const x = input();
  for (const spec of FORMS) {
    const model = seModel(spec);
    const expected = await run(model, x);
    for (const tiles of [{ tileRows: 6 }, { tileRows: 50 }, { tile: [6, 5] as const }, { tileCols: 9 }])
      assert.deepEqual(
        await run(tileSqueezeExcite(model, tiles), x),
        expected,
        `${spec.squeeze}/${spec.excitation} ${JSON.stringify(tiles)}`,
      );
  }
});

test('partial tiles average their valid pixels only (H = 5 rows, tiles of 2)', async () => {
  // One channel pair, X = x (identity Conv), excitation = identity 1x1 Conv, gate = sigmoid:
  // y = x · sigmoid(mean of x over the pixel's tile).
  const g = createGraph('hand');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, 2, 5, 3] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: [1, 2, 5, 3] });
  g.initializers.set('eye', floatTensor([2, 2, 1, 1], [1, 0, 0, 1]));
  g.nodes.push(
    makeNode('Relu', ['x'], ['X']),
    makeNode('GlobalAveragePool', ['X'], ['s']),
    makeNode('Conv', ['s', 'eye'], ['e']),
    makeNode('Sigmoid', ['e'], ['gate']),
    makeNode('Mul', ['X', 'gate'], ['y']),
  );
  const model: Model = { graph: g, opset: 17, producerName: 'test', metadata: {} };
  // Channel 0: row h holds h + 1 (1..5); channel 1: column w holds w + 1 (1..3).
  const values = [...Array.from({ length: 15 }, (_, i) => Math.floor(i / 3) + 1), ...Array.from({ length: 15 }, (_, i) => (i % 3) + 1)];
  const x = floatTensor([1, 2, 5, 3], values);
  const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

  // Row tiles of 2: rows {0,1}, {2,3}, {4}; means 1.5, 3.5, 5 in channel 0 and 2 in channel 1.
  const rows = await run(tileSqueezeExcite(model, { tileRows: 2 }), x);
  const rowMeans = [1.5, 1.5, 3.5, 3.5, 5];
  for (let h = 0; h < 5; h++)
    for (let w = 0; w < 3; w++) {
      assert.ok(Math.abs(rows[h * 3 + w]! - (h + 1) * sigmoid(rowMeans[h]!)) < 1e-6, `channel 0 row ${h}`);
      assert.ok(Math.abs(rows[15 + h * 3 + w]! - (w + 1) * sigmoid(2)) < 1e-6, `channel 1 row ${h}`);
    }

  // 2x2 tiles: partial along both axes; channel 1's tile columns {0,1}, {2} have means 1.5 and 3.
  const squares = await run(tileSqueezeExcite(model, { tile: [2, 2] }), x);
  const colMeans = [1.5, 1.5, 3];
  for (let h = 0; h < 5; h++)
    for (let w = 0; w < 3; w++) {
      assert.ok(Math.abs(squares[h * 3 + w]! - (h + 1) * sigmoid(rowMeans[h]!)) < 1e-6);
      assert.ok(Math.abs(squares[15 + h * 3 + w]! - (w + 1) * sigmoid(colMeans[w]!)) < 1e-6);
    }
});

test('near misses: a pool that does not cover the map, a Mul with another tensor, no gate, max pooling, 3x3 excitation', () => {
  const reasons = (model: Model) => {
    const { blocks, nearMisses } = detectSqueezeExcite(model);
    assert.equal(blocks.length, 0);
    return nearMisses.map((m) => m.reason);
  };

  const partial = seModel({ squeeze: 'avgpool', height: 6, width: 6 });
  const pool = partial.graph.nodes.find((n) => n.opType === 'AveragePool')!;
  pool.attributes = { kernel_shape: attr.ints([3, 3]), strides: attr.ints([6, 6]) };
  assert.deepEqual(reasons(partial), ['pool kernel 3x3 does not cover the 6x6 map']);

  const other = seModel();
  other.graph.initializers.set('w_other', randomTensor([C, C, 1, 1], 9));
  other.graph.nodes.splice(1, 0, makeNode('Conv', ['x', 'w_other'], ['other']));
  other.graph.nodes.at(-1)!.inputs[0] = 'other';
  assert.match(reasons(other)[0]!, /scales 'other', not the pooled tensor/);

  assert.match(reasons(seModel({ gate: 'none' }))[0]!, /no sigmoid-like gate/);

  const max = seModel();
  max.graph.nodes.find((n) => n.opType === 'GlobalAveragePool')!.opType = 'GlobalMaxPool';
  assert.match(reasons(max)[0]!, /squeezes by GlobalMaxPool/);

  const wide = seModel();
  const conv = wide.graph.nodes.filter((n) => n.opType === 'Conv')[1]!;
  wide.graph.initializers.set(conv.inputs[1]!, randomTensor([HIDDEN, C, 3, 3], 4));
  conv.attributes = { pads: attr.ints([1, 1, 1, 1]) };
  assert.match(reasons(wide)[0]!, /kernel 3x3; only 1x1 convolutions/);

  const shared = seModel();
  const hidden = shared.graph.nodes.find((n) => n.opType === 'Relu')!.outputs[0]!;
  shared.graph.outputs.push({ name: hidden, dataType: 'float32', shape: ['N', HIDDEN, 1, 1] });
  assert.match(reasons(shared)[0]!, /graph output inside the block/);
});

test('no false positives: swish on the map, a classifier head, a hard-swish written out', () => {
  const g = createGraph('plain');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: [1, C, 6, 5] });
  g.outputs.push({ name: 'logits', dataType: 'float32', shape: [1, 3] });
  g.initializers.set('three', floatTensor([], [3]));
  g.initializers.set('six', floatTensor([], [6]));
  g.initializers.set('zero', floatTensor([], [0]));
  g.initializers.set('fc', randomTensor([3, C], 3));
  g.nodes.push(
    makeNode('Sigmoid', ['x'], ['sx']),
    makeNode('Mul', ['x', 'sx'], ['swish']),
    makeNode('Add', ['swish', 'three'], ['a']),
    makeNode('Clip', ['a', 'zero', 'six'], ['r6']),
    makeNode('Div', ['r6', 'six'], ['hs']),
    makeNode('Mul', ['swish', 'hs'], ['hswish']),
    makeNode('GlobalAveragePool', ['hswish'], ['pool']),
    makeNode('Flatten', ['pool'], ['flat']),
    makeNode('Gemm', ['flat', 'fc'], ['logits'], { transB: attr.int(1) }),
  );
  assert.deepEqual(detectSqueezeExcite({ graph: g, opset: 17, producerName: 'test', metadata: {} }), { blocks: [], nearMisses: [] });
});

/** Two SE blocks: 4x8x6 at the input's size, then 8x4x3 after a stride-2 Conv; TFLite-style pools. */
function twoBlocks(): Model {
  const g = createGraph('two');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['N', C, 8, 6] });
  g.outputs.push({ name: 'y', dataType: 'float32', shape: ['N', 2 * C, 4, 3] });
  const block = (X: string, channels: number, h: number, w: number, k: string) => {
    g.initializers.set(`${k}_w`, randomTensor([channels, channels, 1, 1], channels));
    g.nodes.push(
      makeNode('AveragePool', [X], [`${k}_s`], { kernel_shape: attr.ints([h, w]) }),
      makeNode('Conv', [`${k}_s`, `${k}_w`], [`${k}_e`]),
      makeNode('Sigmoid', [`${k}_e`], [`${k}_g`]),
      makeNode('Mul', [X, `${k}_g`], [`${k}_y`]),
    );
    return `${k}_y`;
  };
  const first = block('x', C, 8, 6, 'se1');
  g.initializers.set('down', randomTensor([2 * C, C, 3, 3], 5));
  g.nodes.push(makeNode('Conv', [first, 'down'], ['d'], { strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 1, 1]) }));
  g.nodes.push(makeNode('Identity', [block('d', 2 * C, 4, 3, 'se2')], ['y']));
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

test('buffers: C·H·W per SE block, C·K·W with K-row or KxK tiles, whole map with column tiles', () => {
  const { blocks } = detectSqueezeExcite(twoBlocks());
  const rows = bufferReport(blocks, { tileRows: 2 });
  assert.deepEqual(
    rows.blocks.map((b) => [b.se, b.tse]),
    [
      [4 * 8 * 6, 4 * 2 * 6],
      [8 * 4 * 3, 8 * 2 * 3],
    ],
  );
  assert.deepEqual([rows.se, rows.tse], [288, 96]);
  assert.ok(Math.abs(rows.reduction - 2 / 3) < 1e-12);
  assert.equal(bufferReport(blocks, { tile: [2, 2] }).tse, 96);
  assert.equal(bufferReport(blocks, { tileCols: 2 }).tse, 288);
  assert.deepEqual(
    bufferReport(blocks, { tileRows: 5 }).blocks.map((b) => b.tse),
    [4 * 5 * 6, 8 * 4 * 3],
  );
});

test('buffers at another input size: fixed whole-map pools count as global', () => {
  const model = twoBlocks();
  const { blocks, nearMisses } = detectSqueezeExcite(withInputSize(model, 32, 24));
  assert.deepEqual(nearMisses, []);
  assert.deepEqual(
    blocks.map((b) => [b.channels, b.height, b.width]),
    [
      [C, 32, 24],
      [2 * C, 16, 12],
    ],
  );
  assert.equal(bufferReport(blocks, { tileRows: 4 }).tse, 4 * 4 * 24 + 8 * 4 * 12);
  assert.equal(model.graph.inputs[0]!.shape![2], 8, 'the original model is left alone');
});

test('tile options: exactly one, positive integers', () => {
  assert.throws(() => checkTileOptions({}), QuantflowError);
  assert.throws(() => checkTileOptions({ tileRows: 2, tileCols: 2 }), QuantflowError);
  assert.throws(() => checkTileOptions({ tile: [0, 2] }), QuantflowError);
  assert.throws(() => checkTileOptions({ tileRows: 1.5 }), QuantflowError);
  assert.throws(() => tileSqueezeExcite(seModel(), { tileRows: -1 }), QuantflowError);
  checkTileOptions({ tile: [7, 7] });
});

test('CLI: tse writes a tiled model; a model without SE is a one-line error and writes nothing', async () => {
  const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'tse-cli-'));
  try {
    writeOnnxFile(twoBlocks(), join(dir, 'se.onnx'));
    const out = join(dir, 'tse.onnx');
    const { stdout } = await promisify(execFile)(process.execPath, [
      main,
      'tse',
      join(dir, 'se.onnx'),
      '--tile',
      '2x2',
      '-o',
      out,
      '--json',
      join(dir, 'r.json'),
    ]);
    assert.match(stdout, /2 of 2 SE blocks tiled/);
    assert.ok(existsSync(out) && existsSync(join(dir, 'r.json')));

    const plain = seModel({ gate: 'none' });
    writeOnnxFile(plain, join(dir, 'plain.onnx'));
    const failed = await promisify(execFile)(process.execPath, [main, 'tse', join(dir, 'plain.onnx'), '-o', join(dir, 'no.onnx')]).then(
      () => assert.fail('should exit with an error'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(failed.code, 2);
    assert.match(failed.stderr, /^quantflow: .*no squeeze-and-excite block found, nothing to tile\n$/);
    assert.ok(!existsSync(join(dir, 'no.onnx')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
