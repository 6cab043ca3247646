import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadDataset } from '../src/data/dataset.js';
import { QuantflowError } from '../src/util/errors.js';

const root = mkdtempSync(join(tmpdir(), 'quantflow-dataset-'));
after(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
/** A fresh folder holding `files` (path -> content; a trailing '/' makes an empty folder). */
function folder(files: Record<string, string>): string {
  const dir = join(root, `d${counter++}`);
  mkdirSync(dir);
  for (const [path, content] of Object.entries(files)) {
    if (path.endsWith('/')) {
      mkdirSync(join(dir, path), { recursive: true });
      continue;
    }
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

async function rejects(dir: string, pattern: RegExp): Promise<void> {
  await assert.rejects(loadDataset(dir), (e: unknown) => {
    assert.ok(e instanceof QuantflowError, `expected a QuantflowError, got ${e}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'), 'error message is one line');
    return true;
  });
}

describe('loadDataset with labels.csv', () => {
  it('reads files and labels in order, tolerating CRLF and a trailing newline', async () => {
    const dir = folder({
      'labels.csv': 'file,label\r\nimg/b.jpg,3\r\na.png,0\r\n',
      'img/b.jpg': 'x',
      'a.png': 'x',
    });
    const ds = await loadDataset(dir);
    assert.equal(ds.dir, dir);
    assert.deepEqual(
      ds.items.map((i) => [i.file, i.label, i.path]),
      [
        ['img/b.jpg', 3, join(dir, 'img/b.jpg')],
        ['a.png', 0, join(dir, 'a.png')],
      ],
    );
    assert.equal(ds.classNames, undefined);
  });

  it('prefers labels.csv over class subfolders', async () => {
    const dir = folder({ 'labels.csv': 'file,label\ncat/1.jpg,7\n', 'cat/1.jpg': 'x', 'dog/2.jpg': 'x' });
    const ds = await loadDataset(dir);
    assert.deepEqual(
      ds.items.map((i) => [i.file, i.label]),
      [['cat/1.jpg', 7]],
    );
  });

  it('rejects a missing header', async () => {
    await rejects(folder({ 'labels.csv': 'a.jpg,1\n', 'a.jpg': 'x' }), /labels\.csv:1: expected the header 'file,label', found 'a\.jpg,1'/);
  });

  it('rejects a labels.csv that cannot be read', async () => {
    await rejects(folder({ 'labels.csv/': '' }), /labels\.csv: cannot read the labels file \(EISDIR\)/);
  });

  it('rejects an empty labels.csv', async () => {
    await rejects(folder({ 'labels.csv': '' }), /labels\.csv:1: expected the header/);
  });

  it('rejects a labels.csv without rows', async () => {
    await rejects(folder({ 'labels.csv': 'file,label\n' }), /labels\.csv lists no images/);
  });

  it('rejects a wrong column count, naming the line', async () => {
    await rejects(
      folder({ 'labels.csv': 'file,label\na.jpg,1\nb.jpg,2,x\n', 'a.jpg': 'x', 'b.jpg': 'x' }),
      /labels\.csv:3: expected 2 columns \(file,label\), found 3/,
    );
    await rejects(
      folder({ 'labels.csv': 'file,label\na.jpg\n', 'a.jpg': 'x' }),
      /labels\.csv:2: expected 2 columns \(file,label\), found 1/,
    );
  });

  for (const bad of ['-1', '1.5', 'cat', '']) {
    it(`rejects the label '${bad}'`, async () => {
      await rejects(
        folder({ 'labels.csv': `file,label\na.jpg,${bad}\n`, 'a.jpg': 'x' }),
        new RegExp(`labels\\.csv:2: label '${bad.replace('.', '\\.')}' is not a non-negative integer`),
      );
    });
  }

  it('rejects a listed file that does not exist, naming it', async () => {
    await rejects(
      folder({ 'labels.csv': 'file,label\na.jpg,1\nimg/missing.jpg,2\n', 'a.jpg': 'x' }),
      /labels\.csv:3: file 'img\/missing\.jpg' does not exist/,
    );
  });

  it('rejects a listed folder as not a file', async () => {
    await rejects(folder({ 'labels.csv': 'file,label\nsub,1\n', 'sub/': '' }), /labels\.csv:2: file 'sub' does not exist/);
  });

  it('rejects a duplicate file', async () => {
    await rejects(
      folder({ 'labels.csv': 'file,label\na.jpg,1\nb.jpg,1\na.jpg,2\n', 'a.jpg': 'x', 'b.jpg': 'x' }),
      /labels\.csv:4: file 'a\.jpg' is listed twice \(first on line 2\)/,
    );
  });
});

describe('loadDataset with one subfolder per class', () => {
  it('numbers classes by sorted folder name and finds images at any depth, any case', async () => {
    const dir = folder({
      'zebra/z1.JPEG': 'x',
      'ant/b.png': 'x',
      'ant/a.webp': 'x',
      'ant/notes.txt': 'x',
      'ant/deep/c.jpg': 'x',
      'Bee/x.jpeg': 'x',
      'readme.md': 'x',
    });
    const ds = await loadDataset(dir);
    assert.deepEqual(ds.classNames, ['Bee', 'ant', 'zebra']);
    assert.deepEqual(
      ds.items.map((i) => [i.file, i.label]),
      [
        ['Bee/x.jpeg', 0],
        ['ant/a.webp', 1],
        ['ant/b.png', 1],
        ['ant/deep/c.jpg', 1],
        ['zebra/z1.JPEG', 2],
      ],
    );
    assert.equal(ds.items[0]!.path, join(dir, 'Bee/x.jpeg'));
    assert.equal(ds.labelled, true);
  });

  it('keeps the index of an empty class folder', async () => {
    const ds = await loadDataset(folder({ 'a/': '', 'b/1.png': 'x' }));
    assert.deepEqual(ds.classNames, ['a', 'b']);
    assert.deepEqual(
      ds.items.map((i) => i.label),
      [1],
    );
  });

  it('rejects a missing folder', async () => {
    await rejects(join(root, 'nope'), /dataset folder '.*nope' does not exist/);
  });

  it('rejects a file given as the folder', async () => {
    const dir = folder({ 'a.jpg': 'x' });
    await rejects(join(dir, 'a.jpg'), /dataset '.*a\.jpg' is not a folder/);
  });

  it('rejects an empty folder', async () => {
    await rejects(folder({}), /dataset folder '.*' is empty/);
  });

  it('rejects class folders without images', async () => {
    await rejects(folder({ 'cat/readme.txt': 'x', 'dog/': '' }), /has no images \(jpg, jpeg, png, webp\) or \.npy files at any depth/);
  });
});

describe('loadDataset without labels', () => {
  it('takes a flat folder of images as an unlabelled set, sorted by path', async () => {
    const dir = folder({ 'b.jpg': 'x', 'a.png': 'x', 'notes.txt': 'x', 'c.npy': 'x' });
    const ds = await loadDataset(dir);
    assert.equal(ds.labelled, false);
    assert.deepEqual(ds.items, [
      { file: 'a.png', path: join(dir, 'a.png') },
      { file: 'b.jpg', path: join(dir, 'b.jpg') },
      { file: 'c.npy', path: join(dir, 'c.npy') },
    ]);
    assert.equal(ds.classNames, undefined);
  });

  it('takes images at any depth when the root holds images of its own', async () => {
    const ds = await loadDataset(folder({ 'top.jpg': 'x', 'x/1.jpg': 'x', 'y/deep/2.webp': 'x' }));
    assert.equal(ds.labelled, false);
    assert.deepEqual(
      ds.items.map((i) => i.file),
      ['top.jpg', 'x/1.jpg', 'y/deep/2.webp'],
    );
  });

  it('takes a single subfolder as a nested plain folder, not one class', async () => {
    const ds = await loadDataset(folder({ 'photos/2019/a.jpg': 'x', 'photos/2020/b.jpg': 'x' }));
    assert.equal(ds.labelled, false);
    assert.deepEqual(
      ds.items.map((i) => [i.file, i.label]),
      [
        ['photos/2019/a.jpg', undefined],
        ['photos/2020/b.jpg', undefined],
      ],
    );
  });

  it('rejects a folder without images at any depth', async () => {
    await rejects(folder({ 'notes.txt': 'x', 'sub/readme.md': 'x' }), /has no images \(jpg, jpeg, png, webp\) or \.npy files at any depth/);
  });
});
