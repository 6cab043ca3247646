/**
 * Charts as inline SVG strings: the report is one self-contained file that any browser
 * shows without scripts or network, and a few chart forms do not justify a library.
 */
import { esc, num } from './markup.js';

/** Colours (Tableau 10), chosen to stay distinguishable for common colour blindness. */
export const COLORS = { blue: '#4e79a7', orange: '#f28e2b', red: '#e15759', teal: '#76b7b2', green: '#59a14f', grey: '#9a9a9a' };

const FONT = 'font-family="system-ui, sans-serif" font-size="11"';

function svg(width: number, height: number, label: string, body: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="${esc(label)}" ` +
    `width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}><title>${esc(label)}</title>${body}</svg>`
  );
}

/** Round numbers spanning [lo, hi], about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

export interface BarSeries {
  name: string;
  color: string;
}

export interface BarRow {
  label: string;
  /** Tooltip of the row's label (e.g. the full layer name). */
  title?: string;
  /** One value per series; undefined draws nothing, +Infinity a full bar marked ∞. */
  values: (number | undefined)[];
}

/**
 * Horizontal grouped bars, one row per item in the given order, with the value printed at
 * the end of each bar. Negative values grow left of the zero line.
 */
export function barChart(o: { label: string; unit: string; series: BarSeries[]; rows: BarRow[]; width?: number }): string {
  const width = o.width ?? 1000;
  const labelWidth = Math.min(300, 12 + 6.2 * Math.max(...o.rows.map((r) => r.label.length)));
  const barH = 6;
  const rowH = barH * o.series.length + 5;
  const top = 34;
  const plotW = width - labelWidth - 50;
  const finite = o.rows.flatMap((r) => r.values).filter((v): v is number => v !== undefined && Number.isFinite(v));
  const lo = Math.min(0, ...finite);
  const hi = Math.max(1, ...finite) * 1.04;
  const x = (v: number) => labelWidth + ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * plotW;
  const height = top + rowH * o.rows.length + 22;
  const parts: string[] = [];
  o.series.forEach((s, i) => {
    const lx = labelWidth + i * 160;
    parts.push(`<rect x="${lx}" y="4" width="10" height="10" fill="${s.color}"/><text x="${lx + 14}" y="13">${esc(s.name)}</text>`);
  });
  for (const t of niceTicks(lo, hi)) {
    const tx = x(t).toFixed(1);
    parts.push(
      `<line x1="${tx}" x2="${tx}" y1="${top - 4}" y2="${height - 20}" stroke="#e3e3e3"/>` +
        `<text x="${tx}" y="${top - 8}" text-anchor="middle" fill="#555">${num(t)}</text>` +
        `<text x="${tx}" y="${height - 8}" text-anchor="middle" fill="#555">${num(t)}</text>`,
    );
  }
  parts.push(`<text x="${width - 4}" y="${height - 8}" text-anchor="end" fill="#555">${esc(o.unit)}</text>`);
  o.rows.forEach((r, i) => {
    const y = top + i * rowH;
    const title = r.title ? `<title>${esc(r.title)}</title>` : '';
    parts.push(`<text x="${labelWidth - 6}" y="${y + rowH / 2 + 3}" text-anchor="end">${title}${esc(r.label)}</text>`);
    r.values.forEach((v, j) => {
      if (v === undefined) return;
      const s = o.series[j]!;
      const [a, b] = [x(0), x(v)];
      const by = y + j * barH + 2;
      const text = Number.isFinite(v) ? num(v) : '∞';
      parts.push(
        `<rect class="bar" x="${Math.min(a, b).toFixed(1)}" y="${by}" width="${Math.max(1, Math.abs(b - a)).toFixed(1)}" height="${barH - 1}" fill="${s.color}">` +
          `<title>${esc(`${r.title ?? r.label}: ${s.name} ${text} ${o.unit}`)}</title></rect>` +
          `<text x="${(Math.max(a, b) + 3).toFixed(1)}" y="${by + barH - 1}" font-size="8" fill="#444">${text}</text>`,
      );
    });
  });
  parts.push(`<line x1="${x(0)}" x2="${x(0)}" y1="${top - 4}" y2="${height - 20}" stroke="#888"/>`);
  return svg(width, height, o.label, parts.join(''));
}

export interface ChannelPanel {
  title: string;
  values: number[];
  color: string;
  /** Horizontal reference lines, e.g. the quantization grid's largest value. */
  lines?: { value: number; label: string }[];
}

/**
 * One column per channel on a shared logarithmic axis, one panel per series stacked
 * vertically, so that ranges spanning decades stay comparable between panels. Zeros
 * (dead channels) sit on the bottom edge.
 */
export function channelPanels(o: { label: string; unit: string; panels: ChannelPanel[]; width?: number; panelHeight?: number }): string {
  const width = o.width ?? 1000;
  const ph = o.panelHeight ?? 150;
  const left = 60;
  const plotW = width - left - 10;
  const positive = o.panels.flatMap((p) => [...p.values, ...(p.lines ?? []).map((l) => l.value)]).filter((v) => v > 0);
  const lo = Math.log10(Math.min(...positive)) - 0.1;
  const hi = Math.log10(Math.max(...positive)) + 0.1;
  const gap = 34;
  const height = o.panels.length * (ph + gap) + 16;
  const parts: string[] = [];
  o.panels.forEach((p, k) => {
    const y0 = k * (ph + gap) + gap - 8;
    const y = (v: number) => y0 + ph - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * ph;
    parts.push(`<text x="${left}" y="${y0 - 8}" font-weight="600">${esc(p.title)}</text>`);
    for (let e = Math.ceil(lo); e <= hi; e++) {
      const ty = y(10 ** e).toFixed(1);
      parts.push(
        `<line x1="${left}" x2="${left + plotW}" y1="${ty}" y2="${ty}" stroke="#e3e3e3"/>` +
          `<text x="${left - 4}" y="${Number(ty) + 3}" text-anchor="end" fill="#555">${num(10 ** e)}</text>`,
      );
    }
    const w = plotW / p.values.length;
    const bars = p.values.map((v, c) => {
      const top = y(v);
      return `M${(left + c * w).toFixed(2)} ${(y0 + ph).toFixed(1)}V${top.toFixed(1)}h${Math.max(w * 0.85, 0.6).toFixed(2)}V${(y0 + ph).toFixed(1)}z`;
    });
    parts.push(
      `<path class="bar" d="${bars.join('')}" fill="${p.color}"><title>${esc(`${p.title} (${p.values.length} channels)`)}</title></path>`,
    );
    for (const l of p.lines ?? []) {
      const ly = y(l.value).toFixed(1);
      parts.push(
        `<line x1="${left}" x2="${left + plotW}" y1="${ly}" y2="${ly}" stroke="${COLORS.red}" stroke-dasharray="4 3"/>` +
          `<text x="${left + plotW}" y="${Number(ly) - 3}" text-anchor="end" fill="${COLORS.red}">${esc(l.label)}</text>`,
      );
    }
    parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${y0 + ph}" y2="${y0 + ph}" stroke="#888"/>`);
  });
  parts.push(
    `<text x="${left + plotW}" y="${height - 2}" text-anchor="end" fill="#555">output channel → (${esc(o.unit)}, log scale)</text>`,
  );
  return svg(width, height, o.label, parts.join(''));
}

