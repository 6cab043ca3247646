import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { loadModel } from '../../import/load.js';
import { prepareModel } from '../../import/prepare.js';
import { loadDataset } from '../../data/dataset.js';
import { evaluate } from '../../eval/evaluate.js';
import { compareWithReference } from '../../eval/reference.js';
import { QuantflowError } from '../../util/errors.js';
import { progressBar } from '../progress.js';
import { formatTable, percent } from '../table.js';
import { writeJsonResult } from '../../util/fs.js';
import { positiveInt } from './eval.js';
import type { PresetName } from '../../data/preprocess.js';
import { checkOutputFolder, runQuantize, type QuantizeRun } from '../../pipeline/quantize-run.js';

/** The models the demo runs, with the data they are evaluated on. */
const DEMO_RUNS: { model: string; data: string; preset?: PresetName }[] = [
  { model: 'mobilenet_v1_0.25_224_float.tflite', data: 'imagenet-val-650' },
  { model: 'mobilenet_v2_1.0_224_int8.tflite', data: 'imagenet-val-650' },
  { model: 'mobilenet_v2_1.0_224_uint8.tflite', data: 'imagenet-val-650' },
  { model: 'mobilenet_v3_small_1.0_224_uint8.tflite', data: 'imagenet-val-650' },
  // The MLPerf Tiny reference feeds raw 0-255 pixels, which no model metadata says.
  { model: 'resnet8_cifar10_float.tflite', data: 'cifar10-test', preset: 'raw' as const },
];

/** The model, targets and calibration size of the demo's quantization step (kept small for speed). */
const PTQ_MODEL = 'mobilenet_v2_1.0_224_int8.tflite';
const PTQ_PROFILES = ['w8a8-tensor', 'w8a8-shift', 'w8a8-channel'];
const PTQ_CALIB_IMAGES = 256;
/** The profile whose run leaves a QDQ model, NPU package and report in --output. */
const OUTPUT_PROFILE = 'w8a8-shift';

/**
 * The detector step: an SSD calibrated on a plain folder of photos with the preprocessing a
 * user states (it was trained on stretched images), then compared with its float self on
 * other photos, which have no labels.
 */
