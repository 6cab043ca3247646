/** The model-loading option every command that loads a model takes. */
import type { LoadOptions } from '../import/load.js';

export interface ModelCliOptions {
  cutBefore?: string;
}

/** `--cut-before`, as `.option(...CUT_BEFORE_OPTION)` right after the command's `<model>` argument. */
export const CUT_BEFORE_OPTION = [
  '--cut-before <op|tensor>',
  'load the model only up to this operator (TFLite builtin or custom op name, ONNX op type or node name) or tensor: its inputs (or the tensor) become the outputs',
] as const;

/** The `loadModel` options the parsed CLI options ask for. */
export function loadOptions(opts: ModelCliOptions): LoadOptions {
  return opts.cutBefore === undefined ? {} : { cutBefore: opts.cutBefore };
}
