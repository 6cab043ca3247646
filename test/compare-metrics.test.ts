import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createGraph, makeNode, attr } from '../src/graph/graph.js';
import type { DataType, Dim, Model } from '../src/graph/types.js';
import {
  backgroundClass,
  boxIou,
  classMap,
  ClassifyAccumulator,
  DenseAccumulator,
  DetectAccumulator,
  ErrorAccumulator,
  matchDetections,
  SegmentAccumulator,
  type Detection,
} from '../src/eval/metrics.js';
import { outputKind, planTasks } from '../src/eval/tasks.js';
import { QuantflowError } from '../src/util/errors.js';

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) < eps, `${a} vs ${b}`);

describe('error figures', () => {
  it('SQNR, cosine and max abs error of small vectors', () => {
    const acc = new ErrorAccumulator();
    acc.add([3, 4], [3, 3]);
    const r = acc.result();
    // Σ ref² = 25, Σ err² = 1; ref·test = 21, |ref| = 5, |test| = √18.
    close(r.sqnrDb, 10 * Math.log10(25));
    close(r.cosine, 21 / (5 * Math.sqrt(18)));
    assert.equal(r.maxAbsError, 1);
  });

  it('sums over every add before taking the ratio', () => {
    const acc = new ErrorAccumulator();
    acc.add([1, 0], [1, 0]);
    acc.add([0, 3], [0, 1]);
    // Signal 1 + 9 = 10, noise 4: 10·log10(2.5); a mean of per-call SQNRs would be infinite.
    close(acc.result().sqnrDb, 10 * Math.log10(2.5));
    assert.equal(acc.result().maxAbsError, 2);
  });

  it('identical outputs have infinite SQNR and cosine 1', () => {
    const acc = new ErrorAccumulator();
    acc.add([1, -2], [1, -2]);
    assert.deepEqual(acc.result(), { sqnrDb: Infinity, cosine: 1, maxAbsError: 0 });
  });
});

describe('classification figures', () => {
  it('top-1 agreement, and top-1/top-5 against labels where images have them', () => {
    const acc = new ClassifyAccumulator(3);
    acc.add([1, 2, 3], [1, 3, 2], 2); // float says 2 (right), quantized 1
    acc.add([3, 2, 1], [3, 2, 1], 1); // both say 0, label 1
    acc.add([0, 5, 1], [0, 5, 1]); // unlabelled: agreement only
    const r = acc.result();
    close(r.top1Agreement, 2 / 3);
    assert.equal(r.labelled, 2);
    assert.deepEqual(r.labels, { float: { top1: 0.5, top5: 1 }, quantized: { top1: 0, top5: 1 } });
  });

  it('drops a background column before comparing with labels', () => {
    const acc = new ClassifyAccumulator(4, 1);
    acc.add([9, 0, 1, 0], [9, 0, 1, 0], 1);
    assert.deepEqual(acc.result().labels!.float, { top1: 1, top5: 1 });
  });
});

describe('segmentation figures', () => {
  it('class map of [C, H, W] scores, the lowest class on ties', () => {
    assert.deepEqual([...classMap([1, 0, 5, 0, 2, 5], 2, 3)], [0, 1, 0]);
  });

  it('pixel agreement and mean IoU over the classes present in either map', () => {
    const acc = new SegmentAccumulator();
    acc.add([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]);
    const r = acc.result();
    close(r.pixelAgreement, 4 / 6);
    // Class 0: I 1, U 3; class 1: I 2, U 3; class 2: I 1, U 2.
    assert.deepEqual(r.classIou, { 0: 1 / 3, 1: 2 / 3, 2: 1 / 2 });
    close(r.meanIou, 0.5);
  });

  it('aggregates intersections and unions over images, not per-image IoUs', () => {
    const acc = new SegmentAccumulator();
    acc.add([0, 0], [0, 1]);
    acc.add(new BigInt64Array([1n, 1n]) as unknown as number[], new BigInt64Array([1n, 1n]) as unknown as number[]);
    // Class 0: 1/2; class 1: I 2, U 3. The mean of per-image mIoUs would be 0.625.
    close(acc.result().meanIou, (1 / 2 + 2 / 3) / 2);
    close(acc.result().pixelAgreement, 3 / 4);
  });
});

