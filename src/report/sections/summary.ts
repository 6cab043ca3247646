import type { Grid } from '../../quantization/grid.js';
import type { TargetProfile } from '../../quantization/profile.js';
import { stackedBar } from '../charts.js';
import { bytes, esc, facts, num, percent, table } from '../markup.js';
import type { ReportContext, ReportSection } from '../section.js';
import type { ReportLayer } from '../types.js';
import { tseSummary } from './tse-summary.js';

/** Model, target, the options that took effect, accuracy, size and time; for TSE, see `tseSummary`. */
export const summarySection: ReportSection = {
  id: 'summary',
  title: 'Summary',
  render(ctx) {
    const { report } = ctx;
    if (report.kind === 'tse') return tseSummary(report);
    const p = report.profile;
    const c = report.calibration;
    const rows: [string, string][] = [
      ['model', `<code>${esc(report.model)}</code>`],
      [
        'target profile',
        `<b>${esc(p.name)}</b>${p.description ? ` — ${esc(p.description)}` : ''} <span class="dim">(${esc(p.source)})</span>`,
      ],
      ['weights', esc(weightText(p))],
      ['layers', esc(layerMix(report.layers))],
      [
        'activations',
        esc(
          `${p.activations.bits}-bit ${p.activations.symmetric ? 'symmetric' : 'asymmetric'} per-tensor, ${activationMix(report.activations)}`,
        ),
      ],
      ['requantization', esc(requantText(p))],
      ['non-linearities', esc(nonlinearityText(p))],
      ['calibration', esc(`${c.method} ranges on ${c.images} images of ${c.folder}, preset ${c.preset}`) + skippedText(c.skipped)],
      ['bias correction', report.biasCorrection ? 'on' : 'off'],
    ];
    const size = weightBytes(report.layers);
    if (size)
      rows.push([
        'weights size',
        esc(
          `float32 ${bytes(size.float)} → ${bytes(size.quantized)} (×${num(size.float / size.quantized, 2)} smaller; weight values only, scales, shifts and biases not counted)`,
        ),
      ]);
    const stages = Object.entries(report.seconds).map(([name, value]) => ({ name, value }));
    const total = stages.reduce((s, x) => s + x.value, 0);
    rows.push([
      'wall time',
      `${num(total)} s over ${stages.length} stages` +
        (stages.length ? stackedBar({ label: 'wall time per stage', unit: 's', parts: stages }) : ''),
    ]);
    return facts(rows) + accuracyTable(ctx.accuracy, p.name);
  },
};

function weightText(p: TargetProfile): string {
  const w = p.weights;
  const how = {
    tensor: 'one scale per layer',
    channel: 'one scale per output channel',
    shift: `WESS: one scale per layer and a ${w.shiftBits}-bit power-of-two shift per output channel`,
  }[w.granularity];
  const overrides = p.overrides.map(
    (o) =>
      `${o.match} → ${[
        ...Object.entries(o.weights ?? {}).map(([k, v]) => `${k} ${v}`),
        ...(o.activations?.bits ? [`activation bits ${o.activations.bits}`] : []),
      ].join(', ')}`,
  );
  return `${w.bits}-bit symmetric, ${how}${p.powerOfTwoScales ? ', power-of-two scales' : ''}${overrides.length ? `; overrides: ${overrides.join('; ')}` : ''}`;
}

/** How many tensors, and how many of them the overrides widened or narrowed to the other width. */
function activationMix(grids: Record<string, Grid>): string {
  const all = Object.values(grids);
  const wide = all.filter((g) => g.qmax - g.qmin > 255).length;
  return `${all.length} tensors${wide && wide < all.length ? ` (${wide} at 16 bits, ${all.length - wide} at 8 bits)` : ''}`;
}

/** How many layers ended up at each bit width and granularity: what the overrides did. */
function layerMix(layers: ReportLayer[]): string {
  const counts = new Map<string, number>();
  for (const l of layers) {
    const key = `${l.weightBits}-bit ${l.granularity}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return `${layers.length} quantized: ${[...counts].map(([k, n]) => `${n} × ${k}`).join(', ')}`;
}

function requantText(p: TargetProfile): string {
  const [lo, hi] = p.requantization.shiftRange;
  return `${p.requantization.multiplierBits}-bit multiplier, total right shift ${lo}..${hi}; ${p.accumulatorBits}-bit accumulator, ${p.biasBits}-bit bias`;
}

function nonlinearityText(p: TargetProfile): string {
  const byMode = new Map<string, string[]>();
  for (const [f, mode] of Object.entries(p.nonlinearities)) byMode.set(mode, [...(byMode.get(mode) ?? []), f]);
  return [...byMode].map(([mode, fs]) => `${fs.join(', ')}: ${mode}`).join('; ');
}

/** Bytes of the weight values in float32 and at their quantized widths; undefined unless every layer has its count. */
function weightBytes(layers: ReportLayer[]): { float: number; quantized: number } | undefined {
  if (!layers.length || layers.some((l) => l.weightCount === undefined)) return undefined;
  const float = layers.reduce((s, l) => s + 4 * l.weightCount!, 0);
  const quantized = layers.reduce((s, l) => s + Math.ceil((l.weightCount! * l.weightBits) / 8), 0);
  return { float, quantized };
}

function accuracyTable(a: ReportContext['accuracy'], profile: string): string {
  if (!a?.float && !a?.quantized) return '';
  const rows = [
    ['float', a.float],
    [`quantized (${profile})`, a.quantized],
  ] as const;
  const body = rows
    .filter(([, r]) => r)
    .map(([name, r]) => [
      esc(name),
      esc(r!.data),
      { html: String(r!.n), numeric: true },
      { html: percent(r!.top1), numeric: true },
      { html: percent(r!.top5), numeric: true },
    ]);
  // A difference only means something on the same images.
  if (a.float && a.quantized && a.float.data === a.quantized.data && a.float.n === a.quantized.n) {
    const d = (x: number) => `${x >= 0 ? '+' : '−'}${(100 * Math.abs(x)).toFixed(1)} pt`;
    body.push([
      'difference',
      '',
      { html: '', numeric: true },
      { html: d(a.quantized.top1 - a.float.top1), numeric: true },
      { html: d(a.quantized.top5 - a.float.top5), numeric: true },
    ]);
  }
  return `<h3>Accuracy</h3>` + table(['model', 'data', 'images', 'top-1', 'top-5'], body);
}

/** The unreadable calibration files left out, named on hover. */
function skippedText(skipped: string[] | undefined): string {
  if (!skipped?.length) return '';
  return ` <span class="dim" title="${esc(skipped.join('\n'))}">(${skipped.length} unreadable file${skipped.length > 1 ? 's' : ''} skipped)</span>`;
}
