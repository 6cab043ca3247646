import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { QuantflowError } from '../util/errors.js';

/** One image (or .npy tensor), with its label when the dataset has labels. */
export interface DatasetItem {
  /** Path relative to the dataset folder, with `/` separators (as written in labels.csv). */
  file: string;
  /** Absolute path. */
  path: string;
  /** 0-based class index; absent in an unlabelled dataset. */
  label?: number;
}

/** An image set, in a stable order (labels.csv order, or sorted by class then path, or by path). */
export interface Dataset {
  dir: string;
  items: DatasetItem[];
  /** Whether every item has a label (labels.csv or class folders). */
  labelled: boolean;
  /** Class names by index, when the folder layout names them (one subfolder per class). */
  classNames?: string[];
}

const INPUT_FILES = /\.(jpe?g|png|webp|npy)$/i;

/**
 * Loads a dataset folder. Its inputs are images (jpg, jpeg, png, webp) or .npy tensors.
 * - `labels.csv` (header `file,label`, file relative to the folder, label a 0-based
 *   integer) lists the items and their labels;
 * - else, when the folder holds no input file of its own and two or more subfolders, each
 *   subfolder is a class (index = position in the sorted names), its inputs found at any
 *   depth below it;
 * - else every input at any depth is an item, sorted by path, without labels.
 * Throws a one-line QuantflowError on anything malformed.
 */
export async function loadDataset(dir: string): Promise<Dataset> {
  const root = resolve(dir);
  if (!existsSync(root)) throw new QuantflowError(`dataset folder '${dir}' does not exist`);
  if (!statSync(root).isDirectory()) throw new QuantflowError(`dataset '${dir}' is not a folder`);
  const csv = join(root, 'labels.csv');
  if (existsSync(csv)) return { dir: root, items: parseLabels(root, csv), labelled: true };
  return fromFolders(root, dir);
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

function fromFolders(root: string, dir: string): Dataset {
  const entries = readdirSync(root, { withFileTypes: true }).filter((e) => !e.name.startsWith('.'));
  if (entries.length === 0) throw new QuantflowError(`dataset folder '${dir}' is empty`);
  const file = (path: string) => relative(root, path).split(sep).join('/');
  // Plain code-unit order, as Python's sorted() in torchvision's ImageFolder.
  const subfolders = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  const ownInputs = entries.some((e) => INPUT_FILES.test(e.name) && (e.isFile() || (e.isSymbolicLink() && isFile(join(root, e.name)))));
  if (!ownInputs && subfolders.length >= 2) {
    const items = subfolders.flatMap((name, label) => inputsUnder(join(root, name)).map((path) => ({ file: file(path), path, label })));
    if (items.length === 0)
      throw new QuantflowError(`dataset folder '${dir}' has no images (jpg, jpeg, png, webp) or .npy files at any depth`);
    return { dir: root, items, labelled: true, classNames: subfolders };
  }
  const items = inputsUnder(root).map((path) => ({ file: file(path), path }));
  if (items.length === 0)
    throw new QuantflowError(`dataset folder '${dir}' has no images (jpg, jpeg, png, webp) or .npy files at any depth`);
  return { dir: root, items, labelled: false };
}

/** Input files at any depth below `folder`, sorted by path. */
function inputsUnder(folder: string): string[] {
  return readdirSync(folder, { recursive: true, withFileTypes: true })
    .filter(
      (e) =>
        INPUT_FILES.test(e.name) && !e.name.startsWith('.') && (e.isFile() || (e.isSymbolicLink() && isFile(join(e.parentPath, e.name)))),
    )
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/** Whether a link leads to a file (datasets are often folders of links to one copy of the images). */
function isFile(path: string): boolean {
  return existsSync(path) && statSync(path).isFile();
}
