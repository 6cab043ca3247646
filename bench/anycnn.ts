/**
 * quantflow on the detector, segmenter and classifiers of ../shared, end to end as a user runs
 * it: a flat folder of calibration images, the preprocessing stated on the command line,
 * `quantize --compare` on other images, the integer NPU package and `verify`.
 *
 *   npm run bench:anycnn -- [--models ssd,deeplab,blazeface,resnet] [--qft] [--verify-images N]
 *
 * Each image set is split in two (calibration, then comparison; CIFAR-10 by stride, so both
 * halves hold every class), as folders of links in a temporary folder, so no image is used for both. With --qft, the detector and the
 * segmenter are also quantized to w4a8-channel, with and without QFT (--loss auto). Prints a
 * table and writes bench-anycnn.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatTable, percent } from '../src/cli/table.js';
import { loadDataset, type DatasetItem } from '../src/data/dataset.js';
import type { CompareReport, QuantizeReportJson } from '../src/report/types.js';
import type { VerifyReport } from '../src/npu/verify.js';
import { sharedDir, sharedPath } from '../test/shared.js';

interface Case {
  key: string;
  model: string;
  data: string;
  /** Images for calibration; the rest (up to `compareImages`) are compared. */
  calibImages: number;
  compareImages: number;
  /** The preprocessing the user states. */
  preprocess: string[];
  /** Other options: task outputs, batch. */
  options: string[];
  /** Calibrate on every n-th image and compare on the images halfway between (a class-sorted labelled set, so both hold every class). */
  stride?: number;
}

const CASES: Case[] = [
  {
    key: 'ssd',
    model: 'ssd_mobilenet_v1_coco_uint8.tflite',
    data: 'coco-val-100',
    calibImages: 60,
    compareImages: 40,
    preprocess: ['--resize', 'stretch'],
    options: [],
  },
  {
    key: 'deeplab',
    model: 'deeplabv3_mnv2_pascal_uint8.tflite',
    data: 'coco-val-100',
    calibImages: 60,
    compareImages: 40,
    preprocess: ['--resize', 'stretch'],
    options: ['--batch', '4'],
  },
  {
    key: 'blazeface',
    model: 'blazeface_128_float.onnx',
    data: 'wider-face-183',
    calibImages: 120,
    compareImages: 63,
    // A PyTorch export with a fixed batch of 1, trained on [-1, 1] stretched images; raw per-anchor outputs.
    preprocess: ['--preset', 'inception', '--resize', 'stretch'],
    options: ['--batch', '1', '--boxes', '199', '--scores', '180'],
  },
  {
    key: 'resnet',
    model: 'resnet_large_cifar10_float.tflite',
    data: 'cifar10-test',
    calibImages: 500,
    compareImages: 500,
    preprocess: ['--preset', 'raw'],
    options: [],
    stride: 20,
  },
];

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const value = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const only = value('--models')?.split(',');
const verifyImages = value('--verify-images') ?? '2';
const cli = new URL('../src/cli/main.js', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'qf-anycnn-'));

/** A flat folder of links to `items` (with labels.csv when they are labelled). */
function linkFolder(name: string, items: DatasetItem[]): string {
  const dir = join(work, name);
  mkdirSync(dir);
  const rows = items.map((it, i) => {
    const file = `${String(i).padStart(5, '0')}-${it.file.replaceAll('/', '_')}`;
    symlinkSync(it.path, join(dir, file));
    return `${file},${it.label}`;
  });
  if (items.every((it) => it.label !== undefined)) writeFileSync(join(dir, 'labels.csv'), ['file,label', ...rows].join('\n') + '\n');
  return dir;
}

