import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  allowedWeightBits,
  builtinProfiles,
  exactMatcher,
  loadProfile,
  parseProfile,
  profileJson,
  resolveActivationBits,
  resolveLayer,
  type TargetProfile,
} from '../src/quantization/profile.js';
import { QuantflowError } from '../src/util/errors.js';

const BUILTINS = [
  'tflite-int8',
  'tflite-int8-xnnpack',
  'w4a8-channel',
  'w4a8-shift',
  'w4a8-tensor',
  'w4w8a8-channel',
  'w4w8a8-shift',
  'w8a16-channel',
  'w8a8-channel',
  'w8a8-shift',
  'w8a8-tensor',
  'w8a8a16-channel',
];
const middle = { isFirst: false, isLast: false };

function minimal(): Record<string, any> {
  return {
    name: 'npu',
    weights: { bits: 4, granularity: 'shift' },
    activations: { bits: 8, symmetric: false },
    requantization: { multiplierBits: 16, shiftRange: [0, 47] },
  };
}

function withOverrides(overrides: unknown[]): TargetProfile {
  return parseProfile({ ...minimal(), overrides }, 'test.json');
}

test('every built-in profile loads, named after its file', () => {
  assert.deepEqual(builtinProfiles(), BUILTINS);
  // The wXaY-… names spell out their settings; tflite-int8 has its own test (quant-tflite.test.ts).
  for (const name of BUILTINS.filter((n) => !n.startsWith('tflite-int8'))) {
    const p = loadProfile(name);
    assert.equal(p.name, name);
    assert.equal(p.source, `${name}.json`);
    // w4a8-…: 4-bit weights; w4w8a8-…: 4 or 8 bits per layer, the widest without a budget; a8a16: 8 or 16 per activation.
    const [, wbits, wider, abits, widerA, granularity] = /^w(\d)(?:w(\d))?a(8|16)(?:a(16))?-(\w+)$/.exec(name)!;
    const allowed = [Number(wbits), ...(wider ? [Number(wider)] : [])];
    const allowedA = [Number(abits), ...(widerA ? [Number(widerA)] : [])];
    assert.equal(p.weights.bits, allowed.at(-1));
    assert.equal(p.weights.granularity, granularity);
    assert.deepEqual(p.activations, { bits: allowedA.at(-1), allowed: allowedA, symmetric: false });
    assert.deepEqual(p.weights.allowed, allowed);
    // 16-bit activations times 8-bit weights overflow 32 bits on wide layers.
    assert.equal(p.accumulatorBits, allowedA.includes(16) ? 48 : 32);
    assert.equal(p.biasBits, 32);
    const first = resolveLayer(p, 'stem', { isFirst: true, isLast: false });
    const last = resolveLayer(p, 'logits', { isFirst: false, isLast: true });
    assert.equal(first.bits, 8, `${name}: first convolution at 8 bits`);
    assert.equal(last.bits, 8, `${name}: classifier at 8 bits`);
    assert.equal(resolveLayer(p, 'block_3', middle).bits, allowed.at(-1));
  }
});

test('defaults fill everything but the required sections', () => {
  const p = parseProfile(minimal(), 'min.json');
  assert.equal(p.description, '');
  assert.equal(p.weights.shiftBits, 4);
  assert.equal(p.weights.symmetric, true);
  assert.equal(p.accumulatorBits, 32);
  assert.equal(p.biasBits, 32);
  assert.equal(p.powerOfTwoScales, false);
  assert.deepEqual(p.overrides, []);
  assert.equal(p.nonlinearities.relu6, 'fused-clamp');
  assert.equal(p.nonlinearities.hardSwish, 'lut');
});

test('resolveLayer: shiftBits only for shift layers', () => {
  assert.deepEqual(resolveLayer(loadProfile('w8a8-tensor'), 'conv', middle), { bits: 8, granularity: 'tensor', shiftBits: 0 });
  assert.deepEqual(resolveLayer(loadProfile('w4a8-shift'), 'conv', middle), { bits: 4, granularity: 'shift', shiftBits: 4 });
  assert.deepEqual(resolveLayer(loadProfile('w4a8-shift'), 'conv', { isFirst: true, isLast: false }), {
    bits: 8,
    granularity: 'shift',
    shiftBits: 4,
  });
});

