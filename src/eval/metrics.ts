/**
 * Figures that compare a model's outputs with a reference's (the float model's), as pure
 * accumulators: each `add` takes one image (or one batch) and `result` aggregates over
 * everything added, from summed counts, so that a figure over many images is not a mean of
 * per-image ratios.
 */

/** SQNR, cosine similarity and max abs error of `test` against `ref`, over all elements added. */
export interface ErrorFigures {
  /** 10·log10(Σ ref² / Σ (ref − test)²); +Infinity when the outputs are identical. */
  sqnrDb: number;
  /** Cosine of the angle between the two outputs as flat vectors; 1 when both are zero. */
  cosine: number;
  maxAbsError: number;
}

export class ErrorAccumulator {
  private signal = 0;
  private noise = 0;
  private dot = 0;
  private testNorm = 0;
  private maxAbs = 0;

  add(ref: ArrayLike<number>, test: ArrayLike<number>): void {
    if (ref.length !== test.length) throw new Error(`output lengths differ: ${ref.length} vs ${test.length}`);
    for (let i = 0; i < ref.length; i++) {
      const r = ref[i]!;
      const t = test[i]!;
      const d = r - t;
      this.signal += r * r;
      this.noise += d * d;
      this.dot += r * t;
      this.testNorm += t * t;
      if (Math.abs(d) > this.maxAbs) this.maxAbs = Math.abs(d);
    }
  }

  result(): ErrorFigures {
    const norms = Math.sqrt(this.signal * this.testNorm);
    return {
      sqnrDb: this.noise === 0 ? Infinity : 10 * Math.log10(this.signal / this.noise),
      cosine: norms === 0 ? (this.signal === this.testNorm ? 1 : 0) : this.dot / norms,
      maxAbsError: this.maxAbs,
    };
  }
}

/**
 * 1 when a classifier's scores carry a leading background class (TF's 1001-way ImageNet
 * classifiers scored against 0..999 labels), else 0; `maxLabel` is −1 without labels.
 */
export function backgroundClass(classes: number, maxLabel: number): number {
  return classes === 1001 && maxLabel >= 0 && maxLabel < 1000 ? 1 : 0;
}

/** Index of the largest of `scores[from .. from + count)`, relative to `from`; the first on ties. */
export function argmax(scores: ArrayLike<number>, from = 0, count = scores.length - from): number {
  let best = 0;
  for (let c = 1; c < count; c++) if (scores[from + c]! > scores[from + best]!) best = c;
  return best;
}

/** Indices of the `k` largest of `scores[from .. from + count)`, relative to `from`, best first (lower index first on ties). */
export function topK(scores: ArrayLike<number>, from: number, count: number, k: number): number[] {
  const best: number[] = [];
  for (let c = 0; c < count; c++) {
    const v = scores[from + c]!;
    if (best.length === k) {
      if (v <= scores[from + best[k - 1]!]!) continue;
      best.pop();
    }
    let i = best.length;
    while (i > 0 && scores[from + best[i - 1]!]! < v) i--;
    best.splice(i, 0, c);
  }
  return best;
}

/** Classification: how often the quantized top-1 is the float top-1, and top-1/top-5 against labels where images have them. */
export interface ClassifyFigures {
  /** Fraction of images whose top-1 class is the float model's. */
  top1Agreement: number;
  /** Images with a label; top1/top5 are over these. */
  labelled: number;
  /** Against the labels (fractions in 0..1), float and quantized; absent when no image is labelled. */
  labels?: { float: { top1: number; top5: number }; quantized: { top1: number; top5: number } };
  /** 1 when the first score is a background class dropped before comparing with labels (1001-way ImageNet models). */
  labelOffset: number;
}

export class ClassifyAccumulator {
  private n = 0;
  private agree = 0;
  private labelled = 0;
  private hits = { float: { top1: 0, top5: 0 }, quantized: { top1: 0, top5: 0 } };

