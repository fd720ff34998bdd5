import { existsSync, readFileSync } from 'node:fs';
import type { OnnxExecutor } from '../runtime/tfjs/executor.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import type { MaskedAdam } from '../runtime/tfjs/optimizer.js';

/**
 * A training checkpoint: the step reached, a key of everything that must match to continue
 * (params, trainable names), and named float32 arrays (variables and optimizer moments), stored as
 * a u32 header length, a JSON header, then the arrays back to back. Written atomically, so a kill
 * leaves the previous checkpoint.
 */
export interface TrainingState {
  key: string;
  step: number;
  arrays: Record<string, Float32Array>;
  /** running numbers the report needs (first loss, tokens seen...) */
  meta: Record<string, number>;
}

export function saveTrainingState(path: string, s: TrainingState): void {
  const entries: { name: string; offset: number; length: number }[] = [];
  let offset = 0;
  for (const [name, a] of Object.entries(s.arrays)) {
    entries.push({ name, offset, length: a.length });
    offset += a.length;
  }
  const header = Buffer.from(JSON.stringify({ key: s.key, step: s.step, meta: s.meta, entries }));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  // pad so the float data starts 4-byte aligned
  const pad = Buffer.alloc((4 - ((4 + header.length) % 4)) % 4, 0x20);
  const chunks: Uint8Array[] = [len, header, pad];
  for (const a of Object.values(s.arrays)) chunks.push(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  writeFileAtomic(path, chunks);
}

/** The saved state, when there is one with this key; anything unreadable counts as none. */
export function loadTrainingState(path: string, key: string): TrainingState | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const buf = readFileSync(path);
    const n = buf.readUInt32LE(0);
    const header = JSON.parse(buf.subarray(4, 4 + n).toString('utf8').trimEnd()) as { key: string; step: number; meta: Record<string, number>; entries: { name: string; offset: number; length: number }[] };
    if (header.key !== key) return undefined;
    const start = 4 + n + ((4 - ((4 + n) % 4)) % 4);
    const data = new Float32Array(buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + buf.length));
    const arrays: Record<string, Float32Array> = {};
    for (const e of header.entries) {
      if (e.offset + e.length > data.length) return undefined;
      arrays[e.name] = data.slice(e.offset, e.offset + e.length);
    }
    return { key, step: header.step, arrays, meta: header.meta };
  } catch {
    return undefined;
  }
}

/** The arrays of a training state: the student's variables and the optimizer's moments and step. */
export function snapshot(exec: OnnxExecutor, adam: MaskedAdam): Record<string, Float32Array> {
  const arrays: Record<string, Float32Array> = {};
  for (const [name, v] of exec.variables) arrays[`var:${name}`] = v.dataSync() as Float32Array;
  const s = adam.state();
  for (const [name, a] of Object.entries(s.m)) arrays[`m:${name}`] = a;
  for (const [name, a] of Object.entries(s.v)) arrays[`v:${name}`] = a;
  arrays['adam:step'] = Float32Array.of(s.step);
  return arrays;
}

/** Puts a snapshot back into the student and the optimizer. */
export function restore(exec: OnnxExecutor, adam: MaskedAdam, arrays: Record<string, Float32Array>): void {
  const m: Record<string, Float32Array> = {};
  const v: Record<string, Float32Array> = {};
  for (const [name, variable] of exec.variables) {
    const saved = arrays[`var:${name}`];
    if (!saved || saved.length !== variable.size) throw new Error(`training state has no value for '${name}'`);
    variable.assign(exec.tf.tensor(saved, variable.shape));
    m[name] = arrays[`m:${name}`]!;
    v[name] = arrays[`v:${name}`]!;
  }
  adam.restore({ step: arrays['adam:step']![0]!, m, v });
}
