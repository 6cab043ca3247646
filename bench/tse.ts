/**
 * Tiled squeeze-and-excite, measured. Run with `npm run bench:tse [-- result.json]`.
 *
 * 1. MobileNetV3-Small (TFLite uint8, imported as float) on imagenet-val-650: top-1 of the SE
 *    model and of TSE with row tiles K = 28, 14, 7, 4, 2, 1 and 7x7 tiles, each with total SE
 *    and TSE buffering; buffering at 224x224 and 512x512.
 * 2. Gate similarity (tile vs global gate, neighbouring tiles) for K = 7 and K = 1 over 100
 *    images of imagenet-sample-1k.
 * 3. The EfficientNet-B2 backbone at 768x768 (EfficientDet-D2's), built here from its published
 *    architecture with random weights: SE vs TSE buffering for K = 7 and 8, next to the paper's
 *    50M → 4.77M elements.
 */
import { loadDataset } from '../src/data/dataset.js';
import { evaluate } from '../src/eval/evaluate.js';
import { attr, createGraph, makeNode } from '../src/graph/graph.js';
import { floatTensor } from '../src/graph/tensor.js';
import type { Model } from '../src/graph/types.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { formatTable, percent } from '../src/cli/table.js';
import { formatCount } from '../src/cli/commands/buffers.js';
import { writeJsonResult } from '../src/util/fs.js';
import { gateSimilarity } from '../src/tse/analyze.js';
import { bufferReport } from '../src/tse/buffers.js';
import { detectSqueezeExcite } from '../src/tse/detect.js';
import { withInputSize } from '../src/tse/input-size.js';
import { tileSqueezeExcite } from '../src/tse/rewrite.js';
import { describeTile, type TileOptions } from '../src/tse/tile.js';
import { randomFloats } from '../test/fixtures.js';
import { sharedPath } from '../test/shared.js';

const MODEL = 'mobilenet_v3_small_1.0_224_uint8.tflite';
const TILINGS: TileOptions[] = [
  { tileRows: 28 },
  { tileRows: 14 },
  { tileRows: 7 },
  { tileRows: 4 },
  { tileRows: 2 },
  { tileRows: 1 },
  { tile: [7, 7] },
];
const SIMILARITY_TILINGS: TileOptions[] = [{ tileRows: 7 }, { tileRows: 1 }];
const SIMILARITY_IMAGES = 100;
/** EfficientDet-D2 buffering from the TSE paper (arXiv 2107.02145), elements. */
const PAPER = { se: 50e6, tse: 4.77e6 };

const result: Record<string, unknown> = {};

async function mobilenet(): Promise<void> {
  const file = sharedPath('models', MODEL);
  const val = sharedPath('data', 'imagenet-val-650');
  const calib = sharedPath('data', 'imagenet-sample-1k');
  const skip = file.skip || val.skip || calib.skip;
  if (skip) return void console.log(`MobileNetV3-Small skipped: ${skip}`);
  const model = await prepareModel(loadModel(file.path));
  const { blocks } = detectSqueezeExcite(model);
  const dataset = await loadDataset(val.path);

  const accuracy = [];
  const se = await evaluate(model, dataset);
  // The SE figure does not depend on the tiling.
  accuracy.push({
    model: 'SE',
    top1: se.top1,
    top5: se.top5,
    seBuffer: bufferReport(blocks, TILINGS[0]!).se,
    tseBuffer: null as number | null,
  });
  for (const tiles of TILINGS) {
    const r = await evaluate(tileSqueezeExcite(model, tiles), dataset);
    const buffers = bufferReport(blocks, tiles);
    accuracy.push({ model: `TSE ${describeTile(tiles)}`, top1: r.top1, top5: r.top5, seBuffer: buffers.se, tseBuffer: buffers.tse });
  }
  console.log(`\nMobileNetV3-Small on imagenet-val-650 (${se.n} images, preset ${se.preset}); buffering at 224x224`);
  console.log(
    formatTable([
      ['model', 'top-1', 'top-5', 'SE buffer', 'TSE buffer'],
      ...accuracy.map((a) => [
        a.model,
        percent(a.top1),
        percent(a.top5),
        formatCount(a.seBuffer),
        a.tseBuffer === null ? '-' : formatCount(a.tseBuffer),
      ]),
    ]),
  );
  result.accuracy = accuracy;

  const sizes = [224, 512].map((s) => {
    const found = detectSqueezeExcite(withInputSize(model, s, s)).blocks;
    return { size: s, k7: bufferReport(found, { tileRows: 7 }), k1: bufferReport(found, { tileRows: 1 }) };
  });
  console.log('\nMobileNetV3-Small SE buffering by input size');
  console.log(
    formatTable([
      ['input', 'SE', 'TSE 7 rows', 'TSE 1 row'],
      ...sizes.map((s) => {
        const { k7, k1 } = s;
        return [
          `${s.size}x${s.size}`,
          formatCount(k7.se),
          `${formatCount(k7.tse)} (-${percent(k7.reduction)})`,
          `${formatCount(k1.tse)} (-${percent(k1.reduction)})`,
        ];
      }),
    ]),
  );
  result.buffersBySize = sizes;

  const images = await loadDataset(calib.path);
  result.similarity = [];
  for (const tiles of SIMILARITY_TILINGS) {
    const r = await gateSimilarity(model, images, tiles, { limit: SIMILARITY_IMAGES });
    console.log(`\nGate cosine similarity, ${r.tiles}, ${r.images} images of imagenet-sample-1k (preset ${r.preset})`);
    console.log(
      formatTable([
        ['block', 'C x H x W', 'tiles', 'tile vs global', 'neighbours'],
        ...r.blocks.map((b, i) => [
          `${i}`,
          `${b.channels}x${b.height}x${b.width}`,
          `${b.grid[0]}x${b.grid[1]}`,
          b.toGlobal.toFixed(4),
          b.neighbours?.toFixed(4) ?? '-',
        ]),
      ]),
    );
    (result.similarity as unknown[]).push(r);
  }
}