describe('dense-map figures', () => {
  it('IoU of the maps thresholded at 0.3', () => {
    const acc = new DenseAccumulator(0.3);
    acc.add([0.1, 0.5, 0.9, 0.3], [0.4, 0.2, 0.8, 0.29]);
    // Float {1, 2, 3}, quantized {0, 2}: I 1, U 4.
    assert.deepEqual(acc.result(), { threshold: 0.3, iou: 0.25 });
  });

  it('two empty maps agree', () => {
    const acc = new DenseAccumulator(0.5);
    acc.add([0.1], [0.2]);
    assert.equal(acc.result().iou, 1);
  });
});

describe('detection figures', () => {
  const det = (box: Detection['box'], score: number, cls?: number): Detection => ({ box, score, ...(cls === undefined ? {} : { cls }) });

  it('IoU of boxes', () => {
    close(boxIou([0, 0, 2, 2], [1, 1, 3, 3]), 1 / 7);
    close(boxIou([0, 0, 2, 2], [0, 0, 2, 1]), 0.5);
    assert.equal(boxIou([0, 0, 1, 1], [2, 2, 3, 3]), 0);
  });

  it('precision and recall at IoU 0.5 from counts summed over images', () => {
    const acc = new DetectAccumulator(0.3);
    acc.add(
      [det([0, 0, 10, 10], 0.9, 1), det([20, 20, 30, 30], 0.8, 1), det([50, 50, 60, 60], 0.7, 2)],
      [
        det([0, 0, 10, 9], 0.95, 1), // IoU 0.9 with the first: matched
        det([20, 20, 30, 30], 0.9, 2), // same box, other class: not matched
        det([50, 50, 60, 60], 0.2, 2), // below the score threshold: dropped
        det([100, 100, 110, 110], 0.6, 1), // nothing there
      ],
    );
    let r = acc.result();
    assert.deepEqual([r.matched, r.floatDetections, r.quantizedDetections], [1, 3, 3]);
    close(r.precision, 1 / 3);
    close(r.recall, 1 / 3);
    acc.add([det([0, 0, 4, 4], 0.5)], [det([0, 0, 4, 2], 0.5)]); // IoU exactly 0.5 counts
    r = acc.result();
    assert.deepEqual([r.matched, r.floatDetections, r.quantizedDetections, r.precision, r.recall], [2, 4, 4, 0.5, 0.5]);
  });

  it('matches greedily by score, each reference once', () => {
    // The higher-scoring detection takes the reference although the other overlaps it more.
    assert.equal(matchDetections([det([0, 0, 10, 10], 1)], [det([0, 0, 10, 8], 0.9), det([0, 0, 10, 10], 0.5)]), 1);
    assert.equal(matchDetections([det([0, 0, 10, 10], 1), det([0, 0, 10, 10], 1)], [det([0, 0, 10, 8], 0.9), det([0, 0, 10, 10], 0.5)]), 2);
  });

  it('anchor-by-anchor detections match only the same anchor', () => {
    const a = (anchor: number): Detection => ({ box: [0, 0, 1, 1], score: 1, anchor });
    assert.equal(matchDetections([a(1), a(2)], [a(2), a(3)]), 1);
  });
});

function modelWithOutputs(outputs: { name: string; dataType?: DataType; shape: Dim[] }[]): Model {
  const g = createGraph('outputs');
  g.inputs.push({ name: 'x', dataType: 'float32', shape: ['N', 3, 8, 8] });
  for (const o of outputs) {
    g.outputs.push({ name: o.name, dataType: o.dataType ?? 'float32', shape: o.shape });
    g.nodes.push(makeNode('Identity', ['x'], [o.name]));
  }
  return { graph: g, opset: 17, producerName: 'test', metadata: {} };
}

