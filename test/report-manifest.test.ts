import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { foldBatchNorm } from '../src/passes/fold-batchnorm.js';
import { loadProfile } from '../src/quantization/profile.js';
import { hashInput, runManifest } from '../src/report/manifest.js';
import { PassLog } from '../src/passes/pass-log.js';
import { QuantflowError } from '../src/util/errors.js';
import { tinyCnn } from './fixtures.js';

function withTempDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'manifest-'));
  return Promise.resolve(fn(dir)).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test('runManifest records versions, seed, options, profile and input fingerprints', () =>
  withTempDir((dir) => {
    const model = join(dir, 'm.onnx');
    writeFileSync(model, 'model bytes');
    mkdirSync(join(dir, 'data', 'cls'), { recursive: true });
    writeFileSync(join(dir, 'data', 'cls', 'a.jpg'), 'aaa');
    writeFileSync(join(dir, 'data', 'labels.csv'), 'file,label\n');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const profile = loadProfile('w8a8-shift');
    const m = runManifest({ seed: 7, options: { calibLimit: 64 }, profile, inputs: [model, join(dir, 'data')] });
    assert.equal(m.quantflowVersion, pkg.version);
    assert.match(m.onnxruntimeVersion, /^\d+\.\d+\.\d+/);
    assert.equal(m.nodeVersion, process.versions.node);
    assert.equal(m.seed, 7);
    assert.deepEqual(m.options, { calibLimit: 64 });
    assert.equal(m.profile, profile);
    assert.deepEqual(m.inputHashes[model], { sha256: createHash('sha256').update('model bytes').digest('hex'), of: 'content', bytes: 11 });
    const listing = createHash('sha256').update('cls/a.jpg\t3\nlabels.csv\t11\n').digest('hex');
    assert.deepEqual(m.inputHashes[join(dir, 'data')], { sha256: listing, of: 'listing', bytes: 14, files: 2 });
    assert.ok(!Number.isNaN(Date.parse(m.startedAt)));
    assert.equal(runManifest({ options: {}, inputs: [] }).seed, null);
  }));

test('a folder fingerprint follows names and sizes, not contents', () =>
  withTempDir((dir) => {
    writeFileSync(join(dir, 'x.jpg'), 'abc');
    const first = hashInput(dir).sha256;
    writeFileSync(join(dir, 'x.jpg'), 'xyz');
    assert.equal(hashInput(dir).sha256, first);
    writeFileSync(join(dir, 'x.jpg'), 'abcd');
    assert.notEqual(hashInput(dir).sha256, first);
  }));

test('an input that cannot be read is a QuantflowError naming it', () => {
  assert.throws(
    () => runManifest({ options: {}, inputs: ['/no/such/model.onnx'] }),
    (e: unknown) => {
      assert.ok(e instanceof QuantflowError);
      assert.match(e.message, /^\/no\/such\/model\.onnx: cannot read input to fingerprint it \(ENOENT\)$/);
      return true;
    },
  );
});

test('PassLog records what in-place and model-returning passes change', async () => {
  const model = tinyCnn();
  const log = new PassLog();
  const returned = await log.run('fold-batchnorm', model, () => foldBatchNorm(model.graph));
  assert.equal(returned, 1, "run passes the pass's own result through");
  await log.run('nothing', model, () => model);
  const [fold, nothing] = log.changes;
  assert.equal(fold!.pass, 'fold-batchnorm');
  assert.deepEqual(fold!.nodes, { before: 6, after: 5 });
  assert.deepEqual(fold!.opDelta, { BatchNormalization: -1 });
  // The four BN tensors go, and the conv weight and bias are replaced by folded copies under new names.
  assert.deepEqual(fold!.initializers, { added: 2, removed: 6, changed: 0 });
  assert.equal(fold!.parameters.before - fold!.parameters.after, 16);
  assert.ok(fold!.seconds >= 0);
  assert.deepEqual(nothing!.opDelta, {});
  assert.deepEqual(nothing!.initializers, { added: 0, removed: 0, changed: 0 });
});
