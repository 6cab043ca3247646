/**
 * Custom operators the TFLite importer expanded into ONNX ops (SSD's
 * TFLite_Detection_PostProcess), written back as the original custom operator with its
 * options and constants, from what the importer recorded in the model metadata.
 */
import { producerMap } from '../../graph/graph.js';
import type { Graph, Node } from '../../graph/types.js';
import type { RecordedCustomOp } from '../../import/tflite/context.js';
import { METADATA } from '../../import/tflite/import.js';
import type { TfliteBuilder } from './flatbuffer.js';

/** A recorded custom op and the tail nodes that compute it. */
export interface CustomOpInTail {
  op: RecordedCustomOp;
  /** The nodes of `tail` between the op's inputs and its outputs. */
  nodes(tail: readonly Node[]): Node[];
}

/** The custom operators recorded in `graph`'s model metadata (none when the model was not imported from TFLite). */
export function recordedCustomOps(graph: Graph, metadata: Record<string, string>): CustomOpInTail[] {
  const json = metadata[METADATA.customOps];
  if (json === undefined) return [];
  const producers = producerMap(graph);
  return (JSON.parse(json) as RecordedCustomOp[]).map((op) => ({
    op,
    nodes(tail) {
      const onTail = new Set(tail);
      const inputs = new Set(op.inputs);
      const found = new Set<Node>();
      const stack = [...op.outputs];
      while (stack.length) {
        const node = producers.get(stack.pop()!);
        if (!node || !onTail.has(node) || found.has(node)) continue;
        found.add(node);
        for (const i of node.inputs) if (i && !inputs.has(i)) stack.push(i);
      }
      return tail.filter((n) => found.has(n));
    },
  }));
}

/**
 * Writes the custom op: float inputs (`input(value)`, DEQUANTIZEd by the caller), its
 * recorded constants, float outputs named after the ONNX outputs; returns the output tensors.
 */
export function writeCustomOp(
  b: TfliteBuilder,
  op: RecordedCustomOp,
  input: (value: string) => number,
  shapeOf: (value: string) => number[],
): number[] {
  const inputs = op.inputs.map((v) => input(v));
  for (const c of op.constants) {
    const bytes = Buffer.from(c.data, 'base64');
    const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    inputs.splice(c.index, 0, b.constant(`${op.code}_constant_${c.index}`, c.shape, data, 'float32'));
  }
  const outputs = op.outputs.map((v) => b.tensor({ name: v, shape: shapeOf(v), type: 'float32' }));
  b.custom(op.code, inputs, outputs, new Uint8Array(Buffer.from(op.options, 'base64')));
  return outputs;
}
