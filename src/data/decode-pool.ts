import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
// sharp must be loaded on the main thread before workers load it: on glibc Linux its shared
// libraries would otherwise be unloaded when a worker exits (sharp's install docs).
import 'sharp';
import { QuantflowError } from '../util/errors.js';
import type { Preprocess } from './preprocess.js';

/** A request to one worker: decode `paths` into `buffer`, image i at `offsets[i]`. */
export interface DecodeRequest {
  id: number;
  paths: string[];
  offsets: number[];
  buffer: SharedArrayBuffer;
  preprocess: Preprocess;
  channels: number;
  height: number;
  width: number;
}

/** A worker's answer: which of its images failed, and why. */
export interface DecodeReply {
  id: number;
  failures: { index: number; message: string; user: boolean }[];
}

/** A Float32Array that workers can write into. */
export function sharedFloat32(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(length * Float32Array.BYTES_PER_ELEMENT));
}

/**
 * Decodes and preprocesses images on worker threads, straight into shared memory.
 * onnxruntime-node runs inference synchronously on the JS thread, so preprocessing done
 * there (or completions delivered there) would wait for each batch to finish; workers keep
 * going while it runs. One worker per 4 cores: a worker's JS work (resizing, ~1 ms per
 * 224x224 image) must keep up with inference spread over all cores (MobileNetV2: ~5.6
 * core-ms per image); sharp's own decoding runs on libuv's thread pool.
 */
export class DecodePool {
  private readonly workers: Worker[];
  private readonly exited: Promise<unknown>[];
  private readonly pending = new Map<number, { resolve: (r: DecodeReply) => void; reject: (e: unknown) => void }>();
  private nextId = 0;
  /** Set once a worker dies: every later request fails with it instead of waiting forever. */
  private failure: unknown;

  constructor(size = Math.max(1, Math.floor(availableParallelism() / 4))) {
    this.workers = Array.from({ length: size }, () => {
      const worker = new Worker(new URL('./decode-worker.js', import.meta.url));
      worker.on('message', (reply: DecodeReply) => {
        this.pending.get(reply.id)?.resolve(reply);
        this.pending.delete(reply.id);
      });
      worker.on('error', (e) => this.fail(e));
      worker.on('exit', (code) => this.fail(new Error(`a decoding worker exited with code ${code}`)));
      return worker;
    });
    this.exited = this.workers.map((w) => new Promise((resolve) => w.once('exit', resolve)));
  }

  /**
   * Decodes `paths` with `preprocess` into `out` (from `sharedFloat32`), image i at
   * i * channels * height * width. Resolves to one entry per image: undefined when it decoded,
   * else the QuantflowError naming it. Other failures (bugs) reject.
   */
  async decode(
    paths: string[],
    preprocess: Preprocess,
    channels: number,
    height: number,
    width: number,
    out: Float32Array,
  ): Promise<(QuantflowError | undefined)[]> {
    const size = channels * height * width;
    const per = Math.ceil(paths.length / this.workers.length);
    const replies = await Promise.all(
      this.workers.map((worker, w) => {
        const first = w * per;
        const chunk = paths.slice(first, first + per);
        if (chunk.length === 0) return { first, failures: [] };
        const id = this.nextId++;
        const request: DecodeRequest = {
          id,
          paths: chunk,
          offsets: chunk.map((_, i) => out.byteOffset / 4 + (first + i) * size),
          buffer: out.buffer as SharedArrayBuffer,
          preprocess,
          channels,
          height,
          width,
        };
        return new Promise<DecodeReply>((resolve, reject) => {
          if (this.failure) return reject(this.failure);
          this.pending.set(id, { resolve, reject });
          worker.postMessage(request);
        }).then((reply) => ({ first, failures: reply.failures }));
      }),
    );
    const result: (QuantflowError | undefined)[] = paths.map(() => undefined);
    for (const { first, failures } of replies)
      for (const f of failures) {
        if (!f.user) throw new Error(`decoding ${paths[first + f.index]} failed: ${f.message}`);
        result[first + f.index] = new QuantflowError(f.message);
      }
    return result;
  }

  private fail(e: unknown): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
  }

  /**
   * Stops the workers once their current images are done: terminating a worker inside a
   * sharp call can crash the whole process (lovell/sharp#2263).
   */
  async close(): Promise<void> {
    this.fail(new Error('the decoding pool is closed'));
    for (const w of this.workers) w.postMessage(null);
    await Promise.all(this.exited);
  }
}
