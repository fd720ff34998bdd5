import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildFromSafetensors } from '../../../src/model/builders/index.js';
import { allClose, tempDir } from '../../helpers.js';
import { argmax, Decoder, position } from '../kv-decode.js';
import { randomTokens, writeTinyCheckpoint, type TinyCheckpoint, type TinyFamily } from './checkpoints.js';

/**
 * The checks every safetensors family passes, registered as vitest tests for one family: built
 * logits against the family's float64 reference (with and without the KV cache, batch 2, lengths
 * 1..64), and greedy decoding with the cache against re-running the whole sequence.
 */

/** logits [batch][seq][vocab] of the family's float64 reference for a checkpoint */
export type ReferenceForward = (ck: TinyCheckpoint, ids: number[][]) => Float64Array[][];

export const LENGTHS = [1, 2, 7, 33, 64];

/** A tiny checkpoint of `family` written once for the file's tests. */
export function tinyCheckpoint(family: TinyFamily, opts: { seed?: number; overrides?: Record<string, unknown> } = {}): () => TinyCheckpoint {
  const tmp = tempDir(`pare-${family.modelType}-`);
  let ck: TinyCheckpoint | undefined;
  beforeAll(() => {
    ck = writeTinyCheckpoint(family, join(tmp.dir, 'in'), opts);
  });
  afterAll(() => tmp.cleanup());
  return () => ck!;
}

export function referenceTests(family: TinyFamily, checkpoint: () => TinyCheckpoint, reference: ReferenceForward, bound = 1e-5): void {
  const vocab = family.config.vocab_size as number;
  for (const kvCache of [true, false]) {
    it(`${family.modelType}: logits equal the float64 reference within ${bound} relative (batch 2, lengths ${LENGTHS.join(', ')}, ${kvCache ? 'KV-cache graph' : 'kvCache: false'})`, async () => {
      const ck = checkpoint();
      const model = buildFromSafetensors(ck.path, { kvCache });
      const d = await Decoder.open(model);
      try {
        for (const seq of LENGTHS) {
          const ids = randomTokens(vocab, 2, seq, 1000 + seq);
          const ref = Float64Array.from(reference(ck, ids).flatMap((r) => r.flatMap((v) => [...v])));
          const got = await d.full(ids);
          const c = allClose(got, ref, bound, bound);
          expect(c.ok, `length ${seq}: ${c.worst}`).toBe(true);
          // measured (relative Frobenius, worst length): llama3 6.1e-7, qwen2 4.3e-7, qwen3 5.9e-7, with and without the cache
          expect(c.relFro, `length ${seq}`).toBeLessThanOrEqual(bound);
        }
      } finally {
        await d.release();
        model.close();
      }
    });
  }
}

/**
 * Greedy decoding of `steps` tokens after a prompt, batch 2: the cached decoder (prefill, then one
 * token per step) against re-running the whole sequence at every step, same tokens and logits.
 */
export function cachedDecodeTest(family: TinyFamily, checkpoint: () => TinyCheckpoint, steps = 24): void {
  const vocab = family.config.vocab_size as number;
  it(`${family.modelType}: greedy decoding with the KV cache equals decoding without it (batch 2, 9-token prompt, ${steps} steps)`, async () => {
    const model = buildFromSafetensors(checkpoint().path);
    const [cached, full] = [await Decoder.open(model), await Decoder.open(model)];
    try {
      const seqs = randomTokens(vocab, 2, 9, 77);
      let next = await cached.step(seqs);
      for (let s = 0; s < steps; s++) {
        const len = seqs[0]!.length;
        const ref = await full.full(seqs);
        const stepLen = s === 0 ? len : 1;
        const chosen = seqs.map((_, b) => {
          const got = position(next, vocab, stepLen, b, stepLen - 1);
          const want = position(ref, vocab, len, b, len - 1);
          const c = allClose(got, want, 1e-4, 1e-5);
          expect(c.ok, `step ${s} row ${b}: ${c.worst}`).toBe(true);
          expect(c.relFro).toBeLessThan(1e-5); // measured ≤ 1.0e-6
          expect(argmax(got)).toBe(argmax(want));
          return argmax(got);
        });
        seqs.forEach((r, b) => r.push(chosen[b]!));
        next = await cached.step(chosen.map((t) => [t]));
      }
    } finally {
      await cached.release();
      await full.release();
      model.close();
    }
  });
}
