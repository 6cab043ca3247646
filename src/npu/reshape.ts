import { attrInt, attrInts, constantInput, normalizeAxis } from '../graph/graph.js';
import type { Node, TensorData } from '../graph/types.js';

/**
 * Output shape of a node that only reshapes (Reshape, Flatten, Squeeze, Unsqueeze, Identity,
 * Dropout) on a static input shape; shape and axes inputs must be constants.
 */
export function reshapeOutput(node: Node, shape: number[], initializers: Map<string, TensorData>): number[] {
  const constant = (i: number) => constantInput(node, i, initializers);
  const size = shape.reduce((a, b) => a * b, 1);
  switch (node.opType) {
    case 'Reshape': {
      const target = constant(1)!.map((d, i) => (d === 0 && !attrInt(node, 'allowzero', 0) ? shape[i]! : d));
      const known = target.reduce((a, d) => (d === -1 ? a : a * d), 1);
      return target.map((d) => (d === -1 ? size / known : d));
    }
    case 'Flatten': {
      const axis = normalizeAxis(attrInt(node, 'axis', 1), shape.length, node);
      const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
      return [outer, size / outer];
    }
    case 'Squeeze': {
      const axes = (constant(1) ?? attrInts(node, 'axes', [])).map((a) => normalizeAxis(a, shape.length, node));
      return shape.filter((d, i) => (axes.length ? !axes.includes(i) : d !== 1));
    }
    case 'Unsqueeze': {
      const given = constant(1) ?? attrInts(node, 'axes', []);
      const rank = shape.length + given.length;
      const axes = given.map((a) => normalizeAxis(a, rank, node));
      const rest = [...shape];
      return Array.from({ length: rank }, (_, i) => (axes.includes(i) ? 1 : rest.shift()!));
    }
    default:
      return [...shape];
  }
}
