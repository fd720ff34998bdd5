import { UserError } from '../../errors.js';
import { DataType } from '../dtype.js';
import { Model } from '../model.js';
import type { SafetensorsFile } from '../safetensors.js';
import { attr, GraphBuilder } from './graph-builder.js';

/**
 * Hugging Face `LlamaForCausalLM` (also MobileLLM: deep-thin, SwiGLU, grouped-query attention,
 * tied embeddings) as an ONNX graph: input_ids [batch, seq] int64 → logits [batch, seq, vocab].
 * Initializers keep the checkpoint's names and [out, in] layout; each projection is
 * Transpose(weight) → MatMul with the PyTorch exporter's node names (`/layers.0/mlp/gate_proj/MatMul`),
 * so `linears()` names layers as it does for an exported model and the weights write back to
 * safetensors unchanged. RoPE follows HF's rotate_half convention; attention is causal.
 */
export interface LlamaConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  rms_norm_eps?: number;
  rope_theta?: number;
  vocab_size: number;
  tie_word_embeddings?: boolean;
  head_dim?: number;
  rope_scaling?: unknown;
  hidden_act?: string;
}

export function buildLlama(st: SafetensorsFile, config: LlamaConfig, configPath: string): Model {
  const need = (k: keyof LlamaConfig) => {
    if (typeof config[k] !== 'number') throw new UserError(`${configPath}: ${k} is missing or not a number`);
    return config[k] as number;
  };
  const H = need('hidden_size');
  const layers = need('num_hidden_layers');
  const nh = need('num_attention_heads');
  const nkv = config.num_key_value_heads ?? nh;
  const hd = config.head_dim ?? H / nh;
  const eps = config.rms_norm_eps ?? 1e-6;
  const theta = config.rope_theta ?? 10000;
  if (config.rope_scaling) throw new UserError(`${configPath}: rope_scaling ${JSON.stringify(config.rope_scaling)} is not supported yet; only plain RoPE`);
  if (config.hidden_act && config.hidden_act !== 'silu') throw new UserError(`${configPath}: hidden_act ${config.hidden_act} is not supported; Llama uses silu`);
  if (nh % nkv !== 0) throw new UserError(`${configPath}: num_attention_heads ${nh} is not a multiple of num_key_value_heads ${nkv}`);

  const g = new GraphBuilder();
  const tensor = (name: string): string => {
    const e = st.tensors.get(name);
    if (!e) throw new UserError(`${st.path}: tensor '${name}' is missing for a Llama model with ${layers} layers`);
    if (!g.initializers.some((t) => t.name === name)) g.initializers.push({ name, data_type: e.dataType, dims: e.shape, raw_data: st.read(name) });
    return e.dataType === DataType.FLOAT ? name : g.op('Cast', [name], `/${name}/Cast`, [attr.int('to', DataType.FLOAT)]);
  };
  const linear = (x: string, weight: string, path: string) => {
    const wt = g.op('Transpose', [tensor(weight)], `${path}/Transpose`, [attr.ints('perm', [1, 0])]);
    return g.op('MatMul', [x, wt], `${path}/MatMul`);
  };
  const rmsNorm = (x: string, weight: string, path: string) => {
    const sq = g.op('Mul', [x, x], `${path}/Pow`);
    const mean = g.op('ReduceMean', [sq], `${path}/ReduceMean`, [attr.ints('axes', [-1]), attr.int('keepdims', 1)]);
    const rs = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [mean, g.scalar(eps)], `${path}/Add`)], `${path}/Sqrt`)], `${path}/Reciprocal`);
    return g.op('Mul', [g.op('Mul', [x, rs], `${path}/Mul`), tensor(weight)], `${path}/Mul_1`);
  };

  // positions, RoPE tables [1, 1, S, hd] and the causal mask [S, S]
  const ids = 'input_ids';
  const seq = g.op('Gather', [g.op('Shape', [ids], '/Shape'), g.int64s([1], true)], '/Gather_seq', [attr.int('axis', 0)]);
  const pos = g.op('Range', [g.int64s([0], true), seq, g.int64s([1], true)], '/Range');
  const posF = g.op('Cast', [pos], '/rotary/Cast', [attr.int('to', DataType.FLOAT)]);
  const invFreq = Float32Array.from({ length: hd / 2 }, (_, i) => 1 / theta ** ((2 * i) / hd));
  const freqs = g.op('Mul', [g.op('Unsqueeze', [posF, g.int64s([1])], '/rotary/Unsqueeze'), g.floats(invFreq, [1, hd / 2])], '/rotary/Mul');
  const emb = g.op('Concat', [freqs, freqs], '/rotary/Concat', [attr.int('axis', -1)]);
  const cos = g.op('Unsqueeze', [g.op('Cos', [emb], '/rotary/Cos'), g.int64s([0, 1])], '/rotary/Unsqueeze_cos');
  const sin = g.op('Unsqueeze', [g.op('Sin', [emb], '/rotary/Sin'), g.int64s([0, 1])], '/rotary/Unsqueeze_sin');
  const rows = g.op('Unsqueeze', [pos, g.int64s([1])], '/mask/Unsqueeze_rows');
  const cols = g.op('Unsqueeze', [pos, g.int64s([0])], '/mask/Unsqueeze_cols');
  const future = g.op('Less', [rows, cols], '/mask/Less');
  const mask = g.op('Where', [future, g.scalar(-3.4028234663852886e38), g.scalar(0)], '/mask/Where');

  const rope = (x: string, path: string) => {
    const [x1, x2] = g.opMulti('Split', [x, g.int64s([hd / 2, hd / 2])], `${path}/Split`, 2, [attr.int('axis', -1)]) as [string, string];
    const rotated = g.op('Concat', [g.op('Neg', [x2], `${path}/Neg`), x1], `${path}/Concat`, [attr.int('axis', -1)]);
    return g.op('Add', [g.op('Mul', [x, cos], `${path}/Mul`), g.op('Mul', [rotated, sin], `${path}/Mul_1`)], `${path}/Add`);
  };
  const heads = (x: string, n: number, path: string) =>
    g.op('Transpose', [g.op('Reshape', [x, g.int64s([0, 0, n, hd])], `${path}/Reshape`)], `${path}/Transpose`, [attr.ints('perm', [0, 2, 1, 3])]);
  const repeatKv = (x: string, path: string) => {
    if (nkv === nh) return x;
    const expanded = g.op('Expand', [g.op('Unsqueeze', [x, g.int64s([2])], `${path}/Unsqueeze`), g.int64s([1, 1, nh / nkv, 1, 1])], `${path}/Expand`);
    return g.op('Reshape', [expanded, g.int64s([0, nh, -1, hd])], `${path}/Reshape`);
  };

  let h = g.op('Gather', [tensor('model.embed_tokens.weight'), ids], '/embed_tokens/Gather', [attr.int('axis', 0)]);
  for (let i = 0; i < layers; i++) {
    const p = `/layers.${i}`;
    const m = `model.layers.${i}`;
    const xn = rmsNorm(h, `${m}.input_layernorm.weight`, `${p}/input_layernorm`);
    const q = rope(heads(linear(xn, `${m}.self_attn.q_proj.weight`, `${p}/self_attn/q_proj`), nh, `${p}/self_attn/q`), `${p}/self_attn/rotary_q`);
    const k = rope(heads(linear(xn, `${m}.self_attn.k_proj.weight`, `${p}/self_attn/k_proj`), nkv, `${p}/self_attn/k`), `${p}/self_attn/rotary_k`);
    const v = heads(linear(xn, `${m}.self_attn.v_proj.weight`, `${p}/self_attn/v_proj`), nkv, `${p}/self_attn/v`);
    const kt = g.op('Transpose', [repeatKv(k, `${p}/self_attn/repeat_k`)], `${p}/self_attn/Transpose_k`, [attr.ints('perm', [0, 1, 3, 2])]);
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, kt], `${p}/self_attn/MatMul`), g.scalar(1 / Math.sqrt(hd))], `${p}/self_attn/Mul`), mask], `${p}/self_attn/Add`);
    const probs = g.op('Softmax', [scores], `${p}/self_attn/Softmax`, [attr.int('axis', -1)]);
    const ctx = g.op('MatMul', [probs, repeatKv(v, `${p}/self_attn/repeat_v`)], `${p}/self_attn/MatMul_1`);
    const merged = g.op('Reshape', [g.op('Transpose', [ctx], `${p}/self_attn/Transpose_o`, [attr.ints('perm', [0, 2, 1, 3])]), g.int64s([0, 0, nh * hd])], `${p}/self_attn/Reshape_o`);
    h = g.op('Add', [h, linear(merged, `${m}.self_attn.o_proj.weight`, `${p}/self_attn/o_proj`)], `${p}/Add`);
    const xm = rmsNorm(h, `${m}.post_attention_layernorm.weight`, `${p}/post_attention_layernorm`);
    const gate = linear(xm, `${m}.mlp.gate_proj.weight`, `${p}/mlp/gate_proj`);
    const act = g.op('Mul', [gate, g.op('Sigmoid', [gate], `${p}/mlp/act_fn/Sigmoid`)], `${p}/mlp/act_fn/Mul`);
    const up = linear(xm, `${m}.mlp.up_proj.weight`, `${p}/mlp/up_proj`);
    const down = linear(g.op('Mul', [act, up], `${p}/mlp/Mul`), `${m}.mlp.down_proj.weight`, `${p}/mlp/down_proj`);
    h = g.op('Add', [h, down], `${p}/Add_1`);
  }
  const final = rmsNorm(h, 'model.norm.weight', '/norm');
  const tied = config.tie_word_embeddings ?? !st.tensors.has('lm_head.weight');
  const logits = linear(final, tied ? 'model.embed_tokens.weight' : 'lm_head.weight', '/lm_head');
  g.nodes.push({ op_type: 'Identity', input: [logits], output: ['logits'], name: '/logits/Identity' });

  const type = (elem: number, dims: (number | string)[]) => ({ tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } });
  return new Model(
    {
      ir_version: 8,
      producer_name: 'pare',
      opset_import: [{ domain: '', version: 17 }],
      graph: {
        name: 'llama',
        node: g.nodes,
        initializer: g.initializers,
        input: [{ name: ids, type: type(DataType.INT64, ['batch', 'sequence']) }],
        output: [{ name: 'logits', type: type(DataType.FLOAT, ['batch', 'sequence', need('vocab_size')]) }],
      },
    },
    st.path,
    'safetensors',
  );
}
