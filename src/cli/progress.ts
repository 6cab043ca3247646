import cliProgress from 'cli-progress';

/**
 * A progress bar on stderr for work longer than a few seconds. It draws only on a
 * terminal, so piped output and CI logs stay clean. With `loss`, it also shows the latest
 * loss passed to `update` (training).
 */
export function progressBar(
  label: string,
  total: number,
  options: { loss?: boolean } = {},
): { update(done: number, values?: { loss: number }): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const loss = options.loss ? ' loss {loss}' : '';
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% {value}/{total}${loss} ETA {eta_formatted}`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { loss: '-' });
  return {
    update: (done, values) => bar.update(done, values ? { loss: values.loss.toPrecision(4) } : {}),
    stop: () => bar.stop(),
  };
}
