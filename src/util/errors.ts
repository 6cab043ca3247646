/**
 * Errors a user can act on. The CLI prints `message` as one line and exits with code 2;
 * anything that is not a QuantflowError is a bug and keeps its stack trace.
 */
export class QuantflowError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QuantflowError';
  }
}

/** Throws a QuantflowError unless `condition` holds. */
export function check(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new QuantflowError(typeof message === 'string' ? message : message());
}
