import { readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { cutBefore } from '../graph/cut.js';
import type { Model } from '../graph/types.js';
import { parseOnnx } from '../onnx/read.js';
import { QuantflowError } from '../util/errors.js';
import { importTflite } from './tflite/import.js';

/** The formats quantflow reads. */
export type ModelFormat = 'onnx' | 'tflite';

/** TFLite flatbuffers carry the file identifier "TFL3" at byte 4; anything else is tried as ONNX. */
export function detectFormat(bytes: Uint8Array): ModelFormat {
  const id = String.fromCharCode(...bytes.subarray(4, 8));
  return id === 'TFL3' ? 'tflite' : 'onnx';
}

export interface LoadOptions {
  /**
   * Import the model only up to this operator (TFLite operator kind or custom code; ONNX node
   * name or operator type) or tensor: its inputs (or the tensor) become the graph's outputs
   * and what is computed from them is dropped.
   */
  cutBefore?: string;
}

/**
 * Reads a model file of either format into the ONNX-semantics graph. The format comes from
 * the file's content, not its extension, so a misnamed file still loads.
 */
export function loadModel(path: string, options: LoadOptions = {}): Model {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : String(code ?? e);
    throw new QuantflowError(`${path}: cannot read model file (${hint})`);
  }
  if (bytes.length === 0) throw new QuantflowError(`${path}: the model file is empty`);
  if (detectFormat(bytes) !== 'tflite' && path.toLowerCase().endsWith('.tflite'))
    throw new QuantflowError(`${path}: not a TFLite flatbuffer (no TFL3 identifier); the file may be truncated or corrupt`);
  return loadModelBytes(bytes, { ...options, source: path, baseDir: dirname(path) });
}

/** Where model bytes came from: named in errors; `baseDir` holds an ONNX model's external data files. */
export interface ModelSource {
  source: string;
  baseDir?: string;
}

/** `loadModel` for a model already in memory; the format comes from the content. */
export function loadModelBytes(bytes: Uint8Array, options: LoadOptions & ModelSource): Model {
  const { source, baseDir, cutBefore: cut } = options;
  if (bytes.length === 0) throw new QuantflowError(`${source}: the model is empty`);
  if (detectFormat(bytes) === 'tflite') return importTflite(bytes, basename(source), { cutBefore: cut });
  const model = parseOnnx(bytes, { source, baseDir });
  if (cut !== undefined) cutBefore(model, cut, source);
  return model;
}
