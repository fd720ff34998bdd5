import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tensorValues } from '../../../fixtures/generate-models.js';
import { UserError } from '../../../src/errors.js';
import { DataType } from '../../../src/model/dtype.js';
import { linears } from '../../../src/model/linears.js';
import { loadModel } from '../../../src/model/load.js';
import type { Model } from '../../../src/model/model.js';
import { openSafetensors, writeSafetensors } from '../../../src/model/safetensors.js';
import { writeModelAsSafetensors } from '../../../src/model/to-safetensors.js';
import { channels } from '../../../src/prune/channels.js';
import { heads } from '../../../src/prune/heads.js';
import { allClose } from '../../helpers.js';
import { phi3Spec } from './phi3-checkpoint.js';
import { SEED, withCheckpoint } from './phi3-gemma3-harness.js';
import { tokens, withDecoders } from '../kv-decode.js';

/**
 * A fused linear is one layer: `layers.N.self_attn.qkv_proj` (rows q, k, v) and `layers.N.mlp.gate_up_proj`
 * (rows gate, up). Structured pruning keeps it fused; its result must equal what the same passes do to
 * the unfused model, a Llama checkpoint holding the same weights split into q/k/v and gate/up (Phi-3
 * without its RoPE extras is exactly that Llama).
 */
const spec = phi3Spec({ plain: true });
const c = spec.config as Record<string, number>;
const [H, nh, nkv, hd, F] = [c.hidden_size!, c.num_attention_heads!, c.num_key_value_heads!, c.head_dim!, c.intermediate_size!];

/** The phi3 checkpoint's weights as a Llama checkpoint: qkv_proj and gate_up_proj cut into their parts. */
function writeUnfused(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const tensors = spec.tensors.flatMap((t) => {
    const v = tensorValues(t, SEED);
    const part = (name: string, row0: number, rows: number) => ({ name, dataType: DataType.FLOAT, shape: [rows, H], data: new Uint8Array(v.slice(row0 * H, (row0 + rows) * H).buffer) });
    const whole = { name: t.name, dataType: DataType.FLOAT, shape: t.shape, data: new Uint8Array(v.buffer) };
    if (t.name.endsWith('qkv_proj.weight')) {
      const m = t.name.replace('qkv_proj.weight', '');
      return [part(`${m}q_proj.weight`, 0, nh * hd), part(`${m}k_proj.weight`, nh * hd, nkv * hd), part(`${m}v_proj.weight`, (nh + nkv) * hd, nkv * hd)];
    }
    if (t.name.endsWith('gate_up_proj.weight')) {
      const m = t.name.replace('gate_up_proj.weight', '');
      return [part(`${m}gate_proj.weight`, 0, F), part(`${m}up_proj.weight`, F, F)];
    }
    return [whole];
  });
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
  const { architectures: _, embd_pdrop: __, resid_pdrop: ___, ...rest } = spec.config as Record<string, unknown>;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...rest, architectures: ['LlamaForCausalLM'], model_type: 'llama' }));
  return join(dir, 'model.safetensors');
}

const ctxFor = (model: Model) => ({ layers: linears(model), seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });

describe('fused Phi-3 projections under structured pruning', () => {
  it('prune.heads (1 of 2 KV groups) and prune.channels (30 %) on the fused model equal the same passes on the unfused Llama', withCheckpoint(spec, async (path, dir) => {
    const fused = loadModel(path);
    const unfused = loadModel(writeUnfused(join(dir, 'llama')));
    const ids = tokens(c.vocab_size!, 2, 19, 7);
    await withDecoders([fused, unfused], async (a, b) => {
      const cmp = allClose(await a.full(ids), await b.full(ids), 1e-6, 1e-6);
      expect(cmp.relFro, cmp.worst).toBeLessThanOrEqual(1e-6); // measured 0: the same arithmetic
    });

    const stats = [];
    for (const m of [fused, unfused]) {
      const h = await heads.apply(m, { sparsity: 0.5, importance: 'weight' }, ctxFor(m));
      const ch = await channels.apply(m, { sparsity: 0.3, importance: 'weight', multiple_of: 1 }, ctxFor(m));
      stats.push([h.layers.map((l) => l.extra!.removed_groups), ch.layers.map((l) => l.shape)]);
    }
    expect(stats[0]).toEqual(stats[1]);
    const keepF = Math.round(F * 0.7);
    expect(linears(fused).filter((l) => /qkv_proj|gate_up_proj/.test(l.name)).map((l) => [l.name, l.outFeatures])).toEqual(
      [0, 1, 2].flatMap((i) => [[`layers.${i}.self_attn.qkv_proj`, (nh / 2 + 2) * hd], [`layers.${i}.mlp.gate_up_proj`, 2 * keepF]]),
    );
    await withDecoders([fused, unfused], async (a, b) => {
      for (const seq of [1, 19]) {
        const cmp = allClose(await a.full(tokens(c.vocab_size!, 2, seq, seq)), await b.full(tokens(c.vocab_size!, 2, seq, seq)), 1e-6, 1e-6);
        expect(cmp.relFro, cmp.worst).toBeLessThanOrEqual(1e-6); // measured 0
      }
    });

    // written back, the fused tensors hold the unfused model's rows in part order, with the same sizes
    writeModelAsSafetensors(fused, join(dir, 'fused-out', 'model.safetensors'));
    writeModelAsSafetensors(unfused, join(dir, 'llama-out', 'model.safetensors'));
    const [f, u] = [openSafetensors(join(dir, 'fused-out', 'model.safetensors')), openSafetensors(join(dir, 'llama-out', 'model.safetensors'))];
    const cat = (...names: string[]) => Buffer.concat(names.map((n) => u.read(n)));
    for (let i = 0; i < 3; i++) {
      const m = `model.layers.${i}`;
      expect(Buffer.from(f.read(`${m}.self_attn.qkv_proj.weight`)).equals(cat(`${m}.self_attn.q_proj.weight`, `${m}.self_attn.k_proj.weight`, `${m}.self_attn.v_proj.weight`))).toBe(true);
      expect(Buffer.from(f.read(`${m}.mlp.gate_up_proj.weight`)).equals(cat(`${m}.mlp.gate_proj.weight`, `${m}.mlp.up_proj.weight`))).toBe(true);
    }
    f.close();
    u.close();
    const sizes = (d: string) => {
      const j = JSON.parse(readFileSync(join(dir, d, 'config.json'), 'utf8'));
      return [j.num_attention_heads, j.num_key_value_heads, j.head_dim, j.intermediate_size];
    };
    expect(sizes('fused-out')).toEqual([3, 1, 8, keepF]);
    expect(sizes('llama-out')).toEqual(sizes('fused-out'));
  }));

  it('prune.heads refuses, in one line naming the layer, a fused qkv_proj whose output is not cut by one Split', withCheckpoint(spec, async (path) => {
    const model = loadModel(path);
    const qkv = linears(model).find((l) => l.name === 'layers.1.self_attn.qkv_proj')!;
    model.graph.node!.push({ op_type: 'Identity', name: '/layers.1/self_attn/qkv_copy', input: [qkv.output], output: ['qkv_copy'] });
    model.graph.output!.push({ name: 'qkv_copy', type: { tensor_type: { elem_type: DataType.FLOAT } } });
    const run = heads.apply(model, { sparsity: 0.5, importance: 'weight' }, ctxFor(model));
    await expect(run).rejects.toThrow(UserError);
    await expect(run).rejects.toThrow(/^prune\.heads: the output of 'layers\.1\.self_attn\.qkv_proj' must be cut into q, k and v by one Split with constant sizes on the last axis$/);
  }));
});