  /**
   * @param classes scores per image
   * @param labelOffset columns before label 0 (1 for a background class)
   */
  constructor(
    private readonly classes: number,
    private readonly labelOffset = 0,
  ) {}

  /** One image: its float and quantized scores (`classes` each) and its label, if any. */
  add(ref: ArrayLike<number>, test: ArrayLike<number>, label?: number): void {
    this.n++;
    if (argmax(ref, 0, this.classes) === argmax(test, 0, this.classes)) this.agree++;
    if (label === undefined) return;
    this.labelled++;
    const count = this.classes - this.labelOffset;
    for (const [side, scores] of [
      ['float', ref],
      ['quantized', test],
    ] as const) {
      const top = topK(scores, this.labelOffset, count, 5);
      if (top[0] === label) this.hits[side].top1++;
      if (top.includes(label)) this.hits[side].top5++;
    }
  }

  result(): ClassifyFigures {
    const l = this.labelled;
    const frac = (h: { top1: number; top5: number }) => ({ top1: h.top1 / l, top5: h.top5 / l });
    return {
      top1Agreement: this.n ? this.agree / this.n : 0,
      labelled: l,
      ...(l ? { labels: { float: frac(this.hits.float), quantized: frac(this.hits.quantized) } } : {}),
      labelOffset: this.labelOffset,
    };
  }
}

/** The class of each pixel of one image's [C, H, W] scores (argmax over C; the lowest class on ties). */
export function classMap(scores: ArrayLike<number>, classes: number, pixels: number): Int32Array {
  const out = new Int32Array(pixels);
  for (let p = 0; p < pixels; p++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (scores[c * pixels + p]! > scores[best * pixels + p]!) best = c;
    out[p] = best;
  }
  return out;
}

/** Segmentation: the quantized class map against the float one. */
export interface SegmentFigures {
  /** Fraction of pixels where the classes agree. */
  pixelAgreement: number;
  /** Mean over classes present in either map of Σ intersection / Σ union. */
  meanIou: number;
  /** Per class present: its IoU. */
  classIou: Record<string, number>;
}

export class SegmentAccumulator {
  private agree = 0;
  private pixels = 0;
  private readonly intersection = new Map<number, number>();
  private readonly union = new Map<number, number>();

  /** One or more class maps of equal size. */
  add(ref: ArrayLike<number>, test: ArrayLike<number>): void {
    if (ref.length !== test.length) throw new Error(`class maps differ in size: ${ref.length} vs ${test.length}`);
    const bump = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);
    for (let i = 0; i < ref.length; i++) {
      const r = Number(ref[i]);
      const t = Number(test[i]);
      this.pixels++;
      if (r === t) {
        this.agree++;
        bump(this.intersection, r);
        bump(this.union, r);
      } else {
        bump(this.union, r);
        bump(this.union, t);
      }
    }
  }

  result(): SegmentFigures {
    const classes = [...this.union.keys()].sort((a, b) => a - b);
    const classIou = Object.fromEntries(classes.map((c) => [String(c), (this.intersection.get(c) ?? 0) / this.union.get(c)!]));
    const ious = Object.values(classIou);
    return {
      pixelAgreement: this.pixels ? this.agree / this.pixels : 0,
      meanIou: ious.length ? ious.reduce((s, v) => s + v, 0) / ious.length : 0,
      classIou,
    };
  }
}

/** Dense maps: IoU of the two maps thresholded at `threshold` (value ≥ threshold is in). */
export interface DenseFigures {
  threshold: number;
  /** Σ |ref ∧ test| / Σ |ref ∨ test|; 1 when neither map has any element at or above the threshold. */
  iou: number;
}

export class DenseAccumulator {
  private intersection = 0;
  private union = 0;

  constructor(private readonly threshold: number) {}

  add(ref: ArrayLike<number>, test: ArrayLike<number>): void {
    const t = this.threshold;
    for (let i = 0; i < ref.length; i++) {
      const a = ref[i]! >= t;
      const b = test[i]! >= t;
      if (a && b) this.intersection++;
      if (a || b) this.union++;
    }
  }