describe('task detection', () => {
  const kind = (shape: Dim[], dataType: DataType = 'float32') => outputKind({ name: 'y', dataType, shape });

  it('reads the kind from type and shape', () => {
    assert.equal(kind(['N', 1000]), 'classify');
    assert.equal(kind(['N', 1000, 1, 1]), 'classify');
    assert.equal(kind(['N', 21, 65, 65]), 'segment');
    assert.equal(kind(['N', 65, 65], 'int64'), 'segment');
    assert.equal(kind(['N', 1, 65, 65], 'int64'), 'segment');
    assert.equal(kind(['N', 1, 'h', 'w']), 'dense');
    assert.equal(kind(['N', 896, 16]), 'values');
    assert.equal(kind(['N', 896, 1]), 'values');
    assert.equal(kind(['N', 1]), 'values');
    assert.equal(kind(['N', 10], 'int64'), 'values');
  });

  it("finds TFLite_Detection_PostProcess's four outputs by position and shape", () => {
    const m = modelWithOutputs([
      { name: 'boxes', shape: [1, 10, 4] },
      { name: 'classes', shape: [1, 10] },
      { name: 'scores', shape: [1, 10] },
      { name: 'count', shape: [1] },
    ]);
    const plan = planTasks(m);
    assert.deepEqual(plan.detection, { kind: 'postprocess', boxes: 0, classes: 1, scores: 2, count: 3 });
    assert.deepEqual(
      plan.outputs.map((o) => o.kind),
      ['detect', 'detect', 'detect', 'detect'],
    );
  });

  it('finds NonMaxSuppression and its inputs', () => {
    const m = modelWithOutputs([{ name: 'selected', dataType: 'int64', shape: ['K', 3] }]);
    m.graph.nodes = [makeNode('NonMaxSuppression', ['b', 's'], ['selected'], { center_point_box: attr.int(1) })];
    const plan = planTasks(m);
    assert.deepEqual(plan.detection, {
      kind: 'nms',
      node: m.graph.nodes[0]!.name,
      boxes: 'b',
      scores: 's',
      selected: 'selected',
      centerPointBox: true,
    });
    assert.equal(plan.outputs[0]!.kind, 'detect');
  });

  it('takes raw box and score outputs by name or position', () => {
    const m = modelWithOutputs([
      { name: 'regressors', shape: [1, 896, 16] },
      { name: 'classificators', shape: [1, 896, 1] },
    ]);
    const plan = planTasks(m, { boxes: 'regressors', scores: '1' });
    assert.deepEqual(plan.detection, { kind: 'anchors', boxes: 0, scores: 1, boxFormat: 'cxcywh' });
    assert.throws(() => planTasks(m, { boxes: 'regressors' }), /needs both --boxes <output> and --scores <output>/);
    assert.throws(
      () => planTasks(m, { boxes: 'nope', scores: '1' }),
      /--boxes 'nope' is not an output of the model \(outputs: regressors, classificators\)/,
    );
    assert.throws(() => planTasks(m, { boxes: '1', scores: '0' }), /--boxes 'classificators' must have shape \[N, anchors, 4 or more\]/);
  });

  it('--task overrides the kind of the outputs it fits and refuses when it fits none', () => {
    const m = modelWithOutputs([
      { name: 'heat', shape: ['N', 17, 64, 48] },
      { name: 'logits', shape: ['N', 10] },
    ]);
    assert.deepEqual(
      planTasks(m).outputs.map((o) => o.kind),
      ['segment', 'classify'],
    );
    assert.deepEqual(
      planTasks(m, { task: 'dense' }).outputs.map((o) => o.kind),
      ['dense', 'classify'],
    );
    assert.throws(
      () => planTasks(modelWithOutputs([{ name: 'logits', shape: ['N', 10] }]), { task: 'segment' }),
      (e: unknown) => {
        assert.ok(e instanceof QuantflowError);
        assert.equal(e.message, '--task segment fits no output of the model (logits float32 [N, 10])');
        return true;
      },
    );
    assert.throws(() => planTasks(m, { task: 'detect' }), /no detection outputs found .*--boxes <output> --scores <output>/);
  });
});

describe('backgroundClass', () => {
  it('is 1 only for 1001 scores against labels 0..999', () => {
    assert.deepEqual(
      [
        backgroundClass(1001, 999),
        backgroundClass(1001, 0),
        backgroundClass(1001, 1000),
        backgroundClass(1000, 5),
        backgroundClass(1001, -1),
      ],
      [1, 1, 0, 0, 0],
    );
  });
});
