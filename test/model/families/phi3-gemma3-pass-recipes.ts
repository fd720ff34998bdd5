/**
 * Per-family data for the every-pass test: for each registered pass a small recipe on the tiny
 * Phi-3 and Gemma 3 checkpoints (`passes:` list, whether it calibrates), or the one-line refusal a
 * pass gives when it cannot apply to the family.
 */
export type PassCase = { passes: string; calibration?: boolean } | { refuses: RegExp; passes: string };

const pass = (id: string, targets: string[], params = '') => `  - pass: ${id}\n    targets: [${targets.map((t) => `"${t}"`).join(', ')}]\n${params ? `    params: { ${params} }\n` : ''}`;

/** pass id → case; `attention` is the layer a factorization targets (Phi-3's fused qkv_proj, Gemma's q_proj) */
export function passCases(family: 'phi3' | 'gemma3_text'): Record<string, PassCase> {
  const attention = family === 'phi3' ? 'layers.*.self_attn.qkv_proj' : 'layers.*.self_attn.q_proj';
  return {
    'prune.magnitude': { passes: pass('prune.magnitude', ['layers.*'], 'sparsity: 0.5') },
    'prune.sparsegpt': { passes: pass('prune.sparsegpt', ['layers.*'], 'sparsity: 0.5'), calibration: true },
    'prune.wanda': { passes: pass('prune.wanda', ['layers.*'], 'sparsity: 0.5'), calibration: true },
    'prune.channels': { passes: pass('prune.channels', ['layers.*.mlp.*'], 'sparsity: 0.3'), calibration: true },
    'prune.heads': { passes: pass('prune.heads', ['layers.*.self_attn.*'], 'sparsity: 0.5'), calibration: true },
    'prune.layers': { passes: pass('prune.layers', ['layers.*'], 'count: 1'), calibration: true },
    'quantize.rtn': { passes: pass('quantize.rtn', ['layers.*'], 'bits: 4, granularity: channel') },
    'quantize.gptq': { passes: pass('quantize.gptq', ['layers.*'], 'bits: 4, granularity: channel'), calibration: true },
    'quantize.awq': { passes: pass('quantize.awq', ['layers.*'], 'bits: 4, granularity: group, group_size: 16'), calibration: true },
    'quantize.mixed': { passes: pass('quantize.mixed', ['layers.*'], 'budget_bits: 9, bits: [4, 8], group_sizes: [16], sensitivity: output'), calibration: true },
    'quantize.reconstruct': { passes: pass('quantize.rtn', ['layers.*'], 'bits: 4, granularity: group, group_size: 16, format: matmulnbits') + pass('quantize.reconstruct', ['layers.*'], 'epochs: 1'), calibration: true },
    // Gemma's embedding is scaled by √hidden and its sublayer outputs are normed before the residual Add
    'quantize.rotate':
      family === 'phi3'
        ? { passes: '  - pass: quantize.rotate\n' }
        : { passes: '  - pass: quantize.rotate\n', refuses: /^pare: quantize\.rotate: found 0 linears adding into the residual stream after the token embedding 'model\.embed_tokens\.weight' and 0 reading its RMSNorms; the rotation needs a Llama-style pre-norm stream/ },
    'quantize.trellis': { passes: pass('quantize.trellis', ['layers.*'], 'bits: 2, state_bits: 8'), calibration: true },
    'quantize.smoothquant': { passes: pass('quantize.smoothquant', ['layers.*'], 'alpha: 0.5'), calibration: true },
    'quantize.w8a8': { passes: pass('quantize.w8a8', ['layers.*']) },
    'quantize.cast': { passes: pass('quantize.cast', ['layers.*']) },
    // graph-wide passes select no layers
    // the tiny checkpoints' hidden 44 takes no block of 16 to 256 (real Phi-3 and Gemma 3 widths do)
    'quantize.embeddings': { passes: pass('quantize.embeddings', ['*'], 'bits: 8, block_size: 16'), refuses: /^pare: quantize\.embeddings: the embedding 'model\.embed_tokens\.weight' is 44 wide, not a multiple of passes\[0\]\.params\.block_size 16; pick a power of two that divides 44$/ },
    'quantize.f16': { passes: pass('quantize.f16', ['*'], 'io: float32') },
    // a QDQ int8 model made by quantize.rtn, back to float
    'quantize.dequantize': { passes: pass('quantize.rtn', ['layers.*'], 'bits: 8') + '  - pass: quantize.dequantize\n' },
    'decompose.svd': { passes: pass('decompose.svd', ['layers.*'], 'ratio: 0.5') },
    'decompose.kronecker': { passes: pass('decompose.kronecker', [attention], 'ratio: 0.5') },
    'share.embeddings':
      family === 'phi3'
        ? { passes: pass('share.embeddings', ['lm_head'], 'max_relative_change: 10') }
        : // Gemma 3 ties lm_head to the embedding already
          { passes: pass('share.embeddings', ['lm_head']), refuses: /^pare: share\.embeddings: passes\[0\]\.targets select no 44→61 projection with its own weight \(already tied\?\)$/ },
    'share.layers': { passes: pass('share.layers', ['layers.*'], 'pairs: 1'), calibration: true },
    'distill.kd': {
      passes: pass('prune.magnitude', ['layers.*'], 'sparsity: 0.5') + pass('distill.kd', ['layers.*'], 'steps: 3, batch_size: 2, seq_len: 16, samples: 4, warmup: 1, start_token: 1, checkpoint_every: 0'),
    },
  };
}