const DETECTOR = {
  model: 'ssd_mobilenet_v1_coco_uint8.tflite',
  calib: 'coco-val-100',
  compare: 'wider-face-183',
  calibImages: 64,
  output: 'detector',
};

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'Import every model in ../shared/models and evaluate it, then quantize MobileNetV2 for three 8-bit targets and evaluate those; ' +
        `the ${OUTPUT_PROFILE} run writes its QDQ model, integer NPU package and report.html to --output, the others into <output>/<profile>; ` +
        'then quantize the SSD detector from a plain photo folder and compare it with its float self (into <output>/detector).',
    )
    .option('--shared <dir>', 'folder holding models/, data/ and reference/', '../shared')
    .option('--limit <n>', 'images per dataset (default: all)', positiveInt('--limit'))
    .option(
      '--output <dir>',
      `folder for the ${OUTPUT_PROFILE} run's model.qdq.onnx, npu/, report.json and report.html, by default in the current folder`,
      'quantflow-demo',
    )
    .option('--json <file>', 'write the table as JSON')
    .action(async (opts: { shared: string; limit?: number; output: string; json?: string }) => {
      const shared = resolve(opts.shared);
      if (!existsSync(join(shared, 'models')))
        throw new QuantflowError(`${shared}: no models/ folder; pass --shared <dir> pointing at the shared models and data`);
      checkOutputFolder(opts.output);
      const rows: (string | number)[][] = [['model', 'data', 'n', 'top-1', 'top-5', 'images/s', 'agrees with reference']];
      const results = [];
      for (const run of DEMO_RUNS) {
        const modelPath = join(shared, 'models', run.model);
        const model = await prepareModel(loadModel(modelPath));
        const dataset = await loadDataset(join(shared, 'data', run.data));
        const total = Math.min(opts.limit ?? Infinity, dataset.items.length);
        const bar = progressBar(run.model, total);
        const result = await evaluate(model, dataset, {
          limit: opts.limit,
          preprocess: { preset: run.preset },
          onProgress: (d) => bar.update(d),
        });
        bar.stop();
        const refPath = join(shared, 'reference', `${run.model.replace(/\.tflite$/, '')}__${run.data}.csv`);
        const agreement = existsSync(refPath) ? compareWithReference(result.predictions, refPath) : undefined;
        rows.push([
          run.model,
          run.data,
          result.n,
          percent(result.top1),
          percent(result.top5),
          result.imagesPerSecond.toFixed(1),
          agreement ? `${percent(agreement.top1Agreement)} of ${agreement.n}` : '-',
        ]);
        results.push({
          ...run,
          n: result.n,
          top1: result.top1,
          top5: result.top5,
          imagesPerSecond: result.imagesPerSecond,
          preset: result.preset,
          referenceAgreement: agreement?.top1Agreement,
        });
      }
      console.log(formatTable(rows));

      // Then quantize one of them for the three 8-bit weight granularities, each a whole
      // pipeline run with the PTQ defaults; the w8a8-shift run writes into --output itself.
      const modelPath = join(shared, 'models', PTQ_MODEL);
      const calib = { dir: join(shared, 'data', 'imagenet-sample-1k') };
      const val = { dir: join(shared, 'data', 'imagenet-val-650') };
      const ptqRows: (string | number)[][] = [['model', 'profile', 'calibration images', 'top-1', 'top-5']];
      const float = results.find((r) => r.model === PTQ_MODEL)!;
      ptqRows.push([PTQ_MODEL, 'float', '-', percent(float.top1), percent(float.top5)]);
      const ptq = [];
      let written: QuantizeRun | undefined;
      for (const profile of PTQ_PROFILES) {
        const run = await runQuantize({
          model: modelPath,
          calib: calib.dir,
          profile,
          output: profile === OUTPUT_PROFILE ? opts.output : join(opts.output, profile),
          calibLimit: PTQ_CALIB_IMAGES,
          eval: val.dir,
          evalLimit: opts.limit,
          // Measured in the table above, on the same images with the same preprocessing.
          floatAccuracy: { data: val.dir, n: float.n, top1: float.top1, top5: float.top5 },
          onStage: (stage, total) => progressBar(stage === 'calibrate' ? `quantize ${profile}` : `${stage} ${profile}`, total),
        });
        if (profile === OUTPUT_PROFILE) written = run;
        const q = { calibrationImages: run.quantization.calibrationImages, ...run.accuracy!.quantized! };
        ptqRows.push([PTQ_MODEL, profile, q.calibrationImages, percent(q.top1), percent(q.top5)]);
        ptq.push({ model: PTQ_MODEL, profile, calibrationImages: q.calibrationImages, n: q.n, top1: q.top1, top5: q.top5 });
      }
      console.log('');
      console.log(formatTable(ptqRows));
      const { files, npuProblem } = written!;
      console.log(
        `\nThe ${OUTPUT_PROFILE} run wrote ${files.model} (QDQ model)${files.npu ? `, ${files.npu}/ (integer NPU package)` : ''}${files.tflite ? `, ${files.tflite} (fully-integer TFLite model)` : ''} and ${files.json}; ` +
          `open ${files.html} in a browser.`,
      );
      if (npuProblem) console.log(`integer NPU package not written: ${npuProblem}`);

      const detectorOutput = join(opts.output, DETECTOR.output);
      const detector = await runQuantize({
        model: join(shared, 'models', DETECTOR.model),
        calib: join(shared, 'data', DETECTOR.calib),
        profile: OUTPUT_PROFILE,
        output: detectorOutput,
        calibLimit: DETECTOR.calibImages,
        preprocess: { resize: 'stretch' },
        compare: join(shared, 'data', DETECTOR.compare),
        compareLimit: opts.limit,
        onStage: (stage, total) => progressBar(`${stage} ${DETECTOR.model}`, total),
      });
      const d = detector.compare!.detection!;
      console.log(
        `\n${DETECTOR.model} (${OUTPUT_PROFILE}, calibrated on ${detector.quantization.calibrationImages} unlabelled photos of ${DETECTOR.calib}, stretched): ` +
          `on ${detector.compare!.n} photos of ${DETECTOR.compare}, its detections against the float model's: precision ${percent(d.precision)}, recall ${percent(d.recall)} ` +
          `(IoU ≥ ${d.iouThreshold}, score ≥ ${d.scoreThreshold}); box decoding and NMS stay on the host. Outputs in ${detectorOutput}/.`,
      );
      console.log(
        `With all 1,000 calibration images, another --profile or --qft: npx quantflow quantize ${modelPath} --calib ${calib.dir} --profile ${OUTPUT_PROFILE} --eval ${val.dir} -o out`,
      );
      if (opts.json)
        writeJsonResult(opts.json, {
          evaluation: results,
          quantization: ptq,
          outputs: files,
          detector: { model: DETECTOR.model, compare: detector.compare, outputs: detector.files },
        });
    });
}
