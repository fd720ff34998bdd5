import { UserError } from '../../errors.js';
import type { Model } from '../model.js';
import type { SafetensorsFile } from '../safetensors.js';
import { attr, type BuildOptions, causalMask, configReader, GraphBuilder, positions } from './graph-builder.js';
import { KvCache } from './kv-cache.js';

/** config.json keys of GPT-2 that the builder reads, or that only matter to training and the sequence-classification heads. */
export const GPT2_CONFIG_KEYS: readonly string[] = [
  'n_embd', 'n_layer', 'n_head', 'vocab_size', 'n_positions', 'n_ctx', 'n_inner', 'layer_norm_epsilon', 'activation_function', 'tie_word_embeddings',
  'scale_attn_weights', 'scale_attn_by_inverse_layer_idx', 'reorder_and_upcast_attn', 'add_cross_attention',
  'attn_pdrop', 'embd_pdrop', 'resid_pdrop', 'summary_activation', 'summary_first_dropout', 'summary_proj_to_labels', 'summary_type', 'summary_use_proj', 'task_specific_params',
];

/**
 * Hugging Face `GPT2LMHeadModel` as an ONNX graph: input_ids [batch, seq] int64 → logits
 * [batch, seq, vocab]. Pre-LayerNorm blocks, fused c_attn, learned positions (wpe), GELU in its tanh
 * form (`gelu_new`), lm_head tied to wte. HF's Conv1D stores weights [in, out] and computes
 * addmm(b, x, W), so each is a Gemm over the flattened [batch·seq, in] activations, as PyTorch exports
 * it; `linears()` then reports the bias too. Node names follow the exporter under the block prefix
 * `/h.N/` (layer `h.0.attn.c_attn`), which is also how `decoderBlocks()` finds the blocks.
 * Checkpoints name tensors with or without the `transformer.` prefix; both are read. With
 * `kvCache`, Optimum's decoder-with-past I/O (kv-cache.ts): wpe gathered at position_ids, the mask
 * from attention_mask, each layer's present keys/values [B, heads, past + S, hd].
 */
