import type { Command } from 'commander';
import { CHANNELS, PRESETS, RESIZE_MODES, readPreprocessFile, validatePreprocess, type PreprocessRequest } from '../data/preprocess.js';

/** The options `addPreprocessOptions` adds, as commander parses them. */
export interface PreprocessFlags {
  preset?: string;
  mean?: string;
  std?: string;
  channels?: string;
  resize?: string;
  padValue?: string;
  preprocess?: string;
  skipBadImages?: boolean;
}

/**
 * Adds the options of every command that reads images: the preprocessing (a preset, its
 * fields, or a JSON file of them) and --skip-bad-images. Resolve them with
 * `preprocessRequest`, then `resolvePreprocess` against the model.
 */
export function addPreprocessOptions(command: Command): Command {
  return command
    .option('--preset <name>', `preprocessing preset: ${PRESETS.join(', ')} (default: recorded in or chosen from the model)`)
    .option('--mean <r,g,b>', 'per-colour mean subtracted after resizing, in pixel units 0-255 (one value: all colours)')
    .option('--std <r,g,b>', 'per-colour divisor applied after the mean, in pixel units (one value: all colours)')
    .option('--channels <order>', `channel order fed to the model: ${CHANNELS.join(', ')} (default rgb; gray for a 1-channel input)`)
    .option('--resize <mode>', `${RESIZE_MODES.join(', ')}: central crop, torchvision resize then crop, whole image, or fit and pad`)
    .option('--pad-value <v>', 'border pixel value of --resize letterbox, 0-255 (default 114)')
    .option(
      '--preprocess <file.json>',
      'preprocessing as JSON (preset, mean, std, channels, resize, crop, padValue); the options above override it',
    )
    .option('--skip-bad-images', 'leave out unreadable images (counted and listed) instead of failing on the first');
}

/** "1,2,3" as numbers; a malformed entry becomes NaN, which `validatePreprocess` names. */
function numbers(value: string | undefined): number[] | undefined {
  return value === undefined ? undefined : value.split(',').map((v) => (v.trim() === '' ? NaN : Number(v)));
}

/**
 * The preprocessing the options ask for: the --preprocess file's fields, replaced by those
 * given as options; undefined when none was given (the model's default applies). Bad values
 * are one-line QuantflowErrors naming the option, or the file and field.
 */
export function preprocessRequest(opts: PreprocessFlags): PreprocessRequest | undefined {
  const file = opts.preprocess !== undefined ? readPreprocessFile(opts.preprocess) : {};
  const flags = validatePreprocess(
    {
      preset: opts.preset,
      mean: numbers(opts.mean),
      std: numbers(opts.std),
      channels: opts.channels,
      resize: opts.resize,
      padValue: opts.padValue === undefined ? undefined : Number(opts.padValue),
    },
    (field) => `--${field === 'padValue' ? 'pad-value' : field}`,
  );
  const request = { ...file, ...flags };
  return Object.keys(request).length ? request : undefined;
}
