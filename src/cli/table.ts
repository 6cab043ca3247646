/** Formats rows as an aligned plain-text table (first row is the header). */
export function formatTable(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** A fraction as a percentage with one decimal. */
export function percent(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/**
 * Nodes for one line of output: each named when there are a few, otherwise counted by
 * operator (a detector's post-processing is dozens of nodes; report.json lists them all).
 */
export function nodeSummary(nodes: readonly { name: string; opType: string }[]): string {
  if (nodes.length <= 4) return nodes.map((n) => `${n.opType} (node ${n.name})`).join(', ');
  const counts = new Map<string, number>();
  for (const n of nodes) counts.set(n.opType, (counts.get(n.opType) ?? 0) + 1);
  const ops = [...counts].map(([op, k]) => (k > 1 ? `${op} x${k}` : op)).join(', ');
  return `${nodes.length} nodes (${ops}; each named in report.json)`;
}
