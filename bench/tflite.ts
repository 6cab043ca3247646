/**
 * Does the exported fully-integer TFLite model compute what quantflow's QDQ simulation and
 * integer executor of the same run compute? Quantizes a model (or reads an existing run
 * folder), exports it, runs the .tflite with an independent TFLite runtime on the first N images
 * of a folder, feeding all three the same integer input, and reports:
 * - classifiers: top-1 of the TFLite file, the QDQ model (its fake-quant simulation) and the executor (with labels), and
 *   top-1 agreement between each pair;
 * - detectors (TFLite_Detection_PostProcess's four outputs): precision and recall of the
 *   TFLite detections and of the QDQ model's against the float model's (IoU ≥ 0.5);
 * - segmenters (an integer class map): pixel agreement and mIoU of the TFLite and QDQ maps
 *   against the float model's;
 * - file sizes: .tflite, the float original, model.qdq.onnx.
 *
 *   npm run bench:tflite -- --model <file> --data <folder> [--profile w8a8-shift] [--calib <folder>]
 *     [--calib-limit 64] [--qft <quantize output folder>] [--limit 5] [--runtime litert|armnn] [--json <file>]
 *
 * Runtimes (both run the file as quantize writes it): `litert` (default), TFLite itself in
 * WebAssembly (bench/litert/runtime.ts, its CPU path is XNNPACK; tens of ms per MobileNet image);
 * `armnn`, Debian's Arm NN with its CpuRef backend (bench/armnn/run_npy.py, python3-pyarmnn;
 * seconds per image; a trailing ARG_MAX, which it refuses, is taken here).
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatTable, percent } from '../src/cli/table.js';
import { imageBatches, imageInputGeometry } from '../src/data/batches.js';
import { loadDataset } from '../src/data/dataset.js';
import type { Preprocess } from '../src/data/preprocess.js';
import { exportTflite } from '../src/export/tflite/export.js';
import { floatTensor, toFloat32 } from '../src/graph/tensor.js';
import type { Model, Node, TensorData } from '../src/graph/types.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { execute } from '../src/npu/executor.js';
import { withTfliteArithmetic } from '../src/npu/arithmetic.js';
import { buildNpuPackage } from '../src/npu/package.js';
import { qdqView } from '../src/npu/qdq-view.js';
import { writeOnnxFile } from '../src/onnx/write.js';
import { dequantizeTensor, quantizeTensor } from '../src/quantization/grid.js';
import { loadProfile, tfliteKernels, type TargetProfile } from '../src/quantization/profile.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import { openSession, runSession } from '../src/runtime/session.js';
import { QuantflowError } from '../src/util/errors.js';
import { writeJsonResult } from '../src/util/fs.js';
import { openLitert, litertVersion } from './litert/runtime.js';
import { readRun } from './run.js';
import {
  int8NpyInput,
  tfliteInput,
  argmaxLast,
  classMapAgreement,
  detections,
  matchDetections,
  nchwToNhwc,
  runArmnnJobs,
  type ArmnnJob,
} from './armnn/agreement.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    data: { type: 'string' },
    profile: { type: 'string', default: 'w8a8-shift' },
    calib: { type: 'string', default: '../shared/data/imagenet-sample-1k' },
    'calib-limit': { type: 'string', default: '64' },
    qft: { type: 'string' },
    limit: { type: 'string', default: '5' },
    'score-threshold': { type: 'string', default: '0.3' },
    python: { type: 'string', default: '/usr/bin/python3' },
    runtime: { type: 'string', default: 'litert' },
    json: { type: 'string' },
  },
});
if (!args.model || !args.data) {
  console.error(
    'usage: npm run bench:tflite -- --model <file> --data <folder> [--profile w8a8-shift] [--calib <folder>] [--calib-limit 64]\n' +
      '  [--qft <quantize output folder> (export that run instead of quantizing)] [--limit 5] [--score-threshold 0.3]\n' +
      '  [--runtime litert|armnn] [--json <file>]',
  );
  process.exit(2);
}

/** The run to export: an existing quantize output folder, or PTQ here. */
async function quantized(float: Model): Promise<{ qdq: Model; profile: TargetProfile; preprocess: Preprocess; qdqBytes: number }> {
  if (args.qft) return readRun(args.qft);
  const profile = loadProfile(args.profile!);
  const r = await quantizeModel(float, await loadDataset(args.calib!), { profile, calibLimit: Number(args['calib-limit']), batch: 4 });
  const path = join(work, 'model.qdq.onnx');
  writeOnnxFile(r.model, path);
  return { qdq: r.model, profile, preprocess: r.preprocess.spec, qdqBytes: statSync(path).size };
}

