import type { Command } from 'commander';
import { inspectModel, type InspectReport, type LayerGroup } from '../../report/inspect.js';
import { CUT_BEFORE_OPTION, loadOptions, type ModelCliOptions } from '../model-options.js';
import { shortLabels } from '../../report/markup.js';
import { formatTable } from '../table.js';
import { writeJsonResult } from '../../util/fs.js';
import { formatCount } from './buffers.js';
import { addInputSizeOption, type InputSizeCliOptions } from '../input-size.js';

interface InspectOptions extends InputSizeCliOptions, ModelCliOptions {
  layers?: boolean;
  json?: string;
}

const how = (g: Pick<LayerGroup, 'bits' | 'granularity' | 'shiftBits'>) =>
  `${g.bits}-bit ${g.granularity}${g.granularity === 'shift' ? ` (k: ${g.shiftBits} bits)` : ''}`;

/** Names of a small group (an override's layers) are worth printing; a big one is "the rest". */
const MAX_NAMED = 3;

/** The report as the text the command prints. */
export function formatInspect(r: InspectReport, perLayer: boolean): string {
  const out = [
    `model: ${r.model} (${r.format}, opset ${r.opset}${r.producer ? `, producer ${r.producer}` : ''})`,
    `${r.nodes} nodes, ${formatCount(r.parameters)} parameters${r.prepared ? ' (after constant and batch-norm folding)' : ' (as loaded: the model could not be prepared)'}`,
    ...r.inputs.map((v) => `input  ${v.name}: ${v.dataType} ${v.shape}`),
    ...r.outputs.map((v) => `output ${v.name}: ${v.dataType} ${v.shape}`),
    `operators: ${Object.entries(r.operators)
      .map(([op, n]) => `${op} ${n}`)
      .join(', ')}`,
  ];
  if (r.squeezeExcite) {
    const { blocks, nearMisses } = r.squeezeExcite;
    out.push(`squeeze-and-excite blocks: ${blocks.length}`);
    if (blocks.length) {
      out.push(
        formatTable([
          ['SE block (Mul)', 'C x H x W', 'gate'],
          ...blocks.map((b) => [b.mul, `${b.channels}x${b.height}x${b.width}`, b.gate]),
        ]),
      );
    }
    for (const m of nearMisses) out.push(`not an SE block: Mul '${m.node}': ${m.reason}`);
  }
  if (r.profiles?.length) {
    const width = Math.max(...r.profiles.map((p) => p.profile.length));
    out.push('', `built-in profiles (every one quantizes ${r.profiles[0]!.activations} activations per-tensor):`);
    for (const p of r.profiles) {
      const groups = p.groups.map(
        (g) => `${g.layers.length} x ${how(g)}${g.layers.length <= MAX_NAMED && p.groups.length > 1 ? ` (${g.layers.join(', ')})` : ''}`,
      );
      out.push(`  ${p.profile.padEnd(width)}  ${groups.join('; ')}`);
    }
    if (perLayer) {
      const profiles = r.profiles;
      const labels = shortLabels(profiles[0]!.layers.map((l) => l.name));
      out.push(
        '',
        formatTable([
          ['layer', 'op', ...profiles.map((p) => p.profile)],
          ...profiles[0]!.layers.map((l, i) => [labels[i]!, l.opType, ...profiles.map((p) => how(p.layers[i]!))]),
        ]),
      );
    }
  }
  if (r.problems.length) out.push('', 'problems:', ...r.problems.map((p) => `  ${p}`));
  return out.join('\n');
}

export function registerInspect(program: Command): void {
  addInputSizeOption(
    program
      .command('inspect')
      .description('Show what a model contains and how each built-in target profile would quantize it.')
      .argument('<model>', 'model file (.tflite or .onnx)')
      .option(...CUT_BEFORE_OPTION),
  )
    .option('--layers', 'list every layer under every built-in profile')
    .option('--json <file>', 'write everything, per-layer plans included, as JSON')
    .addHelpText(
      'after',
      '\nModels quantflow cannot prepare (unsupported operators, invalid graphs) are still\n' +
        'listed, with the problems found, instead of failing.\n\nExample:\n' +
        '  quantflow inspect ../shared/models/mobilenet_v3_small_1.0_224_uint8.tflite --layers',
    )
    .action(async (modelPath: string, opts: InspectOptions) => {
      const report = await inspectModel(modelPath, { inputSize: opts.inputSize }, loadOptions(opts));
      console.log(formatInspect(report, !!opts.layers));
      if (opts.json) writeJsonResult(opts.json, report);
    });
}
