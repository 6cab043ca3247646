/**
 * LiteRT (TensorFlow Lite) itself, in WebAssembly, run from Node: Google's `@litertjs/core`,
 * the TFLite interpreter whose CPU path delegates to XNNPACK. The independent TFLite runtime of
 * `npm run bench:tflite` and the export tests, beside Debian's Arm NN: tens of milliseconds per
 * MobileNet image where Arm NN's CpuRef takes seconds.
 *
 * The package is written for browsers: it loads its Emscripten script with `importScripts` (or a
 * `<script>` tag) and asks for a WebGPU device. Here the script runs in this context with the
 * CommonJS globals Emscripten's Node branch expects; the WebGPU warning and the runtime's
 * INFO lines are silenced.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runInThisContext } from 'node:vm';

/** One tensor in or out of the runtime: NHWC, the file's own element type. */
export interface LitertTensor {
  data: ArrayLike<number>;
  shape: number[];
  dtype: string;
}

/** A compiled .tflite model. */
export interface LitertModel {
  run(inputs: LitertTensor[]): Promise<LitertTensor[]>;
  inputs: { name: string; dtype: string; shape: number[] }[];
  outputs: { name: string; dtype: string; shape: number[] }[];
  delete(): void;
}

type Core = typeof import('@litertjs/core');
let core: Promise<Core> | undefined;

/** The @litertjs/core version the runs use. */
export function litertVersion(): string {
  const require = createRequire(import.meta.url);
  const main = require.resolve('@litertjs/core');
  return (JSON.parse(readFileSync(join(dirname(main), '..', 'package.json'), 'utf8')) as { version: string }).version;
}

function load(): Promise<Core> {
  core ??= (async () => {
    const require = createRequire(import.meta.url);
    const wasm = join(dirname(require.resolve('@litertjs/core')), '..', 'wasm');
    Object.assign(globalThis, {
      self: globalThis,
      require,
      __dirname: wasm,
      __filename: join(wasm, 'litert.js'),
      importScripts: (url: string) => {
        const path = url.startsWith('file:') ? fileURLToPath(url) : url;
        runInThisContext(readFileSync(path, 'utf8'), { filename: path });
      },
      // Emscripten's Module: where the runtime's own log lines go.
      Module: { print: () => {}, printErr: () => {} },
    });
    // LiteRT.js maps only float32, int32 and uint8 tensors to typed arrays, though the runtime
    // runs int8 and int64 ones: a copy of its module with those two added lets the exported file
    // run as written (int8 input and output, ARG_MAX's int64 class map).
    const main = require.resolve('@litertjs/core');
    const source = readFileSync(main, 'utf8');
    const anchor = 'var DATATYPES = Object.freeze([';
    if (!source.includes(anchor)) throw new Error(`${main}: no DATATYPES table to extend; @litertjs/core changed`);
    const extended = join(dirname(main), 'index.quantflow.js');
    writeFileSync(
      extended,
      source.replace(
        anchor,
        `${anchor} { dtype: "int8", typedArrayConstructor: Int8Array, elementType: ElementType.INT8 }, { dtype: "int64", typedArrayConstructor: BigInt64Array, elementType: ElementType.INT64 },`,
      ),
    );
    const lib = (await import(pathToFileURL(extended).href)) as Core;
    const warn = console.warn;
    console.warn = () => {};
    try {
      await lib.loadLiteRt(`${wasm}/`);
    } finally {
      console.warn = warn;
    }
    return lib;
  })();
  return core;
}

const arrays: Record<string, new (n: ArrayLike<number>) => ArrayLike<number>> = {
  int8: Int8Array,
  uint8: Uint8Array,
  int32: Int32Array,
  float32: Float32Array,
};

/** Compiles a .tflite file for LiteRT's CPU path (XNNPACK, one thread). */
export async function openLitert(bytes: Uint8Array): Promise<LitertModel> {
  const lib = await load();
  const model = await lib.loadAndCompile(bytes, { accelerator: 'wasm', cpuOptions: { numThreads: 1 } });
  const details = (list: readonly { name: string; dtype: string; shape: ArrayLike<number> }[]) =>
    list.map((d) => ({ name: d.name, dtype: d.dtype, shape: Array.from(d.shape as ArrayLike<number>) }));
  const inputs = details(model.getInputDetails());
  return {
    inputs,
    outputs: details(model.getOutputDetails()),
    async run(tensors) {
      const feeds = tensors.map((t, i) => {
        const make = arrays[inputs[i]!.dtype];
        if (!make) throw new Error(`LiteRT input ${inputs[i]!.name}: type ${inputs[i]!.dtype} not handled here`);
        return new lib.Tensor(new make(t.data) as never, t.shape);
      });
      const results = await model.run(feeds);
      for (const f of feeds) f.delete();
      const out = results.map((r) => {
        const data = r.toTypedArray() as ArrayLike<number | bigint>;
        return { data: Array.from(data, Number), shape: Array.from(r.type.layout.dimensions), dtype: r.type.dtype as string };
      });
      for (const r of results) r.delete();
      return out;
    },
    delete: () => model.delete(),
  };
}
