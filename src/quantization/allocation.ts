import { QuantflowError } from '../util/errors.js';
import { exactMatcher, type TargetProfile } from './profile.js';

/** One layer as the allocation sees it. */
export interface AllocationLayer {
  name: string;
  /** Elements its width multiplies (weights of the layer). */
  size: number;
  /** Widths it may take, ascending. */
  widths: number[];
  /** Growth of the model's output error with the layer alone at each width instead of its highest (the last entry is 0). */
  errorGrowth: number[];
}

/** One point of the greedy path: the allocation after raising `layer` to `bits`. */
export interface AllocationStep {
  /** Absent for the starting point, every layer at its lowest width. */
  layer?: string;
  bits?: number;
  /** Average bits per element (weight or activation) over the layers with a choice (`bitsPerElement`). */
  bitsPerElement: number;
  /** Output error predicted by adding the growths of the layers below their highest width. */
  predictedError: number;
}

export interface Allocation {
  /** The chosen width of each layer, in the order given. */
  widths: number[];
  bitsPerElement: number;
  predictedError: number;
  /** From every layer at its lowest width to the chosen allocation. */
  path: AllocationStep[];
}

/** A budget as given: average bits per element (weight or activation), or a size in bytes. */
export type Budget = { bitsPerElement: number } | { bytes: number };

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30 };

/** Parses `4.5` (bits per weight) or a size such as `2.1MB`, `900KiB`, `1500000B`. */
export function parseBudget(text: string, option: string): Budget {
  const m = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m?.[2]?.toUpperCase() ?? '';
  if (!m || (unit && UNITS[unit] === undefined))
    throw new QuantflowError(`${option} must be average bits per weight (e.g. 4.5) or a size (e.g. 2.1MB, 900KiB), got "${text}"`);
  const value = Number(m[1]);
  return unit ? { bytes: value * UNITS[unit]! } : { bitsPerElement: value };
}

/** Parses an activation budget: average bits per activation element, such as `9` (a size is refused). */
export function parseActivationBudget(text: string): Budget {
  const budget = /^\s*[\d.]+\s*$/.test(text) ? parseBudget(text, '--activation-budget') : undefined;
  if (!budget) throw new QuantflowError(`--activation-budget must be average bits per activation element, 8 to 16 (e.g. 9), got "${text}"`);
  return budget;
}

/** What a budget shares out: weights (`--weight-budget`) or activation elements (`--activation-budget`). */
export type BudgetUnit = 'weight' | 'activation';

/**
 * The budget in bits over all `layers`. Bits per element average over the layers with a
 * choice (the issue's "4.0 = every layer at 4 bits but the first and last", which overrides
 * fix at 8); a size counts every layer. A QuantflowError names the minimum when every layer at
 * its lowest width does not fit.
 */
export function budgetBits(
  budget: Budget,
  layers: readonly Pick<AllocationLayer, 'size' | 'widths'>[],
  what: string,
  unit: BudgetUnit = 'weight',
): number {
  const sum = (list: readonly Pick<AllocationLayer, 'size' | 'widths'>[], f: (l: Pick<AllocationLayer, 'size' | 'widths'>) => number) =>
    list.reduce((s, l) => s + f(l), 0);
  const free = layers.filter((l) => l.widths.length > 1);
  const fixedBits = sum(layers, (l) => (l.widths.length > 1 ? 0 : l.size * l.widths[0]!));
  const freeSize = sum(free, (l) => l.size);
  const minimum = sum(layers, (l) => l.size * l.widths[0]!);
  const bits = 'bytes' in budget ? budget.bytes * 8 : fixedBits + budget.bitsPerElement * freeSize;
  if (bits < minimum) {
    const least =
      'bytes' in budget ? `${Math.ceil(minimum / 8)} bytes` : `${round((minimum - fixedBits) / (freeSize || 1))} bits per ${unit}`;
    const given = 'bytes' in budget ? `${budget.bytes} bytes` : `${budget.bitsPerElement} bits per ${unit}`;
    throw new QuantflowError(
      `${what}: a${unit === 'activation' ? 'n' : ''} ${unit} budget of ${given} is below the minimum of ${least}, every ${unit === 'weight' ? 'layer' : 'activation'} at its lowest allowed width`,
    );
  }
  return bits;
}

