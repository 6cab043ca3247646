/**
 * `quantflow inspect`: what a model is made of and what each built-in target profile would
 * do with it, without calibrating anything. Problems that stop quantflow from preparing the
 * model are reported, not thrown, so an unsupported model can still be looked at.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { formatShape } from '../graph/tensor.js';
import type { Model, ValueInfo } from '../graph/types.js';
import { schemaOf } from '../graph/ops.js';
import { detectFormat, loadModel, type LoadOptions, type ModelFormat } from '../import/load.js';
import { prepareModel, type PrepareOptions } from '../import/prepare.js';
import { planQuantization } from '../quantization/plan.js';
import { builtinProfiles, loadProfile, resolveLayer, type LayerWeights } from '../quantization/profile.js';
import { detectSqueezeExcite, type NearMiss } from '../tse/detect.js';
import { QuantflowError } from '../util/errors.js';

/** One layer's weights under one profile. */
export interface PlannedLayer extends LayerWeights {
  name: string;
  opType: string;
}

/** Layers that a profile treats alike, in graph order. */
export interface LayerGroup extends LayerWeights {
  layers: string[];
}

export interface ProfilePlan {
  profile: string;
  description: string;
  layers: PlannedLayer[];
  groups: LayerGroup[];
  /** Activation tensors that get a per-tensor grid (the same under every profile). */
  activations: number;
}

export interface SqueezeExciteSummary {
  mul: string;
  input: string;
  channels: number;
  height: number;
  width: number;
  gate: string;
}

export interface InspectReport {
  model: string;
  format: ModelFormat;
  opset: number;
  producer: string;
  /**
   * Whether the counts below are of the prepared model (after validation, shape inference,
   * constant and batch-norm folding: what quantflow quantizes) or, when preparing failed,
   * of the model as loaded.
   */
  prepared: boolean;
  nodes: number;
  /** Node count per operator, most frequent first. */
  operators: Record<string, number>;
  /** Elements of floating-point initializers. */
  parameters: number;
  inputs: { name: string; dataType: string; shape: string }[];
  outputs: { name: string; dataType: string; shape: string }[];
  /** Absent when the model could not be prepared (detection needs shapes). */
  squeezeExcite?: { blocks: SqueezeExciteSummary[]; nearMisses: NearMiss[] };
  /** Absent when the model could not be prepared. */
  profiles?: ProfilePlan[];
  /** What quantflow cannot handle: unsupported operators, validation errors. Empty when none. */
  problems: string[];
}

const FLOAT_TYPES = new Set(['float32', 'float16', 'float64']);

/**
 * Inspects the model file at `path`, prepared at `options.inputSize` when given. Throws a
 * QuantflowError only when the file cannot be read as a model at all; anything found later
 * (a dynamic input size without `inputSize` included) is listed in `problems`.
 */
export async function inspectModel(path: string, options: PrepareOptions = {}, load: LoadOptions = {}): Promise<InspectReport> {
  const loaded = loadModel(path, load);
  const format = detectFormat(fileHead(path));
  const problems = unsupportedOperators(loaded);
  let model = loaded;
  let prepared = false;
  try {
    model = await prepareModel(loaded, undefined, options);
    prepared = true;
  } catch (e) {
    if (!(e instanceof QuantflowError)) throw e;
    // Each unsupported operator is already listed once, with its node count.
    if (!problems.length || !/is not supported by quantflow/.test(e.message)) problems.push(e.message);
  }
  const g = model.graph;
  const counts = new Map<string, number>();
  for (const n of g.nodes) counts.set(n.opType, (counts.get(n.opType) ?? 0) + 1);
  let parameters = 0;
  for (const t of g.initializers.values()) if (FLOAT_TYPES.has(t.dataType)) parameters += t.data.length;
  const io = (v: ValueInfo) => ({ name: v.name, dataType: v.dataType, shape: v.shape ? formatShape(v.shape) : 'unknown' });
  const report: InspectReport = {
    model: path,
    format,
    opset: model.opset,
    producer: model.producerName,
    prepared,
    nodes: g.nodes.length,
    operators: Object.fromEntries([...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))),
    parameters,
    inputs: g.inputs.map(io),
    outputs: g.outputs.map((o) => io(g.valueInfo.get(o.name)?.shape ? g.valueInfo.get(o.name)! : o)),
    problems,
  };
  if (prepared) {
    report.squeezeExcite = squeezeExcite(model);
    report.profiles = profilePlans(model);
  }
  return report;
}

/** The first bytes of a file, enough for `detectFormat`. */
function fileHead(path: string): Uint8Array {
  const head = new Uint8Array(8);
  const fd = openSync(path, 'r');
  try {
    return head.subarray(0, readSync(fd, head, 0, head.length, 0));
  } finally {
    closeSync(fd);
  }
}

/** Every unsupported operator with its node count; validation stops at the first, this lists all. */
function unsupportedOperators(model: Model): string[] {
  const missing = new Map<string, number>();
  for (const n of model.graph.nodes) {
    if (schemaOf(n)) continue;
    const key = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType}` : n.opType;
    missing.set(key, (missing.get(key) ?? 0) + 1);
  }
  return [...missing].map(([op, n]) => `operator ${op} is not supported by quantflow (${n} node${n > 1 ? 's' : ''})`);
}

function squeezeExcite(model: Model): InspectReport['squeezeExcite'] {
  const { blocks, nearMisses } = detectSqueezeExcite(model);
  return {
    blocks: blocks.map((b) => ({
      mul: b.mul.name,
      input: b.input,
      channels: b.channels,
      height: b.height,
      width: b.width,
      gate: b.gate.kind,
    })),
    nearMisses,
  };
}

function profilePlans(model: Model): ProfilePlan[] {
  const plan = planQuantization(model.graph);
  return builtinProfiles().map((name) => {
    const profile = loadProfile(name);
    const layers = plan.layers.map((l, i): PlannedLayer => ({
      name: l.node.name,
      opType: l.node.opType,
      ...resolveLayer(profile, l.node.name, { isFirst: i === 0, isLast: i === plan.layers.length - 1 }),
    }));
    const groups = new Map<string, LayerGroup>();
    for (const l of layers) {
      const key = `${l.bits}/${l.granularity}/${l.shiftBits}`;
      const g = groups.get(key) ?? { bits: l.bits, granularity: l.granularity, shiftBits: l.shiftBits, layers: [] };
      g.layers.push(l.name);
      groups.set(key, g);
    }
    return { profile: name, description: profile.description, layers, groups: [...groups.values()], activations: plan.activations.length };
  });
}
