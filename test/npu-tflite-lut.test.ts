import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, sizeOf } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { buildNpuPackage } from '../src/npu/package.js';
import {
  downScaleToInt16,
  hardSwishParams,
  hardSwishTable,
  logisticTable,
  saturatingDoublingHighMul16,
  saturatingRoundingDoublingHighMul16,
} from '../src/npu/tflite-lut.js';
import type { LutLayer } from '../src/npu/types.js';
import type { Grid } from '../src/quantization/grid.js';
import { loadProfile } from '../src/quantization/profile.js';
import { minMaxQdq, randomFloats, randomTensor } from './fixtures.js';

// Table entries worked out by hand with TFLite's int8 HARD_SWISH (reference/hard_swish.h with
// HardSwishPrepare's parameters) and LOGISTIC (PopulateLookupTable, then QUANTIZE's int8
// requantization when the output grid is not 1/256, −128).

const int8 = (scale: number, zeroPoint: number): Grid => ({ scale, zeroPoint, qmin: -128, qmax: 127 });
const uint8 = (scale: number, zeroPoint: number): Grid => ({ scale, zeroPoint, qmin: 0, qmax: 255 });
const at = (table: Int32Array, g: Grid, q: number) => table[q - g.qmin];

test('int16 fixed-point helpers: rounding and truncating doubling high multiplies, Q0.31 → Q0.15', () => {
  // 2048·16384 / 2^15 = 1024 + ½: the rounding multiply gives 1024 (the nudge is 2^14, then truncation), −2048 gives −1024
  assert.equal(saturatingRoundingDoublingHighMul16(2048, 16384), 1024);
  assert.equal(saturatingRoundingDoublingHighMul16(-2048, 16384), -1024);
  assert.equal(saturatingRoundingDoublingHighMul16(3, 2 ** 14), 2); // 1.5 → 2
  assert.equal(saturatingRoundingDoublingHighMul16(-3, 2 ** 14), -1); // −1.5 → −1
  assert.equal(saturatingRoundingDoublingHighMul16(-32768, -32768), 32767);
  assert.equal(saturatingDoublingHighMul16(3, 2 ** 14), 1); // 1.5 truncated
  assert.equal(saturatingDoublingHighMul16(-3, 2 ** 14), -1); // −1.5 truncated toward zero
  assert.equal(saturatingDoublingHighMul16(-32768, -32768), 32767);
  assert.equal(downScaleToInt16(2 ** 30), 2 ** 14);
  // 2^31·2/3 = 1431655765: (q + 2^15) >> 16 = 21845
  assert.equal(downScaleToInt16(1431655765), 21845);
  assert.equal(downScaleToInt16(2 ** 31 - 1), 32767);
});

test('HARD_SWISH parameters: output multiplier 2^−6 and relu-ish multiplier 16/3 from scales 1/16 → 1/32', () => {
  // hires scale 2^−11; output 2^−11/2^−5 = 0.5·2^−5; relu-ish 2^−11/(3·2^−15) = (2/3)·2^3
  assert.deepEqual(hardSwishParams(1 / 16, 1 / 32), {
    outputMultiplier: 16384,
    outputExponent: -5,
    reluishMultiplier: 21845,
    reluishExponent: 3,
  });
});

test('HARD_SWISH table: TFLite fixed point at the zero point, −3, −1, 1 and in saturation', () => {
  // Input 1/16 with zero point 5, output 1/32 with zero point −10.
  const x = int8(1 / 16, 5);
  const y = int8(1 / 32, -10);
  const t = hardSwishTable(x, y);
  // x = 0: everything is 0, the output is its zero point.
  assert.equal(at(t, x, 5), -10);
  // x = 1 (16 steps): hires 2048, pre-shift output 1024; relu-ish 2048·4 → ·21845 → 5461 → ·2 → 10922
  // → (10922 + 2^15)/2 = 21845; 21845·1024/2^15 = 682 (truncated); 682/32 → 21; −10 + 21 = 11.
  assert.equal(at(t, x, 21), 11);
  // x = −1: pre-shift −1024, relu-ish 10923, product −341 (truncated), /32 = −10.66 → −11; −21.
  assert.equal(at(t, x, -11), -21);
  // x = −3: relu-ish −24576·21845 → −16384 → −32768 → 0, so the output is 0.
  assert.equal(at(t, x, -43), -10);
  // x = 4: relu-ish saturates at 32767 twice, (32767 + 2^15)/2 = 32767; 32767·4096/2^15 = 4095; /32 → 128; 118.
  assert.equal(at(t, x, 69), 118);
  // Past the output's top: x = 7.3125 would be 234 steps above −10, clamped at 127.
  assert.equal(at(t, x, 122), 127);
  // A uint8 grid is the int8 grid moved by 128, with the same results moved by 128.
  const xu = uint8(1 / 16, 133);
  const yu = uint8(1 / 32, 118);
  assert.equal(at(hardSwishTable(xu, yu), xu, 149), 139);
  assert.throws(() => hardSwishTable(x, int8(1 / 4096, 0)), /1\/128 of the input scale/);
});

