import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BoundaryStore } from '../../src/calibrate/boundary-store.js';
import { ort } from '../../src/runtime/ort.js';
import { tempDir } from '../helpers.js';

const samples = (): ort.Tensor[] => [
  new ort.Tensor('float32', Float32Array.from({ length: 12 }, (_, i) => i / 7 - 0.5), [1, 3, 4]),
  new ort.Tensor('int64', BigInt64Array.from([5n, -1n, 2n ** 40n]), [3]),
  new ort.Tensor('bool', Uint8Array.from([1, 0, 1, 1]), [2, 2]),
];

describe('BoundaryStore', () => {
  it('keeps values resident under the budget and spills the rest, returning the same tensors', () => {
    const { dir, cleanup } = tempDir();
    try {
      // 48 bytes of budget: the first float32 sample (48 bytes) stays, the others spill
      const store = new BoundaryStore(48, dir);
      const put = samples();
      put.forEach((t, s) => store.put('v', s, t));
      expect(store.residentSize()).toBe(48);
      expect(store.spilledBytes).toBe(24 + 4);
      for (const [s, want] of put.entries()) {
        const got = store.get('v', s);
        expect(got.type).toBe(want.type);
        expect(got.dims).toEqual(want.dims);
        expect(Array.from(got.data as ArrayLike<unknown>)).toEqual(Array.from(want.data as ArrayLike<unknown>));
      }
      store.delete('v');
      expect(store.has('v')).toBe(false);
      expect(store.residentSize()).toBe(0);
      store.close();
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      cleanup();
    }
  });

  it('release frees a sample after its last read: a step that reads one value and stores the next holds one whole value, not two', () => {
    const store = new BoundaryStore();
    const sample = (v: number) => new ort.Tensor('float32', new Float32Array(256).fill(v), [1, 16, 16]);
    for (let s = 0; s < 4; s++) store.put('h0', s, sample(s));
    // the step: read h0 of sample s for the last time, store h1 of sample s
    for (let s = 0; s < 4; s++) {
      expect((store.get('h0', s).data as Float32Array)[0]).toBe(s);
      store.release('h0', s);
      store.put('h1', s, sample(10 + s));
    }
    // 4 samples of 1 KiB each: h0 whole, then one sample of h1 while h0's first sample is freed
    expect(store.peakResidentBytes).toBe(4 * 1024); // 8 KiB if h0 were held whole until the step ends
    expect(store.residentSize()).toBe(4 * 1024);
    expect(() => store.get('h0', 2)).toThrow(/'h0' of sample 2 was released/);
    expect((store.get('h1', 3).data as Float32Array)[0]).toBe(13);
    store.delete('h0');
    expect(store.residentSize()).toBe(4 * 1024);
    store.close();
  });

  it('a sample equal to the one before it is kept once, resident or spilled, and released in order', () => {
    const mask = () => new ort.Tensor('float32', new Float32Array(64).fill(-1), [1, 8, 8]);
    const other = new ort.Tensor('float32', new Float32Array(64).fill(2), [1, 8, 8]);
    for (const budget of [1 << 20, 0]) {
      const { dir, cleanup } = tempDir();
      try {
        const store = new BoundaryStore(budget, dir);
        [mask(), mask(), other, mask()].forEach((t, s) => store.put('m', s, t));
        // samples 0 and 1 share one copy; 2 differs; 3 differs from 2, so it is stored again
        expect(budget > 0 ? store.residentSize() : store.spilledBytes).toBe(3 * 256);
        for (const [s, v] of [-1, -1, 2, -1].entries()) expect(Array.from(store.get('m', s).data as Float32Array)).toEqual(new Array(64).fill(v));
        for (let s = 0; s < 4; s++) {
          store.release('m', s);
          if (s === 0) expect(Array.from(store.get('m', 1).data as Float32Array)).toEqual(new Array(64).fill(-1)); // its bytes outlive sample 0
        }
        expect(store.residentSize()).toBe(0);
        store.close();
      } finally {
        cleanup();
      }
    }
  });

  it('names a missing value and sample', () => {
    const store = new BoundaryStore();
    expect(() => store.get('h', 3)).toThrow(/no value 'h' for sample 3/);
  });
});
