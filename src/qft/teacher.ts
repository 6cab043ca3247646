import type { Model } from '../graph/types.js';
import { openSession, runSession } from '../runtime/session.js';
import type { ImageSet } from './images.js';

/**
 * The float model's `logits` for every image of `images`, computed once (the teacher never
 * changes): image i's logits are the slice [i·size, (i+1)·size).
 */
export async function teacherLogits(model: Model, logits: string, images: ImageSet, batch: number): Promise<{ data: Float32Array; size: number }> {
  const session = await openSession({ ...model, graph: { ...model.graph, outputs: [{ name: logits, dataType: 'float32' }] } });
  try {
    let data = new Float32Array(0);
    let size = 0;
    for (let start = 0; start < images.count; start += batch) {
      const n = Math.min(batch, images.count - start);
      const out = (await runSession(session, { [images.input]: images.slice(start, n) }))[logits]!;
      const values = out.data as Float32Array;
      if (!size) {
        size = values.length / n;
        data = new Float32Array(size * images.count);
      }
      data.set(values, start * size);
    }
    return { data, size };
  } finally {
    await session.release();
  }
}
