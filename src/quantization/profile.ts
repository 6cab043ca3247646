import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { QuantflowError } from '../util/errors.js';

/**
 * Target profiles: what an integer NPU can execute, as data. Passes read the profile instead
 * of hard-coding a target, so a new NPU is a new JSON file. Built-ins live in `profiles/`
 * at the repository root; a user profile is any `.json` file with the same schema.
 *
 * Example (`profiles/w4a8-shift.json`):
 *
 * ```json
 * {
 *   "name": "w4a8-shift",
 *   "description": "4-bit weights, one scale per layer with per-channel WESS shifts",
 *   "weights": { "bits": 4, "granularity": "shift", "shiftBits": 4, "symmetric": true },
 *   "activations": { "bits": 8, "symmetric": false },
 *   "requantization": { "multiplierBits": 16, "shiftRange": [0, 47] },
 *   "accumulatorBits": 32,
 *   "biasBits": 32,
 *   "nonlinearities": { "relu": "fused-clamp", "relu6": "fused-clamp", "hardSwish": "lut" },
 *   "powerOfTwoScales": false,
 *   "overrides": [
 *     { "match": "@first", "weights": { "bits": 8 } },
 *     { "match": "@last", "weights": { "bits": 8 } }
 *   ]
 * }
 * ```
 *
 * `name`, `weights`, `activations` and `requantization` are required; every other field has
 * the default documented on it. Unknown keys are errors, so a typo cannot silently fall back
 * to a default.
 */

/** How weight scales are shared. */
export type WeightGranularity =
  /** One scale for the whole tensor. */
  | 'tensor'
  /** One scale per output channel. */
  | 'channel'
  /** WESS: one scale per layer, each output channel pre-multiplied by 2^k[c]. */
  | 'shift';

export interface WeightSpec {
  /** The width a layer gets unless an override or an allocation says otherwise: the highest of `allowed`. */
  bits: 4 | 8;
  /**
   * The widths an allocation (`quantize --weight-budget`) may choose among for a layer no
   * override fixes, ascending. The profile gives them as `"bits": [4, 8]`; a single number
   * allows only itself.
   */
  allowed: (4 | 8)[];
  granularity: WeightGranularity;
  /**
   * Width of the per-channel WESS shift: k[c] ∈ [0, 2^shiftBits − 1]; 1..5. Only used by
   * layers whose granularity is 'shift'. Default 4, the paper's choice (shifts 0..15).
   */
  shiftBits: number;
  /** Weights are always symmetric (zero point 0); the field lets a profile say so. Default true. */
  symmetric: true;
}

export interface ActivationSpec {
  /** One scale per tensor at this width: the highest of `allowed`. */
  bits: 8 | 16;
  /** The widths an activation allocation may choose among, ascending (`"bits": [8, 16]` in the profile). */
  allowed: (8 | 16)[];
  /** true: signed grid, zero point 0; false: unsigned grid with a zero point. */
  symmetric: boolean;
}

export interface RequantizationSpec {
  /** Width B of the signed fixed-point multiplier M (2..32). */
  multiplierBits: number;
  /**
   * [min, max] of the total right shift applied to acc·M, i.e. n + k[c] with WESS. A negative
   * min allows left shifts (real multipliers ≥ 2^(B−1)).
   */
  shiftRange: [number, number];
  /**
   * How acc·M·2^−shift is rounded. Default 'half-up': one rounding of the exact product, ties
   * toward +∞ (quantization/fixedpoint.ts). 'tflite': TFLite's int8 reference arithmetic
   * (double rounding: a saturating rounding doubling high multiply by a Q0.31 multiplier, then
   * a right shift rounding ties away from zero; ADD with a left shift of 20 and one multiplier
   * per input; AVERAGE_POOL_2D and MEAN with TFLite's rounded integer division), with
   * multipliers derived from the float scales as TFLite derives them. 'xnnpack': TFLite's CPU
   * path through its XNNPACK delegate (LiteRT's default): convolutions, fully connected layers
   * and multiplications requantize in float32 (acc·scale, one rounding, ties to even); ADD/SUB,
   * int8 QUANTIZE and LOGISTIC as XNNPACK computes them; the rest as 'tflite' (AVERAGE_POOL_2D,
   * HARD_SWISH and SOFTMAX are not delegated; XNNPACK's MEAN gave TFLite's results on the models
   * measured). Both need multiplierBits 32, a shiftRange within [0, 62] and 8-bit activations.
   */
  rounding: Rounding;
}

