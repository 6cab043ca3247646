import type { Node } from '../graph/types.js';
import type { GradientRule, MarkerRuleTable, RuleTable } from './rule.js';
import { QUANTFLOW_DOMAIN } from './domain.js';
import { activationRules } from './rules/activations.js';
import { convRules } from './rules/conv.js';
import { elementwiseRules } from './rules/elementwise.js';
import { gemmRules } from './rules/gemm.js';
import { normalizationRules } from './rules/normalization.js';
import { poolingRules } from './rules/pooling.js';
import { quantizeRules } from './rules/quantize.js';
import { reduceRules } from './rules/reduce.js';
import { shapeRules } from './rules/shape.js';
import { softmaxRules } from './rules/softmax.js';

const key = (domain: string, opType: string) => `${domain === 'ai.onnx' ? '' : domain}:${opType}`;

const rules = new Map<string, GradientRule>();

/** Registers (or replaces) the gradient rule of `opType` in `domain` ('' = ONNX). */
export function registerGradient(opType: string, rule: GradientRule, domain = ''): void {
  rules.set(key(domain, opType), rule);
}

function registerAll(table: RuleTable | MarkerRuleTable, domain = ''): void {
  for (const [opType, rule] of Object.entries(table)) if (rule) registerGradient(opType, rule, domain);
}

for (const table of [
  activationRules,
  convRules,
  elementwiseRules,
  gemmRules,
  normalizationRules,
  poolingRules,
  reduceRules,
  shapeRules,
  softmaxRules,
])
  registerAll(table);
registerAll(quantizeRules, QUANTFLOW_DOMAIN);

/** The gradient rule of `node`'s operator, undefined when there is none. */
export function gradientRule(node: Node): GradientRule | undefined {
  return rules.get(key(node.domain, node.opType));
}

/** Operator types with a gradient rule, sorted; those outside ONNX carry their domain. */
export function differentiableOps(): string[] {
  return [...rules.keys()].map((k) => (k.startsWith(':') ? k.slice(1) : k.replace(':', '.'))).sort();
}
