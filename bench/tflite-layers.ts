/**
 * Where does an exported .tflite part from quantflow's integer executor? Quantizes a model
 * (minmax, no GPTQ), exports it, runs a TFLite runtime on a few images fetching every package
 * tensor (LiteRT, the default: the file exported with every layer output as a further output;
 * Arm NN's CpuRef with `--runtime armnn`: the file cut at each tensor by name), and
 * prints per layer output: equal integers, largest |diff| (LSB) and mean diff (executor −
 * runtime) for the executor end to end; each layer run on the runtime's own inputs (the
 * disagreement a layer adds by itself); the same run lowered with XNNPACK's rounding (float32
 * requantization, profile tflite-int8-xnnpack's), isolated and end to end.
 *
 *   npm run bench:tflite-layers -- --model <file> --data <folder> [--profile tflite-int8]
 *     [--calib-limit 16] [--run <quantize output folder> (that run instead of PTQ here)] [--limit 1] [--runtime litert|armnn]
 *
 * Arm NN's CpuRef takes ≈10 s per MobileNetV2 image. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { imageBatches, imageInputGeometry } from '../src/data/batches.js';
import { loadDataset } from '../src/data/dataset.js';
import { exportTflite } from '../src/export/tflite/export.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { execute, executeLayer } from '../src/npu/executor.js';
import { withTfliteArithmetic } from '../src/npu/arithmetic.js';
import { buildNpuPackage } from '../src/npu/package.js';
import { quantizeTensor } from '../src/quantization/grid.js';
import { loadProfile, type TargetProfile } from '../src/quantization/profile.js';
import type { Model } from '../src/graph/types.js';
import type { Preprocess } from '../src/data/preprocess.js';
import { readRun } from './run.js';
import { quantizeModel } from '../src/quantization/quantize.js';
import { int8NpyInput, runArmnnJobs, tfliteInput, type ArmnnJob } from './armnn/agreement.js';
import { openLitert } from './litert/runtime.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    data: { type: 'string' },
    profile: { type: 'string', default: 'tflite-int8' },
    calib: { type: 'string', default: '../shared/data/imagenet-sample-1k' },
    'calib-limit': { type: 'string', default: '16' },
    limit: { type: 'string', default: '1' },
    python: { type: 'string', default: '/usr/bin/python3' },
    runtime: { type: 'string', default: 'litert' },
    run: { type: 'string' },
  },
});

const work = mkdtempSync(join(tmpdir(), 'qf-tflite-layers-'));

/** PTQ of the model here (minmax, no GPTQ) when no run folder is given. */
async function quantizeHere(float: Model): Promise<{ qdq: Model; profile: TargetProfile; preprocess: Preprocess }> {
  const profile = loadProfile(args.profile!);
  const r = await quantizeModel(float, await loadDataset(args.calib!), {
    profile,
    calibLimit: Number(args['calib-limit']),
    calibration: 'minmax',
    gptq: false,
    // A model whose batch is fixed at 1 (BlazeFace's ONNX) takes one image at a time.
    batch: float.graph.inputs[0]!.shape?.[0] === 1 ? 1 : 4,
  });
  return { qdq: r.model, profile, preprocess: r.preprocess.spec };
}