const work = mkdtempSync(join(tmpdir(), 'qf-bench-tflite-'));

async function main(): Promise<void> {
  const float = await prepareModel(loadModel(args.model!));
  const { qdq, profile, preprocess, qdqBytes } = await quantized(float);
  const pkg = await buildNpuPackage(qdq, profile);
  const bytes = await exportTflite(qdq, profile, { npu: pkg, preprocess });
  const file = join(work, 'model.int8.tflite');
  writeFileSync(file, bytes);

  const data = await loadDataset(args.data!);
  const items = data.items.slice(0, Number(args.limit));
  const inputName = qdq.graph.inputs[0]!.name;
  const grid = qdqView(qdq.graph).quantizedAs.get(inputName)!.grid;
  const geometry = imageInputGeometry(float);
  const argMax = qdq.graph.nodes.find((n) => n.opType === 'ArgMax' && qdq.graph.outputs.some((o) => o.name === n.outputs[0]));
  const feeds: TensorData[] = [];
  const ints: Int32Array[] = [];
  const shape = [1, geometry.channels, geometry.height, geometry.width];
  for await (const b of imageBatches(items, { ...geometry, preprocess, batch: 1 })) {
    const q = quantizeTensor(b.data, grid);
    ints.push(q);
    feeds.push(floatTensor(shape, dequantizeTensor(q, grid)));
  }
  const tflite = args.runtime === 'armnn' ? runArmnn(file, ints, shape, grid, argMax) : await runLitert(bytes, ints, shape, grid);
  const qdqSession = await openSession(qdq, { simulate: true });
  const floatSession = await openSession(float);
  const outputs = tflite.outputs[0]!;
  const detector = outputs.length === 4 && outputs[0]!.shape.length === 3 && outputs[0]!.shape[2] === 4;
  const segmenter = !detector && (argMax !== undefined || qdq.graph.outputs[0]!.dataType === 'int64');
  const values = (t: TensorData) => {
    const v = Float64Array.from(toFloat32(t));
    return t.dims.length === 4 ? nchwToNhwc(v, t.dims) : v;
  };
  const rows: (string | number)[][] = [];
  const result: Record<string, unknown> = {
    model: args.model,
    profile: profile.name,
    run: args.qft ?? null,
    images: ints.length,
    runtime: tflite.runtime,
    sizes: { tflite: bytes.length, float: statSync(args.model!).size, qdq: qdqBytes },
  };
  if (detector || segmenter) {
    const threshold = Number(args['score-threshold']);
    const acc = { tflite: [0, 0, 0], qdq: [0, 0, 0], pixels: [0, 0], miou: [0, 0] };
    for (let k = 0; k < ints.length; k++) {
      const ref = Object.values(await runSession(floatSession, { [inputName]: feeds[k]! })).map(values);
      const sim = Object.values(await runSession(qdqSession, { [inputName]: feeds[k]! })).map(values);
      const tfl = tflite.outputs[k]!.map((o) => (argMax && !tflite.argMaxDone ? argmaxLast(o.data, o.shape.at(-1)!) : o.data));
      if (detector) {
        const dets = (o: ArrayLike<number>[]) => detections(o[0]!, o[1]!, o[2]!, Math.round(o[3]![0]!));
        for (const [name, o] of [
          ['tflite', tfl],
          ['qdq', sim],
        ] as const) {
          const m = matchDetections(dets(o), dets(ref), threshold);
          const a = acc[name];
          [a[0], a[1], a[2]] = [a[0]! + m.matched, a[1]! + m.test, a[2]! + m.reference];
        }
      } else {
        const [t, s] = [classMapAgreement(tfl[0]!, ref[0]!), classMapAgreement(sim[0]!, ref[0]!)];
        acc.pixels = [acc.pixels[0]! + t.pixels / ints.length, acc.pixels[1]! + s.pixels / ints.length];
        acc.miou = [acc.miou[0]! + t.miou / ints.length, acc.miou[1]! + s.miou / ints.length];
      }
    }
    if (detector) {
      for (const name of ['tflite', 'qdq'] as const) {
        const [m, t, r] = acc[name];
        rows.push([
          `${name} vs float: precision / recall (score ≥ ${threshold}, IoU ≥ 0.5)`,
          `${percent(t ? m! / t : 1)} / ${percent(r ? m! / r : 1)}`,
        ]);
      }
      result.detections = { tflite: acc.tflite, qdq: acc.qdq, fields: ['matched', 'test', 'reference'] };
    } else {
      rows.push(['tflite vs float: pixel agreement / mIoU', `${percent(acc.pixels[0]!)} / ${percent(acc.miou[0]!)}`]);
      rows.push(['qdq vs float: pixel agreement / mIoU', `${percent(acc.pixels[1]!)} / ${percent(acc.miou[1]!)}`]);
      result.segmentation = acc;
    }
  } else {
    const classes = outputs[0]!.shape.at(-1)!;
    const offset = classes === 1001 ? 1 : 0;
    // What quantflow predicts the file computes when the profile's own arithmetic is not TFLite's: the run lowered with XNNPACK's.
    const twin = tfliteKernels(profile) ? undefined : await buildNpuPackage(qdq, withTfliteArithmetic(profile, 'xnnpack'));
    const top = { tflite: [] as number[], qdq: [] as number[], executor: [] as number[], twin: [] as number[] };
    for (let k = 0; k < ints.length; k++) {
      top.tflite.push(argmaxLast(tflite.outputs[k]![0]!.data, classes)[0]!);
      top.qdq.push(argmaxLast(values(Object.values(await runSession(qdqSession, { [inputName]: feeds[k]! }))[0]!), classes)[0]!);
      const exec = execute(pkg, { [pkg.inputs[0]!]: ints[k]! });
      top.executor.push(argmaxLast(exec.tensors.get(pkg.outputs[0]!)!, classes)[0]!);
      if (twin) top.twin.push(argmaxLast(execute(twin, { [twin.inputs[0]!]: ints[k]! }).tensors.get(twin.outputs[0]!)!, classes)[0]!);
    }
    const agree = (a: number[], b: number[]) => a.filter((v, i) => v === b[i]).length / a.length;
    const labelled = items.every((i) => i.label !== undefined);
    const accuracy = (t: number[]) => t.filter((v, i) => v - offset === items[i]!.label).length / t.length;
    for (const name of ['tflite', 'qdq', 'executor'] as const) if (labelled) rows.push([`top-1 ${name}`, percent(accuracy(top[name]))]);
    rows.push(['top-1 agreement tflite / qdq', percent(agree(top.tflite, top.qdq))]);
    rows.push(['top-1 agreement tflite / executor', percent(agree(top.tflite, top.executor))]);
    rows.push(['top-1 agreement qdq / executor', percent(agree(top.qdq, top.executor))]);
    if (twin) {
      if (labelled) rows.push(["top-1 executor with XNNPACK's arithmetic", percent(accuracy(top.twin))]);
      rows.push(["top-1 agreement tflite / executor with XNNPACK's arithmetic", percent(agree(top.tflite, top.twin))]);
    }
    result.top1 = labelled ? { tflite: accuracy(top.tflite), qdq: accuracy(top.qdq), executor: accuracy(top.executor) } : null;
    result.agreement = {
      tfliteQdq: agree(top.tflite, top.qdq),
      tfliteExecutor: agree(top.tflite, top.executor),
      qdqExecutor: agree(top.qdq, top.executor),
      ...(twin && { tfliteXnnpackExecutor: agree(top.tflite, top.twin) }),
    };
    if (twin && labelled) result.top1XnnpackExecutor = accuracy(top.twin);
  }
  const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
  const sizes = result.sizes as Record<string, number>;
  rows.push(['size .tflite / float original / QDQ', `${mb(sizes.tflite!)} / ${mb(sizes.float!)} / ${mb(sizes.qdq!)}`]);
  rows.push(['TFLite runtime', `${tflite.runtime.name}, ${tflite.runtime.secondsPerImage.toFixed(2)} s/image`]);
  console.log(`${args.model} ${profile.name}${args.qft ? ` (run ${args.qft})` : ''}, ${ints.length} images of ${args.data}`);
  console.log(formatTable([['figure', 'value'], ...rows]));
  if (args.json) writeJsonResult(args.json, result);
}