  result(): DenseFigures {
    return { threshold: this.threshold, iou: this.union ? this.intersection / this.union : 1 };
  }
}

/** One detection: a box as [ymin, xmin, ymax, xmax], its score, and its class when the model has classes. */
export interface Detection {
  box: [number, number, number, number];
  score: number;
  cls?: number;
  /** Anchor index, for detections compared anchor by anchor: only the same anchor can match. */
  anchor?: number;
}

/** Intersection over union of two [ymin, xmin, ymax, xmax] boxes (corners in either order). */
export function boxIou(a: Detection['box'], b: Detection['box']): number {
  const [ay0, ay1] = [Math.min(a[0], a[2]), Math.max(a[0], a[2])];
  const [ax0, ax1] = [Math.min(a[1], a[3]), Math.max(a[1], a[3])];
  const [by0, by1] = [Math.min(b[0], b[2]), Math.max(b[0], b[2])];
  const [bx0, bx1] = [Math.min(b[1], b[3]), Math.max(b[1], b[3])];
  const ih = Math.max(0, Math.min(ay1, by1) - Math.max(ay0, by0));
  const iw = Math.max(0, Math.min(ax1, bx1) - Math.max(ax0, bx0));
  const inter = ih * iw;
  const union = (ay1 - ay0) * (ax1 - ax0) + (by1 - by0) * (bx1 - bx0) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * How many of `test`'s detections match one of `ref`'s: greedily, highest test score first,
 * each takes the unmatched reference detection of highest IoU ≥ `iouThreshold` (of the same
 * class when both have classes, of the same anchor when both have anchors).
 */
export function matchDetections(ref: Detection[], test: Detection[], iouThreshold = 0.5): number {
  const used = new Array<boolean>(ref.length).fill(false);
  let matched = 0;
  for (const d of [...test].sort((a, b) => b.score - a.score)) {
    let best = -1;
    let bestIou = iouThreshold;
    ref.forEach((r, i) => {
      if (used[i]) return;
      if (d.cls !== undefined && r.cls !== undefined && d.cls !== r.cls) return;
      if (d.anchor !== undefined && r.anchor !== undefined && d.anchor !== r.anchor) return;
      const iou = boxIou(r.box, d.box);
      if (iou >= bestIou) {
        bestIou = iou;
        best = i;
      }
    });
    if (best >= 0) {
      used[best] = true;
      matched++;
    }
  }
  return matched;
}

/** Detection: the quantized model's detections against the float model's, from counts summed over images. */
export interface DetectFigures {
  scoreThreshold: number;
  iouThreshold: number;
  /** matched / quantized detections (1 when the quantized model detects nothing). */
  precision: number;
  /** matched / float detections (1 when the float model detects nothing). */
  recall: number;
  matched: number;
  floatDetections: number;
  quantizedDetections: number;
}

export class DetectAccumulator {
  private matched = 0;
  private refCount = 0;
  private testCount = 0;

  constructor(
    private readonly scoreThreshold: number,
    private readonly iouThreshold = 0.5,
  ) {}

  /** One image's detections; those scoring below the threshold are dropped first. */
  add(ref: Detection[], test: Detection[]): void {
    const keep = (ds: Detection[]) => ds.filter((d) => d.score >= this.scoreThreshold);
    const r = keep(ref);
    const t = keep(test);
    this.refCount += r.length;
    this.testCount += t.length;
    this.matched += matchDetections(r, t, this.iouThreshold);
  }

  result(): DetectFigures {
    return {
      scoreThreshold: this.scoreThreshold,
      iouThreshold: this.iouThreshold,
      precision: this.testCount ? this.matched / this.testCount : 1,
      recall: this.refCount ? this.matched / this.refCount : 1,
      matched: this.matched,
      floatDetections: this.refCount,
      quantizedDetections: this.testCount,
    };
  }
}
