import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataType } from '../../src/model/dtype.js';
import { writeSafetensors, type SafetensorsTensor } from '../../src/model/safetensors.js';
import { tempDir } from '../helpers.js';
import { rng } from '../reference/random.js';

const tmp = tempDir('pare-st-stream-');
afterAll(() => tmp.cleanup());

const bytes = (n: number, seed: number) => {
  const u = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(u() * 256));
};

describe('writeSafetensors with tensors read on demand', () => {
  const tensors: SafetensorsTensor[] = [
    { name: 'b.weight', dataType: DataType.FLOAT, shape: [3, 5], data: bytes(60, 1) },
    { name: '10', dataType: DataType.INT8, shape: [7], data: bytes(7, 2) },
    { name: 'a', dataType: DataType.FLOAT16, shape: [2, 2, 2], data: bytes(16, 3) },
    { name: 'empty', dataType: DataType.FLOAT, shape: [0, 4], data: new Uint8Array(0) },
  ];

  it('writes the same bytes as with every tensor in memory, calling each reader once, in file order', () => {
    const inMemory = join(tmp.dir, 'mem.safetensors');
    writeSafetensors(inMemory, tensors, { format: 'pt' });
    const calls: string[] = [];
    const lazy = tensors.map((t) => ({ ...t, data: () => (calls.push(t.name), t.data as Uint8Array) }));
    const streamed = join(tmp.dir, 'lazy.safetensors');
    writeSafetensors(streamed, lazy, { format: 'pt' });
    expect(calls).toEqual(tensors.map((t) => t.name));
    expect(Buffer.compare(readFileSync(streamed), readFileSync(inMemory))).toBe(0);
  });

  it('a reader that returns the wrong number of bytes fails the write and leaves no file', () => {
    const dir = join(tmp.dir, 'bad');
    const target = join(dir, 'bad.safetensors');
    const bad = tensors.map((t, i) => (i === 2 ? { ...t, data: () => new Uint8Array(15) } : t));
    expect(() => writeSafetensors(target, bad)).toThrow(/tensor 'a' has 15 bytes, F16 \[2, 2, 2\] needs 16/);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });
});
