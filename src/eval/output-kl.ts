import type { Model } from '../graph/types.js';
import type { ImageSet } from '../qft/images.js';
import { openSession, runSession } from '../runtime/session.js';

/**
 * Mean KL(float ‖ quantized) of the models' first outputs over the first `limit` images of
 * `images`, the quantized (QDQ) model run as its fake-quant simulation. Both outputs must be
 * probabilities (models that end in Softmax): the measure of how far quantization moved the
 * predictions, labels not needed.
 */
export async function outputKl(float: Model, quantized: Model, images: ImageSet, options: { batch: number; limit?: number }): Promise<number> {
  const n = Math.min(options.limit ?? images.count, images.count);
  const probabilities = async (m: Model, simulate: boolean) => {
    const session = await openSession(m, { simulate });
    try {
      const out: number[] = [];
      for (let i = 0; i < n; i += options.batch) {
        const r = await runSession(session, { [images.input]: images.slice(i, Math.min(options.batch, n - i)) });
        out.push(...(r[m.graph.outputs[0]!.name]!.data as Float32Array));
      }
      return out;
    } finally {
      await session.release();
    }
  };
  const p = await probabilities(float, false);
  const q = await probabilities(quantized, true);
  let kl = 0;
  p.forEach((v, i) => (kl += v > 0 ? v * (Math.log(v) - Math.log(Math.max(q[i]!, 1e-12))) : 0));
  return kl / n;
}
