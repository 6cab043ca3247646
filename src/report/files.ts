import { rmSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { renderReportHtml } from './html.js';
import type { ReportJson } from './types.js';
import { writeFileAtomic, writeJsonResult } from '../util/fs.js';

/** Where a command writes its report: the data and the page. */
export interface ReportFiles {
  json: string;
  html: string;
}

/** report.json and report.html in `dir`: the names `quantize` uses in its output folder. */
export function reportFilesIn(dir: string): ReportFiles {
  return { json: join(dir, 'report.json'), html: join(dir, 'report.html') };
}

/** `<name>.report.json` and `<name>.report.html` beside `file`, its extension dropped (m7.onnx → m7.report.html). */
export function reportFilesBeside(file: string): ReportFiles {
  const stem = join(dirname(file), basename(file, extname(file)));
  return { json: `${stem}.report.json`, html: `${stem}.report.html` };
}

/** Writes both files, each atomically; when either write fails, neither file is left. */
export function writeReportFiles(files: ReportFiles, report: ReportJson): void {
  // Rendered first, so that a rendering bug fails the run before anything is written.
  const html = renderReportHtml(report);
  try {
    writeJsonResult(files.json, report);
    writeFileAtomic(files.html, html);
  } catch (e) {
    rmSync(files.json, { force: true });
    throw e;
  }
}
