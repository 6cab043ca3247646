import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainerState } from '../autodiff/train-step.js';
import type { TensorData } from '../graph/types.js';
import { QuantflowError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';

/** Where in the schedule a run is, and what it has measured so far. */
export interface QftProgress {
  /** Steps completed; the next step is number `step` (0-based) of the schedule. */
  step: number;
  /** Losses of the completed steps, in order. */
  stepLosses: number[];
  /** Mean loss of each completed epoch. */
  epochLosses: number[];
  /** WESS shifts in use, by weight name (re-chosen between epochs). */
  shifts: Record<string, number[]>;
}

export interface Checkpoint {
  progress: QftProgress;
  trainer: TrainerState;
}

const FILE = 'qft-checkpoint.bin';
const MAGIC = 'quantflow-qft-checkpoint-1';

/**
 * One file, written atomically (temporary file, then rename), so an interruption leaves
 * either the previous checkpoint or the new one: a 4-byte header length, a JSON header
 * (magic, fingerprint, progress, tensor table), then every tensor's float32 values.
 */
export function saveCheckpoint(dir: string, fingerprint: string, checkpoint: Checkpoint): void {
  const tensors = [...checkpoint.trainer.tensors].map(([name, t]) => ({ name, dims: [...t.dims], data: t.data as Float32Array }));
  const header = Buffer.from(
    JSON.stringify({
      magic: MAGIC,
      fingerprint,
      progress: checkpoint.progress,
      steps: checkpoint.trainer.steps,
      tensors: tensors.map(({ name, dims, data }) => ({ name, dims, length: data.length })),
    }),
  );
  const bytes = new Uint8Array(4 + header.length + tensors.reduce((n, t) => n + 4 * t.data.length, 0));
  new DataView(bytes.buffer).setUint32(0, header.length, true);
  bytes.set(header, 4);
  let offset = 4 + header.length;
  for (const { data } of tensors) {
    bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
    offset += data.byteLength;
  }
  writeFileAtomic(join(dir, FILE), bytes);
}

/**
 * The checkpoint in `dir`, if there is one written for the same `fingerprint` (same images,
 * parameters and options); undefined when there is none. A checkpoint of another run is an
 * error rather than silently ignored or overwritten.
 */
export function loadCheckpoint(dir: string, fingerprint: string): Checkpoint | undefined {
  const path = join(dir, FILE);
  if (!existsSync(path)) return undefined;
  const bytes = readFileSync(path);
  const fail = (why: string) => new QuantflowError(`${path}: ${why}; delete it or choose another --checkpoint folder`);
  if (bytes.length < 4) throw fail('truncated checkpoint');
  const headerLength = bytes.readUInt32LE(0);
  if (4 + headerLength > bytes.length) throw fail('truncated checkpoint');
  let header: {
    magic?: string;
    fingerprint?: string;
    progress: QftProgress;
    steps: number;
    tensors: { name: string; dims: number[]; length: number }[];
  };
  try {
    header = JSON.parse(bytes.subarray(4, 4 + headerLength).toString('utf8'));
  } catch {
    throw fail('not a quantflow QFT checkpoint');
  }
  if (header.magic !== MAGIC) throw fail('not a quantflow QFT checkpoint');
  if (header.fingerprint !== fingerprint) throw fail('checkpoint of a different run (other model, images or options)');
  let offset = 4 + headerLength;
  const tensors = new Map<string, TensorData>();
  for (const { name, dims, length } of header.tensors) {
    if (offset + 4 * length > bytes.length) throw fail('truncated checkpoint');
    const data = new Float32Array(length);
    new Uint8Array(data.buffer).set(bytes.subarray(offset, offset + 4 * length));
    offset += 4 * length;
    tensors.set(name, { dataType: 'float32', dims, data });
  }
  return { progress: header.progress, trainer: { steps: header.steps, tensors } };
}
