import type { GraphBuilder } from '../graph/builder.js';

export interface AdamOptions {
  /** Decay of the first-moment average (default 0.9). */
  beta1?: number;
  /** Decay of the second-moment average (default 0.999). */
  beta2?: number;
  /** Added to √v̂ (default 1e-8). */
  epsilon?: number;
}

/** Names of one parameter's values in an Adam update: its value, gradient and moments. */
export interface AdamSlot {
  param: string;
  grad: string;
  m: string;
  v: string;
}

/**
 * Appends one bias-corrected Adam step (Kingma & Ba) for each slot:
 * m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g², p' = p − lr·m̂ / (√v̂ + ε) with
 * m̂ = m'/(1−β1^t), v̂ = v'/(1−β2^t). `step` (t ≥ 1) and `lr` name float32 scalar values,
 * so that one graph serves every step and any learning-rate schedule. Returns the names of
 * p', m', v' per slot.
 */
export function adamUpdate(b: GraphBuilder, slots: readonly AdamSlot[], step: string, lr: string, options: AdamOptions = {}): AdamSlot[] {
  const { beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8 } = options;
  // Scalars shared by every parameter: lr/(1−β1^t) and 1/(1−β2^t).
  const correction = (beta: number) => b.op('Sub', [b.scalar(1), b.op('Pow', [b.scalar(beta), step])]);
  const stepSize = b.op('Div', [lr, correction(beta1)]);
  const secondScale = b.op('Reciprocal', [correction(beta2)]);
  return slots.map(({ param, grad, m, v }) => {
    const m2 = b.op('Add', [b.op('Mul', [m, b.scalar(beta1)]), b.op('Mul', [grad, b.scalar(1 - beta1)])], {}, `${param}_m`);
    const g2 = b.op('Mul', [grad, grad]);
    const v2 = b.op('Add', [b.op('Mul', [v, b.scalar(beta2)]), b.op('Mul', [g2, b.scalar(1 - beta2)])], {}, `${param}_v`);
    const denominator = b.op('Add', [b.op('Sqrt', [b.op('Mul', [v2, secondScale])]), b.scalar(epsilon)]);
    const update = b.op('Div', [b.op('Mul', [m2, stepSize]), denominator]);
    return { param: b.op('Sub', [param, update], {}, `${param}_new`), grad, m: m2, v: v2 };
  });
}