/** Average bits per element over the layers with a choice, as `budgetBits` reads a budget, for `widths` chosen per layer. */
export function bitsPerElement(layers: readonly Pick<AllocationLayer, 'size' | 'widths'>[], widths: readonly number[]): number {
  let bits = 0;
  let size = 0;
  layers.forEach((l, i) => {
    if (l.widths.length < 2) return;
    bits += l.size * widths[i]!;
    size += l.size;
  });
  return size ? bits / size : 0;
}

/**
 * Greedy allocation by error reduction per bit: every layer starts at its lowest width, then
 * the step with the largest predicted error reduction per added bit that still fits the
 * budget is taken, until none fits or none reduces the error.
 */
export function allocateGreedy(layers: readonly AllocationLayer[], budget: number, baseError: number): Allocation {
  const level = layers.map(() => 0);
  let used = layers.reduce((s, l) => s + l.size * l.widths[0]!, 0);
  let error = baseError + layers.reduce((s, l) => s + l.errorGrowth[0]!, 0);
  const widths = () => layers.map((l, i) => l.widths[level[i]!]!);
  const path: AllocationStep[] = [{ bitsPerElement: bitsPerElement(layers, widths()), predictedError: error }];
  for (;;) {
    let best: { i: number; ratio: number; cost: number; gain: number } | undefined;
    layers.forEach((l, i) => {
      const k = level[i]!;
      if (k + 1 >= l.widths.length) return;
      const cost = l.size * (l.widths[k + 1]! - l.widths[k]!);
      const gain = l.errorGrowth[k]! - l.errorGrowth[k + 1]!;
      if (gain <= 0 || used + cost > budget) return;
      if (!best || gain / cost > best.ratio) best = { i, ratio: gain / cost, cost, gain };
    });
    if (!best) break;
    const { i, cost, gain } = best;
    level[i]!++;
    used += cost;
    error -= gain;
    path.push({
      layer: layers[i]!.name,
      bits: layers[i]!.widths[level[i]!]!,
      bitsPerElement: bitsPerElement(layers, widths()),
      predictedError: error,
    });
  }
  return { widths: widths(), bitsPerElement: bitsPerElement(layers, widths()), predictedError: error, path };
}

/** A chosen width, by the name of the layer an override selects it with. */
export interface WidthChoice<B extends number> {
  layer: string;
  bits: B;
}

/** The widths chosen for the layers that had a choice, as `allocatedProfile` takes them. */
export function widthChoices<B extends number>(layers: readonly AllocationLayer[], widths: readonly number[]): WidthChoice<B>[] {
  return layers.flatMap((l, i) => (l.widths.length > 1 ? [{ layer: l.name, bits: widths[i] as B }] : []));
}

/**
 * `profile` with each layer's chosen weight width and each activation's chosen grid width as
 * overrides by exact name, after the profile's own: `--profile` with it reproduces the
 * allocation without measuring again.
 */
export function allocatedProfile(
  profile: TargetProfile,
  name: string,
  choices: { weights?: WidthChoice<4 | 8>[]; activations?: WidthChoice<8 | 16>[] },
): TargetProfile {
  const kinds = [choices.weights && 'weight widths', choices.activations && 'activation widths'].filter(Boolean).join(' and ');
  return {
    ...profile,
    name,
    description: `${profile.name} with per-layer ${kinds} chosen by sensitivity under a budget${profile.description ? `; ${profile.description}` : ''}`,
    overrides: [
      ...profile.overrides,
      ...(choices.activations ?? []).map((c) => ({ match: exactMatcher(c.layer), activations: { bits: c.bits } })),
      ...(choices.weights ?? []).map((c) => ({ match: exactMatcher(c.layer), weights: { bits: c.bits } })),
    ],
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
