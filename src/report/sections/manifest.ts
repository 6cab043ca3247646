import { bytes, esc, facts, table } from '../markup.js';
import type { ReportSection } from '../section.js';

/** Versions, seed, options and input fingerprints: enough to rerun or compare the run. */
export const manifestSection: ReportSection = {
  id: 'manifest',
  title: 'Run manifest',
  render({ report, extras }) {
    const m = extras.manifest ?? report.manifest;
    if (!m) return undefined;
    const inputs = Object.entries(m.inputHashes).map(([path, h]) => [
      `<code>${esc(path)}</code>`,
      esc(h.of === 'listing' ? `folder listing (${h.files} files)` : 'file content'),
      { html: bytes(h.bytes), numeric: true },
      `<code title="${h.sha256}">${h.sha256.slice(0, 16)}…</code>`,
    ]);
    return (
      facts([
        ['started', esc(m.startedAt)],
        ['versions', esc(`quantflow ${m.quantflowVersion}, onnxruntime-node ${m.onnxruntimeVersion}, Node ${m.nodeVersion}`)],
        ['seed', m.seed === null ? 'none' : String(m.seed)],
        ['options', `<code>${esc(JSON.stringify(m.options))}</code>`],
      ]) +
      (inputs.length
        ? table(['input', 'sha256 of', 'size', 'sha256'], inputs) +
          '<p class="note">Folders are fingerprinted by their sorted list of file names and sizes, not their bytes.</p>'
        : '')
    );
  },
};