/** One horizontal bar split into labelled parts (e.g. wall time per stage). */
export function stackedBar(o: { label: string; unit: string; parts: { name: string; value: number }[]; width?: number }): string {
  const width = o.width ?? 1000;
  const total = o.parts.reduce((s, p) => s + p.value, 0);
  const palette = [COLORS.blue, COLORS.orange, COLORS.teal, COLORS.green, COLORS.red, COLORS.grey];
  let x = 0;
  const parts = o.parts.map((p, i) => {
    const w = total > 0 ? (p.value / total) * width : 0;
    const color = palette[i % palette.length]!;
    const text = `${p.name} ${num(p.value)} ${o.unit}`;
    const rect =
      `<rect class="bar" x="${x.toFixed(1)}" y="0" width="${w.toFixed(1)}" height="22" fill="${color}"><title>${esc(text)}</title></rect>` +
      // A part too narrow for its label keeps only the tooltip; the legend below names it.
      (w > 7 * text.length ? `<text x="${(x + 5).toFixed(1)}" y="15" fill="#fff">${esc(text)}</text>` : '');
    x += w;
    return { rect, legend: `<tspan fill="${color}">■</tspan> ${esc(text)}` };
  });
  const legend = `<text x="0" y="40">${parts.map((p) => p.legend).join('   ')}</text>`;
  return svg(width, 46, o.label, parts.map((p) => p.rect).join('') + legend);
}

/** A tiny column histogram for table cells: bin i has height counts[i]. */
export function sparkHistogram(o: { label: string; counts: number[]; width?: number; height?: number; color?: string }): string {
  const width = o.width ?? 96;
  const height = o.height ?? 18;
  const max = Math.max(1, ...o.counts);
  const w = width / o.counts.length;
  const d = o.counts
    .map((c, i) =>
      c ? `M${(i * w).toFixed(1)} ${height}v${(-(c / max) * (height - 1) - 1).toFixed(1)}h${(w * 0.8).toFixed(1)}V${height}z` : '',
    )
    .join('');
  return svg(
    width,
    height,
    o.label,
    `<rect width="${width}" height="${height}" fill="#f4f4f4"/><path class="bar" d="${d}" fill="${o.color ?? COLORS.blue}"/>`,
  );
}

export interface LineSeries {
  name: string;
  color: string;
  /** [x, y] points; those with a y the axis cannot show (not finite, or ≤ 0 on a log axis) are left out. */
  points: [number, number][];
  /** 'line' joins the points in order, 'dots' marks each one. */
  style: 'line' | 'dots';
}

/**
 * Series over an x axis of counts (steps, epochs: ticks fall on whole numbers) and a linear
 * or logarithmic y axis, with a legend and optional dashed horizontal reference lines.
 */
