/**
 * TFLite's custom TFLite_Detection_PostProcess (tensorflow/lite/kernels/detection_postprocess.cc)
 * as ONNX: box decoding against the constant anchors, then NonMaxSuppression, then the
 * kernel's four outputs in its layout: boxes [1, D, 4] (ymin, xmin, ymax, xmax), classes
 * [1, D] (float, 0-based without background), scores [1, D], count [1] (float), zeros past
 * the count. D = max_detections × max_classes_per_detection.
 *
 * NonMaxSuppression returns a data-dependent list of (batch, class, box) triples; the rest of
 * the graph turns it back into fixed-size tensors without a loop: the scores of selected
 * entries are scattered over a tensor of -inf and TopK picks the best D per image. Greedy
 * NMS selects in decreasing score order and both ORT kernels break ties by the lower index,
 * as the TFLite kernel does, so the order is the kernel's. The batch stays symbolic.
 */
import { attr, makeNode } from '../../../graph/graph.js';
import { floatTensor, int64Tensor } from '../../../graph/tensor.js';
import type { AttributeValue } from '../../../graph/types.js';
import type { ImportContext, Op } from '../context.js';

/** The kernel's options (the flexbuffer `custom_options`). */
export interface PostProcessOptions {
  maxDetections: number;
  maxClassesPerDetection: number;
  detectionsPerClass: number;
  scoreThreshold: number;
  iouThreshold: number;
  numClasses: number;
  /** y, x, h, w. */
  scales: [number, number, number, number];
  useRegularNms: boolean;
}

function readOptions(op: Op): PostProcessOptions {
  const o = op.flexOptions();
  const number = (key: string, fallback?: number): number => {
    const v = o[key];
    if (v === undefined || v === null) return fallback ?? op.fail(`custom option '${key}' is missing`);
    const n = Number(v);
    if (!Number.isFinite(n)) op.fail(`custom option '${key}' is ${String(v)}, expected a number`);
    return n;
  };
  const count = (key: string, fallback?: number): number => {
    const n = number(key, fallback);
    if (!Number.isInteger(n) || n < 1) op.fail(`custom option '${key}' is ${n}, expected a positive integer`);
    return n;
  };
  const scale = (key: string): number => {
    const n = number(key);
    if (n === 0) op.fail(`custom option '${key}' is 0`);
    return n;
  };
  const iouThreshold = number('nms_iou_threshold');
  if (!(iouThreshold > 0 && iouThreshold <= 1)) op.fail(`nms_iou_threshold is ${iouThreshold}, must be in (0, 1]`);
  return {
    maxDetections: count('max_detections'),
    maxClassesPerDetection: count('max_classes_per_detection', 1),
    // The kernel's defaults for the two options older converters did not write.
    detectionsPerClass: count('detections_per_class', 100),
    useRegularNms: Boolean(o['use_regular_nms'] ?? false),
    scoreThreshold: number('nms_score_threshold'),
    iouThreshold,
    numClasses: count('num_classes'),
    scales: [scale('y_scale'), scale('x_scale'), scale('h_scale'), scale('w_scale')],
  };
}

/**
 * The largest float32 below `x`: ORT's NonMaxSuppression keeps scores strictly above its
 * threshold, the TFLite kernel keeps scores at or above it.
 */
export function float32Below(x: number): number {
  const f = new Float32Array([x]);
  if (f[0] === 0) return -(2 ** -149);
  const bits = new Int32Array(f.buffer);
  bits[0] += f[0]! > 0 ? -1 : 1;
  return f[0]!;
}