/** EfficientNet-B0 stages: expand ratio, kernel, stride, input and output filters, repeats. */
const B0_STAGES = [
  [1, 3, 1, 32, 16, 1],
  [6, 3, 2, 16, 24, 2],
  [6, 5, 2, 24, 40, 2],
  [6, 3, 2, 40, 80, 3],
  [6, 5, 1, 80, 112, 3],
  [6, 5, 2, 112, 192, 4],
  [6, 3, 1, 192, 320, 1],
] as const;

/** EfficientNet's channel rounding: scale by the width multiplier, round to a multiple of 8, never below 90%. */
function roundFilters(filters: number, width: number): number {
  const scaled = filters * width;
  const rounded = Math.max(8, Math.floor((scaled + 4) / 8) * 8);
  return rounded < 0.9 * scaled ? rounded + 8 : rounded;
}

/**
 * The EfficientNet backbone (no classifier) as a PyTorch export would write it: stem Conv 3x3
 * stride 2 to 32 channels, MBConv blocks (1x1 expansion, depthwise k x k, SE with ratio 0.25
 * of the block's input filters: GlobalAveragePool → Conv → swish → Conv → Sigmoid → Mul, 1x1
 * projection, residual where shapes allow), swish as x·sigmoid(x), head Conv 1x1. Random
 * weights: only shapes matter for buffering.
 */
