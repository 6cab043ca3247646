/**
 * How long `quantflow quantize` takes, and what the QDQ model buys at inference time.
 *
 *   npm run bench:quantize
 *
 * 1. Wall time of the CLI (process start to exit: import, calibration on 1,000 images of
 *    imagenet-sample-1k, w8a8-shift, MSE, export) on MobileNetV2 int8. Target ≤ 60 s.
 * 2. Latency of the exported model.qdq.onnx on onnxruntime's integer kernels vs the float
 *    model, at batch 1 and 32 (median of repeated runs). Target ratio ≤ 0.8.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { formatTable } from '../src/cli/table.js';
import { loadModel } from '../src/import/load.js';
import { prepareModel } from '../src/import/prepare.js';
import { readOnnxFile } from '../src/onnx/read.js';
import type { Model } from '../src/graph/types.js';
import { openSession } from '../src/runtime/session.js';
import { sharedPath } from '../test/shared.js';

const model = sharedPath('models', 'mobilenet_v2_1.0_224_int8.tflite');
const calib = sharedPath('data', 'imagenet-sample-1k');
if (model.skip || calib.skip) {
  console.log(`skipped: ${model.skip || calib.skip}`);
  process.exit(0);
}

const out = mkdtempSync(join(tmpdir(), 'qf-bench-'));
try {
  const cli = new URL('../src/cli/main.js', import.meta.url).pathname;
  const t0 = performance.now();
  execFileSync(
    process.execPath,
    [
      cli,
      'quantize',
      model.path,
      '--calib',
      calib.path,
      '--profile',
      'w8a8-shift',
      '--calibration',
      'mse',
      '--calib-limit',
      '1000',
      '-o',
      out,
    ],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const wall = (performance.now() - t0) / 1000;

  async function latency(m: Model, batch: number): Promise<number> {
    const session = await openSession(m);
    const input = new ort.Tensor(
      'float32',
      Float32Array.from({ length: batch * 3 * 224 * 224 }, () => Math.random() * 2 - 1),
      [batch, 3, 224, 224],
    );
    const name = m.graph.inputs[0]!.name;
    const times: number[] = [];
    const runs = batch === 1 ? 40 : 6;
    try {
      for (let i = 0; i < runs + 2; i++) {
        const t = performance.now();
        await session.run({ [name]: input });
        if (i >= 2) times.push(performance.now() - t);
      }
    } finally {
      await session.release();
    }
    return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
  }
  const float = await prepareModel(loadModel(model.path));
  const qdq = readOnnxFile(join(out, 'model.qdq.onnx'));
  const rows: (string | number)[][] = [['batch', 'float ms', 'QDQ int8 ms', 'ratio']];
  const result: Record<string, unknown> = { bench: 'quantize', quantizeWallSeconds: wall };
  for (const batch of [1, 32]) {
    const f = await latency(float, batch);
    const q = await latency(qdq, batch);
    rows.push([batch, f.toFixed(1), q.toFixed(1), (q / f).toFixed(2)]);
    result[`batch${batch}`] = { floatMs: f, qdqMs: q, ratio: q / f };
  }
  console.log(`quantflow quantize (MobileNetV2 int8, 1000 images, w8a8-shift, mse): ${wall.toFixed(1)} s wall`);
  console.log(formatTable(rows));
  console.log(JSON.stringify(result));
} finally {
  rmSync(out, { recursive: true, force: true });
}
