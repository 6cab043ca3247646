import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { QuantflowError } from '../util/errors.js';

/** One labelled image. */
export interface DatasetItem {
  /** Path relative to the dataset folder, with `/` separators (as written in labels.csv). */
  file: string;
  /** Absolute path. */
  path: string;
  /** 0-based class index. */
  label: number;
}

/** A labelled image set, in a stable order (labels.csv order, or sorted by class then path). */
export interface Dataset {
  dir: string;
  items: DatasetItem[];
  /** Class names by index, when the folder layout names them (one subfolder per class). */
  classNames?: string[];
}

const IMAGE_EXTENSIONS = /\.(jpe?g|png|webp)$/i;

/**
 * Loads a dataset folder: either `labels.csv` (header `file,label`, file relative to the
 * folder, label a 0-based integer) or one subfolder per class, class index = position in
 * the sorted subfolder names, images (jpg, jpeg, png, webp) found at any depth below it.
 * labels.csv wins when both exist. Throws a one-line QuantflowError on anything malformed.
 */
export async function loadDataset(dir: string): Promise<Dataset> {
  const root = resolve(dir);
  if (!existsSync(root)) throw new QuantflowError(`dataset folder '${dir}' does not exist`);
  if (!statSync(root).isDirectory()) throw new QuantflowError(`dataset '${dir}' is not a folder`);
  const csv = join(root, 'labels.csv');
  if (existsSync(csv)) return { dir: root, items: parseLabels(root, csv) };
  return fromClassFolders(root, dir);
}

function parseLabels(root: string, csv: string): DatasetItem[] {
  let text: string;
  try {
    text = readFileSync(csv, 'utf8');
  } catch (e) {
    throw new QuantflowError(`${csv}: cannot read the labels file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  const lines = text.split('\n');
  const fail = (line: number, what: string) => new QuantflowError(`${csv}:${line}: ${what}`);
  const header = lines[0]!.replace(/^\uFEFF/, '').trim();
  if (header !== 'file,label') throw fail(1, `expected the header 'file,label', found '${header}'`);
  const items: DatasetItem[] = [];
  const firstLine = new Map<string, number>();
  for (let i = 1; i < lines.length; i++) {
    const row = lines[i]!.trim();
    if (row === '') continue;
    const line = i + 1;
    const cols = row.split(',');
    if (cols.length !== 2) throw fail(line, `expected 2 columns (file,label), found ${cols.length}`);
    const file = cols[0]!.trim();
    const labelText = cols[1]!.trim();
    if (!/^\d+$/.test(labelText)) throw fail(line, `label '${labelText}' is not a non-negative integer`);
    const seen = firstLine.get(file);
    if (seen !== undefined) throw fail(line, `file '${file}' is listed twice (first on line ${seen})`);
    firstLine.set(file, line);
    const path = resolve(root, file);
    if (!existsSync(path) || !statSync(path).isFile()) throw fail(line, `file '${file}' does not exist`);
    items.push({ file, path, label: Number(labelText) });
  }
  if (items.length === 0) throw new QuantflowError(`${csv} lists no images`);
  return items;
}

function fromClassFolders(root: string, dir: string): Dataset {
  const entries = readdirSync(root, { withFileTypes: true }).filter((e) => !e.name.startsWith('.'));
  if (entries.length === 0) throw new QuantflowError(`dataset folder '${dir}' is empty`);
  // Plain code-unit order, as Python's sorted() in torchvision's ImageFolder.
  const classNames = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  const items = classNames.flatMap((name, label) =>
    imagesUnder(join(root, name)).map((path) => ({ file: relative(root, path).split(sep).join('/'), path, label })),
  );
  if (items.length === 0) {
    throw new QuantflowError(
      `dataset folder '${dir}' has no labels.csv and no images in class subfolders (jpg, jpeg, png, webp)`,
    );
  }
  return { dir: root, items, classNames };
}

/** Image files at any depth below `folder`, sorted by path. */
function imagesUnder(folder: string): string[] {
  return readdirSync(folder, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && IMAGE_EXTENSIONS.test(e.name) && !e.name.startsWith('.'))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}