async function main(): Promise<void> {
  const float = await prepareModel(loadModel(args.model!));
  const r = args.run ? readRun(args.run) : await quantizeHere(float);
  const profile = r.profile;
  const pkg = await buildNpuPackage(r.qdq, profile);
  // The same run requantized as XNNPACK does (float32, one rounding), whatever the profile's rounding.
  const xnnpack = await buildNpuPackage(r.qdq, withTfliteArithmetic(profile, 'xnnpack'));
  const xnnpackLayers = new Map(xnnpack.layers.map((l) => [l.name, l]));
  const names = pkg.layers.map((l) => l.output);
  const data = await loadDataset(args.data!);
  const geometry = imageInputGeometry(float);
  const input = pkg.inputs[0]!;
  const grid = pkg.tensors[input]!.grid;
  const shape = [1, geometry.channels, geometry.height, geometry.width];
  const ints: Int32Array[] = [];
  for await (const b of imageBatches(data.items.slice(0, Number(args.limit)), { ...geometry, preprocess: r.preprocess, batch: 1 }))
    ints.push(quantizeTensor(b.data, grid));
  const runs = ints.map((q) => execute(pkg, { [input]: q }));
  // Each layer output as the runtime computed it, int8 NHWC as the file stores it.
  const fetched: ArrayLike<number>[][] = [];
  if (args.runtime === 'armnn') {
    const file = join(work, 'model.int8.tflite');
    writeFileSync(file, await exportTflite(r.qdq, profile, { npu: pkg, preprocess: r.preprocess }));
    const jobs: ArmnnJob[] = ints.map((q, k) => {
      const path = join(work, `input${k}.npy`);
      writeFileSync(path, int8NpyInput(q, shape, grid));
      return { model: file, inputs: [path], out: join(work, `out${k}`), outputs: names };
    });
    for (const run of runArmnnJobs(jobs, join(work, 'jobs.json'), args.python)) fetched.push(run.outputs.map((o) => o.data));
  } else {
    const model = await openLitert(await exportTflite(r.qdq, profile, { npu: pkg, preprocess: r.preprocess, probes: names }));
    const nhwc = [shape[0]!, shape[2]!, shape[3]!, shape[1]!];
    for (const q of ints) {
      const out = await model.run([{ data: tfliteInput(q, shape, grid), shape: nhwc, dtype: 'int8' }]);
      fetched.push(out.slice(out.length - names.length).map((o) => o.data));
    }
    model.delete();
  }
  const xnnpackRuns = ints.map((q) => execute(xnnpack, { [input]: q }));
  for (let k = 0; k < ints.length; k++) {
    // The runtime's tensors in package layout and integers: each layer is then run on the runtime's own inputs.
    const theirs = new Map<string, Int32Array>([[input, runs[k]!.tensors.get(input)!]]);
    names.forEach((name, j) => {
      const info = pkg.tensors[name]!;
      const offset = info.grid.qmin === 0 ? 128 : 0;
      theirs.set(
        name,
        Int32Array.from(nhwcToNchw(fetched[k]![j]!, info.shape), (v) => v + offset),
      );
    });
    console.log(
      `image ${k}: layer, output, chained (executor end to end) and isolated (on the runtime's inputs), isolated and chained with XNNPACK's rounding (profile tflite-int8-xnnpack): equal %, max |diff| LSB, mean diff`,
    );
    for (const l of pkg.layers) {
      const want = theirs.get(l.output)!;
      const chained = stats(runs[k]!.tensors.get(l.output)!, want);
      const isolated = stats(
        executeLayer(
          pkg,
          l,
          l.inputs.map((i) => theirs.get(i)!),
        ).output,
        want,
      );
      const twin = xnnpackLayers.get(l.name);
      const rounded =
        twin && twin.output === l.output
          ? stats(
              executeLayer(
                xnnpack,
                twin,
                twin.inputs.map((i) => theirs.get(i)!),
              ).output,
              want,
            )
          : '';
      const xnnpackChained = stats(xnnpackRuns[k]!.tensors.get(l.output)!, want);
      console.log(`${l.op.padEnd(14)} ${l.output.slice(0, 58).padEnd(58)} ${chained}   ${isolated}   ${rounded}   ${xnnpackChained}`);
    }
  }
}

function nhwcToNchw(values: ArrayLike<number>, shape: number[]): ArrayLike<number> {
  if (shape.length !== 4) return values;
  const [n, c, h, w] = shape as [number, number, number, number];
  const out = new Float64Array(n * c * h * w);
  for (let b = 0; b < n; b++)
    for (let ch = 0; ch < c; ch++) for (let p = 0; p < h * w; p++) out[(b * c + ch) * h * w + p] = values[(b * h * w + p) * c + ch]!;
  return out;
}

function stats(ours: Int32Array, theirs: Int32Array): string {
  let equal = 0;
  let max = 0;
  let sum = 0;
  for (let i = 0; i < ours.length; i++) {
    const d = ours[i]! - theirs[i]!;
    if (d === 0) equal++;
    max = Math.max(max, Math.abs(d));
    sum += d;
  }
  return `${((100 * equal) / ours.length).toFixed(2).padStart(6)}% ${String(max).padStart(3)} ${(sum / ours.length).toFixed(3).padStart(7)}`;
}

main().finally(() => rmSync(work, { recursive: true, force: true }));