function efficientNet(width: number, depth: number, size: number): Model {
  const g = createGraph(`efficientnet_w${width}_d${depth}`);
  g.inputs.push({ name: 'image', dataType: 'float32', shape: [1, 3, size, size] });
  let seed = 1;
  let n = 0;
  const conv = (x: string, cin: number, cout: number, k: number, stride = 1, group = 1) => {
    const w = `w${n}`;
    const b = `b${n}`;
    g.initializers.set(
      w,
      floatTensor(
        [cout, cin / group, k, k],
        randomFloats((cout * cin * k * k) / group, seed++).map((v) => v / Math.sqrt((cin / group) * k * k)),
      ),
    );
    g.initializers.set(
      b,
      floatTensor(
        [cout],
        randomFloats(cout, seed++).map((v) => 0.1 * v),
      ),
    );
    const out = `conv${n++}`;
    const half = Math.floor(k / 2);
    g.nodes.push(
      makeNode('Conv', [x, w, b], [out], {
        kernel_shape: attr.ints([k, k]),
        strides: attr.ints([stride, stride]),
        pads: attr.ints([half, half, half, half]),
        group: attr.int(group),
      }),
    );
    return out;
  };
  const swish = (x: string) => {
    const s = `sig${n++}`;
    const out = `swish${n++}`;
    g.nodes.push(makeNode('Sigmoid', [x], [s]), makeNode('Mul', [x, s], [out]));
    return out;
  };
  let x = swish(conv('image', 3, roundFilters(32, width), 3, 2));
  for (const [expand, k, stride, fin, fout, repeats] of B0_STAGES) {
    const [cin0, cout] = [roundFilters(fin, width), roundFilters(fout, width)];
    for (let r = 0; r < Math.ceil(depth * repeats); r++) {
      const cin = r === 0 ? cin0 : cout;
      const s = r === 0 ? stride : 1;
      const c = cin * expand;
      const expanded = expand === 1 ? x : swish(conv(x, cin, c, 1));
      const dw = swish(conv(expanded, c, c, k, s, c));
      const squeezed = Math.max(1, Math.floor(cin * 0.25));
      const pooled = `pool${n++}`;
      g.nodes.push(makeNode('GlobalAveragePool', [dw], [pooled]));
      const gate = `gate${n++}`;
      g.nodes.push(makeNode('Sigmoid', [conv(swish(conv(pooled, c, squeezed, 1)), squeezed, c, 1)], [gate]));
      const scaled = `se${n++}`;
      g.nodes.push(makeNode('Mul', [dw, gate], [scaled]));
      const projected = conv(scaled, c, cout, 1);
      if (s === 1 && cin === cout) {
        const sum = `add${n++}`;
        g.nodes.push(makeNode('Add', [projected, x], [sum]));
        x = sum;
      } else x = projected;
    }
  }
  const features = swish(conv(x, roundFilters(320, width), roundFilters(1280, width), 1));
  g.outputs.push({ name: features, dataType: 'float32' });
  return { graph: g, opset: 17, producerName: 'quantflow bench', metadata: {} };
}

async function efficientNetB2(): Promise<void> {
  const size = 768;
  const model = await prepareModel(efficientNet(1.1, 1.2, size));
  const { blocks, nearMisses } = detectSqueezeExcite(model);
  if (nearMisses.length) throw new Error(`unexpected near misses: ${JSON.stringify(nearMisses)}`);
  const reports = [7, 8].map((k) => bufferReport(blocks, { tileRows: k }));
  // The tiled backbone must still be a valid model (rewrite validates and infers shapes).
  const tiledNodes = tileSqueezeExcite(model, { tileRows: 7 }).graph.nodes.length;
  console.log(
    `\nEfficientNet-B2 backbone at ${size}x${size} (EfficientDet-D2): ${blocks.length} SE blocks; TSE 7-row model has ${tiledNodes} nodes`,
  );
  console.log(
    formatTable([
      ['', 'SE', 'TSE 7 rows', 'TSE 8 rows'],
      [
        'quantflow (SE blocks only)',
        formatCount(reports[0]!.se),
        ...reports.map((r) => `${formatCount(r.tse)} (-${percent(r.reduction)})`),
      ],
      ['paper, EfficientDet-D2 pipeline', formatCount(PAPER.se), `${formatCount(PAPER.tse)} (-${percent(1 - PAPER.tse / PAPER.se)})`, ''],
    ]),
  );
  console.log(
    formatTable([
      ['C x H x W', 'blocks', 'SE each', 'TSE 7 each'],
      ...groupBlocks(reports[0]!.blocks).map((b) => [
        `${b.channels}x${b.height}x${b.width}`,
        b.count,
        formatCount(b.se),
        formatCount(b.tse),
      ]),
    ]),
  );
  result.efficientNetB2 = { size, blocks: blocks.length, k7: reports[0], k8: reports[1], paper: PAPER };
}

/** Consecutive blocks of equal shape, counted once. */
function groupBlocks(blocks: ReturnType<typeof bufferReport>['blocks']) {
  const groups: { channels: number; height: number; width: number; count: number; se: number; tse: number }[] = [];
  for (const b of blocks) {
    const last = groups.at(-1);
    if (last && last.channels === b.channels && last.height === b.height) last.count++;
    else groups.push({ channels: b.channels, height: b.height, width: b.width, count: 1, se: b.se, tse: b.tse });
  }
  return groups;
}

await mobilenet();
await efficientNetB2();
const out = process.argv[2];
if (out) {
  writeJsonResult(out, result);
  console.log(`\nwrote ${out}`);
}
