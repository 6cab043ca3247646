/**
 * Conv gradients. onnxruntime's CPU kernels decide the formulation (measured on 2 cores at
 * batch 32, 56x56): its Conv runs about 3x faster than its ConvTranspose, a batched MatMul
 * beats both for 1x1 kernels (weight gradient 17x faster than a Conv over transposed
 * tensors), and im2col patches + MatMul beat that Conv 3-4x for other kernels. Each
 * gradient takes the fastest form that is exact for the node's geometry.
 */
import { attr, attrInt } from '../../graph/graph.js';
import { floatTensor, sizeOf } from '../../graph/tensor.js';
import type { AttributeValue } from '../../graph/types.js';
import type { GradContext, RuleTable } from '../rule.js';
import { range, transposedWindow, windowOf, type Window } from './helpers.js';

/** Slice end that means "through index 0" for a negative step. */
const BEFORE_START = -(2 ** 31);

interface ConvGeometry {
  w: Window;
  group: number;
  /** Weight dims [M, C/group, ...kernel]. */
  wDims: number[];
  /** Spatial axes of the activation tensors: 2, 3, ... */
  spatial: number[];
  /** 1x1 kernel, stride 1, no padding, one group: a matrix product per image. */
  pointwise: boolean;
}

function geometry(ctx: GradContext): ConvGeometry {
  const wDims = ctx.dims(ctx.node.inputs[1]!, 'weight shape');
  const w = windowOf(ctx, wDims.slice(2));
  const group = attrInt(ctx.node, 'group', 1);
  const pointwise =
    group === 1 && w.kernel.every((k) => k === 1) && w.strides.every((s) => s === 1) && [...w.begin, ...w.end].every((p) => p === 0);
  return { w, group, wDims, spatial: range(w.kernel.length).map((i) => i + 2), pointwise };
}

function windowAttrs(w: Window, pads: number[], group: number): Record<string, AttributeValue> {
  return {
    kernel_shape: attr.ints(w.kernel),
    strides: attr.ints(w.strides),
    dilations: attr.ints(w.dilations),
    pads: attr.ints(pads),
    group: attr.int(group),
  };
}

/** Weights [M, C/g, k] regrouped to [C, M/g, k] and flipped: the kernel of the input gradient. */
function flippedTransposedWeight(ctx: GradContext, g: ConvGeometry): string {
  const { b, node } = ctx;
  const [m, cg, ...kernel] = g.wDims as [number, number, ...number[]];
  const mg = m / g.group;
  let w = node.inputs[1]!;
  if (g.group === 1) w = b.transpose(w, [1, 0, ...g.spatial]);
  else if (mg > 1 && cg > 1) {
    const grouped = b.reshape(w, [g.group, mg, cg, ...kernel]);
    w = b.reshape(b.transpose(grouped, [0, 2, 1, ...g.spatial.map((a) => a + 1)]), [g.group * cg, mg, ...kernel]);
  } else if (mg > 1 || cg > 1) w = b.reshape(w, [g.group * cg, mg, ...kernel]);
  const n = kernel.length;
  return b.op('Slice', [
    w,
    b.int64s(new Array<number>(n).fill(-1)),
    b.int64s(new Array<number>(n).fill(BEFORE_START)),
    b.int64s(g.spatial),
    b.int64s(new Array<number>(n).fill(-1)),
  ]);
}

function inputGrad(ctx: GradContext, g: ConvGeometry): string {
  const { b, node, dy } = ctx;
  const { w } = g;
  const [m, c] = g.wDims as [number, number];
  if (g.pointwise) {
    const wt = b.transpose(b.reshape(node.inputs[1]!, [m, c]), [1, 0]);
    const dx = b.op('MatMul', [wt, b.reshape(dy, [0, m, -1])]);
    return b.reshape(dx, [0, c, ...w.inSize], `${node.name}_dx`);
  }
  // With stride 1 the input gradient is a correlation of dy with the flipped kernel: a Conv.
  const reach = w.kernel.map((k, i) => w.dilations[i]! * (k - 1));
  const pads = [...w.begin.map((p, i) => reach[i]! - p), ...w.end.map((p, i) => reach[i]! - p)];
  if (w.strides.every((s) => s === 1) && pads.every((p) => p >= 0)) {
    const attrs = windowAttrs(w, pads, g.group);
    return b.op('Conv', [dy, flippedTransposedWeight(ctx, g)], attrs, `${node.name}_dx`);
  }
  const t = transposedWindow(w);
  const attrs = { ...windowAttrs(w, t.pads, g.group), output_padding: attr.ints(t.outputPadding) };
  return b.op('ConvTranspose', [dy, node.inputs[1]!], attrs, `${node.name}_dx`);
}

/**
 * Weight gradient from im2col patches: a depthwise Conv with one-hot kernels extracts the
 * k values under the kernel at every output position ([N, C·k, ...out]); a batched MatMul
 * per (image, group) contracts them with dy over the positions, and a sum over images
 * remains. onnxruntime runs the textbook form — a Conv whose kernel is dy, over transposed
 * tensors — at a fraction of its GEMM speed (one small GEMM per group, on one thread for
 * depthwise convs); the price here is a transient tensor k times the size of the input.
 */
function patchWeightGrad(ctx: GradContext, g: ConvGeometry): string {
  const { b, node, dy } = ctx;
  const { w } = g;
  const [m, cg] = g.wDims as [number, number];
  const c = cg * g.group;
  const k = sizeOf(w.kernel);
  const onehot = floatTensor([c * k, 1, ...w.kernel]);
  for (let ch = 0; ch < c; ch++) for (let i = 0; i < k; i++) onehot.data[(ch * k + i) * k + i] = 1;
  const kernels = b.tensor(onehot, `${node.name}_onehot`);
  const patches = b.op('Conv', [node.inputs[0]!, kernels], windowAttrs(w, [...w.begin, ...w.end], c), `${node.name}_patches`);
  const positions = sizeOf(w.outSize);
  const perGroup = b.transpose(b.reshape(patches, [-1, cg * k, positions]), [0, 2, 1]);
  const products = b.op('MatMul', [b.reshape(dy, [-1, m / g.group, positions]), perGroup]);
  const perImage = b.reshape(products, [-1, m * cg * k]);
  return b.reshape(b.reduceSum(perImage, [0], false), g.wDims, `${node.name}_dw`);
}

function weightGrad(ctx: GradContext, g: ConvGeometry): string {
  if (!g.pointwise) return patchWeightGrad(ctx, g);
  // Σ over images of dy[M, P] · x[C, P]ᵀ; onnxruntime fuses the Transpose into the MatMul.
  const { b, node, dy } = ctx;
  const [m, c] = g.wDims as [number, number];
  const xt = b.transpose(b.reshape(node.inputs[0]!, [0, c, -1]), [0, 2, 1]);
  const perImage = b.op('MatMul', [b.reshape(dy, [0, m, -1]), xt]);
  return b.reshape(b.reduceSum(perImage, [0], false), g.wDims, `${node.name}_dw`);
}

export const convRules: RuleTable = {
  Conv: {
    backward(ctx) {
      const g = geometry(ctx);
      const bias = ctx.node.inputs[2];
      return [
        ctx.needs(0) ? inputGrad(ctx, g) : undefined,
        ctx.needs(1) ? weightGrad(ctx, g) : undefined,
        bias && ctx.needs(2) ? ctx.b.reduceSum(ctx.dy, [0, ...g.spatial], false, `${ctx.node.name}_db`) : undefined,
      ];
    },
  },
};
