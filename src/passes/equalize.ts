import { attrInt, consumerMap } from '../graph/graph.js';
import { toFloat32 } from '../graph/tensor.js';
import type { Graph, Node, TensorData } from '../graph/types.js';

/**
 * Activations that commute with a positive per-channel scale: relu(s·x) = s·relu(x). A
 * ReLU6 does not (its upper bound would have to scale per channel, which a per-tensor clamp
 * cannot), so pairs across it are left alone.
 */
function passesScale(node: Node, graph: Graph): boolean {
  if (node.opType === 'Relu') return true;
  if (node.opType !== 'Clip') return false;
  const min = node.inputs[1] ? graph.initializers.get(node.inputs[1]) : undefined;
  const max = node.inputs[2] ? graph.initializers.get(node.inputs[2]) : undefined;
  const lo = min ? Number(min.data[0]) : -Infinity;
  return !max && (lo === 0 || lo === -Infinity);
}

/** A Conv with its weights as a float initializer that no other node reads. */
function ownedConvWeight(node: Node, graph: Graph, readers: Map<string, Node[]>): TensorData | undefined {
  if (node.opType !== 'Conv') return undefined;
  const name = node.inputs[1]!;
  const w = graph.initializers.get(name);
  if (!w || w.dataType !== 'float32' || (readers.get(name) ?? []).length !== 1) return undefined;
  const bias = node.inputs[2];
  if (bias && (!graph.initializers.has(bias) || (readers.get(bias) ?? []).length !== 1)) return undefined;
  return w;
}

/** Two convolutions a per-channel factor can pass between (see `equalizablePairs`). */
export interface EqualizablePair {
  first: Node;
  second: Node;
}

/**
 * Pairs of convolutions with only a ReLU (or nothing) between them, where output channel i
 * of the first can be divided by a positive s_i and input channel i of the second
 * multiplied by it without changing the function: both own their float weights (and the
 * first its bias), the value between them has no other reader and is not a graph output.
 */
export function equalizablePairs(graph: Graph): EqualizablePair[] {
  const readers = consumerMap(graph);
  const pairs: EqualizablePair[] = [];
  for (const first of graph.nodes) {
    const w1 = ownedConvWeight(first, graph, readers);
    if (!w1) continue;
    let value = first.outputs[0]!;
    let next = readers.get(value) ?? [];
    if (next.length === 1 && passesScale(next[0]!, graph)) {
      value = next[0]!.outputs[0]!;
      next = readers.get(value) ?? [];
    }
    if (next.length !== 1 || graph.outputs.some((o) => o.name === value || o.name === first.outputs[0])) continue;
    const second = next[0]!;
    const w2 = ownedConvWeight(second, graph, readers);
    if (!w2 || second.inputs[0] !== value) continue;
    const groups = attrInt(second, 'group', 1);
    if (w2.dims[1]! * groups !== w1.dims[0]) continue;
    pairs.push({ first, second });
  }
  return pairs;
}

/**
 * Cross-layer equalization (Nagel et al., "Data-free quantization"): for each pair of
 * `equalizablePairs`, output channel i of the first is divided by s_i and input channel i
 * of the second multiplied by it, with s_i = √(r1_i / r2_i), so that both weight ranges
 * become √(r1_i·r2_i). The float function is unchanged; per-tensor and shift-scaled weight
 * grids fit the equalized channels better. Repeats until the ranges settle (chains of
 * layers). Returns the number of layer pairs equalized.
 */
export function equalizeCrossLayer(graph: Graph, rounds = 8): number {
  const pairs = new Set<string>();
  for (let round = 0; round < rounds; round++) {
    let changed = 0;
    for (const { first, second } of equalizablePairs(graph)) {
      const w1 = graph.initializers.get(first.inputs[1]!)!;
      const w2 = graph.initializers.get(second.inputs[1]!)!;
      if (equalizePair(graph, first, w1, second, w2) > 1e-3) changed++;
      pairs.add(`${first.name}→${second.name}`);
    }
    if (!changed) break;
  }
  return pairs.size;
}

/** Equalizes one pair in place; returns the largest |log s_i| applied (0 when already equal). */
function equalizePair(graph: Graph, first: Node, w1: TensorData, second: Node, w2: TensorData): number {
  const channels = w1.dims[0]!;
  const groups = attrInt(second, 'group', 1);
  const outPerGroup = w2.dims[0]! / groups;
  const inPerGroup = w2.dims[1]!;
  const size1 = w1.data.length / channels;
  const kernel = w2.data.length / (w2.dims[0]! * inPerGroup);
  const a = w1.data as Float32Array;
  const b = Float32Array.from(w2.data as Float32Array);
  // Offsets in w2 of input channel i: every output channel o of its group, at column i mod inPerGroup.
  const offsets = (i: number) => {
    const g = Math.floor(i / inPerGroup);
    const out: number[] = [];
    for (let o = g * outPerGroup; o < (g + 1) * outPerGroup; o++) out.push((o * inPerGroup + (i % inPerGroup)) * kernel);
    return out;
  };
  const newW1 = Float32Array.from(a);
  const scale = new Float64Array(channels);
  let largest = 0;
  for (let i = 0; i < channels; i++) {
    let r1 = 0;
    for (let j = i * size1; j < (i + 1) * size1; j++) r1 = Math.max(r1, Math.abs(a[j]!));
    let r2 = 0;
    for (const start of offsets(i)) for (let k = 0; k < kernel; k++) r2 = Math.max(r2, Math.abs(b[start + k]!));
    const s = r1 > 0 && r2 > 0 ? Math.sqrt(r1 / r2) : 1;
    scale[i] = s;
    largest = Math.max(largest, Math.abs(Math.log(s)));
    for (let j = i * size1; j < (i + 1) * size1; j++) newW1[j] = a[j]! / s;
    for (const start of offsets(i)) for (let k = 0; k < kernel; k++) b[start + k]! *= s;
  }
  graph.initializers.set(first.inputs[1]!, { ...w1, data: newW1 });
  graph.initializers.set(second.inputs[1]!, { ...w2, data: b });
  const biasName = first.inputs[2];
  if (biasName) {
    const bias = toFloat32(graph.initializers.get(biasName)!);
    graph.initializers.set(biasName, { dataType: 'float32', dims: [channels], data: bias.map((v, i) => v / scale[i]!) });
  }
  return largest;
}
