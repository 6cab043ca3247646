/**
 * TFLite flatbuffer → quantflow graph (ONNX semantics, opset 17, float32, NCHW).
 *
 * Quantized models become the float graph they approximate: constants are dequantized,
 * QUANTIZE/DEQUANTIZE vanish, and each quantized op's output is clamped to the range its
 * integer type can represent (which is how these models often express ReLU/ReLU6). The
 * original quantization parameters are kept in the model metadata.
 */
import { basename } from 'node:path';
import { createGraph, makeNode, pruneDeadNodes } from '../../graph/graph.js';
import { topologicalSort } from '../../graph/toposort.js';
import type { Model } from '../../graph/types.js';
import { QuantflowError } from '../../util/errors.js';
import { builtinName, type TfliteBuiltin } from './builtins.js';
import { ImportContext, Op } from './context.js';
import { CONVERTERS, CUSTOM_CONVERTERS } from './ops/index.js';
import { representableRange } from './quant.js';
import { readTfliteModel, type TfliteModel, type TfliteOperator, type TfliteSubgraph, type TfliteTensor } from './schema.js';

/** Metadata keys the importer writes. */
export const METADATA = {
  source: 'source',
  /** JSON `{ "<value>": { scale: number[], zeroPoint: number[], axis: number } }`, axis in ONNX layout. */
  quantization: 'tflite.quantization',
  /** JSON {@link TfliteInputInfo} of the first graph input. */
  input: 'tflite.input',
  /** JSON `RecordedCustomOp[]` (context.ts): custom operators expanded into ONNX ops. */
  customOps: 'tflite.custom_ops',
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

export interface TfliteImportOptions {
  /**
   * An operator kind (builtin name such as LOGISTIC, or custom code) or a tensor name: the
   * inputs of every operator of that kind (or the tensor) become graph outputs, and the
   * operators computed from them are dropped. Operator kinds win over tensor names, since
   * TFLite names an operator's first output after it.
   */
  cutBefore?: string;
}

/**
 * Imports a TFLite model (its first subgraph) as a float ONNX-semantics graph with NCHW
 * activations and a symbolic batch dimension. `source` names the file in error messages.
 * Every problem with the file, including truncation and corruption, is a QuantflowError.
 */
export function importTflite(bytes: Uint8Array, source: string, options: TfliteImportOptions = {}): Model {
  try {
    return convert(bytes, source, options);
  } catch (e) {
    if (e instanceof QuantflowError) throw e;
    // Damaged files can still surprise the checks (e.g. absurd sizes); report them as such.
    throw new QuantflowError(`${source}: cannot import TFLite model: ${(e as Error)?.message ?? e}`, { cause: e });
  }
}

function checkShapes(sg: TfliteSubgraph, source: string): void {
  for (const t of sg.tensors)
    if (t.shape.some((d) => d < 0))
      throw new QuantflowError(`${source}: tensor '${t.name}' has dynamic shape [${t.shape}]; only static shapes are supported`);
}

/** Builtin name, or custom code for a custom operator. */
function operatorKind(tfl: TfliteModel, raw: TfliteOperator, source: string): string {
  const code = tfl.operatorCodes[raw.opcodeIndex];
  if (!code) {
    const count = tfl.operatorCodes.length;
    throw new QuantflowError(
      `${source}: operator ${raw.index} of subgraph 0 uses opcode index ${raw.opcodeIndex}, but the model lists ${count}`,
    );
  }
  const name = builtinName(code.builtin);
  return name === 'CUSTOM' ? (code.customCode ?? '') : name;
}

/**
 * Where the import stops for `cutBefore`: for each operator, the input tensors that become
 * graph outputs in its place, or null when it is converted.
 */
function cutPlan(tfl: TfliteModel, sg: TfliteSubgraph, source: string, cut: string | undefined): (number[] | null)[] {
  if (cut === undefined) return sg.operators.map(() => null);
  const byKind = sg.operators.some((raw) => operatorKind(tfl, raw, source) === cut);
  const tensor = byKind ? -1 : sg.tensors.findIndex((t) => t.name === cut);
  if (!byKind && tensor < 0)
    throw new QuantflowError(`${source}: --cut-before '${cut}': no operator kind or tensor of that name in the model`);
  const dropped = new Set<number>();
  const isConstant = (i: number) => (tfl.buffers[sg.tensors[i]?.buffer ?? 0]?.length ?? 0) > 0;
  return sg.operators.map((raw) => {
    const here = byKind ? operatorKind(tfl, raw, source) === cut : raw.inputs.includes(tensor);
    if (!here && !raw.inputs.some((i) => dropped.has(i))) return null;
    for (const o of raw.outputs) dropped.add(o);
    if (!here) return [];
    return byKind ? raw.inputs.filter((i) => i >= 0 && !dropped.has(i) && !isConstant(i)) : [tensor];
  });
}

function convert(bytes: Uint8Array, source: string, options: TfliteImportOptions): Model {
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

  const plan = cutPlan(tfl, sg, source, options.cutBefore);
  const cutOutputs: number[] = [];
  for (const raw of sg.operators) {
    const cut = plan[raw.index];
    if (cut) {
      for (const i of cut) if (!cutOutputs.includes(i)) cutOutputs.push(i);
      continue;
    }
    const where = `(operator ${raw.index} of subgraph 0)`;
    const kind = operatorKind(tfl, raw, source);
    const isCustom = builtinName(tfl.operatorCodes[raw.opcodeIndex]!.builtin) === 'CUSTOM';
    const converter = isCustom ? CUSTOM_CONVERTERS[kind] : CONVERTERS[kind as TfliteBuiltin];
    if (!converter && isCustom)
      throw new QuantflowError(
        `${source}: unsupported TFLite custom operator ${JSON.stringify(kind)} ${where}; pass --cut-before ${kind} to import the model up to its inputs`,
      );
    if (!converter) {
      const supported = Object.keys(CONVERTERS).join(', ');
      throw new QuantflowError(
        `${source}: unsupported TFLite operator ${kind} ${where}; supported: ${supported} (or pass --cut-before ${kind} to import the model up to its inputs)`,
      );
    }
    converter(ctx, new Op(ctx, raw, kind));
  }

  const computed = new Set(graph.nodes.flatMap((n) => n.outputs));
  const dropped = new Set(sg.operators.flatMap((raw) => (plan[raw.index] ? raw.outputs : [])));
  const outputs = [...sg.outputs.filter((i) => !dropped.has(i)), ...cutOutputs.filter((i) => !sg.outputs.includes(i))];
  outputs.forEach((i, k) => {
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
  pruneDeadNodes(graph);

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
      ...(ctx.customOps.length ? { [METADATA.customOps]: JSON.stringify(ctx.customOps) } : {}),
    },
  };
}
