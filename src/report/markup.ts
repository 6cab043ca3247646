/** Small HTML helpers shared by the report sections. */

/** Escapes text for HTML and SVG content and attribute values. */
export function esc(value: string | number): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A number for humans: `digits` significant digits, exponent form outside 1e-3..1e6. */
export function num(x: number, digits = 3): string {
  if (x === Infinity) return '∞';
  if (x === -Infinity) return '−∞';
  if (Number.isNaN(x)) return 'NaN';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a < 1e-3 || a >= 1e6) return x.toExponential(digits - 1);
  return Number(x.toPrecision(digits)).toString();
}

/** A dB value from report.json, where null means +Infinity. */
export function db(x: number | null | undefined): string {
  return x === undefined ? '' : x === null ? '∞' : x.toFixed(1);
}

/** Bytes as kB/MB with three significant digits (decimal units, as file managers show them). */
export function bytes(n: number): string {
  return n >= 1e6 ? `${num(n / 1e6)} MB` : n >= 1e3 ? `${num(n / 1e3)} kB` : `${n} B`;
}

/** A count as 3.49M / 77.7k / 840. */
export function count(n: number): string {
  return n >= 1e6 ? `${num(n / 1e6)}M` : n >= 1e3 ? `${num(n / 1e3)}k` : String(n);
}

export function percent(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/** A cell: raw HTML, or a number right-aligned in tabular figures. */
export type Cell = string | { html: string; numeric?: boolean; title?: string };

/** A table; `header` cells are text, body cells raw HTML (callers escape text with `esc`). */
export function table(header: string[], rows: Cell[][], className = ''): string {
  const td = (c: Cell) => {
    if (typeof c === 'string') return `<td>${c}</td>`;
    const title = c.title ? ` title="${esc(c.title)}"` : '';
    return `<td${c.numeric ? ' class="n"' : ''}${title}>${c.html}</td>`;
  };
  return (
    `<table${className ? ` class="${className}"` : ''}><thead><tr>${header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead>` +
    `<tbody>${rows.map((r) => `<tr>${r.map(td).join('')}</tr>`).join('\n')}</tbody></table>`
  );
}

/** A definition list of label → HTML rows (the summary's layout). */
export function facts(rows: [string, string][]): string {
  return `<dl class="facts">${rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>`;
}

/**
 * Short, still unique labels for layer names: the path prefix all names share is dropped,
 * then each name keeps as few leading `/`-segments as make it unique (full names go in
 * tooltips). `MobileNetV2/expanded_conv_3/project/batch_norm/...` → `expanded_conv_3/project`.
 */
export function shortLabels(names: string[]): string[] {
  const parts = names.map((n) => n.split('/'));
  let common = 0;
  while (parts.length && parts.every((p) => p.length > common + 1 && p[common] === parts[0]![common])) common++;
  const rest = parts.map((p) => p.slice(common));
  const keep = rest.map(() => 1);
  for (let changed = true; changed;) {
    changed = false;
    const labels = rest.map((p, i) => p.slice(0, keep[i]).join('/'));
    const counts = new Map<string, number>();
    for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
    labels.forEach((l, i) => {
      if (counts.get(l)! > 1 && keep[i]! < rest[i]!.length) {
        keep[i] = keep[i]! + 1;
        changed = true;
      }
    });
  }
  return rest.map((p, i) => p.slice(0, keep[i]).join('/'));
}
