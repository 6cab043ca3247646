/**
 * Does quantflow's float import of a TFLite model compute what the original computes? Runs
 * the original with Arm NN (CpuRef, via bench/armnn/run_tflite.py and Debian's
 * python3-pyarmnn) and the float import with onnxruntime on the very same input tensors, and
 * reports per output:
 * - class maps (integer outputs): pixel agreement and mean IoU over the classes present;
 * - float outputs: max abs error relative to Arm NN's range; top-1 agreement for [1, K];
 * - TFLite_Detection_PostProcess's four outputs: Arm NN's detections matched by quantflow's
 *   (same class, IoU ≥ 0.5, score ≥ --score-threshold), as precision and recall.
 *
 *   npm run bench:armnn -- --model <tflite> --data <folder> --limit N [--outputs t1,t2]
 *
 * --outputs names tensors to fetch instead of the model's outputs (Arm NN 20.08 refuses
 * ARG_MAX, for one): both runtimes then run the same cut-down copy of the model, and when the
 * original imports into quantflow, its integer class maps are also compared with the argmax
 * of Arm NN's 4-D outputs of the same size. A float import of a quantized model differs from
 * the integer original by design.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatTable, percent } from '../src/cli/table.js';
import type { Model, TensorData } from '../src/graph/types.js';
import { toFloat32 } from '../src/graph/tensor.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import type { TfliteInputInfo } from '../src/import/tflite/import.js';
import { openSession, runSession } from '../src/runtime/session.js';
import { QuantflowError } from '../src/util/errors.js';
import { writeJsonResult } from '../src/util/fs.js';
import {
  argmaxLast,
  classMapAgreement,
  dequantize,
  detections,
  matchDetections,
  nchwToNhwc,
  parseNpy,
  relativeMaxError,
} from './armnn/agreement.js';

interface TensorDesc {
  name: string;
  dtype: string;
  shape: number[];
  scale: number;
  zeroPoint: number;
}

/** What run_tflite.py writes beside the .npy files. */
interface Manifest {
  armnn: { library: string; debian: string | null; backend: string };
  model: string;
  cutModel: string | null;
  input: TensorDesc;
  outputs: TensorDesc[];
  images: { file: string; seconds: number }[];
}

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    data: { type: 'string' },
    limit: { type: 'string', default: '5' },
    outputs: { type: 'string' },
    'score-threshold': { type: 'string', default: '0.3' },
    'armnn-dir': { type: 'string' },
    reuse: { type: 'boolean', default: false },
    python: { type: 'string', default: '/usr/bin/python3' },
    json: { type: 'string' },
  },
});
if (!args.model || !args.data) {
  console.error(
    'usage: npm run bench:armnn -- --model <tflite> --data <folder> [--limit N] [--outputs t1,t2] [--score-threshold 0.3]\n' +
      '  [--armnn-dir <dir> (keep Arm NN results there)] [--reuse (read them from --armnn-dir instead of running Arm NN)] [--json <file>]',
  );
  process.exit(2);
}
const scoreThreshold = Number(args['score-threshold']);

function runArmnn(dir: string): Manifest {
  if (!args.reuse) {
    const script = new URL('../../bench/armnn/run_tflite.py', import.meta.url).pathname;
    const argv = [script, '--model', resolve(args.model!), '--images', resolve(args.data!), '--out', dir, '--limit', args.limit!];
    if (args.outputs) argv.push('--outputs', args.outputs);
    const run = spawnSync(args.python!, argv, { stdio: ['ignore', 'inherit', 'inherit'] });
    if (run.error) throw new QuantflowError(`cannot run ${args.python}: ${run.error.message}; pass --python <python3 with pyarmnn>`);
    if (run.status !== 0)
      throw new QuantflowError(`the Arm NN run (bench/armnn/run_tflite.py) failed with exit code ${run.status}; its message is above`);
  }
  return JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
}

/** Arm NN's tensor as real values (quantized ones dequantized) in NHWC/TFLite order. */
function armnnValues(dir: string, file: string, desc: TensorDesc): Float64Array {
  const npy = parseNpy(readFileSync(join(dir, file)), file);
  return desc.dtype === 'int32' || desc.dtype === 'bool' ? npy.data : dequantize(npy.data, desc.scale, desc.zeroPoint);
}

