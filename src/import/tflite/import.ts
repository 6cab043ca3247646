/**
 * TFLite flatbuffer → quantflow graph (ONNX semantics, opset 17, float32, NCHW).
 *
 * Quantized models become the float graph they approximate: constants are dequantized,
 * QUANTIZE/DEQUANTIZE vanish, and each quantized op's output is clamped to the range its
 * integer type can represent (which is how these models often express ReLU/ReLU6). The
 * original quantization parameters are kept in the model metadata.
 */
import { basename } from 'node:path';
import { createGraph, makeNode } from '../../graph/graph.js';
import { topologicalSort } from '../../graph/toposort.js';
import type { Model } from '../../graph/types.js';
import { QuantflowError } from '../../util/errors.js';
import { builtinName } from './builtins.js';
import { ImportContext, Op } from './context.js';
import { CONVERTERS } from './ops/index.js';
import { representableRange } from './quant.js';
import { readTfliteModel, type TfliteSubgraph, type TfliteTensor } from './schema.js';

/** Metadata keys the importer writes. */
export const METADATA = {
  source: 'source',
  /** JSON `{ "<value>": { scale: number[], zeroPoint: number[], axis: number } }`, axis in ONNX layout. */
  quantization: 'tflite.quantization',
  /** JSON {@link TfliteInputInfo} of the first graph input. */
  input: 'tflite.input',
} as const;

/** What the original model expected as input, so a data loader can feed the real-valued equivalent. */
export interface TfliteInputInfo {
  /** The ONNX graph input's name. */
  name: string;
  /** The TFLite input's element type (uint8, int8, float32, ...). */
  dtype: string;
  scale: number | null;
  zeroPoint: number | null;
  /** Real values the quantized input type covers; null for a float input. */
  realMin: number | null;
  realMax: number | null;
}

const INPUT_TYPES = new Set(['float32', 'uint8', 'int8', 'int16']);

/**
 * Imports a TFLite model (its first subgraph) as a float ONNX-semantics graph with NCHW
 * activations and a symbolic batch dimension. `source` names the file in error messages.
 * Every problem with the file, including truncation and corruption, is a QuantflowError.
 */
export function importTflite(bytes: Uint8Array, source: string): Model {
  try {
    return convert(bytes, source);
  } catch (e) {
    if (e instanceof QuantflowError) throw e;
    // Damaged files can still surprise the checks (e.g. absurd sizes); report them as such.
    throw new QuantflowError(`${source}: cannot import TFLite model: ${(e as Error)?.message ?? e}`, { cause: e });
  }
}

function checkShapes(sg: TfliteSubgraph, source: string): void {
  for (const t of sg.tensors)
    if (t.shape.some((d) => d < 0))
      throw new QuantflowError(
        `${source}: tensor '${t.name}' has dynamic shape [${t.shape}]; only static shapes are supported`,
      );
}

function convert(bytes: Uint8Array, source: string): Model {
  const tfl = readTfliteModel(bytes, source);
  const sg = tfl.subgraphs[0];
  if (!sg) throw new QuantflowError(`${source}: the TFLite model has no subgraphs`);
  checkShapes(sg, source);
  const tensor = (i: number, what: string): TfliteTensor => {
    const t = sg.tensors[i];
    if (!t) throw new QuantflowError(`${source}: ${what} refers to tensor ${i}, but subgraph 0 has ${sg.tensors.length}`);
    return t;
  };
  const inputs = sg.inputs.map((i, k) => tensor(i, `graph input ${k}`));
  if (inputs.length === 0) throw new QuantflowError(`${source}: the TFLite model has no inputs`);
  for (const t of inputs)
    if (!INPUT_TYPES.has(t.type)) throw new QuantflowError(`${source}: input '${t.name}' has unsupported type ${t.type}`);

  const graph = createGraph(sg.name || basename(source).replace(/\.tflite$/, ''));
  const ctx = new ImportContext(graph, tfl, sg, source, inputs[0]!.shape[0] ?? 1);
  for (const t of inputs) graph.inputs.push({ name: ctx.defineInput(t), dataType: 'float32', shape: ctx.onnxDims(t) });

  for (const raw of sg.operators) {
    const code = tfl.operatorCodes[raw.opcodeIndex];
    const where = `(operator ${raw.index} of subgraph 0)`;
    if (!code) {
      const count = tfl.operatorCodes.length;
      throw new QuantflowError(
        `${source}: operator ${raw.index} of subgraph 0 uses opcode index ${raw.opcodeIndex}, but the model lists ${count}`,
      );
    }
    const name = builtinName(code.builtin);
    if (name === 'CUSTOM') {
      const custom = JSON.stringify(code.customCode ?? '');
      throw new QuantflowError(`${source}: unsupported TFLite custom operator ${custom} ${where}`);
    }
    const converter = CONVERTERS[name];
    if (!converter) {
      const supported = Object.keys(CONVERTERS).join(', ');
      throw new QuantflowError(`${source}: unsupported TFLite operator ${name} ${where}; supported: ${supported}`);
    }
    converter(ctx, new Op(ctx, raw, name));
  }

  const computed = new Set(graph.nodes.flatMap((n) => n.outputs));
  sg.outputs.forEach((i, k) => {
    const t = tensor(i, `graph output ${k}`);
    let name = ctx.boundValue(t);
    if (name === undefined) throw new QuantflowError(`${source}: no operator writes graph output '${t.name}'`);
    const dataType = ctx.typeOf(name);
    // ONNX needs every graph output to be some node's result.
    if (!computed.has(name) || graph.outputs.some((o) => o.name === name)) {
      const copy = ctx.fresh(`${name}_output`);
      graph.nodes.push(makeNode('Identity', [name], [copy]));
      name = copy;
    }
    graph.outputs.push({ name, dataType, shape: ctx.onnxDims(t) });
    graph.valueInfo.delete(name);
  });
  topologicalSort(graph);

  const first = inputs[0]!;
  const range = representableRange(first.type, first.quantization);
  const input: TfliteInputInfo = {
    name: graph.inputs[0]!.name,
    dtype: first.type,
    scale: first.quantization?.scale[0] ?? null,
    zeroPoint: first.quantization?.zeroPoint[0] ?? null,
    realMin: range?.[0] ?? null,
    realMax: range?.[1] ?? null,
  };
  return {
    graph,
    opset: 17,
    producerName: 'quantflow-tflite-import',
    metadata: {
      [METADATA.source]: basename(source),
      [METADATA.quantization]: JSON.stringify(ctx.quantization),
      [METADATA.input]: JSON.stringify(input),
    },
  };
}