test('overrides: globs, regexes, @first/@last, later ones win field by field', () => {
  const p = withOverrides([
    { match: 'conv1*', weights: { bits: 8 } },
    { match: '/^block_\\d+_depthwise$/', weights: { granularity: 'channel' } },
    { match: 'fc?', weights: { granularity: 'tensor', bits: 8 } },
    { match: 'conv1_b', weights: { bits: 4, shiftBits: 2 } },
    { match: '/LOGITS/i', weights: { bits: 8 } },
    { match: '@last', weights: { granularity: 'channel' } },
  ]);
  const at = (name: string, position = middle) => resolveLayer(p, name, position);
  assert.deepEqual(at('conv1'), { bits: 8, granularity: 'shift', shiftBits: 4 });
  assert.deepEqual(at('conv1_a'), { bits: 8, granularity: 'shift', shiftBits: 4 });
  assert.deepEqual(at('conv1_b'), { bits: 4, granularity: 'shift', shiftBits: 2 });
  assert.deepEqual(at('xconv1'), { bits: 4, granularity: 'shift', shiftBits: 4 }, 'globs match the whole name');
  assert.deepEqual(at('block_12_depthwise'), { bits: 4, granularity: 'channel', shiftBits: 0 });
  assert.deepEqual(at('block_12_depthwise_bn'), { bits: 4, granularity: 'shift', shiftBits: 4 });
  assert.deepEqual(at('fc1'), { bits: 8, granularity: 'tensor', shiftBits: 0 });
  assert.deepEqual(at('fc12'), { bits: 4, granularity: 'shift', shiftBits: 4 }, '? is one character');
  assert.deepEqual(at('model/Logits/Conv'), { bits: 8, granularity: 'shift', shiftBits: 4 }, 'regexes search');
  assert.deepEqual(at('head', { isFirst: false, isLast: true }), { bits: 4, granularity: 'channel', shiftBits: 0 });
  assert.deepEqual(resolveLayer(withOverrides([{ match: 'a.b', weights: { bits: 8 } }]), 'axb', middle).bits, 4, '. is literal in globs');
});

test('activation overrides set the output width of the layers they match; weight-only overrides leave it', () => {
  const p = withOverrides([
    { match: 'expand_*', activations: { bits: 16 } },
    { match: 'expand_3', weights: { bits: 8 } },
    { match: '@last', weights: { bits: 8 }, activations: { bits: 16 } },
    { match: 'expand_2', activations: { bits: 8 } },
  ]);
  const bits = (names: string[], position = middle) => resolveActivationBits(p, names, position);
  assert.equal(bits(['conv']), 8);
  assert.equal(bits(['expand_1']), 16);
  assert.equal(bits(['expand_3']), 16);
  assert.equal(bits(['expand_2']), 8, 'later ones win');
  assert.equal(bits(['relu', 'expand_1']), 16, 'a fused clamp writes on behalf of the layer before it');
  assert.equal(bits(['head'], { isFirst: false, isLast: true }), 16);
  assert.equal(resolveLayer(p, 'expand_1', middle).bits, 4, 'an activation override leaves the weights');
  assert.equal(resolveActivationBits(loadProfile('w8a16-channel'), ['conv'], middle), 16);
});