export function lineChart(o: {
  label: string;
  xUnit: string;
  yUnit: string;
  series: LineSeries[];
  lines?: { value: number; label: string }[];
  logY?: boolean;
  width?: number;
  height?: number;
}): string {
  const width = o.width ?? 1000;
  const height = o.height ?? 300;
  const [left, right, top, bottom] = [64, 12, 30, 34];
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const f = (v: number) => (o.logY ? Math.log10(v) : v);
  const shown = (y: number) => Number.isFinite(y) && (!o.logY || y > 0);
  const series = o.series.map((s) => ({ ...s, points: s.points.filter(([, y]) => shown(y)) }));
  const refs = (o.lines ?? []).filter((l) => shown(l.value));
  const xs = series.flatMap((s) => s.points.map(([x]) => x));
  const ys = [...series.flatMap((s) => s.points.map(([, y]) => f(y))), ...refs.map((l) => f(l.value))];
  const [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  const [xlo, xhi] = x1 > x0 ? [x0, x1] : [x0 - 1, x0 + 1];
  const [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  const pad = y1 > y0 ? 0.05 * (y1 - y0) : Math.abs(y0) * 0.1 || 1;
  const [ylo, yhi] = [y0 - pad, y1 + pad];
  const px = (x: number) => (left + ((x - xlo) / (xhi - xlo)) * plotW).toFixed(1);
  const py = (y: number) => (top + plotH - ((f(y) - ylo) / (yhi - ylo)) * plotH).toFixed(1);
  const parts: string[] = [];
  series.forEach((s, i) => {
    const lx = left + i * 200;
    const key =
      s.style === 'line'
        ? `<line x1="${lx}" x2="${lx + 14}" y1="9" y2="9" stroke="${s.color}" stroke-width="2"/>`
        : `<circle cx="${lx + 7}" cy="9" r="4" fill="${s.color}"/>`;
    parts.push(`${key}<text x="${lx + 18}" y="13">${esc(s.name)}</text>`);
  });
  const yTicks = o.logY ? logTicks(ylo, yhi) : niceTicks(ylo, yhi, 5);
  for (const t of yTicks) {
    const ty = py(t);
    parts.push(
      `<line x1="${left}" x2="${left + plotW}" y1="${ty}" y2="${ty}" stroke="#e3e3e3"/>` +
        `<text x="${left - 4}" y="${Number(ty) + 3}" text-anchor="end" fill="#555">${num(t)}</text>`,
    );
  }
  // Whole numbers only: about eight ticks, fewer when the range is shorter.
  for (const t of niceTicks(xlo, xhi, Math.min(8, Math.max(1, xhi - xlo))).filter(Number.isInteger)) {
    const tx = px(t);
    parts.push(
      `<line x1="${tx}" x2="${tx}" y1="${top}" y2="${top + plotH}" stroke="#e3e3e3"/>` +
        `<text x="${tx}" y="${top + plotH + 14}" text-anchor="middle" fill="#555">${num(t)}</text>`,
    );
  }
  parts.push(
    `<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#888"/>` +
      `<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#888"/>` +
      `<text x="${left + plotW}" y="${height - 4}" text-anchor="end" fill="#555">${esc(o.xUnit)} →</text>` +
      `<text x="${width - right}" y="13" text-anchor="end" fill="#555">${esc(o.yUnit)}${o.logY ? ', log scale' : ''}</text>`,
  );
  for (const l of refs) {
    const ly = py(l.value);
    parts.push(
      `<line x1="${left}" x2="${left + plotW}" y1="${ly}" y2="${ly}" stroke="${COLORS.red}" stroke-dasharray="4 3"/>` +
        `<text x="${left + plotW}" y="${Number(ly) - 3}" text-anchor="end" fill="${COLORS.red}">${esc(l.label)}</text>`,
    );
  }
  for (const s of series) {
    if (s.style === 'line') {
      const points = s.points.map(([x, y]) => `${px(x)},${py(y)}`).join(' ');
      parts.push(
        `<polyline class="line" points="${points}" fill="none" stroke="${s.color}" stroke-width="1.5" stroke-linejoin="round"><title>${esc(s.name)}</title></polyline>`,
      );
    } else {
      for (const [x, y] of s.points)
        parts.push(
          `<circle class="dot" cx="${px(x)}" cy="${py(y)}" r="4" fill="${s.color}" stroke="#fff"><title>${esc(`${s.name}: ${num(y)} at ${o.xUnit} ${num(x)}`)}</title></circle>`,
        );
    }
  }
  return svg(width, height, o.label, parts.join(''));
}

/** Ticks of a log axis spanning [lo, hi] in log10 units: every decade, and 2 and 5 times it when there are few. */
function logTicks(lo: number, hi: number): number[] {
  const mantissas = hi - lo <= 3 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++)
    for (const m of mantissas) {
      const t = m * 10 ** e;
      if (Math.log10(t) >= lo && Math.log10(t) <= hi) ticks.push(Number(t.toPrecision(12)));
    }
  return ticks;
}