/** Requantization rounding conventions (see `RequantizationSpec.rounding`). */
export const ROUNDINGS = ['half-up', 'tflite', 'xnnpack'] as const;
export type Rounding = (typeof ROUNDINGS)[number];

/** Whether a profile computes as a TFLite runtime: TFLite's int8 kernels, with its reference or XNNPACK rounding. */
export function tfliteKernels(profile: { requantization: { rounding: Rounding } }): boolean {
  return profile.requantization.rounding !== 'half-up';
}

/** Non-linearities a target may run, named as in the model zoo rather than by ONNX op. */
export const NONLINEARITIES = ['relu', 'relu6', 'leakyRelu', 'sigmoid', 'hardSigmoid', 'hardSwish', 'swish', 'tanh'] as const;
export type Nonlinearity = (typeof NONLINEARITIES)[number];

/**
 * How the target runs a non-linearity: 'fused-clamp' folds it into the output clamp of the
 * preceding layer (relu and relu6 only), 'lut' uses an integer lookup table on the quantized
 * input, 'float' falls back to the host.
 */
export type NonlinearityMode = 'fused-clamp' | 'lut' | 'float';

/** Weight settings an override may change; absent fields keep the earlier value. */
export interface WeightOverride {
  bits?: 4 | 8;
  granularity?: WeightGranularity;
  shiftBits?: number;
}

/** Activation settings an override may change: the width of the matched layer's output grid. */
export interface ActivationOverride {
  bits?: 8 | 16;
}

/**
 * Mixed precision. `match` selects layers by name:
 * - `@first` / `@last`: the first and the last layer with weights (the stem convolution and
 *   the classifier), whatever their names;
 * - `/regex/flags`: a JavaScript regular expression, searched in the name (anchor it yourself);
 * - anything else: a glob over the whole name, `*` any run of characters, `?` one character.
 * Overrides apply in order and later ones win, field by field.
 */
export interface LayerOverride {
  match: string;
  /** At least one of `weights` and `activations` is present. */
  weights?: WeightOverride;
  /** Applies to the activation the layer writes (after a fused ReLU/Clip, that clamp's output). */
  activations?: ActivationOverride;
}

export interface TargetProfile {
  name: string;
  /** Default ''. */
  description: string;
  /** Where the profile came from (file path or built-in name), for messages and reports. */
  source: string;
  weights: WeightSpec;
  activations: ActivationSpec;
  requantization: RequantizationSpec;
  /**
   * Accumulator width, 16..48. Default 32. 16-bit activations times 8-bit weights can exceed
   * 32 bits; the NPU lowering refuses a layer whose worst-case accumulator does not fit. 48 is
   * the most the executor checks exactly (it holds accumulators in float64).
   */
  accumulatorBits: number;
  /** Bias width (bias at scale s_x·s_w[c]), 8..min(32, accumulatorBits): biases are stored as int32. Default 32. */
  biasBits: number;
  /**
   * Every entry of NONLINEARITIES is present after parsing. Defaults: relu and relu6
   * 'fused-clamp', the others 'lut'.
   */
  nonlinearities: Record<Nonlinearity, NonlinearityMode>;
  /** Restrict weight and activation scales to powers of two. Default false. */
  powerOfTwoScales: boolean;
  /** Default []. */
  overrides: LayerOverride[];
}

