/**
 * quantflow's float import of a TFLite SSD against an independent runtime's detections
 * (bench/armnn-ssd.py: Arm NN, CpuRef backend) on the very same uint8 pixels: detections
 * matched one to one at IoU ≥ 0.5 with the same class.
 *
 *   /usr/bin/python3 bench/armnn-ssd.py ../shared/models/ssd_mobilenet_v1_coco_uint8.tflite \
 *     ../shared/data/coco-val-100 10 /tmp/armnn
 *   node dist/bench/ssd-armnn.js ../shared/models/ssd_mobilenet_v1_coco_uint8.tflite /tmp/armnn [min score]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { runModel } from '../src/runtime/session.js';

interface Detection {
  box: number[];
  cls: number;
  score: number;
}

interface Reference {
  armnn: string;
  backend: string;
  height: number;
  width: number;
  images: { file: string; boxes: number[]; classes: number[]; scores: number[]; count: number }[];
}

function iou(a: number[], b: number[]): number {
  const inter = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!)) * Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
  const area = (r: number[]) => (r[2]! - r[0]!) * (r[3]! - r[1]!);
  return inter / (area(a) + area(b) - inter);
}

function detections(
  boxes: ArrayLike<number>,
  classes: ArrayLike<number>,
  scores: ArrayLike<number>,
  count: number,
  minScore: number,
): Detection[] {
  return Array.from({ length: count }, (_, i) => ({
    box: Array.from(boxes).slice(4 * i, 4 * i + 4),
    cls: classes[i]!,
    score: scores[i]!,
  })).filter((d) => d.score >= minScore);
}

/** Greedy one-to-one matching in decreasing score order; returns the number matched. */
function matched(ours: Detection[], reference: Detection[]): number {
  const used = new Set<number>();
  let n = 0;
  for (const d of ours) {
    let best = -1;
    let bestIou = 0.5;
    reference.forEach((r, j) => {
      const v = iou(d.box, r.box);
      if (!used.has(j) && r.cls === d.cls && v >= bestIou) [best, bestIou] = [j, v];
    });
    if (best >= 0) {
      used.add(best);
      n++;
    }
  }
  return n;
}

const [modelPath, dir, minScoreArg] = process.argv.slice(2);
if (!modelPath || !dir) throw new Error('usage: node dist/bench/ssd-armnn.js <model.tflite> <armnn-ssd.py output dir> [min score]');
const minScore = Number(minScoreArg ?? 0);
const reference = JSON.parse(readFileSync(join(dir, 'armnn.json'), 'utf8')) as Reference;
const model = await prepareModel(loadModel(modelPath));
const input = JSON.parse(model.metadata['tflite.input']!) as { name: string; scale: number; zeroPoint: number };
const { height: h, width: w } = reference;
let [ourCount, refCount, both, boxError] = [0, 0, 0, 0];
let sameTop = 0;
for (const image of reference.images) {
  const pixels = readFileSync(join(dir, `${image.file}.rgb`));
  const x = new Float32Array(3 * h * w);
  for (let i = 0; i < h * w; i++) for (let c = 0; c < 3; c++) x[c * h * w + i] = input.scale * (pixels[3 * i + c]! - input.zeroPoint);
  const out = await runModel(model, { [input.name]: { dataType: 'float32', dims: [1, 3, h, w], data: x } });
  const [boxes, classes, scores, count] = model.graph.outputs.map((o) => out[o.name]!.data as Float32Array);
  const ours = detections(boxes!, classes!, scores!, count![0]!, minScore);
  const theirs = detections(image.boxes, image.classes, image.scores, image.count, minScore);
  const m = matched(ours, theirs);
  if (ours[0] && theirs[0] && ours[0].cls === theirs[0].cls && iou(ours[0].box, theirs[0].box) >= 0.5) sameTop++;
  boxError = Math.max(boxError, ...(ours[0] && theirs[0] ? ours[0].box.map((v, i) => Math.abs(v - theirs[0]!.box[i]!)) : [0]));
  [ourCount, refCount, both] = [ourCount + ours.length, refCount + theirs.length, both + m];
  console.log(`${image.file}: quantflow ${ours.length}, Arm NN ${theirs.length}, matched ${m}`);
}
const pct = (a: number, b: number) => `${((100 * a) / Math.max(b, 1)).toFixed(1)}%`;
console.log(
  `Arm NN ${reference.armnn} (${reference.backend}), ${reference.images.length} images, detections with score >= ${minScore}: ` +
    `precision ${pct(both, ourCount)} (${both}/${ourCount}), recall ${pct(both, refCount)} (${both}/${refCount}) at IoU 0.5, ` +
    `same top detection on ${sameTop}/${reference.images.length}`,
);