test('each validation error is one line naming the file and the JSON path', () => {
  const cases: [(p: Record<string, any>) => unknown, string][] = [
    [(p) => (p.weights.bits = 5), 'w4.json: weights.bits must be 4 or 8, got 5'],
    [(p) => delete p.name, 'w4.json: name is required (a non-empty string)'],
    [(p) => (p.name = ''), 'w4.json: name must be a non-empty string, got ""'],
    [(p) => (p.description = 3), 'w4.json: description must be a string, got 3'],
    [(p) => delete p.weights, 'w4.json: weights is required (an object)'],
    [(p) => (p.weights.bitz = 4), 'w4.json: unknown key weights.bitz (known: bits, granularity, shiftBits, symmetric)'],
    [
      (p) => (p.weight = {}),
      'w4.json: unknown key weight (known: name, description, weights, activations, requantization, accumulatorBits, biasBits, nonlinearities, powerOfTwoScales, overrides)',
    ],
    [(p) => (p.weights.granularity = 'group'), 'w4.json: weights.granularity must be "tensor", "channel" or "shift", got "group"'],
    [(p) => (p.weights.shiftBits = 9), 'w4.json: weights.shiftBits must be an integer in 1..5, got 9'],
    [(p) => (p.weights.shiftBits = 2.5), 'w4.json: weights.shiftBits must be an integer in 1..5, got 2.5'],
    [(p) => (p.weights.symmetric = false), 'w4.json: weights.symmetric must be true, got false'],
    [(p) => (p.activations.bits = 4), 'w4.json: activations.bits must be 8 or 16, got 4'],
    [(p) => (p.activations.symmetric = 'yes'), 'w4.json: activations.symmetric must be true or false, got "yes"'],
    [(p) => (p.activations = [8]), 'w4.json: activations must be an object, got [8]'],
    [(p) => (p.requantization.multiplierBits = 40), 'w4.json: requantization.multiplierBits must be an integer in 2..32, got 40'],
    [(p) => (p.requantization.shiftRange = 3), 'w4.json: requantization.shiftRange must be a [min, max] pair of integers, got 3'],
    [(p) => (p.requantization.shiftRange = [5, 2]), 'w4.json: requantization.shiftRange[1] must be an integer in 5..63, got 2'],
    [(p) => (p.requantization.shiftRange = ['0', 2]), 'w4.json: requantization.shiftRange[0] must be an integer in -63..63, got "0"'],
    [(p) => (p.accumulatorBits = 64), 'w4.json: accumulatorBits must be an integer in 16..48, got 64'],
    [(p) => Object.assign(p, { accumulatorBits: 48, biasBits: 40 }), 'w4.json: biasBits must be an integer in 8..32, got 40'],
    [(p) => Object.assign(p, { accumulatorBits: 24, biasBits: 32 }), 'w4.json: biasBits must be an integer in 8..24, got 32'],
    [(p) => (p.nonlinearities = { sigmoid: 'fused-clamp' }), 'w4.json: nonlinearities.sigmoid must be "lut" or "float", got "fused-clamp"'],
    [(p) => (p.nonlinearities = { relu: 'clamp' }), 'w4.json: nonlinearities.relu must be "fused-clamp", "lut" or "float", got "clamp"'],
    [
      (p) => (p.nonlinearities = { gelu: 'lut' }),
      'w4.json: unknown key nonlinearities.gelu (known: relu, relu6, leakyRelu, sigmoid, hardSigmoid, hardSwish, swish, tanh)',
    ],
    [(p) => (p.powerOfTwoScales = 1), 'w4.json: powerOfTwoScales must be true or false, got 1'],
    [(p) => (p.overrides = {}), 'w4.json: overrides must be an array, got {}'],
    [(p) => (p.overrides = [{ weights: { bits: 8 } }]), 'w4.json: overrides[0].match is required (a non-empty string)'],
    [
      (p) => (p.overrides = [{ match: '@middle', weights: { bits: 8 } }]),
      'w4.json: overrides[0].match must be @first, @last, a glob or a /regex/, got "@middle"',
    ],
    [(p) => (p.overrides = [{ match: '/(/', weights: { bits: 8 } }]), 'w4.json: overrides[0].match is not a valid regular expression: '],
    [
      (p) => (p.overrides = [{ match: 'a', weights: {} }]),
      'w4.json: overrides[0].weights must set at least one of bits, granularity, shiftBits',
    ],
    [
      (p) =>
        (p.overrides = [
          { match: 'a', weights: { bits: 8 } },
          { match: 'b', weights: { bits: 2 } },
        ]),
      'w4.json: overrides[1].weights.bits must be 4 or 8, got 2',
    ],
    [
      (p) => (p.overrides = [{ match: 'a', weights: { symmetric: true } }]),
      'w4.json: unknown key overrides[0].weights.symmetric (known: bits, granularity, shiftBits)',
    ],
    [(p) => (p.overrides = [{ match: 'a' }]), 'w4.json: overrides[0] must set weights, activations or both'],
    [(p) => (p.overrides = [{ match: 'a', activations: { bits: 4 } }]), 'w4.json: overrides[0].activations.bits must be 8 or 16, got 4'],
    [
      (p) => (p.overrides = [{ match: 'a', activations: { symmetric: true } }]),
      'w4.json: unknown key overrides[0].activations.symmetric (known: bits)',
    ],
  ];
  for (const [mutate, message] of cases) {
    const p = minimal();
    mutate(p);
    assert.throws(
      () => parseProfile(p, 'w4.json'),
      (e: unknown) => {
        assert.ok(e instanceof QuantflowError, String(e));
        assert.ok(e.message.startsWith(message), `${e.message}\n  expected: ${message}`);
        assert.ok(!e.message.includes('\n'));
        return true;
      },
    );
  }
  assert.throws(() => parseProfile([], 'x.json'), { message: 'x.json: the profile must be an object, got []' });
});

