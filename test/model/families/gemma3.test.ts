import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UserError } from '../../../src/errors.js';
import { readWeight, writeWeight } from '../../../src/model/linear-weights.js';
import { heads } from '../../../src/prune/heads.js';
import { decoderBlocks } from '../../../src/model/blocks.js';
import { buildFromSafetensors } from '../../../src/model/builders/index.js';
import { linears } from '../../../src/model/linears.js';
import { runCli } from '../../cli/run-cli.js';
import { allClose } from '../../helpers.js';
import { gemma3Forward, type Gemma3RefConfig } from '../../reference/gemma3-forward.js';
import { gemma3Spec } from './gemma3-checkpoint.js';
import { flat, weightsOf, withCheckpoint } from './phi3-gemma3-harness.js';
import { cachedAgainstFull, danglingInputs, tokens, withDecoders } from '../kv-decode.js';

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
      await withDecoders([buildFromSafetensors(path, { kvCache })], async (d) => {
        for (const seq of [1, 7, 8, 9, 33, 64]) {
          const ids = tokens(VOCAB, 2, seq, 200 + seq);
          const c = allClose(await d.full(ids), flat(gemma3Forward(w, config, ids)), 1e-4, 1e-5);
          expect(c.relFro, `seq ${seq}: ${c.worst}`).toBeLessThanOrEqual(1e-5); // measured ≤ 4.1e-7, with and without the cache
        }
      });
    }));
  }

  it('greedy decoding with the cache equals re-running the whole sequence, far past the window (batch 2, 40 steps)', withCheckpoint(spec, async (path) => {
    await withDecoders([buildFromSafetensors(path, { kvCache: true }), buildFromSafetensors(path, { kvCache: false })], async (kv, plain) => {
      const r = await cachedAgainstFull(kv, plain, tokens(VOCAB, 2, 6, 5), 40, VOCAB);
      expect(r.worst, r.worstAt).toBeLessThanOrEqual(1e-5); // measured 5.1e-7
      expect(r.cachedTokens).toEqual(r.fullTokens);
    });
  }));
});

describe('prune.heads through the q/k norms', () => {
  it('removing 1 of 2 KV groups per block leaves a smaller model equal to zeroing those heads\' o_proj columns', withCheckpoint(spec, async (path) => {
    const pruned = buildFromSafetensors(path);
    const result = await heads.apply(pruned, { sparsity: 0.5, importance: 'weight' }, { layers: linears(pruned), seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });
    expect(result.layers.map((l) => l.extra!.heads_after)).toEqual([2, 2, 2, 2]);
    const reference = buildFromSafetensors(path);
    const per = 2 * config.head_dim; // o_proj columns of one KV group: 2 query heads
    for (const [b, o] of linears(reference).filter((l) => l.name.endsWith('o_proj')).entries()) {
      const W = readWeight(reference, o);
      const g = Number(result.layers[b]!.extra!.removed_groups);
      for (let r = 0; r < o.outFeatures; r++) W.fill(0, r * o.inFeatures + g * per, r * o.inFeatures + (g + 1) * per);
      writeWeight(reference, o, W);
    }
    await withDecoders([pruned, reference], async (a, b) => {
      for (const seq of [1, 12]) {
        const ids = tokens(VOCAB, 2, seq, seq);
        const c = allClose(await a.full(ids), await b.full(ids), 1e-5, 1e-6);
        expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-6);
      }
    });
  }));
});

describe('Gemma 3 config.json the builder cannot build', () => {
  const refusals: [string, Record<string, unknown>, RegExp][] = [
    ['an unknown key', { altup_num_inputs: 4 }, /config\.json: key 'altup_num_inputs' is not understood by pare's gemma3_text builder; remove it if it does not change the forward pass, or export the model to \.onnx$/],
    ['attention soft-capping', { attn_logit_softcapping: 50 }, /config\.json: attn_logit_softcapping 50 is set, but transformers' Gemma 3 attention never applies it \(Gemma 2's does\); set it to null to build what transformers computes$/],
    ['bidirectional attention', { use_bidirectional_attention: true }, /config\.json: use_bidirectional_attention true is not supported/],
    ['another activation', { hidden_activation: 'gelu' }, /config\.json: hidden_activation "gelu" is not supported \(Gemma 3 uses gelu_pytorch_tanh\)$/],
    ['a wrong layer_types', { layer_types: ['full_attention'] }, /config\.json: layer_types must list 4 entries/],
  ];
  for (const [what, patch, message] of refusals) {
    it(`${what}: a one-line user error naming the key; pare compress exits 2`, withCheckpoint(spec, async (path) => {
      writeFileSync(join(path, '..', 'config.json'), JSON.stringify({ ...spec.config, ...patch }));
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