/** quantflow's output in TFLite order (4-D tensors come back NCHW). */
function quantflowValues(t: TensorData): Float64Array {
  const values = Float64Array.from(toFloat32(t));
  return t.dims.length === 4 ? nchwToNhwc(values, t.dims) : values;
}

/** The input tensor run_tflite.py fed, as the real-valued NCHW float the import expects. */
function feed(dir: string, k: number, manifest: Manifest, info: TfliteInputInfo): TensorData {
  const npy = parseNpy(readFileSync(join(dir, `${k}_input.npy`)), `${k}_input.npy`);
  const real = info.scale === null ? npy.data : dequantize(npy.data, info.scale, info.zeroPoint ?? 0);
  const [n, h, w, c] = manifest.input.shape as [number, number, number, number];
  const data = new Float32Array(real.length);
  for (let p = 0; p < h * w; p++) for (let ch = 0; ch < c; ch++) data[ch * h * w + p] = real[p * c + ch]!;
  return { dataType: 'float32', dims: [n, c, h, w], data };
}

async function prepared(path: string): Promise<Model> {
  return prepareModel(loadModel(path));
}

interface Row {
  output: string;
  image: string;
  figures: Record<string, number>;
}

async function main(): Promise<void> {
  const keep = args['armnn-dir'];
  const dir = keep ? resolve(keep) : mkdtempSync(join(tmpdir(), 'qf-armnn-'));
  try {
    const armnnStarted = performance.now();
    const manifest = runArmnn(dir);
    const armnnWall = (performance.now() - armnnStarted) / 1000;
    const model = await prepared(manifest.cutModel ?? manifest.model);
    let original: Model | null = null;
    let originalNote = '';
    if (manifest.cutModel) {
      try {
        original = await prepared(manifest.model);
      } catch (e) {
        if (!(e instanceof QuantflowError)) throw e;
        originalNote = `quantflow cannot import the uncut model: ${e.message}`;
      }
    }
    const info = JSON.parse(model.metadata['tflite.input']!) as TfliteInputInfo;
    if (info.scale !== null && (Math.abs(info.scale - manifest.input.scale) > 1e-9 || info.zeroPoint !== manifest.input.zeroPoint))
      throw new QuantflowError(
        `input quantization differs: quantflow ${info.scale}/${info.zeroPoint}, Arm NN ${manifest.input.scale}/${manifest.input.zeroPoint}`,
      );
    if (model.graph.outputs.length !== manifest.outputs.length)
      throw new QuantflowError(`quantflow's import has ${model.graph.outputs.length} outputs, Arm NN's ${manifest.outputs.length}`);

    const session = await openSession(model);
    const originalSession = original ? await openSession(original) : null;
    const rows: Row[] = [];
    const qfSeconds: number[] = [];
    const isDetection =
      manifest.outputs.length === 4 &&
      manifest.outputs[0]!.shape.length === 3 &&
      manifest.outputs[0]!.shape[2] === 4 &&
      manifest.outputs[3]!.shape.length === 1;
    try {
      for (let k = 0; k < manifest.images.length; k++) {
        const image = manifest.images[k]!.file.split('/').at(-1)!;
        const input = feed(dir, k, manifest, info);
        const started = performance.now();
        const out = await runSession(session, { [info.name]: input });
        qfSeconds.push((performance.now() - started) / 1000);
        const armnn = manifest.outputs.map((d, j) => armnnValues(dir, `${k}_output${j}.npy`, d));
        const ours = model.graph.outputs.map((o) => quantflowValues(out[o.name]!));
        manifest.outputs.forEach((desc, j) => {
          const a = armnn[j]!;
          const q = ours[j]!;
          const figures: Record<string, number> = { relMaxError: relativeMaxError(q, a) };
          const intOutput = desc.dtype === 'int32' || model.graph.outputs[j]!.dataType === 'int64';
          if (intOutput) Object.assign(figures, classMapAgreement(q, a));
          else if (desc.shape.length === 2 && desc.shape[1]! > 1)
            figures.top1 = argmaxLast(q, desc.shape[1]!)[0] === argmaxLast(a, desc.shape[1]!)[0] ? 1 : 0;
          rows.push({ output: desc.name, image, figures });
        });
        if (isDetection) {
          const count = (v: Float64Array) => Math.round(v[0]!);
          const mine = detections(ours[0]!, ours[1]!, ours[2]!, count(ours[3]!));
          const theirs = detections(armnn[0]!, armnn[1]!, armnn[2]!, count(armnn[3]!));
          const m = matchDetections(mine, theirs, scoreThreshold);
          rows.push({
            output: `detections (score ≥ ${scoreThreshold}, IoU ≥ 0.5)`,
            image,
            figures: {
              precision: m.test ? m.matched / m.test : 1,
              recall: m.reference ? m.matched / m.reference : 1,
              armnn: m.reference,
              quantflow: m.test,
            },
          });
        }
        if (originalSession && original) {
          const full = await runSession(originalSession, { [original.graph.inputs[0]!.name]: input });
          for (const o of original.graph.outputs) {
            if (o.dataType !== 'int64' && o.dataType !== 'int32') continue;
            const map = full[o.name]!;
            manifest.outputs.forEach((desc, j) => {
              const [, h, w, c] = desc.shape;
              if (desc.shape.length !== 4 || map.dims.length !== 3 || map.dims[1] !== h || map.dims[2] !== w) return;
              const figures = classMapAgreement(quantflowValues(map), argmaxLast(armnn[j]!, c!));
              rows.push({ output: `quantflow ${o.name} (uncut model) vs argmax of Arm NN ${desc.name}`, image, figures });
            });
          }
        }
      }
    } finally {
      await session.release();
      await originalSession?.release();
    }

    const outputs = [...new Set(rows.map((r) => r.output))];
    const keys = [...new Set(rows.flatMap((r) => Object.keys(r.figures)))];
    const show = (key: string, v: number | undefined) =>
      v === undefined
        ? ''
        : key === 'relMaxError'
          ? v.toExponential(2)
          : key === 'armnn' || key === 'quantflow'
            ? v.toFixed(1)
            : percent(v);
    const table: (string | number)[][] = [['output', 'image', ...keys]];
    for (const name of outputs) {
      const mine = rows.filter((r) => r.output === name);
      // TFLite tensor names list every fused op after ';': the first one is enough to recognise it.
      const label = name.split(';')[0]!;
      for (const r of mine) table.push([label, r.image, ...keys.map((key) => show(key, r.figures[key]))]);
      // Errors summarise as the worst image, agreements as the mean.
      const summary = (key: string) => {
        const vs = mine.map((r) => r.figures[key]).filter((v): v is number => v !== undefined);
        if (!vs.length) return undefined;
        return key === 'relMaxError' ? Math.max(...vs) : vs.reduce((a, b) => a + b, 0) / vs.length;
      };
      table.push([label, `mean of ${mine.length}`, ...keys.map((key) => show(key, summary(key)))]);
    }
    const armnnPerImage = manifest.images.map((i) => i.seconds);
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log(
      `Arm NN ${manifest.armnn.debian ?? manifest.armnn.library} (${manifest.armnn.backend}) vs quantflow float import (onnxruntime), ${manifest.images.length} images of ${args.data}`,
    );
    if (manifest.cutModel) console.log(`both run the model cut to outputs ${manifest.outputs.map((o) => o.name).join(', ')}`);
    if (originalNote) console.log(originalNote);
    console.log(formatTable(table));
    console.log('(relMaxError: max abs error / Arm NN output range; its "mean" row is the largest)');
    console.log(
      `seconds per image: Arm NN ${avg(armnnPerImage).toFixed(1)} (inference), quantflow ${avg(qfSeconds).toFixed(2)}${args.reuse ? '' : `; Arm NN script wall ${armnnWall.toFixed(0)} s`}`,
    );
    if (args.json)
      writeJsonResult(args.json, {
        armnn: manifest.armnn,
        model: manifest.model,
        outputs: manifest.outputs.map((o) => o.name),
        cut: manifest.cutModel !== null,
        rows,
        armnnSeconds: armnnPerImage,
        quantflowSeconds: qfSeconds,
      });
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof QuantflowError ? e.message : e);
  process.exit(e instanceof QuantflowError ? 2 : 1);
});
