import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';

/** Parses "HxW" (or "N" for NxN) into two positive integers, with a message naming the option. */
export function sizePair(name: string): (value: string) => [number, number] {
  return (value) => {
    const m = /^(\d+)(?:x(\d+))?$/i.exec(value.trim());
    const pair = m ? ([Number(m[1]), Number(m[2] ?? m[1])] as [number, number]) : undefined;
    if (!pair || pair.some((v) => v <= 0))
      throw new InvalidArgumentError(`${name} takes positive integers as HxW (7x7) or one size (7), got '${value}'`);
    return pair;
  };
}

/** What `addInputSizeOption` adds to a command's options. */
export interface InputSizeCliOptions {
  inputSize?: [number, number];
}

/**
 * Adds `--input-size HxW` to a command: the height and width the model is prepared at
 * (`prepareModel`'s `inputSize`), required for models whose input leaves them dynamic.
 */
export function addInputSizeOption(command: Command): Command {
  return command.option(
    '--input-size <HxW>',
    "image input height and width (required when the model's are dynamic; default: the model's own)",
    sizePair('--input-size'),
  );
}