test('LOGISTIC table: float32 sigmoid onto 1/256, −128, ties away from zero, then QUANTIZE onto another grid', () => {
  const x = int8(1 / 16, 0);
  const fixed = int8(1 / 256, -128);
  const t = logisticTable(x, fixed);
  assert.equal(at(t, x, 0), 0); // σ(0)·256 = 128 → 0
  assert.equal(at(t, x, 16), 59); // σ(1)·256 = 187.15 → 187 → 59
  assert.equal(at(t, x, -40), -109); // σ(−2.5)·256 = 19.42 → 19
  assert.equal(at(t, x, -128), -128); // σ(−8)·256 = 0.086 → 0
  assert.equal(at(t, x, 127), 127); // σ(7.9375)·256 = 255.91 → 256, saturated
  // The package's own grid (0, 1/255 on uint8): QUANTIZE rescales the centred level by
  // (1/256)/(1/255): 187 → 186.27 → 186; 256 clamped to 255 first → 254.0 → 254, where the
  // float sigmoid quantized directly would give 255.
  const own = uint8(Math.fround(1 / 255), 0);
  const r = logisticTable(x, own);
  assert.equal(at(r, x, 16), 186);
  assert.equal(at(r, x, 127), 254);
  // σ(0) = ½: the float32 scale of 1/255 is a little above it, so 128·(1/256)/scale = 127.4999… → 127,
  // where quantizing 0.5 onto the grid directly gives 127.5 → 128.
  assert.equal(at(r, x, 0), 127);
});

test('tflite-int8 packages take HardSwish and Sigmoid tables from TFLite arithmetic; other profiles from the float op', async () => {
  const g = createGraph('t');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['batch', 3, 4, 4] });
  g.outputs.push({ name: 'y', dataType: 'float32' });
  g.initializers.set('w', randomTensor([4, 3, 3, 3], 7));
  g.initializers.set('b', randomTensor([4], 8));
  g.nodes.push(
    makeNode('Conv', ['x', 'w', 'b'], ['c'], {}, 'conv'),
    makeNode('HardSwish', ['c'], ['h'], {}, 'hswish'),
    makeNode('Sigmoid', ['h'], ['y'], {}, 'sigmoid'),
  );
  const model: Model = { graph: g, opset: 17, producerName: 'test', metadata: {} };
  const shape = [4, 3, 4, 4];
  const tables = async (name: string) => {
    const p = loadProfile(name);
    const { qdq } = await minMaxQdq(model, p, floatTensor(shape, randomFloats(sizeOf(shape), 3)));
    const pkg = await buildNpuPackage(qdq, p);
    const luts = pkg.layers.filter((l): l is LutLayer => l.op === 'lut');
    return luts.map((l) => ({ table: [...l.table.data], x: pkg.tensors[l.inputs[0]!]!.grid, y: pkg.tensors[l.output]!.grid }));
  };
  const [hs, sg] = await tables('tflite-int8');
  assert.deepEqual(hs!.table, [...hardSwishTable(hs!.x, hs!.y)]);
  assert.deepEqual(sg!.table, [...logisticTable(sg!.x, sg!.y)]);
  // With these seeds the two-step TFLite table (1/256 grid, then QUANTIZE) differs from the
  // float sigmoid quantized once in some entries; w8a8-channel keeps the float one.
  const [, fsg] = await tables('w8a8-channel');
  const twoStep = logisticTable(fsg!.x, fsg!.y);
  assert.equal(fsg!.table.filter((q, i) => q !== twoStep[i]).length > 0, true);
});
