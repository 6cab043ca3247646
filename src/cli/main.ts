#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { QuantflowError } from '../util/errors.js';
import { registerImport } from './commands/import.js';
import { registerEval } from './commands/eval.js';
import { registerExport } from './commands/export.js';
import { registerCompare } from './commands/compare.js';
import { registerDemo } from './commands/demo.js';
import { registerQuantize } from './commands/quantize.js';
import { registerVerify } from './commands/verify.js';
import { registerTse } from './commands/tse.js';
import { registerBuffers } from './commands/buffers.js';
import { registerInspect } from './commands/inspect.js';
import { registerDiff } from './commands/diff.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

/** Exit code for errors in the user's input (bad model, data, options). */
export const EXIT_USER_ERROR = 2;

function buildProgram(): Command {
  const program = new Command('quantflow')
    .description('Quantize trained CNNs for integer dataflow NPUs: import, evaluate, quantize, export.')
    .version(pkg.version)
    .option('--verbose', 'print stack traces with errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerImport(program);
  registerEval(program);
  registerCompare(program);
  registerQuantize(program);
  registerVerify(program);
  registerExport(program);
  registerTse(program);
  registerBuffers(program);
  registerInspect(program);
  registerDiff(program);
  registerDemo(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT_USER_ERROR;
    if (e instanceof QuantflowError) {
      console.error(`quantflow: ${e.message}`);
      if (verbose) console.error(e.stack);
      return EXIT_USER_ERROR;
    }
    console.error(`quantflow: internal error: ${(e as Error)?.message ?? e}`);
    console.error(verbose ? (e as Error)?.stack : '(run with --verbose for the stack trace, and please report it)');
    return 1;
  }
}

process.exitCode = await main(process.argv);