test('loadProfile: files, unknown names, unreadable and malformed files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'quantflow-profile-'));
  const good = join(dir, 'mine.json');
  writeFileSync(good, JSON.stringify(minimal()));
  assert.equal(loadProfile(good).name, 'npu');
  assert.equal(loadProfile(good).source, good);

  assert.throws(() => loadProfile('w3a8-tensor'), {
    message: `unknown target profile "w3a8-tensor" (built-in: ${BUILTINS.join(', ')}; or give a path to a .json file)`,
  });
  const missing = join(dir, 'missing.json');
  assert.throws(() => loadProfile(missing), { message: `${missing}: cannot read target profile (ENOENT)` });
  const broken = join(dir, 'broken.json');
  writeFileSync(broken, '{"name": ');
  assert.throws(
    () => loadProfile(broken),
    (e: unknown) => e instanceof QuantflowError && e.message.startsWith(`${broken}: invalid JSON (`),
  );
  const bad = join(dir, 'w4.json');
  writeFileSync(bad, JSON.stringify({ ...minimal(), weights: { bits: 5, granularity: 'tensor' } }));
  assert.throws(() => loadProfile(bad), { message: `${bad}: weights.bits must be 4 or 8, got 5` });
});

test('a profile may list the widths it allows; layers an override fixes allow only theirs', () => {
  const p = parseProfile(
    {
      ...minimal(),
      weights: { bits: [8, 4], granularity: 'channel' },
      activations: { bits: [16, 8], symmetric: false },
      overrides: [
        { match: '@first', weights: { bits: 8 } },
        { match: 'dw*', weights: { granularity: 'tensor' } },
      ],
    },
    'w48.json',
  );
  assert.deepEqual([p.weights.bits, p.weights.allowed], [8, [4, 8]]);
  assert.deepEqual([p.activations.bits, p.activations.allowed], [16, [8, 16]]);
  assert.deepEqual(allowedWeightBits(p, 'stem', { isFirst: true, isLast: false }), [8]);
  assert.deepEqual(allowedWeightBits(p, 'dw1', middle), [4, 8], 'an override without bits leaves the choice');
  assert.equal(resolveLayer(p, 'conv', middle).bits, 8, 'without an allocation, the highest width');
  for (const [bits, message] of [
    [[], 'w48.json: weights.bits must be a width or a non-empty list of widths among 4, 8, got []'],
    [[4, 4], 'w48.json: weights.bits must be a list of distinct widths, got [4,4]'],
    [[4, 5], 'w48.json: weights.bits[1] must be 4 or 8, got 5'],
  ] as const)
    assert.throws(
      () => parseProfile({ ...minimal(), weights: { bits, granularity: 'channel' } }, 'w48.json'),
      (e: Error) => e instanceof QuantflowError && e.message === message,
    );
});

test('profileJson writes a profile that parses back to the same profile', () => {
  for (const name of BUILTINS) {
    const p = loadProfile(name);
    assert.deepEqual(parseProfile(JSON.parse(profileJson(p)), p.source), p);
  }
  const mixed = withOverrides([{ match: exactMatcher('a*b?'), weights: { bits: 8 } }]);
  const listed = { ...mixed, weights: { ...mixed.weights, bits: 8 as const, allowed: [4, 8] as (4 | 8)[] } };
  assert.deepEqual(parseProfile(JSON.parse(profileJson(listed)), 'test.json'), listed);
  assert.equal(resolveLayer(mixed, 'a*b?', middle).bits, 8);
  assert.equal(resolveLayer(mixed, 'axxby', middle).bits, 4, 'exactMatcher matches the name only');
  assert.equal(exactMatcher('conv_1/Relu6'), 'conv_1/Relu6');
});
