/** A log of what each graph pass changed: nodes, operators, parameters, initializers. */
import { createHash } from 'node:crypto';
import type { Model } from '../graph/types.js';

/** What one pass did to the graph. */
export interface PassChange {
  pass: string;
  seconds: number;
  nodes: { before: number; after: number };
  /** Elements in initializers. */
  parameters: { before: number; after: number };
  /** Op types whose node count changed: after minus before. */
  opDelta: Record<string, number>;
  /** Initializers by name: new, gone, and present in both with other dims, type or values. */
  initializers: { added: number; removed: number; changed: number };
}

interface Snapshot {
  nodes: number;
  parameters: number;
  ops: Map<string, number>;
  /** Initializer name → digest of type, dims and bytes. */
  tensors: Map<string, string>;
}

function snapshot(model: Model): Snapshot {
  const ops = new Map<string, number>();
  for (const n of model.graph.nodes) ops.set(n.opType, (ops.get(n.opType) ?? 0) + 1);
  const tensors = new Map<string, string>();
  let parameters = 0;
  for (const [name, t] of model.graph.initializers) {
    parameters += t.data.length;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    tensors.set(
      name,
      createHash('sha1')
        .update(`${t.dataType}[${t.dims.join(',')}]`)
        .update(bytes)
        .digest('hex'),
    );
  }
  return { nodes: model.graph.nodes.length, parameters, ops, tensors };
}

function change(pass: string, seconds: number, a: Snapshot, b: Snapshot): PassChange {
  const opDelta: Record<string, number> = {};
  for (const op of new Set([...a.ops.keys(), ...b.ops.keys()])) {
    const d = (b.ops.get(op) ?? 0) - (a.ops.get(op) ?? 0);
    if (d) opDelta[op] = d;
  }
  let added = 0;
  let changed = 0;
  for (const [name, digest] of b.tensors) {
    const old = a.tensors.get(name);
    if (old === undefined) added++;
    else if (old !== digest) changed++;
  }
  const removed = [...a.tensors.keys()].filter((name) => !b.tensors.has(name)).length;
  return {
    pass,
    seconds,
    nodes: { before: a.nodes, after: b.nodes },
    parameters: { before: a.parameters, after: b.parameters },
    opDelta,
    initializers: { added, removed, changed },
  };
}

/**
 * Records what each pass changes. Passes either rewrite the model in place or return a new
 * one; `run` handles both, so a pipeline reads
 * `await log.run('fold-constants', model, () => foldConstants(model))`.
 */
export class PassLog {
  readonly changes: PassChange[] = [];

  /** Runs `pass` on `model` and records the difference; returns what `pass` returned. */
  async run<T>(name: string, model: Model, pass: () => T | Promise<T>): Promise<T> {
    const before = snapshot(model);
    const t0 = performance.now();
    const result = await pass();
    const seconds = (performance.now() - t0) / 1000;
    const after = isModel(result) ? result : model;
    this.changes.push(change(name, seconds, before, snapshot(after)));
    return result;
  }
}

function isModel(value: unknown): value is Model {
  return typeof value === 'object' && value !== null && 'graph' in value && 'opset' in value;
}
