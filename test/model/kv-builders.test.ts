import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateCheckpoint, gpt2Spec, tensorValues } from '../../fixtures/generate-models.js';
import { UserError } from '../../src/errors.js';
import { decoderBlocks } from '../../src/model/blocks.js';
import { buildFromSafetensors } from '../../src/model/builders/index.js';
import { modelIo } from '../../src/model/io.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { openSafetensors } from '../../src/model/safetensors.js';
import { writeModelAsSafetensors } from '../../src/model/to-safetensors.js';
import { resolveKvShapes } from '../../src/runtime/kv-shapes.js';
import { allClose, tempDir } from '../helpers.js';
import { gpt2Forward } from '../reference/gpt2-forward.js';
import { cachedAgainstFull, danglingInputs, position, tokens, withDecoders } from './kv-decode.js';

const STORIES = resolve(__dirname, '../../fixtures/stories260K/model.safetensors');
const STORIES_ONNX = resolve(__dirname, '../../fixtures/stories260K/model.onnx');

const dims = (model: Model, side: 'input' | 'output', name: string) =>
  model.graph[side]!.find((v) => v.name === name)!.type!.tensor_type!.shape!.dim!.map((d) => d.dim_param ?? Number(d.dim_value));

describe('Llama KV-cache build (stories260K)', () => {
  it("declares Optimum's inputs and outputs, keeps every layer name, block and dangling-free graph", () => {
    const kv = buildFromSafetensors(STORIES, { kvCache: true });
    const plain = buildFromSafetensors(STORIES, { kvCache: false });
    expect(kv.graph.input!.map((v) => v.name)).toEqual(['input_ids', 'attention_mask', 'position_ids', ...[0, 1, 2, 3, 4].flatMap((i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`])]);
    expect(kv.graph.output!.map((v) => v.name)).toEqual(['logits', ...[0, 1, 2, 3, 4].flatMap((i) => [`present.${i}.key`, `present.${i}.value`])]);
    expect(dims(kv, 'input', 'input_ids')).toEqual(['batch_size', 'sequence_length']);
    expect(dims(kv, 'input', 'attention_mask')).toEqual(['batch_size', 'past_sequence_length + sequence_length']);
    expect(dims(kv, 'input', 'position_ids')).toEqual(['batch_size', 'sequence_length']);
    expect(dims(kv, 'input', 'past_key_values.3.value')).toEqual(['batch_size', 4, 'past_sequence_length', 8]);
    expect(dims(kv, 'output', 'logits')).toEqual(['batch_size', 'sequence_length', 512]);
    expect(dims(kv, 'output', 'present.0.key')).toEqual(['batch_size', 4, 'past_sequence_length + sequence_length', 8]);
    expect(danglingInputs(kv)).toEqual([]);
    // every node name of the plain build is still there; the new ones sit under /mask/ or a block's self_attn
    const names = new Set(kv.graph.node!.map((n) => n.name));
    const dropped = plain.graph.node!.map((n) => n.name).filter((n) => !names.has(n));
    expect(dropped).toEqual(['/Shape', '/Gather_seq', '/Range']); // Range positions give way to position_ids
    const plainNames = new Set(plain.graph.node!.map((n) => n.name));
    const added = kv.graph.node!.map((n) => n.name!).filter((n) => !plainNames.has(n));
    expect(added.every((n) => /^\/mask\/|^\/layers\.\d\/self_attn\/(key|value)_cache\//.test(n)), added.join(' ')).toBe(true);
    expect(added.filter((n) => n.endsWith('_cache/Concat'))).toHaveLength(10);
    expect(linears(kv).map((l) => l.name)).toEqual(linears(plain).map((l) => l.name));
    expect(decoderBlocks(kv).map((b) => b.index)).toEqual([0, 1, 2, 3, 4]);
    // the past enters each layer's cache Concat directly, first along the sequence axis
    const concat = kv.graph.node!.find((n) => n.input?.[0] === 'past_key_values.2.key')!;
    expect(concat).toMatchObject({ op_type: 'Concat', name: '/layers.2/self_attn/key_cache/Concat' });
  });

  it('logits at past length 0 equal the PyTorch export and the single-input build (batch 2, seq 1..64)', async () => {
    await withDecoders([buildFromSafetensors(STORIES, { kvCache: true }), readOnnx(STORIES_ONNX), buildFromSafetensors(STORIES, { kvCache: false })], async (kv, exported, plain) => {
      for (const seq of [1, 2, 17, 64]) {
        const ids = tokens(512, 2, seq, seq);
        const got = await kv.full(ids);
        for (const ref of [exported, plain]) {
          const c = allClose(got, await ref.full(ids), 1e-6, 1e-6);
          expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-6); // measured 0: bit-identical
          expect(c.ok, c.worst).toBe(true);
        }
      }
    });
  });

  it('cached greedy decoding equals re-running the whole sequence (batch 2, 8-token prompt, 40 steps)', async () => {
    await withDecoders([buildFromSafetensors(STORIES, { kvCache: true }), readOnnx(STORIES_ONNX)], async (kv, exported) => {
      const prompt = tokens(512, 2, 8, 5).map((r) => [1, ...r.slice(1)]);
      const r = await cachedAgainstFull(kv, exported, prompt, 40, 512);
      expect(r.worst, r.worstAt).toBeLessThanOrEqual(1e-5); // measured 1.2e-6
      expect(r.cachedTokens).toEqual(r.fullTokens);
      expect(r.cachedTokens[0]).toHaveLength(40);
    });
  });

  it('a prompt prefilled in two chunks (past 5, then 11 tokens) gives the one-chunk logits and cache', async () => {
    await withDecoders([buildFromSafetensors(STORIES, { kvCache: true })], async (kv) => {
      const prompt = tokens(512, 2, 16, 9);
      const whole = await kv.step(prompt);
      const next = [[7], [300]];
      const afterWhole = await kv.step(next);
      kv.reset();
      await kv.step(prompt.map((r) => r.slice(0, 5)));
      const second = await kv.step(prompt.map((r) => r.slice(5)));
      const afterChunks = await kv.step(next);
      const wholeTail = Float32Array.from([0, 1].flatMap((b) => Array.from({ length: 11 }, (_, t) => [...position(whole, 512, 16, b, 5 + t)]).flat()));
      for (const [got, want] of [[second, wholeTail], [afterChunks, afterWhole]] as const) {
        const c = allClose(got, want, 1e-5, 1e-6);
        expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-6); // measured 0
      }
    });
  });

  it('attention_mask zeros hide padding: a left-padded row gives the unpadded logits', async () => {
    await withDecoders([buildFromSafetensors(STORIES, { kvCache: true })], async (kv) => {
      const real = tokens(512, 1, 9, 21)[0]!;
      const padded = [[0, 0, 0, ...real], tokens(512, 1, 12, 22)[0]!];
      const logits = await kv.full(padded, (feeds) => {
        const mask = feeds.attention_mask!.data as BigInt64Array;
        const pos = feeds.position_ids!.data as BigInt64Array;
        // row 0: three pad tokens, then the real ones at positions 0..8, as HF's generate feeds them
        for (let t = 0; t < 3; t++) [mask[t], pos[t]] = [0n, 1n];
        for (let t = 3; t < 12; t++) pos[t] = BigInt(t - 3);
      });
      expect(logits.every(Number.isFinite)).toBe(true);
      const alone = await kv.full([real]);
      const got = Float32Array.from(Array.from({ length: 9 }, (_, t) => [...position(logits, 512, 12, 0, 3 + t)]).flat());
      const c = allClose(got, alone, 1e-5, 1e-5);
      expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-6); // measured 1.6e-7
    });
  });

  it('runtime/kv-shapes reads 4 KV heads of size 8; a past input declaring other heads is a one-line user error', async () => {
    const kv = buildFromSafetensors(STORIES, { kvCache: true });
    const io = await resolveKvShapes(kv, modelIo(kv));
    expect(io.kv!.layers.map((l) => [l.heads, l.headDim, l.valueHeadDim])).toEqual(Array(5).fill([4, 8, undefined]));
    // declared symbolic: the probe fills them in
    const symbolic = buildFromSafetensors(STORIES, { kvCache: true });
    for (const v of symbolic.graph.input!) if (v.name!.startsWith('past_key_values.')) v.type!.tensor_type!.shape!.dim![1] = { dim_param: 'num_key_value_heads' };
    expect(modelIo(symbolic).kv!.layers[0]!.heads).toBeUndefined();
    expect((await resolveKvShapes(symbolic, modelIo(symbolic))).kv!.layers[0]).toMatchObject({ heads: 4, headDim: 8 });
    // declared wrong
    const wrong = buildFromSafetensors(STORIES, { kvCache: true });
    wrong.graph.input!.find((v) => v.name === 'past_key_values.1.key')!.type!.tensor_type!.shape!.dim![1] = { dim_value: 8 };
    wrong.graph.input!.find((v) => v.name === 'past_key_values.1.value')!.type!.tensor_type!.shape!.dim![1] = { dim_value: 8 };
    const err = await resolveKvShapes(wrong, modelIo(wrong)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/input 'past_key_values\.1\.key' declares 8 KV heads of size 8, but the attention it feeds \(node '\/layers\.1\/self_attn\/key_cache\/Concat'\) computes 4 heads of size 8/);
    expect((err as Error).message).not.toContain('\n');
  });

  it('past and present that do not pair up are rejected by modelIo, naming the lone tensor', () => {
    const kv = buildFromSafetensors(STORIES, { kvCache: true });
    kv.graph.output!.find((v) => v.name === 'present.3.value')!.name = 'present.3.val';
    expect(() => modelIo(kv)).toThrow(UserError);
    expect(() => modelIo(kv)).toThrow(/'past_key_values\.3\.key' has no partner: the KV cache needs output present\.3\.value/);
  });

  it('written back to safetensors, the KV build gives the same bytes as the single-input build', () => {
    const tmp = tempDir();
    try {
      for (const kvCache of [false, true]) {
        mkdirSync(join(tmp.dir, String(kvCache)));
        writeModelAsSafetensors(buildFromSafetensors(STORIES, { kvCache }), join(tmp.dir, String(kvCache), 'model.safetensors'));
      }
      const [a, b] = [openSafetensors(join(tmp.dir, 'false/model.safetensors')), openSafetensors(join(tmp.dir, 'true/model.safetensors'))];
      expect([...b.tensors.keys()]).toEqual([...a.tensors.keys()]);
      for (const n of a.tensors.keys()) expect(Buffer.from(b.read(n)).equals(Buffer.from(a.read(n))), n).toBe(true);
      a.close();
      b.close();
    } finally {
      tmp.cleanup();
    }
  });
});

describe('GPT-2 KV-cache build (tiny seeded checkpoint)', () => {
  const shape = { n_embd: 32, n_layer: 2, n_head: 4, n_positions: 96, vocab_size: 50 };
  const spec = gpt2Spec('tiny-gpt2', shape, { perturb: true, std: 0.3 });

  function withCheckpoint(fn: (path: string) => Promise<void>): () => Promise<void> {
    return async () => {
      const tmp = tempDir();
      try {
        generateCheckpoint(spec, tmp.dir, { seed: 11, onnx: false });
        await fn(join(tmp.dir, 'model.safetensors'));
      } finally {
        tmp.cleanup();
      }
    };
  }

  it('logits at past length 0 equal the float64 reference forward (batch 2, seq 1..64)', withCheckpoint(async (path) => {
    const kv = buildFromSafetensors(path, { kvCache: true });
    expect(danglingInputs(kv)).toEqual([]);
    expect(dims(kv, 'input', 'past_key_values.1.key')).toEqual(['batch_size', 4, 'past_sequence_length', 8]);
    expect(linears(kv).map((l) => l.name)).toEqual(linears(buildFromSafetensors(path, { kvCache: false })).map((l) => l.name));
    expect(decoderBlocks(kv).map((b) => b.index)).toEqual([0, 1]);
    const values = new Map(spec.tensors.map((t) => [t.name, Float64Array.from(tensorValues(t, 11))]));
    await withDecoders([kv], async (d) => {
      for (const seq of [1, 7, 64]) {
        const ids = tokens(50, 2, seq, 100 + seq);
        const ref = Float64Array.from(gpt2Forward((n) => values.get(n)!, { ...shape, n_inner: 128, layer_norm_epsilon: 1e-5 }, ids).flatMap((r) => r.flatMap((v) => [...v])));
        const c = allClose(await d.full(ids), ref, 1e-4, 1e-5);
        expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5); // measured 5.4e-7
      }
    });
  }));

  it('cached greedy decoding equals re-running the whole sequence, positions gathered at position_ids (40 steps)', withCheckpoint(async (path) => {
    await withDecoders([buildFromSafetensors(path, { kvCache: true }), buildFromSafetensors(path, { kvCache: false })], async (kv, plain) => {
      const r = await cachedAgainstFull(kv, plain, tokens(50, 2, 6, 3), 40, 50);
      expect(r.worst, r.worstAt).toBeLessThanOrEqual(5e-6); // measured 4.9e-7
      expect(r.cachedTokens).toEqual(r.fullTokens);
    });
  }));
});
