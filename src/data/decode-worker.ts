/** Worker side of DecodePool: decodes the images (or .npy tensors) of each request into shared memory. */
import { parentPort } from 'node:worker_threads';
import { QuantflowError } from '../util/errors.js';
import type { DecodeReply, DecodeRequest } from './decode-pool.js';
import { decodeInput } from './decode-input.js';

/**
 * Images in flight per worker: two, so that sharp decodes the next image on libuv's pool
 * while this thread resizes the current one. More would only add threads competing with
 * onnxruntime's for the same cores.
 */
const IN_FLIGHT = 2;

async function handle(request: DecodeRequest): Promise<DecodeReply> {
  const out = new Float32Array(request.buffer);
  const failures: DecodeReply['failures'] = [];
  let next = 0;
  const run = async () => {
    for (let i = next++; i < request.paths.length; i = next++) {
      try {
        await decodeInput(request.paths[i]!, request.preprocess, request.channels, request.height, request.width, out, request.offsets[i]!);
      } catch (e) {
        failures.push({ index: i, message: (e as Error).message ?? String(e), user: e instanceof QuantflowError });
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, run));
  return { id: request.id, failures };
}

// null asks the worker to exit: closing the port ends it once in-flight decodes are done.
parentPort!.on('message', (request: DecodeRequest | null) => {
  if (request === null) return parentPort!.close();
  void handle(request).then((reply) => parentPort!.postMessage(reply));
});
