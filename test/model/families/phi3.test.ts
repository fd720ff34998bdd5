import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UserError } from '../../../src/errors.js';
import { decoderBlocks } from '../../../src/model/blocks.js';
import { buildFromSafetensors } from '../../../src/model/builders/index.js';
import { linears } from '../../../src/model/linears.js';
import { runCli } from '../../cli/run-cli.js';
import { allClose } from '../../helpers.js';
import { phi3Forward, type Phi3RefConfig } from '../../reference/phi3-forward.js';
import { phi3Spec } from './phi3-checkpoint.js';
import { flat, weightsOf, withCheckpoint } from './phi3-gemma3-harness.js';
import { cachedAgainstFull, danglingInputs, tokens, withDecoders } from '../kv-decode.js';

const spec = phi3Spec();
const config = spec.config as unknown as Phi3RefConfig;
const VOCAB = config.vocab_size;

describe('Phi-3 builder (tiny seeded checkpoint: GQA 6/2, partial rotary, LongRoPE at 24 tokens, 40-token window)', () => {
  it('names the fused projections as one layer each, finds every block, leaves nothing dangling', withCheckpoint(spec, (path) => {
    for (const kvCache of [true, false]) {
      const model = buildFromSafetensors(path, { kvCache });
      expect(danglingInputs(model)).toEqual([]);
      expect(linears(model).map((l) => l.name).slice(0, 4)).toEqual(['layers.0.self_attn.qkv_proj', 'layers.0.self_attn.o_proj', 'layers.0.mlp.gate_up_proj', 'layers.0.mlp.down_proj']);
      expect(linears(model).find((l) => l.name === 'layers.1.self_attn.qkv_proj')).toMatchObject({ weight: 'model.layers.1.self_attn.qkv_proj.weight', outFeatures: 80, inFeatures: 44 });
      expect(linears(model).at(-1)).toMatchObject({ name: 'lm_head', weight: 'lm_head.weight' });
      expect(decoderBlocks(model).map((b) => b.index)).toEqual([0, 1, 2]);
      model.close();
    }
  }));

  for (const kvCache of [true, false]) {
    it(`logits equal the float64 reference forward, ${kvCache ? 'KV-cache graph at past length 0' : 'single-input graph'} (batch 2, lengths 1..64 across the LongRoPE switch and the window)`, withCheckpoint(spec, async (path) => {
      const w = weightsOf(spec);
      await withDecoders([buildFromSafetensors(path, { kvCache })], async (d) => {
        for (const seq of [1, 7, 24, 25, 41, 64]) {
          const ids = tokens(VOCAB, 2, seq, 100 + seq);
          const c = allClose(await d.full(ids), flat(phi3Forward(w, config, ids)), 1e-4, 1e-5);
          expect(c.relFro, `seq ${seq}: ${c.worst}`).toBeLessThanOrEqual(1e-5); // measured ≤ 1.9e-6, with and without the cache
        }
      });
    }));
  }

  it('greedy decoding with the cache equals re-running the whole sequence, below and above the LongRoPE switch (40 steps)', withCheckpoint(spec, async (path) => {
    await withDecoders([buildFromSafetensors(path, { kvCache: true }), buildFromSafetensors(path, { kvCache: false })], async (kv, plain) => {
      // 5 + 16 tokens stay within original_max_position_embeddings 24
      const below = await cachedAgainstFull(kv, plain, tokens(VOCAB, 2, 5, 3), 16, VOCAB);
      expect(below.worst, below.worstAt).toBeLessThanOrEqual(1e-5);
      expect(below.cachedTokens).toEqual(below.fullTokens);
      // a 26-token prompt starts on the long factors; 40 steps also pass the 40-token window
      kv.reset();
      const above = await cachedAgainstFull(kv, plain, tokens(VOCAB, 2, 26, 4), 40, VOCAB);
      expect(above.worst, above.worstAt).toBeLessThanOrEqual(1e-5); // measured ≤ 1.6e-6 in both
      expect(above.cachedTokens).toEqual(above.fullTokens);
    });
  }));
});

describe('Phi-3 config.json the builder cannot build', () => {
  const refusals: [string, Record<string, unknown>, RegExp][] = [
    ['an unknown key', { use_flash_magic: true }, /config\.json: key 'use_flash_magic' is not understood by pare's phi3 builder; remove it if it does not change the forward pass, or export the model to \.onnx$/],
    ['another activation', { hidden_act: 'gelu' }, /config\.json: hidden_act "gelu" is not supported \(Phi-3 uses silu\)$/],
    ['projection biases', { attention_bias: true }, /config\.json: attention_bias true is not supported \(Phi-3 projections have no bias\)$/],
    ['another RoPE scaling', { rope_scaling: { type: 'dynamic', factor: 2 } }, /config\.json: rope_scaling type "dynamic" is not supported for phi3; pare builds plain RoPE and longrope \(su\)$/],
  ];
  for (const [what, patch, message] of refusals) {
    it(`${what}: a one-line user error naming the key; pare compress exits 2`, withCheckpoint(spec, async (path) => {
      const configPath = join(path, '..', 'config.json');
      writeFileSync(configPath, JSON.stringify({ ...spec.config, ...patch }));
      expect(() => buildFromSafetensors(path)).toThrow(UserError);
      expect(() => buildFromSafetensors(path)).toThrow(message);
      const recipe = join(path, '..', 'recipe.yaml');
      writeFileSync(recipe, 'version: 1\npasses:\n  - pass: quantize.cast\n    targets: ["layers.*"]\n');
      const r = await runCli(['compress', path, '-r', recipe, '-o', join(path, '..', 'out.onnx'), '--dry-run']);
      expect(r.code).toBe(2);
      const errors = r.err.trim().split('\n').filter((l) => l.startsWith('pare:'));
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(message);
    }));
  }
});
