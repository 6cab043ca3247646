import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ACT, OP, options, SAME, TfliteBuilder, type ElementType } from '../src/export/tflite/flatbuffer.js';
import { runtimeVersion } from '../src/export/tflite/metadata.js';
import { builtinVersion, minRuntimeVersion } from '../src/export/tflite/versions.js';
import { readTfliteModel } from '../src/import/tflite/schema.js';

// Expected versions read off op_version.cc's rules for the tensor types and options of each
// tiny graph, and runtime versions off runtime_version.cc's table.

const q = (scale: number | number[], zeroPoint = 0) => {
  const s = Array.isArray(scale) ? scale : [scale];
  return { scale: s, zeroPoint: s.map(() => zeroPoint) };
};

function builder(): TfliteBuilder {
  const b = new TfliteBuilder();
  b.versionOf = builtinVersion;
  return b;
}

/** One operator on an activation of `type`, returning the builder's versions. */
function versionsOf(build: (b: TfliteBuilder) => void): Map<number, number> {
  const b = builder();
  build(b);
  return b.operatorVersions();
}

const act = (b: TfliteBuilder, name: string, shape: number[], type: ElementType = 'int8', scale = 0.1) =>
  b.tensor({ name, shape, type, ...(type !== 'float32' && { quant: q(scale, type === 'int8' ? -3 : 0) }) });

test('CONV_2D int8 with per-channel weights is version 3 (runtime 1.14.0); float is 1, hybrid per-channel 5', () => {
  const conv = (x: ElementType, w: ElementType, y: ElementType) =>
    versionsOf((b) => {
      const input = act(b, 'x', [1, 4, 4, 2], x);
      const weights = b.constant('w', [3, 1, 1, 2], [1, 2, 3, 4, 5, 6], w, w === 'int8' ? q([0.1, 0.2, 0.4]) : undefined);
      const bias = b.constant('b', [3], [0, 0, 0], x === 'int8' ? 'int32' : 'float32');
      b.op(OP.CONV_2D, [input, weights, bias], [act(b, 'y', [1, 4, 4, 3], y)], options.conv2d({ padding: SAME }));
    }).get(OP.CONV_2D);
  assert.equal(conv('int8', 'int8', 'int8'), 3);
  assert.equal(conv('float32', 'float32', 'float32'), 1);
  assert.equal(conv('float32', 'int8', 'float32'), 5);
  assert.equal(minRuntimeVersion(new Map([[OP.CONV_2D, 3]])), '1.14.0');
});

test('DEPTHWISE_CONV_2D: int8 is 3 with or without dilation; a float dilated one is 2 (runtime 1.12.0)', () => {
  const depthwise = (type: ElementType, dilation: [number, number]) =>
    versionsOf((b) => {
      const x = act(b, 'x', [1, 6, 6, 2], type);
      const w = b.constant('w', [1, 3, 3, 2], new Array(18).fill(1), type, type === 'int8' ? q([0.1, 0.1]) : undefined);
      const bias = b.constant('b', [2], [0, 0], type === 'int8' ? 'int32' : 'float32');
      b.op(
        OP.DEPTHWISE_CONV_2D,
        [x, w, bias],
        [act(b, 'y', [1, 6, 6, 2], type)],
        options.depthwise({ padding: SAME, multiplier: 1, dilation }),
      );
    }).get(OP.DEPTHWISE_CONV_2D)!;
  assert.equal(depthwise('int8', [2, 2]), 3);
  assert.equal(depthwise('int8', [1, 1]), 3);
  assert.equal(depthwise('float32', [2, 2]), 2);
  assert.equal(depthwise('float32', [1, 1]), 1);
  assert.equal(minRuntimeVersion(new Map([[OP.DEPTHWISE_CONV_2D, 2]])), '1.12.0');
});

