/**
 * Model validation: everything quantflow checks before it touches a graph, so that importer
 * bugs and unsupported models fail early with one line naming the node at fault.
 */
import type { AttributeValue, Model } from './types.js';
import { producerMap } from './graph.js';
import { MAX_OPSET, MIN_OPSET, schemaOf, unsupportedOperatorMessage } from './ops.js';
import { inferShapes } from './shapes.js';
import { formatShape } from './tensor.js';
import { QuantflowError, check } from '../util/errors.js';

export { SUPPORTED_OPS } from './ops.js';

const KIND_NAMES: Readonly<Record<AttributeValue['type'], string>> = {
  int: 'an int',
  ints: 'a list of ints',
  float: 'a float',
  floats: 'a list of floats',
  string: 'a string',
  strings: 'a list of strings',
  tensor: 'a tensor',
};

/**
 * Throws a QuantflowError at the first problem found: opset older than `MIN_OPSET`, a
 * duplicate node name, an operator outside `SUPPORTED_OPS`, a wrong number of inputs or
 * outputs, an attribute of the wrong type, an input not produced before its reader, a value
 * produced twice, a graph output never produced, or a shape inconsistency found by
 * `inferShapes` (including graph outputs declared with another type or shape than inferred).
 * Does not modify the model.
 */
export function validateModel(model: Model): void {
  const { graph, opset } = model;
  check(
    Number.isInteger(opset) && opset >= MIN_OPSET && opset <= MAX_OPSET,
    `model opset ${opset} is not supported: quantflow handles opsets ${MIN_OPSET}-${MAX_OPSET}`,
  );

  /** Who defines each value, for "produced twice" messages. */
  const definedBy = new Map<string, string>();
  const define = (name: string, by: string, where: string) => {
    const previous = definedBy.get(name);
    check(previous === undefined, () => `${where}: '${name}' is produced twice (also by ${previous})`);
    definedBy.set(name, by);
  };
  for (const v of graph.inputs) define(v.name, 'a graph input', `graph input '${v.name}'`);
  for (const name of graph.initializers.keys()) define(name, 'an initializer', `initializer '${name}'`);

  const producers = producerMap(graph);
  const nodeNames = new Set<string>();
  for (const node of graph.nodes) {
    const where = `node '${node.name}' (${node.opType})`;
    check(!nodeNames.has(node.name), `node name '${node.name}' is used by two nodes`);
    nodeNames.add(node.name);
    const schema = schemaOf(node);
    check(schema, () => unsupportedOperatorMessage(node));

    const [required, maxInputs] = schema.inputs(opset);
    check(node.inputs.length <= maxInputs, () => `${where}: takes at most ${maxInputs} inputs, found ${node.inputs.length}`);
    for (let i = 0; i < required; i++)
      check(node.inputs[i], () => `${where}: missing required input ${i} (needs ${required} at opset ${opset})`);
    const [requiredOutputs, maxOutputs] = schema.outputs;
    check(node.outputs.length <= maxOutputs, () => `${where}: produces at most ${maxOutputs} outputs, found ${node.outputs.length}`);
    for (let i = 0; i < requiredOutputs; i++) check(node.outputs[i], () => `${where}: missing required output ${i}`);

    for (const [name, value] of Object.entries(node.attributes)) {
      const kind = schema.attributes[name];
      if (kind && value.type !== kind)
        throw new QuantflowError(`${where}: attribute '${name}' should be ${KIND_NAMES[kind]}, found ${value.type}`);
    }

    for (const input of node.inputs) {
      if (input === '' || definedBy.has(input)) continue;
      const later = producers.get(input);
      throw new QuantflowError(
        later === node
          ? `${where}: input '${input}' is this node's own output`
          : later
            ? `${where}: input '${input}' is produced by a later node '${later.name}' (${later.opType}); the nodes are not in topological order`
            : `${where}: input '${input}' is never produced (not a graph input, initializer or earlier node output)`,
      );
    }
    for (const output of node.outputs) if (output !== '') define(output, where, where);
  }

  for (const out of graph.outputs) check(definedBy.has(out.name), `graph output '${out.name}' is never produced`);

  // Inference runs on a copy so that validation leaves valueInfo as it found it.
  const probe: Model = { ...model, graph: { ...graph, valueInfo: new Map() } };
  inferShapes(probe);
  for (const out of graph.outputs) {
    const inferred = probe.graph.valueInfo.get(out.name);
    if (!inferred) continue; // a graph input or initializer passed straight through
    const producer = producers.get(out.name)!;
    const by = `node '${producer.name}' (${producer.opType})`;
    check(
      inferred.dataType === out.dataType,
      `graph output '${out.name}' is declared ${out.dataType} but ${by} produces ${inferred.dataType}`,
    );
    const [declared, actual] = [out.shape, inferred.shape];
    if (!declared || !actual) continue;
    const conflict =
      declared.length !== actual.length ||
      declared.some((d, i) => typeof d === 'number' && typeof actual[i] === 'number' && d !== actual[i]);
    check(!conflict, `graph output '${out.name}' is declared ${formatShape(declared)} but ${by} produces ${formatShape(actual)}`);
  }
}