export function buildGpt2(st: SafetensorsFile, config: Record<string, unknown>, configPath: string, opts: BuildOptions = {}): Model {
  const c = configReader(config, configPath);
  const H = c.int('n_embd');
  const layers = c.layers('n_layer', st.tensors.size, st.path);
  const nh = c.int('n_head');
  const vocab = c.int('vocab_size');
  const ctxLen = c.int('n_positions', 1024);
  const inner = config.n_inner == null ? 4 * H : c.int('n_inner');
  const eps = c.num('layer_norm_epsilon', 1e-5);
  const act = config.activation_function ?? 'gelu_new';
  if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    throw new UserError(`${configPath}: activation_function ${JSON.stringify(act)} is not supported; GPT-2 uses gelu_new (tanh approximation)`);
  }
  for (const k of ['scale_attn_by_inverse_layer_idx', 'reorder_and_upcast_attn', 'add_cross_attention'] as const) {
    if (config[k] === true) throw new UserError(`${configPath}: ${k} true is not supported; set it false or remove it`);
  }
  if (config.scale_attn_weights === false) throw new UserError(`${configPath}: scale_attn_weights false is not supported`);
  if (H % nh !== 0) throw new UserError(`${configPath}: n_embd ${H} is not a multiple of n_head ${nh}`);
  const hd = H / nh;

  const g = new GraphBuilder(st, `a GPT-2 model with ${layers} layers`);
  const prefix = g.has('transformer.wte.weight') ? 'transformer.' : '';
  const shapes: [string, number[]][] = [[`${prefix}wte.weight`, [vocab, H]], [`${prefix}wpe.weight`, [ctxLen, H]], ['lm_head.weight', [vocab, H]]];
  for (let i = 0; i < layers; i++) {
    const m = `${prefix}h.${i}`;
    shapes.push(
      [`${m}.attn.c_attn.weight`, [H, 3 * H]],
      [`${m}.attn.c_attn.bias`, [3 * H]],
      [`${m}.attn.c_proj.weight`, [H, H]],
      [`${m}.attn.c_proj.bias`, [H]],
      [`${m}.mlp.c_fc.weight`, [H, inner]],
      [`${m}.mlp.c_fc.bias`, [inner]],
      [`${m}.mlp.c_proj.weight`, [inner, H]],
      [`${m}.mlp.c_proj.bias`, [H]],
    );
  }
  for (const [name, shape] of shapes) g.expectShape(name, shape);

  // activations are [B, S, ·]; Conv1D layers see [B·S, ·]
  const batchSeq = g.op('Slice', [g.op('Shape', ['input_ids'], '/Shape_ids'), g.int64s([0]), g.int64s([2])], '/Slice_batch_seq');
  const unflatten = g.op('Concat', [batchSeq, g.int64s([-1])], '/Concat_unflatten', [attr.int('axis', 0)]);
  // y = x · W + b, W stored [in, out] (HF Conv1D)
  const conv1d = (x: string, name: string, path: string) => {
    const flat = g.op('Flatten', [x], `${path}/Flatten`, [attr.int('axis', 2)]);
    const y = g.op('Gemm', [flat, g.weight(`${name}.weight`), g.weight(`${name}.bias`)], `${path}/Gemm`);
    return g.op('Reshape', [y, unflatten], `${path}/Reshape`);
  };
  const layerNorm = (x: string, name: string, path: string) =>
    g.op('LayerNormalization', [x, g.weight(`${name}.weight`), g.weight(`${name}.bias`)], `${path}/LayerNormalization`, [attr.int('axis', -1), attr.float('epsilon', eps)]);
  // [B, S, H] → [B, nh, S, hd]
  const heads = (x: string, path: string) =>
    g.op('Transpose', [g.op('Reshape', [x, g.int64s([0, 0, nh, hd])], `${path}/Reshape`)], `${path}/Transpose`, [attr.ints('perm', [0, 2, 1, 3])]);
  // gelu_new(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the pattern ORT fuses into FastGelu
  const gelu = (x: string, path: string) => {
    const cube = g.op('Pow', [x, g.scalar(3)], `${path}/Pow`);
    const arg = g.op('Add', [x, g.op('Mul', [cube, g.scalar(0.044715)], `${path}/Mul`)], `${path}/Add`);
    const t = g.op('Tanh', [g.op('Mul', [arg, g.scalar(Math.sqrt(2 / Math.PI))], `${path}/Mul_1`)], `${path}/Tanh`);
    return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)], `${path}/Mul_2`), g.op('Add', [t, g.scalar(1)], `${path}/Add_1`)], `${path}/Mul_3`);
  };

  const cache = opts.kvCache !== false ? new KvCache(g, { layers, heads: nh, headDim: hd }) : undefined;
  const pos = cache ? cache.positions : positions(g);
  const mask = cache ? cache.mask() : causalMask(g, pos);
  const tokens = g.op('Gather', [g.weight(`${prefix}wte.weight`), 'input_ids'], '/wte/Gather', [attr.int('axis', 0)]);
  const places = g.op('Gather', [g.weight(`${prefix}wpe.weight`), pos], '/wpe/Gather', [attr.int('axis', 0)]);
  let h = g.op('Add', [tokens, places], '/Add');
  for (let i = 0; i < layers; i++) {
    const p = `/h.${i}`;
    const m = `${prefix}h.${i}`;
    // causal self-attention over the fused q|k|v projection
    const qkv = conv1d(layerNorm(h, `${m}.ln_1`, `${p}/ln_1`), `${m}.attn.c_attn`, `${p}/attn/c_attn`);
    const [q, k, v] = g.opMulti('Split', [qkv, g.int64s([H, H, H])], `${p}/attn/Split`, 3, [attr.int('axis', -1)]) as [string, string, string];
    let kt: string;
    let vh: string | undefined;
    if (cache) {
      // keys and values [B, nh, past + S, hd] with the past before them; kᵀ from those
      const [keys, values] = cache.append(i, heads(k, `${p}/attn/k`), heads(v, `${p}/attn/v`), `${p}/attn`);
      kt = g.op('Transpose', [keys], `${p}/attn/Transpose_k`, [attr.ints('perm', [0, 1, 3, 2])]);
      vh = values;
    } else {
      kt = g.op('Transpose', [g.op('Reshape', [k, g.int64s([0, 0, nh, hd])], `${p}/attn/k/Reshape`)], `${p}/attn/k/Transpose`, [attr.ints('perm', [0, 2, 3, 1])]);
    }
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [heads(q, `${p}/attn/q`), kt], `${p}/attn/MatMul`), g.scalar(1 / Math.sqrt(hd))], `${p}/attn/Mul`), mask], `${p}/attn/Add`);
    const probs = g.op('Softmax', [scores], `${p}/attn/Softmax`, [attr.int('axis', -1)]);
    const ctx = g.op('MatMul', [probs, vh ?? heads(v, `${p}/attn/v`)], `${p}/attn/MatMul_1`);
    const merged = g.op('Reshape', [g.op('Transpose', [ctx], `${p}/attn/Transpose_o`, [attr.ints('perm', [0, 2, 1, 3])]), g.int64s([0, 0, H])], `${p}/attn/Reshape_o`);
    h = g.op('Add', [h, conv1d(merged, `${m}.attn.c_proj`, `${p}/attn/c_proj`)], `${p}/Add`);
    // MLP: c_proj(gelu(c_fc(x)))
    const fc = conv1d(layerNorm(h, `${m}.ln_2`, `${p}/ln_2`), `${m}.mlp.c_fc`, `${p}/mlp/c_fc`);
    h = g.op('Add', [h, conv1d(gelu(fc, `${p}/mlp/act`), `${m}.mlp.c_proj`, `${p}/mlp/c_proj`)], `${p}/Add_1`);
  }
  const final = layerNorm(h, `${prefix}ln_f`, '/ln_f');
  const tied = config.tie_word_embeddings ?? !g.has('lm_head.weight');
  if (!tied && !g.has('lm_head.weight')) throw new UserError(`${st.path}: tensor 'lm_head.weight' is missing and ${configPath} sets tie_word_embeddings false`);
  const head = g.op('Transpose', [g.weight(tied ? `${prefix}wte.weight` : 'lm_head.weight')], '/lm_head/Transpose', [attr.ints('perm', [1, 0])]);
  return g.finish('gpt2', g.op('MatMul', [final, head], '/lm_head/MatMul'), vocab, cache?.io(vocab));
}