test('FULLY_CONNECTED int8 is 4, with keep_num_dims 5 (runtime 2.0.0)', () => {
  const fc = (keepDims: boolean) =>
    versionsOf((b) => {
      const x = act(b, 'x', [2, 3, 8]);
      const w = b.constant('w', [4, 8], new Array(32).fill(1), 'int8', q(0.05));
      const bias = b.constant('b', [4], [0, 0, 0, 0], 'int32');
      const opts = keepDims ? options.fullyConnectedKeepDims(ACT.RELU) : options.fullyConnected(ACT.RELU);
      b.op(OP.FULLY_CONNECTED, [x, w, bias], [act(b, 'y', keepDims ? [2, 3, 4] : [6, 4])], opts);
    });
  assert.equal(fc(false).get(OP.FULLY_CONNECTED), 4);
  assert.equal(fc(true).get(OP.FULLY_CONNECTED), 5);
  assert.equal(minRuntimeVersion(fc(true)), '2.0.0');
});

test('MUL int8 is 2, or 3 when s1·s2/s_out ≥ 1; RESIZE_NEAREST_NEIGHBOR with half-pixel centres is 3; the model takes the newest release', () => {
  const mul = (outScale: number) =>
    versionsOf((b) => {
      const x = act(b, 'x', [1, 2, 2, 1], 'int8', 0.5);
      const c = act(b, 'c', [1, 2, 2, 1], 'int8', 0.5);
      b.op(OP.MUL, [x, c], [act(b, 'y', [1, 2, 2, 1], 'int8', outScale)], options.mul());
    }).get(OP.MUL);
  assert.equal(mul(0.5), 2); // 0.25/0.5 < 1
  assert.equal(mul(0.25), 3); // 0.25/0.25 = 1
  const versions = versionsOf((b) => {
    const x = act(b, 'x', [1, 2, 2, 1]);
    const size = b.constant('size', [2], [4, 4], 'int32');
    const r = act(b, 'r', [1, 4, 4, 1]);
    b.op(OP.RESIZE_NEAREST_NEIGHBOR, [x, size], [r], options.resizeNearest({ halfPixel: true }));
    const f = b.tensor({ name: 'f', shape: [1, 4, 4, 1], type: 'float32' });
    b.op(OP.DEQUANTIZE, [r], [f]);
    b.op(OP.HARD_SWISH, [r], [act(b, 'h', [1, 4, 4, 1])]);
    b.custom('TFLite_Detection_PostProcess', [f], [b.tensor({ name: 'd', shape: [1], type: 'float32' })]);
  });
  assert.deepEqual(
    [...versions],
    [
      [OP.RESIZE_NEAREST_NEIGHBOR, 3],
      [OP.DEQUANTIZE, 2],
      [OP.HARD_SWISH, 1],
    ],
  );
  // RESIZE_NEAREST_NEIGHBOR 3 → 2.3.0, DEQUANTIZE 2 → 1.14.0, HARD_SWISH 1 → 1.15.0; the custom op is not listed.
  assert.equal(minRuntimeVersion(versions), '2.3.0');
  assert.deepEqual([...runtimeVersion(versions)], [...new TextEncoder().encode('2.3.0'), ...new Array(11).fill(0)]);
});

test('the written operator codes carry the versions (the highest among operators of one code)', () => {
  const b = builder();
  const x = act(b, 'x', [1, 2, 2, 1], 'int8', 0.5);
  const y1 = act(b, 'y1', [1, 2, 2, 1], 'int8', 0.5);
  b.op(OP.MUL, [x, x], [y1], options.mul());
  const y2 = act(b, 'y2', [1, 2, 2, 1], 'int8', 0.25);
  b.op(OP.MUL, [y1, x], [y2], options.mul());
  const model = readTfliteModel(b.build([x], [y2]), 'test');
  assert.deepEqual(
    model.operatorCodes.map((c) => [c.builtin, c.version]),
    [[OP.MUL, 3]],
  );
});