function run(argv: string[]): { seconds: number; stdout: string } {
  const t0 = performance.now();
  const stdout = execFileSync(process.execPath, [cli, ...argv], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  return { seconds: (performance.now() - t0) / 1000, stdout };
}

function figures(c: CompareReport | undefined): string {
  if (!c) return '-';
  const d = c.detection;
  if (d) return `P ${percent(d.precision)} R ${percent(d.recall)}`;
  const o = c.outputs[0]!;
  if (o.segment) return `pixels ${percent(o.segment.pixelAgreement)} mIoU ${percent(o.segment.meanIou)}`;
  if (o.classify)
    return `top-1 agr. ${percent(o.classify.top1Agreement)}${o.classify.labels ? `, top-1 ${percent(o.classify.labels.float.top1)} → ${percent(o.classify.labels.quantized.top1)}` : ''}`;
  return '-';
}

const sqnr = (c: CompareReport | undefined) =>
  c ? c.outputs.map((o) => (o.sqnrDb === undefined ? '-' : o.sqnrDb === null ? 'inf' : o.sqnrDb.toFixed(1))).join(' / ') : '-';

const rows: (string | number)[][] = [
  ['model', 'profile', 'QFT', 'calib', 'compared', 'PTQ s', 'SQNR dB per output', 'figures', 'NPU package', 'verify'],
];
const results: Record<string, unknown>[] = [];
try {
  for (const c of CASES) {
    if (only && !only.includes(c.key)) continue;
    const model = sharedPath('models', c.model);
    const data = sharedPath('data', c.data);
    if (model.skip || data.skip) {
      console.log(`skipped ${c.key}: ${model.skip || data.skip}`);
      continue;
    }
    const items = (await loadDataset(data.path)).items;
    // A strided set takes images i ≡ 0 (calibration) and i ≡ stride/2 (comparison) of a class-sorted list.
    const [calibItems, heldItems] = c.stride
      ? [0, Math.floor(c.stride / 2)].map((r) => items.filter((_, i) => i % c.stride! === r))
      : [items.slice(0, c.calibImages), items.slice(c.calibImages)];
    const calib = linkFolder(
      `${c.key}-calib`,
      calibItems!.slice(0, c.calibImages).map((it) => ({ ...it, label: undefined })),
    );
    const held = linkFolder(`${c.key}-compare`, heldItems!.slice(0, c.compareImages));
    const profiles: [string, boolean][] = [['w8a8-shift', false]];
    if (flag('--qft') && (c.key === 'ssd' || c.key === 'deeplab')) profiles.push(['w4a8-channel', false], ['w4a8-channel', true]);
    for (const [profile, qft] of profiles) {
      const out = join(work, `${c.key}-${profile}${qft ? '-qft' : ''}`);
      const q = run([
        'quantize',
        model.path,
        '--calib',
        calib,
        '--calib-limit',
        String(c.calibImages),
        '--profile',
        profile,
        '--compare',
        held,
        ...c.preprocess,
        ...c.options,
        ...(qft ? ['--qft'] : []),
        '-o',
        out,
      ]);
      const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as QuantizeReportJson;
      let verify: string = 'no package';
      let verified: VerifyReport | undefined;
      if (report.npu) {
        run(['verify', out, '--data', held, '--limit', verifyImages, ...c.preprocess, '--json', join(out, 'verify.json')]);
        verified = JSON.parse(readFileSync(join(out, 'verify.json'), 'utf8')) as VerifyReport;
        const worst = Math.max(...verified.isolated.map((a) => a.maxDiff));
        const exact = verified.integerModel!.every((a) => a.exact === a.elements);
        verify = `per layer ≤ ${worst} LSB, integer model ${exact ? 'exact' : 'NOT exact'}`;
      }
      const npu = report.npu
        ? `${report.npu.outputs.length} output(s)${report.npu.hostTail ? `, host tail ${report.npu.hostTail.length} nodes` : ''}`
        : 'not written';
      rows.push([
        c.model,
        profile,
        qft ? 'yes' : '-',
        report.calibration.images,
        report.compare?.n ?? '-',
        q.seconds.toFixed(0),
        sqnr(report.compare),
        figures(report.compare),
        npu,
        verify,
      ]);
      results.push({
        case: c.key,
        model: c.model,
        profile,
        qft,
        preprocess: c.preprocess,
        options: c.options,
        seconds: q.seconds,
        calibration: report.calibration,
        compare: report.compare,
        npu: report.npu,
        verify: verified && {
          isolatedMaxDiff: Math.max(...verified.isolated.map((a) => a.maxDiff)),
          integerModel: verified.integerModel,
          images: verified.images,
        },
      });
      console.log(formatTable([rows[0]!, rows.at(-1)!]));
    }
  }
  console.log(`\n${formatTable(rows)}`);
  writeFileSync(
    'bench-anycnn.json',
    JSON.stringify({ bench: 'anycnn', shared: sharedDir, date: new Date().toISOString(), results }, null, 2) + '\n',
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
