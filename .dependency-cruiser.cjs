/**
 * The layers of src/, lowest first (docs/ARCHITECTURE.md draws them). A folder may import its
 * own files and any folder of a lower layer; nothing in the same layer or above, so the folders
 * stay a stack and every cycle between them fails `npm run lint:deps`.
 */
const LAYERS = [
  ['util'],
  ['graph'],
  ['onnx', 'data'],
  ['runtime'],
  ['passes', 'eval', 'autodiff'],
  ['import', 'quantization', 'tse'],
  ['npu', 'qft'],
  ['report', 'export'],
  ['pipeline'],
  ['cli'],
];

const layerRules = LAYERS.flatMap((layer, i) => {
  const below = LAYERS.slice(0, i).flat();
  return layer.map((folder) => ({
    name: `layer-${folder}`,
    comment: `src/${folder}/ may import only ${below.length ? below.join(', ') : 'itself'} (docs/ARCHITECTURE.md)`,
    severity: 'error',
    from: { path: `^src/${folder}/` },
    to: { path: '^src/[^/]+/', pathNot: `^src/(${[folder, ...below].join('|')})/` },
  }));
});

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'no-circular',
      comment: 'Modules must not import each other in a ring, not even through types.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'Every import must resolve to a file or an installed package.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'no-dev-deps-in-src',
      comment: 'The installed package has no devDependencies: src/ may only use dependencies.',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
  ],
  options: {
    // TypeScript 7 has no compiler API for dependency-cruiser to parse with; swc parses TS, type-only imports included.
    parser: 'swc',
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    // test/package compiles only against the installed tarball (test/package/check.sh).
    exclude: { path: '^(dist|node_modules|test/package)/' },
  },
};
