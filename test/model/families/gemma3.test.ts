import { describe, expect, it } from 'vitest';
import { decoderBlocks } from '../../../src/model/blocks.js';
import { buildFromSafetensors } from '../../../src/model/builders/index.js';
import { linears } from '../../../src/model/linears.js';
import { allClose } from '../../helpers.js';
import { gemma3Forward, type Gemma3RefConfig } from '../../reference/gemma3-forward.js';
import { gemma3Spec } from './gemma3-checkpoint.js';
import { cachedAgainstFull, danglingInputs, flat, tokens, weightsOf, withCheckpoint, withDecoders } from './family-harness.js';

const spec = gemma3Spec();
const config = { ...spec.config, layer_types: ['sliding_attention', 'sliding_attention', 'full_attention', 'sliding_attention'] } as unknown as Gemma3RefConfig;
const VOCAB = config.vocab_size;

describe('Gemma 3 builder (tiny seeded checkpoint: GQA 4/2, sliding/full layers with an 8-token window, soft-capped logits)', () => {
  it('names q/k/v/o and gate/up/down per block, finds every block, leaves nothing dangling, ties lm_head', withCheckpoint(spec, (path) => {
    for (const kvCache of [true, false]) {
      const model = buildFromSafetensors(path, { kvCache });
      expect(danglingInputs(model)).toEqual([]);
      expect(linears(model).map((l) => l.name).slice(0, 7)).toEqual(['layers.0.self_attn.q_proj', 'layers.0.self_attn.k_proj', 'layers.0.self_attn.v_proj', 'layers.0.self_attn.o_proj', 'layers.0.mlp.gate_proj', 'layers.0.mlp.up_proj', 'layers.0.mlp.down_proj']);
      expect(linears(model).at(-1)).toMatchObject({ name: 'lm_head', weight: 'model.embed_tokens.weight' });
      expect(decoderBlocks(model).map((b) => b.index)).toEqual([0, 1, 2, 3]);
      // the full layer (2) reads the causal mask and the global RoPE tables, the others the sliding ones
      const readers = (value: string) => new Set(model.graph.node!.filter((n) => n.input?.includes(value)).map((n) => /^\/layers\.(\d+)\//.exec(n.name ?? '')?.[1]));
      const where = model.graph.node!.find((n) => n.name === '/mask_sliding/Where')!.output![0]!;
      expect([...readers(where)].sort()).toEqual(['0', '1', '3']);
      model.close();
    }
  }));

  for (const kvCache of [true, false]) {
    it(`logits equal the float64 reference forward, ${kvCache ? 'KV-cache graph at past length 0' : 'single-input graph'} (batch 2, lengths 1..64, past the window)`, withCheckpoint(spec, async (path) => {
      const w = weightsOf(spec);
      let worst = 0;
      await withDecoders([buildFromSafetensors(path, { kvCache })], async (d) => {
        for (const seq of [1, 7, 8, 9, 33, 64]) {
          const ids = tokens(VOCAB, 2, seq, 200 + seq);
          const c = allClose(await d.full(ids), flat(gemma3Forward(w, config, ids)), 1e-4, 1e-5);
          expect(c.relFro, `seq ${seq}: ${c.worst}`).toBeLessThanOrEqual(1e-5);
          worst = Math.max(worst, c.relFro);
        }
      });
      console.log(`gemma3 ${kvCache ? 'kv' : 'plain'}: worst relative Frobenius error vs float64 reference ${worst.toExponential(2)}`);
    }));
  }

  it('greedy decoding with the cache equals re-running the whole sequence, far past the window (batch 2, 40 steps)', withCheckpoint(spec, async (path) => {
    await withDecoders([buildFromSafetensors(path, { kvCache: true }), buildFromSafetensors(path, { kvCache: false })], async (kv, plain) => {
      const r = await cachedAgainstFull(kv, plain, tokens(VOCAB, 2, 6, 5), 40, VOCAB);
      expect(r.worst, r.worstAt).toBeLessThanOrEqual(1e-5);
      expect(r.cachedTokens).toEqual(r.fullTokens);
      console.log(`gemma3 cached decoding: worst relative error ${r.worst.toExponential(2)}`);
    });
  }));
});
