#!/usr/bin/env bash
# The package as a user gets it: packed, installed from the tarball into a fresh project, then
# run as `npx quantflow`, imported by the examples, and type-checked from a TypeScript file.
# Any failing step fails the script; steps that need ../shared say SKIPPED when it is missing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
shared="${QUANTFLOW_SHARED:-$(dirname "$repo")/shared}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
step() { echo "== package check: $*"; }
fail() { echo "package check FAILED: $*" >&2; exit 1; }

step "npm pack"
(cd "$repo" && npm pack --json --pack-destination "$work" >"$work/pack.json")
tarball="$work/$(node -e "console.log(JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8'))[0].filename)" "$work/pack.json")"

step "the tarball holds dist/src (js, d.ts), profiles, README.md, LICENSE and package.json, nothing else"
node -e "
const files = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8'))[0].files.map((f) => f.path);
const allowed = /^(dist\/src\/.+\.(js|d\.ts)|profiles\/[^/]+\.json|README\.md|LICENSE|package\.json)$/;
const stray = files.filter((f) => !allowed.test(f));
const required = ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/main.js', 'dist/src/data/decode-worker.js', 'profiles/w8a8-channel.json', 'README.md', 'LICENSE', 'package.json'];
const absent = required.filter((f) => !files.includes(f));
if (stray.length || absent.length) { console.error('unexpected: ' + stray.join(', ') + '; missing: ' + absent.join(', ')); process.exit(1); }
console.log(files.length + ' files');
" "$work/pack.json" || fail "tarball contents"

step "npm install of the tarball into a fresh project"
app="$work/app"
mkdir "$app"
cd "$app"
npm init -y >/dev/null
# onnxruntime-node bundles its CPU binaries; its install script would only fetch CUDA ones (the repository's .npmrc skips it too).
ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund "$tarball" || fail "npm install $tarball"

step "npx quantflow --help"
npx --no-install quantflow --help | grep -q '^Usage: quantflow' || fail "npx quantflow --help"

step "the public entry loads and finds its profiles; internal modules are not reachable"
node --input-type=module -e "
import { builtinProfiles, loadProfile } from 'quantflow';
if (builtinProfiles().length < 6) throw new Error('built-in profiles: ' + builtinProfiles().join(', '));
loadProfile('w4a8-shift');
try {
  await import('quantflow/dist/src/cli/main.js');
  throw new Error('an internal module was importable');
} catch (e) {
  if (e.code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw e;
}
" || fail "public entry"

step "TypeScript against the exported types (tsc --noEmit, moduleResolution nodenext)"
cp "$repo/test/package/consumer.ts" "$repo/test/package/tsconfig.json" "$app/"
node "$repo/node_modules/typescript/bin/tsc" -p "$app/tsconfig.json" --typeRoots "$repo/node_modules/@types" || fail "tsc --noEmit on consumer.ts"

for example in "$repo"/examples/*.mjs; do
  name="$(basename "$example")"
  if [ ! -d "$shared" ]; then
    echo "== package check: examples/$name SKIPPED: $shared is missing"
    continue
  fi
  step "examples/$name against the installed package"
  # Only the public entry: a copy beside the installed package resolves nothing else.
  grep -oE "from '[^']+'" "$example" | grep -vqE "^from '(node:[a-z/]+|quantflow)'$" && fail "examples/$name imports something other than node: modules and quantflow"
  cp "$example" "$app/$name"
  TMPDIR="$work" node "$app/$name" "$shared" || fail "examples/$name"
done
echo "package check passed"