/** The weight quantization one layer gets after overrides. */
export interface LayerWeights {
  bits: 4 | 8;
  granularity: WeightGranularity;
  /** 0 unless granularity is 'shift'. */
  shiftBits: number;
}

const profilesDir = fileURLToPath(new URL('../../../profiles/', import.meta.url));

/** Names of the profiles shipped in `profiles/`. */
export function builtinProfiles(): string[] {
  return readdirSync(profilesDir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

/**
 * Loads a built-in profile by name (`w8a8-shift`) or a profile file by path (anything ending
 * in `.json` or containing a path separator). Throws a QuantflowError naming the file for
 * unreadable, malformed or invalid profiles, and listing the built-ins for an unknown name.
 */
export function loadProfile(nameOrPath: string): TargetProfile {
  const isPath = nameOrPath.endsWith('.json') || /[/\\]/.test(nameOrPath);
  const path = isPath ? nameOrPath : `${profilesDir}${nameOrPath}.json`;
  const source = isPath ? nameOrPath : `${nameOrPath}.json`;
  if (!isPath && !existsSync(path)) {
    throw new QuantflowError(
      `unknown target profile "${nameOrPath}" (built-in: ${builtinProfiles().join(', ')}; or give a path to a .json file)`,
    );
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new QuantflowError(`${source}: cannot read target profile (${(e as NodeJS.ErrnoException).code ?? e})`, {
      cause: e,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new QuantflowError(`${source}: invalid JSON (${(e as Error).message})`, { cause: e });
  }
  return parseProfile(json, source);
}

/**
 * Validates a parsed JSON profile and fills in defaults. `source` prefixes every error, which
 * also names the JSON path: `w4.json: weights.bits must be 4 or 8, got 5`.
 */
export function parseProfile(json: unknown, source: string): TargetProfile {
  const r = new JsonReader(source);
  const root = r.object('', json, [
    'name',
    'description',
    'weights',
    'activations',
    'requantization',
    'accumulatorBits',
    'biasBits',
    'nonlinearities',
    'powerOfTwoScales',
    'overrides',
  ]);
  const name = r.string('name', root.name);
  const description = root.description === undefined ? '' : r.string('description', root.description, true);

  const w = r.object('weights', root.weights, ['bits', 'granularity', 'shiftBits', 'symmetric']);
  const weightBits = r.widths('weights.bits', w.bits, [4, 8] as const);
  const weights: WeightSpec = {
    bits: weightBits.at(-1)!,
    allowed: weightBits,
    granularity: r.oneOf('weights.granularity', w.granularity, GRANULARITIES),
    shiftBits: w.shiftBits === undefined ? 4 : r.int('weights.shiftBits', w.shiftBits, 1, 5),
    symmetric: w.symmetric === undefined ? true : r.oneOf('weights.symmetric', w.symmetric, [true] as const),
  };

  const a = r.object('activations', root.activations, ['bits', 'symmetric']);
  const activationBits = r.widths('activations.bits', a.bits, [8, 16] as const);
  const activations: ActivationSpec = {
    bits: activationBits.at(-1)!,
    allowed: activationBits,
    symmetric: r.boolean('activations.symmetric', a.symmetric),
  };

  const q = r.object('requantization', root.requantization, ['multiplierBits', 'shiftRange', 'rounding']);
  const multiplierBits = r.int('requantization.multiplierBits', q.multiplierBits, 2, 32);
  const shiftRange = r.array('requantization.shiftRange', q.shiftRange, 2, 'a [min, max] pair of integers');
  const minShift = r.int('requantization.shiftRange[0]', shiftRange[0], -63, 63);
  const maxShift = r.int('requantization.shiftRange[1]', shiftRange[1], minShift, 63);
  const rounding = q.rounding === undefined ? 'half-up' : r.oneOf('requantization.rounding', q.rounding, ROUNDINGS);
  const requantization: RequantizationSpec = { multiplierBits, shiftRange: [minShift, maxShift], rounding };

  const accumulatorBits = root.accumulatorBits === undefined ? 32 : r.int('accumulatorBits', root.accumulatorBits, 16, 48);
  const biasBits = root.biasBits === undefined ? 32 : r.int('biasBits', root.biasBits, 8, Math.min(32, accumulatorBits));

  const nl = root.nonlinearities === undefined ? {} : r.object('nonlinearities', root.nonlinearities, NONLINEARITIES);
  const nonlinearities = {} as Record<Nonlinearity, NonlinearityMode>;
  for (const f of NONLINEARITIES) {
    const clampable = f === 'relu' || f === 'relu6';
    nonlinearities[f] =
      nl[f] === undefined
        ? clampable
          ? 'fused-clamp'
          : 'lut'
        : r.oneOf(`nonlinearities.${f}`, nl[f], clampable ? (['fused-clamp', 'lut', 'float'] as const) : (['lut', 'float'] as const));
  }

  const powerOfTwoScales = root.powerOfTwoScales === undefined ? false : r.boolean('powerOfTwoScales', root.powerOfTwoScales);

  const list = root.overrides === undefined ? [] : r.array('overrides', root.overrides, undefined, 'an array');
  const overrides = list.map((item, i): LayerOverride => {
    const path = `overrides[${i}]`;
    const o = r.object(path, item, ['match', 'weights', 'activations']);
    const match = r.string(`${path}.match`, o.match);
    const matcherError = checkMatcher(match);
    if (matcherError) throw new QuantflowError(`${source}: ${path}.match ${matcherError}`);
    if (o.weights === undefined && o.activations === undefined) {
      throw new QuantflowError(`${source}: ${path} must set weights, activations or both`);
    }
    const override: LayerOverride = { match };
    if (o.weights !== undefined) {
      const ow = r.object(`${path}.weights`, o.weights, ['bits', 'granularity', 'shiftBits']);
      if (Object.keys(ow).length === 0) {
        throw new QuantflowError(`${source}: ${path}.weights must set at least one of bits, granularity, shiftBits`);
      }
      const weightOverride: WeightOverride = {};
      if (ow.bits !== undefined) weightOverride.bits = r.oneOf(`${path}.weights.bits`, ow.bits, [4, 8] as const);
      if (ow.granularity !== undefined) {
        weightOverride.granularity = r.oneOf(`${path}.weights.granularity`, ow.granularity, GRANULARITIES);
      }
      if (ow.shiftBits !== undefined) weightOverride.shiftBits = r.int(`${path}.weights.shiftBits`, ow.shiftBits, 1, 5);
      override.weights = weightOverride;
    }
    if (o.activations !== undefined) {
      const oa = r.object(`${path}.activations`, o.activations, ['bits']);
      override.activations = { bits: r.oneOf(`${path}.activations.bits`, oa.bits, [8, 16] as const) };
    }
    return override;
  });
  if (rounding !== 'half-up') checkTflite(source, requantization, activations, overrides);

  return {
    name,
    description,
    source,
    weights,
    activations,
    requantization,
    accumulatorBits,
    biasBits,
    nonlinearities,
    powerOfTwoScales,
    overrides,
  };
}

/**
 * The weight quantization of one layer: the profile's defaults with every matching override
 * applied in order. `isFirst`/`isLast` tell whether the layer is the first or the last layer
 * with weights, which the `@first`/`@last` matchers select.
 */
export function resolveLayer(profile: TargetProfile, layerName: string, position: { isFirst: boolean; isLast: boolean }): LayerWeights {
  let { bits, granularity, shiftBits } = profile.weights;
  for (const o of profile.overrides) {
    if (!matches(o.match, layerName, position)) continue;
    bits = o.weights?.bits ?? bits;
    granularity = o.weights?.granularity ?? granularity;
    shiftBits = o.weights?.shiftBits ?? shiftBits;
  }
  return { bits, granularity, shiftBits: granularity === 'shift' ? shiftBits : 0 };
}

/**
 * The width of an activation's grid: the profile's, or that of the last override matching
 * one of `layerNames`, the layers whose output the activation is (the producer, and the
 * layer before a fused clamp). `position` is that of the weighted layer among them.
 */
export function resolveActivationBits(
  profile: TargetProfile,
  layerNames: readonly string[],
  position: { isFirst: boolean; isLast: boolean },
): 8 | 16 {
  let bits = profile.activations.bits;
  for (const o of profile.overrides) {
    if (o.activations?.bits !== undefined && layerNames.some((name) => matches(o.match, name, position))) bits = o.activations.bits;
  }
  return bits;
}

/**
 * The activation widths an allocation may choose for an activation (see
 * `resolveActivationBits` for `layerNames`): the profile's `activations.bits` list, or only
 * the width an override fixes.
 */
export function allowedActivationBits(
  profile: TargetProfile,
  layerNames: readonly string[],
  position: { isFirst: boolean; isLast: boolean },
): (8 | 16)[] {
  const fixed = profile.overrides
    .filter((o) => o.activations?.bits !== undefined && layerNames.some((name) => matches(o.match, name, position)))
    .at(-1);
  return fixed ? [fixed.activations!.bits!] : profile.activations.allowed;
}

/**
 * The weight widths an allocation may choose for a layer: the profile's `weights.bits` list,
 * or only the width an override fixes (`@first`/`@last` at 8 bits stay there).
 */
export function allowedWeightBits(profile: TargetProfile, layerName: string, position: { isFirst: boolean; isLast: boolean }): (4 | 8)[] {
  const fixed = profile.overrides.filter((o) => o.weights?.bits !== undefined && matches(o.match, layerName, position)).at(-1);
  return fixed ? [fixed.weights!.bits!] : profile.weights.allowed;
}

/**
 * `profile` as the JSON `loadProfile` reads back into the same profile (every field written
 * out, `source` left out): how an allocation is saved next to a run's outputs.
 */
export function profileJson(profile: TargetProfile): string {
  const widths = <T>(allowed: T[]) => (allowed.length === 1 ? allowed[0]! : allowed);
  const { weights, activations } = profile;
  const json = {
    name: profile.name,
    description: profile.description,
    weights: {
      bits: widths(weights.allowed),
      granularity: weights.granularity,
      shiftBits: weights.shiftBits,
      symmetric: weights.symmetric,
    },
    activations: { bits: widths(activations.allowed), symmetric: activations.symmetric },
    requantization: profile.requantization,
    accumulatorBits: profile.accumulatorBits,
    biasBits: profile.biasBits,
    nonlinearities: profile.nonlinearities,
    powerOfTwoScales: profile.powerOfTwoScales,
    overrides: profile.overrides,
  };
  return `${JSON.stringify(json, null, 2)}\n`;
}

/** A glob matching exactly `name` (a regex when the name holds glob characters). */
export function exactMatcher(name: string): string {
  return /[*?]/.test(name) || name.startsWith('@') || name.startsWith('/') ? `/^${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$/` : name;
}

const GRANULARITIES = ['tensor', 'channel', 'shift'] as const;

/**
 * TFLite's int8 kernels take Q0.31 multipliers with a left shift of at most 31 and a right
 * shift of at most 31 after the high multiply (31 − e in 0..62), and 8-bit activations (its
 * int16 kernels use other shifts, which are not modelled).
 */
function checkTflite(source: string, q: RequantizationSpec, a: ActivationSpec, overrides: LayerOverride[]): void {
  const fail = (what: string) => {
    throw new QuantflowError(`${source}: requantization.rounding "${q.rounding}" needs ${what}`);
  };
  if (q.multiplierBits !== 32) fail(`multiplierBits 32 (TFLite's Q0.31 multipliers), got ${q.multiplierBits}`);
  if (q.shiftRange[0] < 0 || q.shiftRange[1] > 62) fail(`a shiftRange within [0, 62], got [${q.shiftRange.join(', ')}]`);
  if (a.allowed.includes(16) || overrides.some((o) => o.activations?.bits === 16))
    fail('8-bit activations (TFLite int16 kernels are not modelled)');
}

function matches(match: string, name: string, position: { isFirst: boolean; isLast: boolean }): boolean {
  if (match === '@first') return position.isFirst;
  if (match === '@last') return position.isLast;
  return matcherRegExp(match).test(name);
}

function matcherRegExp(match: string): RegExp {
  const slash = match.lastIndexOf('/');
  if (match.startsWith('/') && slash > 0) return new RegExp(match.slice(1, slash), match.slice(slash + 1));
  const body = match
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** Why a matcher is unusable, or undefined when it is fine. */
function checkMatcher(match: string): string | undefined {
  if (match === '') return 'must not be empty';
  if (match.startsWith('@') && match !== '@first' && match !== '@last') {
    return `must be @first, @last, a glob or a /regex/, got "${match}"`;
  }
  try {
    matcherRegExp(match);
  } catch (e) {
    return `is not a valid regular expression: ${(e as Error).message}`;
  }
  return undefined;
}

/** Typed reads of untrusted JSON; every failure is one line naming the source and JSON path. */
class JsonReader {
  constructor(private readonly source: string) {}

  object(path: string, value: unknown, keys: readonly string[]): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(path, 'an object', value);
    for (const key of Object.keys(value)) {
      if (!keys.includes(key)) {
        const where = path ? `${path}.${key}` : key;
        throw new QuantflowError(`${this.source}: unknown key ${where} (known: ${keys.join(', ')})`);
      }
    }
    return value as Record<string, unknown>;
  }

  array(path: string, value: unknown, length: number | undefined, expected: string): unknown[] {
    if (!Array.isArray(value) || (length !== undefined && value.length !== length)) this.fail(path, expected, value);
    return value;
  }

  string(path: string, value: unknown, allowEmpty = false): string {
    if (typeof value !== 'string' || (!allowEmpty && value === '')) {
      this.fail(path, allowEmpty ? 'a string' : 'a non-empty string', value);
    }
    return value;
  }

  boolean(path: string, value: unknown): boolean {
    if (typeof value !== 'boolean') this.fail(path, 'true or false', value);
    return value;
  }

  int(path: string, value: unknown, min: number, max: number): number {
    if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
      this.fail(path, `an integer in ${min}..${max}`, value);
    }
    return value as number;
  }

  /** One width, or a list of distinct widths (returned ascending). */
  widths<T extends number>(path: string, value: unknown, options: readonly T[]): T[] {
    if (!Array.isArray(value)) return [this.oneOf(path, value, options)];
    if (!value.length) this.fail(path, `a width or a non-empty list of widths among ${options.join(', ')}`, value);
    const list = value.map((v, i) => this.oneOf(`${path}[${i}]`, v, options));
    if (new Set(list).size !== list.length) this.fail(path, 'a list of distinct widths', value);
    return list.sort((x, y) => x - y);
  }

  oneOf<T extends string | number | boolean>(path: string, value: unknown, options: readonly T[]): T {
    if (!options.includes(value as T)) {
      const list = options.map((o) => JSON.stringify(o));
      this.fail(path, list.length === 1 ? list[0]! : `${list.slice(0, -1).join(', ')} or ${list.at(-1)}`, value);
    }
    return value as T;
  }

  private fail(path: string, expected: string, value: unknown): never {
    if (value === undefined) throw new QuantflowError(`${this.source}: ${path} is required (${expected})`);
    const got = JSON.stringify(value);
    const shown = got.length > 40 ? `${got.slice(0, 37)}...` : got;
    throw new QuantflowError(`${this.source}: ${path || 'the profile'} must be ${expected}, got ${shown}`);
  }
}
