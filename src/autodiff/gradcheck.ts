import type { Model, TensorData } from '../graph/types.js';
import { sizeOf } from '../graph/tensor.js';
import { openSession, runModel, runSession } from '../runtime/session.js';
import { expandFakeQuant } from './fake-quant.js';
import { buildGradientGraph } from './gradients.js';

export interface GradCheckOptions {
  loss: string;
  wrt: string[];
  /** Values of the graph inputs (a `wrt` input is perturbed around its fed value). */
  feeds: Record<string, TensorData>;
  /** Elements checked per `wrt` tensor, spread over it (default 4). */
  samples?: number;
  /** Central-difference step (default 1e-2). */
  epsilon?: number;
  /** A sample passes when |analytic − numeric| ≤ atol + rtol·max(|analytic|, |numeric|). */
  atol?: number;
  rtol?: number;
}

export interface GradSample {
  name: string;
  index: number;
  analytic: number;
  numeric: number;
}

/**
 * Compares the gradients of `buildGradientGraph` with central finite differences of the
 * forward graph, run in onnxruntime, on a few elements of each `wrt` tensor. Returns the
 * samples outside tolerance (empty when all agree), each as a readable line, and all
 * samples. A non-scalar loss counts as the sum of its elements, like its gradient seed.
 */
export async function checkGradients(model: Model, options: GradCheckOptions): Promise<{ failures: string[]; samples: GradSample[] }> {
  const { loss, wrt, feeds, samples: perTensor = 4, epsilon = 1e-2, atol = 1e-3, rtol = 1e-2 } = options;
  const gradModel = buildGradientGraph(model, { loss, wrt });
  const gradients = await runModel(gradModel, feeds);
  const analytic = gradModel.graph.outputs.slice(1).map((o) => gradients[o.name]!);

  const forward = forwardWithInputs(model, loss, wrt);
  const values = Object.fromEntries(wrt.map((w) => [w, feeds[w] ?? model.graph.initializers.get(w)!]));
  const session = await openSession(forward);
  const samples: GradSample[] = [];
  try {
    const lossAt = async (name: string, data: Float32Array) => {
      const out = await runSession(session, { ...feeds, ...values, [name]: { ...values[name]!, data } });
      return (out[loss]!.data as Float32Array).reduce((s, v) => s + v, 0);
    };
    for (const [k, w] of wrt.entries()) {
      const base = values[w]!.data as Float32Array;
      const n = sizeOf(values[w]!.dims);
      for (let j = 0; j < Math.min(perTensor, n); j++) {
        const index = Math.floor(((j + 0.37) * n) / Math.min(perTensor, n));
        const up = Float32Array.from(base);
        const down = Float32Array.from(base);
        up[index] = base[index]! + epsilon;
        down[index] = base[index]! - epsilon;
        // float32 rounds the step; divide by the step actually taken.
        const numeric = ((await lossAt(w, up)) - (await lossAt(w, down))) / (up[index]! - down[index]!);
        samples.push({ name: w, index, analytic: (analytic[k]!.data as Float32Array)[index]!, numeric });
      }
    }
  } finally {
    await session.release();
  }
  const failures = samples
    .filter((s) => !(Math.abs(s.analytic - s.numeric) <= atol + rtol * Math.max(Math.abs(s.analytic), Math.abs(s.numeric))))
    .map((s) => `${s.name}[${s.index}]: analytic ${s.analytic}, numeric ${s.numeric}`);
  return { failures, samples };
}

/** `model` computing only `loss`, with `wrt` initializers turned into inputs so they can be fed. */
function forwardWithInputs(model: Model, loss: string, wrt: string[]): Model {
  const g = model.graph;
  const initializers = new Map(g.initializers);
  const inputs = [...g.inputs];
  for (const w of wrt) {
    const t = initializers.get(w);
    if (!t) continue;
    initializers.delete(w);
    inputs.push({ name: w, dataType: t.dataType, shape: [...t.dims] });
  }
  const copy: Model = {
    ...model,
    graph: { ...g, nodes: [...g.nodes], initializers, inputs, outputs: [{ name: loss, dataType: 'float32' }], valueInfo: new Map() },
  };
  expandFakeQuant(copy);
  return copy;
}
