import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor, int64Tensor } from '../src/graph/tensor.js';
import type { AttributeValue, Node, TensorData } from '../src/graph/types.js';
import { resizeSelection, sliceSelection, type Selection } from '../src/npu/select.js';
import { runModel } from '../src/runtime/session.js';
import { QuantflowError } from '../src/util/errors.js';
import { randomTensor } from './fixtures.js';

/** `x` gathered by a selection's per-axis index maps. */
function applySelection(x: TensorData, s: Selection): number[] {
  const strides = x.dims.map((_, i) => x.dims.slice(i + 1).reduce((a, b) => a * b, 1));
  const out: number[] = [];
  const walk = (axis: number, at: number): void => {
    if (axis === s.index.length) return void out.push(Number(x.data[at]));
    for (const i of s.index[axis]!) walk(axis + 1, at + i * strides[axis]!);
  };
  walk(0, 0);
  return out;
}

/** Runs `node` (input 'x' of shape `dims`, constants as given) in onnxruntime and through its selection. */
async function compare(node: Node, dims: number[], constants: Record<string, TensorData>, select: typeof resizeSelection): Promise<void> {
  const g = createGraph('select');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: dims });
  g.outputs.push({ name: 'y', dataType: 'float32' });
  for (const [name, t] of Object.entries(constants)) g.initializers.set(name, t);
  g.nodes.push(node);
  const x = randomTensor(dims, 3);
  const y = (await runModel({ graph: g, opset: 17, producerName: 't', metadata: {} }, { x })).y!;
  const s = select(node, dims, g.initializers);
  assert.deepEqual(s.shape, y.dims, `${node.name}: shape`);
  assert.deepEqual(applySelection(x, s), Array.from(y.data as Float32Array), `${node.name}: values`);
}

test('hand-computed selections: ×2 nearest upsampling (asymmetric, floor) and a crop', () => {
  const up = makeNode('Resize', ['x', '', 's'], ['y'], {
    mode: attr.string('nearest'),
    coordinate_transformation_mode: attr.string('asymmetric'),
    nearest_mode: attr.string('floor'),
  });
  const s = resizeSelection(up, [1, 2, 2, 3], new Map([['s', floatTensor([4], [1, 1, 2, 2])]]));
  assert.deepEqual(s.shape, [1, 2, 4, 6]);
  assert.deepEqual(s.index, [[0], [0, 1], [0, 0, 1, 1], [0, 0, 1, 1, 2, 2]]);
  const crop = makeNode('Slice', ['x', 'b', 'e', 'a'], ['y']);
  const c = sliceSelection(
    crop,
    [1, 2, 4, 6],
    new Map([
      ['b', int64Tensor([1], [1])],
      ['e', int64Tensor([1], [-1])],
      ['a', int64Tensor([1], [-1])],
    ]),
  );
  assert.deepEqual(c.index, [[0], [0, 1], [0, 1, 2, 3], [1, 2, 3, 4]]);
});

test('Resize (nearest) selections match onnxruntime for each coordinate and rounding mode, scales and sizes', async () => {
  const transforms = ['half_pixel', 'pytorch_half_pixel', 'align_corners', 'asymmetric'];
  const roundings = ['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil'];
  for (const transform of transforms)
    for (const rounding of roundings) {
      const attrs: Record<string, AttributeValue> = {
        mode: attr.string('nearest'),
        coordinate_transformation_mode: attr.string(transform),
        nearest_mode: attr.string(rounding),
      };
      await compare(
        makeNode('Resize', ['x', '', 's'], ['y'], attrs, `${transform}/${rounding}/scales`),
        [1, 2, 5, 7],
        { s: floatTensor([4], [1, 1, 2.5, 0.6]) },
        resizeSelection,
      );
      await compare(
        makeNode('Resize', ['x', '', '', 'n'], ['y'], attrs, `${transform}/${rounding}/sizes`),
        [1, 2, 5, 7],
        { n: int64Tensor([4], [1, 2, 9, 3]) },
        resizeSelection,
      );
    }
});

test('a bilinear Resize that only broadcasts a 1x1 map is a selection (matching onnxruntime); one that interpolates is refused', async () => {
  const linear = (name: string) => makeNode('Resize', ['x', '', '', 'n'], ['y'], { mode: attr.string('linear') }, name);
  await compare(linear('broadcast'), [1, 3, 1, 1], { n: int64Tensor([4], [1, 3, 4, 5]) }, resizeSelection);
  const s = resizeSelection(linear('broadcast'), [1, 3, 1, 1], new Map([['n', int64Tensor([4], [1, 3, 2, 3])]]));
  assert.deepEqual(s.index, [[0], [0, 1, 2], [0, 0], [0, 0, 0]]);
  assert.throws(
    () => resizeSelection(linear('up'), [1, 3, 2, 2], new Map([['n', int64Tensor([4], [1, 3, 4, 4])]])),
    /mode 'linear' is supported only where it broadcasts/,
  );
});

test('Slice selections match onnxruntime: negative indices, clamped ends, steps both ways', async () => {
  const cases: [string, number[], number[], number[], number[]][] = [
    ['crop', [0, 0], [4, 4], [2, 3], [1, 1]],
    ['from the end', [-3], [1e9], [3], [1]],
    ['every second', [1, 0], [6, 5], [2, 3], [2, 2]],
    ['reversed', [-1, 4], [-1e9, 0], [2, 3], [-1, -2]],
  ];
  for (const [name, starts, ends, axes, steps] of cases) {
    const t = (v: number[]) => int64Tensor([v.length], v);
    await compare(
      makeNode('Slice', ['x', 'b', 'e', 'a', 'st'], ['y'], {}, name),
      [1, 3, 6, 5],
      { b: t(starts), e: t(ends), a: t(axes), st: t(steps) },
      sliceSelection,
    );
  }
});

test('an interpolating Resize or a computed scale is refused, naming the node', () => {
  const linear = makeNode('Resize', ['x', '', 's'], ['y'], { mode: attr.string('linear') }, 'up');
  assert.throws(
    () => resizeSelection(linear, [1, 1, 2, 2], new Map([['s', floatTensor([4], [1, 1, 2, 2])]])),
    (e: unknown) => e instanceof QuantflowError && /node 'up' \(Resize\): mode 'linear'/.test(e.message),
  );
  const computed = makeNode('Resize', ['x', '', 'dynamic'], ['y'], {}, 'up2');
  assert.throws(() => resizeSelection(computed, [1, 1, 2, 2], new Map()), /node 'up2' \(Resize\): input 'dynamic' must be a constant/);
});
