import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataType } from '../../../src/model/dtype.js';
import { fromFloat32, toFloat32 } from '../../../src/model/pack.js';
import { writeSafetensors } from '../../../src/model/safetensors.js';
import { seededRandom } from '../../../src/util/random.js';

/**
 * Seeded tiny random checkpoints of any family, written as Hugging Face saves them
 * (model.safetensors + config.json). A family gives its config.json and the tensors that config
 * implies (`tensors(config)`); every tensor is normal(mean, std) from a PRNG seeded by the tensor's
 * name and the checkpoint's seed, stored float32 (or bfloat16/float16, as released checkpoints are),
 * so a reference can read the same values back.
 */

export interface TinyTensor {
  name: string;
  shape: number[];
  /** normal(mean, std): weights mean 0, norm scales mean 1 */
  mean: number;
  std: number;
}

export interface TinyFamily {
  /** config.json model_type, for test names */
  modelType: string;
  config: Record<string, unknown>;
  /** the tensors a checkpoint with `config` stores, in the order they are written */
  tensors(config: Record<string, unknown>): TinyTensor[];
}

export const normal = (name: string, shape: number[], std: number, mean = 0): TinyTensor => ({ name, shape, mean, std });

export interface TinyCheckpoint {
  dir: string;
  /** dir/model.safetensors */
  path: string;
  config: Record<string, unknown>;
  /** a tensor's stored values, as float64 */
  values(name: string): Float64Array;
}

function nameSeed(name: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** normal(mean, std) samples (Box–Muller), float32 as stored. */
export function tinyTensorValues(t: TinyTensor, seed: number): Float32Array {
  const count = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(count);
  const next = seededRandom(nameSeed(t.name, seed));
  const uniform = () => (next() * 4294967296 + 0.5) / 4294967296; // (0, 1): log() stays finite
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform())) * t.std;
    const th = 2 * Math.PI * uniform();
    out[i] = t.mean + r * Math.cos(th);
    if (i + 1 < count) out[i + 1] = t.mean + r * Math.sin(th);
  }
  return out;
}

/** Writes `family` (with `overrides` merged into its config) to `dir`, every tensor stored as `dataType` (float32 by default). */
export function writeTinyCheckpoint(family: TinyFamily, dir: string, opts: { seed?: number; overrides?: Record<string, unknown>; dataType?: number } = {}): TinyCheckpoint {
  const seed = opts.seed ?? 1;
  const dataType = opts.dataType ?? DataType.FLOAT;
  const config = { ...family.config, ...opts.overrides };
  const tensors = family.tensors(config);
  mkdirSync(dir, { recursive: true });
  const bytes = new Map(tensors.map((t) => [t.name, fromFloat32(dataType, tinyTensorValues(t, seed))]));
  const stored = new Map(tensors.map((t) => [t.name, toFloat32(dataType, bytes.get(t.name)!)]));
  const path = join(dir, 'model.safetensors');
  writeSafetensors(
    path,
    tensors.map((t) => ({ name: t.name, dataType, shape: t.shape, data: bytes.get(t.name)! })),
    { format: 'pt' },
  );
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  return {
    dir,
    path,
    config,
    values(name) {
      const v = stored.get(name);
      if (!v) throw new Error(`the tiny ${family.modelType} checkpoint has no tensor '${name}'`);
      return Float64Array.from(v);
    },
  };
}

/** Seeded token ids [batch][seq] below `vocab`. */
export function randomTokens(vocab: number, batch: number, seq: number, seed: number): number[][] {
  const r = seededRandom(seed);
  return Array.from({ length: batch }, () => Array.from({ length: seq }, () => Math.floor(r() * vocab)));
}

/** A uint16 token file of `count` random ids below `vocab` (calibration data for a tiny model). */
export function writeTokenFile(path: string, vocab: number, count: number, seed: number): string {
  const ids = Uint16Array.from(randomTokens(vocab, 1, count, seed)[0]!);
  writeFileSync(path, new Uint8Array(ids.buffer));
  return path;
}
