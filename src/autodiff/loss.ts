import type { GraphBuilder } from '../graph/builder.js';

/**
 * Appends the mean of (prediction − target)² over all elements, a scalar, and returns its
 * name. Built from operators shape inference knows, so the model stays analyzable.
 */
export function mseLoss(b: GraphBuilder, prediction: string, target: string): string {
  const d = b.op('Sub', [prediction, target]);
  return b.op('ReduceMean', [b.op('Mul', [d, d])], { keepdims: { type: 'int', value: 0 } }, 'mse');
}