export function detectionPostProcess(ctx: ImportContext, op: Op): void {
  op.arity(3, 3, 4);
  const opts = readOptions(op);
  const [encT, scoresT, anchorsT] = [op.input(0), op.input(1), op.input(2)];
  if (encT.shape.length !== 3 || encT.shape[2]! < 4) op.fail(`box encodings must be [1, boxes, 4 or more], found [${encT.shape}]`);
  const n = encT.shape[1]!;
  if (scoresT.shape.length !== 3 || scoresT.shape[1] !== n)
    op.fail(`class predictions must be [1, ${n}, classes], found [${scoresT.shape}]`);
  if (anchorsT.shape.length !== 2 || anchorsT.shape[0] !== n || anchorsT.shape[1] !== 4)
    op.fail(`anchors must be a constant [${n}, 4], found [${anchorsT.shape}]`);
  const labelOffset = scoresT.shape[2]! - opts.numClasses;
  if (labelOffset !== 0 && labelOffset !== 1)
    op.fail(`class predictions have ${scoresT.shape[2]} classes for num_classes ${opts.numClasses} (at most one background class)`);
  const classes = opts.numClasses;

  const prefix = ctx.baseName(op.output(0));
  const emit = (opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, outputs = 1): string[] => {
    const names = Array.from({ length: outputs }, () => ctx.fresh(`${prefix}/${opType}`));
    ctx.graph.nodes.push(makeNode(opType, inputs, names, attributes));
    return names;
  };
  const one = (opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}): string =>
    emit(opType, inputs, attributes)[0]!;
  const floats = (base: string, dims: number[], values: ArrayLike<number>): string =>
    ctx.initializer(`${prefix}/${base}`, floatTensor(dims, values));
  const ints = (base: string, values: number[], dims = [values.length]): string =>
    ctx.initializer(`${prefix}/${base}`, int64Tensor(dims, values));
  const slice = (x: string, axis: number, start: number, end: number): string =>
    one('Slice', [x, ints('starts', [start]), ints('ends', [end]), ints('axes', [axis])]);
  const unsqueeze = (x: string, axis: number): string => one('Unsqueeze', [x, ints('axes', [axis])]);

  // Decoding: centre = t_yx / scale_yx · anchor_hw + anchor_yx, half = ½·exp(t_hw / scale_hw) · anchor_hw.
  const anchors = ctx.constantValues(op, anchorsT);
  const [yScale, xScale, hScale, wScale] = opts.scales;
  const centreGain = new Float32Array(2 * n);
  const centreBias = new Float32Array(2 * n);
  const halfGain = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const [ay, ax, ah, aw] = [anchors[4 * i]!, anchors[4 * i + 1]!, anchors[4 * i + 2]!, anchors[4 * i + 3]!];
    centreGain.set([ah / yScale, aw / xScale], 2 * i);
    centreBias.set([ay, ax], 2 * i);
    halfGain.set([0.5 * ah, 0.5 * aw], 2 * i);
  }
  const enc = ctx.value(op, encT);
  const centre = one('Add', [
    one('Mul', [slice(enc, 2, 0, 2), floats('centre_gain', [1, n, 2], centreGain)]),
    floats('anchor_centres', [1, n, 2], centreBias),
  ]);
  const sizes = one('Div', [slice(enc, 2, 2, 4), floats('size_scales', [2], [hScale, wScale])]);
  const half = one('Mul', [one('Exp', [sizes]), floats('half_anchor_sizes', [1, n, 2], halfGain)]);
  const boxes = one('Concat', [one('Sub', [centre, half]), one('Add', [centre, half])], { axis: attr.int(2) });

  let classScores = ctx.value(op, scoresT);
  if (labelOffset) classScores = slice(classScores, 2, labelOffset, labelOffset + classes);

  // Fast NMS ranks each box by its best class and reports its top k classes; regular NMS runs per class.
  const k = opts.useRegularNms ? 1 : opts.maxClassesPerDetection;
  const kk = Math.min(k, classes);
  let nmsScores: string;
  let perBoxScores = '';
  let perBoxClasses = '';
  if (opts.useRegularNms) nmsScores = one('Transpose', [classScores], { perm: attr.ints([0, 2, 1]) });
  else {
    [perBoxScores, perBoxClasses] = emit('TopK', [classScores, ints('k', [kk])], { axis: attr.int(2) }, 2) as [string, string];
    nmsScores = one('Transpose', [slice(perBoxScores, 2, 0, 1)], { perm: attr.ints([0, 2, 1]) });
  }
  const lists = opts.useRegularNms ? classes : 1;
  const perList = opts.useRegularNms ? opts.detectionsPerClass : opts.maxDetections;
  const selected = one('NonMaxSuppression', [
    boxes,
    nmsScores,
    ints('max_per_class', [perList]),
    floats('iou_threshold', [1], [opts.iouThreshold]),
    floats('score_threshold', [1], [float32Below(opts.scoreThreshold)]),
  ]);

  // Flat index of each selected (batch, list, box) into the [batch · lists · boxes] scores.
  const flat = one('ReduceSum', [one('Mul', [selected, ints('strides', [lists * n, n, 1], [1, 3])]), ints('axes', [1])], {
    keepdims: attr.int(0),
  });
  const scoresFlat = one('Reshape', [nmsScores, ints('flat', [-1])]);
  // Min with -inf gives a tensor of -inf of the runtime size in one node.
  const minusInf = floats('minus_inf', [], [-Infinity]);
  const floor = one('Min', [scoresFlat, minusInf]);
  const masked = one('ScatterElements', [floor, flat, one('Gather', [scoresFlat, flat], { axis: attr.int(0) })]);
  const d = Math.min(opts.maxDetections, lists * n);
  // Back to the scores' shape first, so that shape inference keeps the symbolic batch.
  const unflat = one('Reshape', [masked, one('Shape', [nmsScores])]);
  const [topScores, topIndices] = emit(
    'TopK',
    [one('Reshape', [unflat, ints('per_image', [0, lists * n])]), ints('detections', [d])],
    { axis: attr.int(1) },
    2,
  ) as [string, string];
  const invalid = one('Equal', [topScores, minusInf]);

  let boxIndex: string;
  let scores: string;
  let classIds: string;
  if (opts.useRegularNms) {
    const boxCount = ints('boxes', [n], []);
    const classOf = one('Div', [topIndices, boxCount]);
    boxIndex = one('Sub', [topIndices, one('Mul', [classOf, boxCount])]);
    scores = unsqueeze(topScores, 2);
    classIds = unsqueeze(classOf, 2);
  } else {
    boxIndex = topIndices;
    const rows = one('Add', [unsqueeze(boxIndex, 2), ints('zeros', new Array<number>(kk).fill(0), [1, 1, kk])]);
    scores = one('GatherElements', [perBoxScores, rows], { axis: attr.int(1) });
    classIds = one('GatherElements', [perBoxClasses, rows], { axis: attr.int(1) });
  }
  const boxRows = one('Add', [unsqueeze(boxIndex, 2), ints('zeros', [0, 0, 0, 0], [1, 1, 4])]);
  let picked = unsqueeze(one('GatherElements', [boxes, boxRows], { axis: attr.int(1) }), 2);
  if (kk > 1) picked = one('Add', [picked, floats('zeros', [1, 1, kk, 4], new Float32Array(kk * 4))]);

  // Entries past the count are zeros, as the kernel leaves them.
  const zero = floats('zero', [], [0]);
  const invalid3 = unsqueeze(invalid, 2);
  const pad = (x: string, rank: number): string => {
    if (d === opts.maxDetections && kk === k) return x;
    const ends = [0, opts.maxDetections - d, k - kk, 0].slice(0, rank);
    return one('Pad', [x, ints('pads', [...new Array<number>(rank).fill(0), ...ends])]);
  };
  const total = opts.maxDetections * k;
  const finish = (x: string, rank: number, shape: number[], output: string): void => {
    ctx.graph.nodes.push(makeNode('Reshape', [pad(x, rank), ints('shape', shape)], [output]));
  };
  const outputs = [0, 1, 2, 3].map((i) => {
    ctx.declareShape(op.output(i), i === 3 ? [1] : i === 0 ? [1, total, 4] : [1, total]);
    return ctx.output(op, i);
  });
  ctx.customOps.push({
    code: 'TFLite_Detection_PostProcess',
    inputs: [enc, ctx.value(op, scoresT)],
    outputs: outputs as string[],
    constants: [
      { index: 2, shape: anchorsT.shape, data: Buffer.from(anchors.buffer, anchors.byteOffset, anchors.byteLength).toString('base64') },
    ],
    options: Buffer.from(op.raw.customOptions ?? new Uint8Array()).toString('base64'),
  });
  finish(one('Where', [unsqueeze(invalid3, 3), zero, picked]), 4, [-1, total, 4], outputs[0]!);
  finish(one('Where', [invalid3, zero, one('Cast', [classIds], { to: attr.int(1) })]), 3, [-1, total], outputs[1]!);
  finish(one('Where', [invalid3, zero, scores]), 3, [-1, total], outputs[2]!);
  const found = one('Where', [invalid, zero, floats('one', [], [1])]);
  ctx.graph.nodes.push(makeNode('ReduceSum', [found, ints('axes', [1])], [outputs[3]!], { keepdims: attr.int(0) }));
}
