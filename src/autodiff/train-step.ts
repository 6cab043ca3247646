import type * as ort from 'onnxruntime-node';
import type { Model, TensorData } from '../graph/types.js';
import { floatTensor } from '../graph/tensor.js';
import { openSession, runSession, type SessionOptions } from '../runtime/session.js';
import { QuantflowError } from '../util/errors.js';
import { adamUpdate, type AdamOptions } from './adam.js';
import { GraphBuilder } from '../graph/builder.js';
import { buildGradientGraph } from './gradients.js';

export interface TrainingStepOptions {
  /** Scalar float value to minimize. */
  loss: string;
  /** Initializers to train. */
  params: string[];
  adam?: AdamOptions;
}

/** Graph-input and -output names of one parameter in a training-step model. */
export interface ParamIO {
  param: string;
  m: string;
  v: string;
  newParam: string;
  newM: string;
  newV: string;
}

export interface TrainingStepModel {
  /**
   * Inputs: the model's inputs, each parameter with its Adam moments, `step` and `lr`
   * (float32 scalars). Outputs: the loss, then per parameter its new value and moments.
   */
  model: Model;
  params: ParamIO[];
  step: string;
  lr: string;
}

/**
 * One training step as one ONNX graph: forward, backward (`buildGradientGraph`) and an Adam
 * update. The parameters leave the initializers and become inputs, so they live outside the
 * session between steps (fed in, read out) and one session serves every step.
 */
export function buildTrainingStep(model: Model, options: TrainingStepOptions): TrainingStepModel {
  const { loss, params } = options;
  for (const p of params) if (!model.graph.initializers.has(p)) throw new QuantflowError(`cannot train '${p}': it is not an initializer`);
  const out = buildGradientGraph(model, { loss, wrt: params });
  const g = out.graph;
  const b = new GraphBuilder(out);
  const scalarInput = (base: string) => {
    const name = b.name(base);
    g.inputs.push({ name, dataType: 'float32', shape: [] });
    return name;
  };
  const step = scalarInput('step');
  const lr = scalarInput('lr');
  const slots = params.map((param, i) => {
    const t = g.initializers.get(param)!;
    g.initializers.delete(param);
    g.inputs.push({ name: param, dataType: t.dataType, shape: [...t.dims] });
    const moment = (base: string) => {
      const name = b.name(`${param}_${base}`);
      g.inputs.push({ name, dataType: 'float32', shape: [...t.dims] });
      return name;
    };
    return { param, grad: g.outputs[i + 1]!.name, m: moment('adam_m'), v: moment('adam_v') };
  });
  const updated = adamUpdate(b, slots, step, lr, options.adam);
  const info = (name: string, like: string) => ({
    name,
    dataType: 'float32' as const,
    shape: [...g.inputs.find((v) => v.name === like)!.shape!],
  });
  g.outputs = [g.outputs[0]!];
  const io = slots.map((s, i) => {
    const u = updated[i]!;
    g.outputs.push(info(u.param, s.param), info(u.m, s.param), info(u.v, s.param));
    return { param: s.param, m: s.m, v: s.v, newParam: u.param, newM: u.m, newV: u.v };
  });
  return { model: out, params: io, step, lr };
}

/** A trainer's progress: Adam's step count, and parameters and moments by name. */
export interface TrainerState {
  steps: number;
  tensors: Map<string, TensorData>;
}

/**
 * Trains parameters of a model with Adam in onnxruntime: one session runs whole training
 * steps; parameters and moments stay in typed arrays between steps.
 */
export class Trainer {
  private values: Map<string, TensorData>;
  private moments: Map<string, TensorData>;
  private steps = 0;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly io: TrainingStepModel,
    initial: Map<string, TensorData>,
  ) {
    this.values = initial;
    this.moments = new Map();
    for (const p of io.params) {
      const dims = initial.get(p.param)!.dims;
      this.moments.set(p.m, floatTensor([...dims]));
      this.moments.set(p.v, floatTensor([...dims]));
    }
  }

  /** Builds the training-step graph for `model` and opens its session. */
  static async create(model: Model, options: TrainingStepOptions, session: SessionOptions = {}): Promise<Trainer> {
    const io = buildTrainingStep(model, options);
    const initial = new Map(options.params.map((p) => [p, model.graph.initializers.get(p)!]));
    return new Trainer(await openSession(io.model, { memoryPattern: false, ...session }), io, initial);
  }

  /** Runs one step on `feeds` (the model's inputs) with learning rate `lr`; returns the loss before the update. */
  async step(feeds: Record<string, TensorData>, lr: number): Promise<number> {
    this.steps++;
    const all: Record<string, TensorData> = {
      ...feeds,
      [this.io.step]: floatTensor([], [this.steps]),
      [this.io.lr]: floatTensor([], [lr]),
    };
    for (const p of this.io.params) {
      all[p.param] = this.values.get(p.param)!;
      all[p.m] = this.moments.get(p.m)!;
      all[p.v] = this.moments.get(p.v)!;
    }
    const out = await runSession(this.session, all);
    for (const p of this.io.params) {
      this.values.set(p.param, out[p.newParam]!);
      this.moments.set(p.m, out[p.newM]!);
      this.moments.set(p.v, out[p.newV]!);
    }
    const loss = out[this.io.model.graph.outputs[0]!.name]!.data as Float32Array;
    return loss.reduce((s, v) => s + v, 0);
  }

  /** Current parameter values by name (replaced, not mutated, by each step). */
  parameters(): ReadonlyMap<string, TensorData> {
    return this.values;
  }

  /** Everything a later `restore` needs to continue exactly where this trainer is. */
  state(): TrainerState {
    return { steps: this.steps, tensors: new Map([...this.values, ...this.moments]) };
  }

  /** Continues from a `state()` of a trainer built for the same parameters. */
  restore(state: TrainerState): void {
    const take = (target: Map<string, TensorData>, name: string) => {
      const t = state.tensors.get(name);
      const now = target.get(name)!;
      if (!t || t.dims.length !== now.dims.length || t.dims.some((d, i) => d !== now.dims[i]))
        throw new QuantflowError(`saved training state does not fit: '${name}' is missing or has another shape`);
      target.set(name, t);
    };
    for (const p of this.io.params) {
      take(this.values, p.param);
      take(this.moments, p.m);
      take(this.moments, p.v);
    }
    this.steps = state.steps;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