/** What the TFLite runtime returned for each image, and which runtime it was. */
interface TfliteRun {
  outputs: { data: ArrayLike<number>; shape: number[] }[][];
  runtime: { name: string; secondsPerImage: number };
  /** The class map came out of the file's own ARG_MAX (Arm NN 22 refuses it: there the bench takes it). */
  argMaxDone: boolean;
}

/** Arm NN (CpuRef) on the int8 file; a trailing ARG_MAX is cut off and taken here (ties to the first, as ARG_MAX). */
function runArmnn(file: string, ints: Int32Array[], shape: number[], grid: { qmin: number }, argMax: Node | undefined): TfliteRun {
  const cut = argMax ? { outputs: [argMax.inputs[0]!] } : {};
  const jobs: ArmnnJob[] = ints.map((q, k) => {
    const path = join(work, `input${k}.npy`);
    writeFileSync(path, int8NpyInput(q, shape, grid));
    return { model: file, inputs: [path], out: join(work, `out${k}`), ...cut };
  });
  const started = performance.now();
  const armnn = runArmnnJobs(jobs, join(work, 'jobs.json'), args.python);
  const seconds = (performance.now() - started) / 1000 / jobs.length;
  const { library, debian } = armnn[0]!.manifest.armnn;
  return {
    outputs: armnn.map((r) => r.outputs),
    runtime: { name: `Arm NN ${library} (Debian ${debian}), CpuRef`, secondsPerImage: seconds },
    argMaxDone: false,
  };
}

/** LiteRT (XNNPACK) on the exported file as quantize writes it (int8 input and output, ARG_MAX's int64 class map). */
async function runLitert(bytes: Uint8Array, ints: Int32Array[], shape: number[], grid: { qmin: number }): Promise<TfliteRun> {
  const model = await openLitert(bytes);
  const nhwc = [shape[0]!, shape[2]!, shape[3]!, shape[1]!];
  const outputs: TfliteRun['outputs'] = [];
  const started = performance.now();
  for (const q of ints) outputs.push(await model.run([{ data: tfliteInput(q, shape, grid), shape: nhwc, dtype: 'int8' }]));
  const seconds = (performance.now() - started) / 1000 / ints.length;
  model.delete();
  return {
    outputs,
    runtime: { name: `LiteRT ${litertVersion()} (@litertjs/core, WebAssembly, XNNPACK)`, secondsPerImage: seconds },
    argMaxDone: true,
  };
}

main()
  .catch((e: unknown) => {
    console.error(e instanceof QuantflowError ? e.message : e);
    process.exitCode = e instanceof QuantflowError ? 2 : 1;
  })
  .finally(() => rmSync(work, { recursive: true, force: true }));
