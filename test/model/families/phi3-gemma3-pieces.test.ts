import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../../src/errors.js';
import { DecoderOps } from '../../../src/model/builders/decoder-ops.js';
import { GEMMA3_BLOCKS, gemma3EmbedScale, gemma3LayerTypes, gemma3Rope } from '../../../src/model/builders/gemma3.js';
import { GraphBuilder, tensorType } from '../../../src/model/builders/graph-builder.js';
import { KvCache } from '../../../src/model/builders/kv-cache.js';
import { phi3Rope } from '../../../src/model/builders/phi3.js';
import { longropeFrequencies } from '../../../src/model/builders/rope-frequencies.js';
import { slidingWindowMask } from '../../../src/model/builders/sliding-window.js';
import { DataType } from '../../../src/model/dtype.js';
import { openSafetensors, writeSafetensors } from '../../../src/model/safetensors.js';
import { ort, sessionFromModel } from '../../../src/runtime/ort.js';
import { allClose, tempDir } from '../../helpers.js';
import { gaussianMatrix } from '../../reference/random.js';

/** Unit tests of the pieces Phi-3 and Gemma 3 add, each against its closed form. */
const tmp = tempDir('pare-family-pieces-');
afterAll(() => tmp.cleanup());

/**
 * Runs one piece of graph: `weights` become a safetensors file the builder reads, `build` wires the
 * inputs to an output, ONNX Runtime computes it.
 */
async function runPiece(
  weights: Record<string, Float32Array>,
  inputs: { name: string; type: 'float32' | 'int64'; dims: number[]; data: Float32Array | BigInt64Array }[],
  build: (g: GraphBuilder, ops: DecoderOps) => string,
): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const path = join(tmp.dir, `piece-${Math.random().toString(36).slice(2)}.safetensors`);
  writeSafetensors(path, Object.entries(weights).map(([name, v]) => ({ name, dataType: DataType.FLOAT, shape: [v.length], data: new Uint8Array(v.buffer) })));
  const st = openSafetensors(path);
  try {
    const g = new GraphBuilder(st, 'a test piece');
    const out = build(g, new DecoderOps(g, new Map(), new Map()));
    const model = g.finish('piece', out, 0, {
      inputs: inputs.map((x) => ({ name: x.name, type: tensorType(x.type === 'int64' ? DataType.INT64 : DataType.FLOAT, x.dims) })),
      outputs: [{ name: 'logits', type: { tensor_type: { elem_type: DataType.FLOAT } } }],
    });
    const s = await sessionFromModel(model, { threads: 1 });
    try {
      const r = (await s.run(Object.fromEntries(inputs.map((x) => [x.name, new ort.Tensor(x.type, x.data, x.dims)])))).logits!;
      return { data: r.data as Float32Array, dims: r.dims };
    } finally {
      await s.release();
    }
  } finally {
    st.close();
  }
}

describe('Phi-3 pieces', () => {
  it('LongRoPE frequencies: 1/(factor_i·θ^(2i/d)) with short or long factors, attention factor √(1 + ln(max/orig)/ln(orig))', () => {
    const short = [1, 1.25, 1.5, 2];
    const long = [1, 2, 4, 8];
    const lr = longropeFrequencies({ theta: 10000, dim: 8, shortFactor: short, longFactor: long, originalMax: 4096, factor: 131072 / 4096 });
    for (let i = 0; i < 4; i++) {
      expect(lr.short[i]).toBeCloseTo(1 / (short[i]! * 10000 ** ((2 * i) / 8)), 15);
      expect(lr.long[i]).toBeCloseTo(1 / (long[i]! * 10000 ** ((2 * i) / 8)), 15);
    }
    // Phi-3.5-mini: 131072 positions over 4096 → √(1 + ln 32 / ln 4096) = √(1 + 5/12)
    expect(lr.attentionFactor).toBeCloseTo(Math.sqrt(17 / 12), 15);
    expect(lr.attentionFactor).toBeCloseTo(1.1902380714238083, 12);
    expect(longropeFrequencies({ theta: 1e4, dim: 8, shortFactor: short, longFactor: long, originalMax: 4096, factor: 1 }).attentionFactor).toBe(1);
    expect(longropeFrequencies({ theta: 1e4, dim: 8, shortFactor: short, longFactor: long, originalMax: 4096, factor: 32, attentionFactor: 1.5 }).attentionFactor).toBe(1.5);
  });

  it('reads partial_rotary_factor and longrope from config.json, and refuses what it cannot build, naming the key', () => {
    const base = { rope_theta: 10000, max_position_embeddings: 131072, original_max_position_embeddings: 4096 };
    const longrope = { type: 'longrope', short_factor: [1, 1, 1], long_factor: [2, 2, 2] };
    const r = phi3Rope({ ...base, partial_rotary_factor: 0.75, rope_scaling: longrope }, 'config.json', 8);
    expect(r.rotaryDim).toBe(6);
    expect(r.longrope!.originalMax).toBe(4096);
    expect(r.longrope!.attentionFactor).toBeCloseTo(Math.sqrt(17 / 12), 15);
    expect(phi3Rope({ ...base, rope_scaling: { ...longrope, type: 'su', short_factor: [1, 1, 1, 1], long_factor: [1, 1, 1, 1] } }, 'config.json', 8).longrope).toBeDefined();
    expect(phi3Rope({ rope_theta: 500 }, 'config.json', 8).invFreq![1]).toBeCloseTo(1 / 500 ** (2 / 8), 15);
    const refused = (config: Record<string, unknown>, message: RegExp) => {
      expect(() => phi3Rope(config, 'config.json', 8)).toThrow(UserError);
      expect(() => phi3Rope(config, 'config.json', 8)).toThrow(message);
    };
    refused({ rope_scaling: { type: 'yarn', factor: 4 } }, /^config\.json: rope_scaling type "yarn" is not supported for phi3; pare builds plain RoPE and longrope \(su\)$/);
    refused({ ...base, partial_rotary_factor: 0.75, rope_scaling: { ...longrope, short_factor: [1, 1] } }, /rope_scaling\.short_factor must list 3 positive numbers \(one per rotary frequency\), found 2 entries/);
    refused({ rope_scaling: { ...longrope, beta: 1 } }, /rope_scaling\.beta is not understood by pare's phi3 builder/);
    refused({ partial_rotary_factor: 0.1 }, /partial_rotary_factor 0\.1 gives 0 rotary channels of head_dim 8; pare needs an even count from 2 to head_dim/);
  });

  it('partial rotary: the first r channels of each head rotate as pairs (j, j + r/2), the other hd − r pass through', async () => {
    const [S, hd, rot] = [5, 8, 6];
    const x = Float32Array.from(gaussianMatrix(S * hd, 3));
    const inv = [1, 0.3, 0.05];
    const y = await runPiece({}, [{ name: 'x', type: 'float32', dims: [1, 1, S, hd], data: x }, { name: 'input_ids', type: 'int64', dims: [1, S], data: new BigInt64Array(S) }], (g, ops) => {
      const pos = g.op('Range', [g.int64s([0], true), g.int64s([S], true), g.int64s([1], true)], '/Range');
      return ops.rope('x', ops.ropeTables(pos, g.floats(inv, [3]), false, 1.5, '/rotary'), hd, rot, '/rope');
    });
    const want = new Float32Array(S * hd);
    for (let t = 0; t < S; t++) {
      const v = x.subarray(t * hd, (t + 1) * hd);
      for (let j = 0; j < 3; j++) {
        const [c, s] = [Math.cos(t * inv[j]!) * 1.5, Math.sin(t * inv[j]!) * 1.5];
        want[t * hd + j] = v[j]! * c - v[j + 3]! * s;
        want[t * hd + j + 3] = v[j + 3]! * c + v[j]! * s;
      }
      want.set(v.subarray(6), t * hd + 6);
    }
    const c = allClose(y.data, want, 1e-6, 1e-6);
    expect(c.ok, c.worst).toBe(true);
  });
});

describe('Gemma 3 pieces', () => {
  it('(1 + w) RMSNorm: x / √(mean x² + eps) · (1 + w), a zero weight is the identity scale', async () => {
    const [n, d] = [3, 7];
    const x = Float32Array.from(gaussianMatrix(n * d, 1));
    const w = Float32Array.from(gaussianMatrix(d, 2), (v) => 0.3 * v);
    for (const weight of [w, new Float32Array(d)]) {
      const y = await runPiece({ w: weight }, [{ name: 'x', type: 'float32', dims: [n, d], data: x }], (_g, ops) => ops.rmsNorm('x', 'w', 1e-6, '/norm', 1));
      const want = new Float32Array(n * d);
      for (let r = 0; r < n; r++) {
        const row = x.subarray(r * d, (r + 1) * d);
        const rms = Math.sqrt(row.reduce((a, v) => a + v * v, 0) / d + 1e-6);
        for (let j = 0; j < d; j++) want[r * d + j] = (row[j]! / rms) * (1 + weight[j]!);
      }
      const c = allClose(y.data, want, 1e-6, 1e-6);
      expect(c.ok, c.worst).toBe(true);
    }
  });

  it('GeGLU activation is gelu with the tanh approximation, not erf', async () => {
    const x = Float32Array.from({ length: 41 }, (_, i) => -5 + i / 4);
    const y = await runPiece({}, [{ name: 'x', type: 'float32', dims: [41], data: x }], (_g, ops) => ops.geluTanh('x', '/act'));
    const tanhForm = x.map((v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));
    const c = allClose(y.data, tanhForm, 1e-6, 1e-6); // float32: 1 + tanh(·) cancels for x ≪ 0
    expect(c.ok, c.worst).toBe(true);
    // gelu(1) with erf is 0.841345; the tanh form gives 0.841192
    expect(y.data[24]).toBeCloseTo(0.841192, 5);
  });

  it('soft-capping: cap·tanh(x/cap), bounded by cap, close to x where |x| ≪ cap', async () => {
    const x = Float32Array.from([-100, -3, -0.01, 0, 0.01, 3, 100]);
    const y = await runPiece({}, [{ name: 'x', type: 'float32', dims: [7], data: x }], (_g, ops) => ops.softcap('x', 30, '/cap'));
    const c = allClose(y.data, x.map((v) => 30 * Math.tanh(v / 30)), 1e-6, 1e-7);
    expect(c.ok, c.worst).toBe(true);
    expect(Math.max(...y.data.map(Math.abs))).toBeLessThan(30);
    expect(y.data[4]).toBeCloseTo(0.01, 6);
  });

  for (const kv of [false, true]) {
    it(`sliding-window mask${kv ? ' with a KV cache (past 6, 4 new tokens, one padded key)' : ''}: query i sees key j iff j ≤ i, i − j < window and the key is not padding`, async () => {
      const window = 3;
      const [past, S] = kv ? [6, 4] : [0, 7];
      const total = past + S;
      const attention = BigInt64Array.from({ length: total }, (_, j) => (j === 1 ? 0n : 1n));
      const inputs = [
        { name: 'input_ids', type: 'int64' as const, dims: [1, S], data: new BigInt64Array(S) },
        ...(kv ? [{ name: 'attention_mask', type: 'int64' as const, dims: [1, total], data: attention }] : []),
      ];
      const y = await runPiece({}, inputs, (g) => {
        if (kv) return slidingWindowMask(g, new KvCache(g, { layers: 0, heads: 1, headDim: 2 }).mask(), window, true);
        const pos = g.op('Range', [g.int64s([0], true), g.op('Gather', [g.op('Shape', ['input_ids'], '/Shape'), g.int64s([1], true)], '/Gather', [{ name: 'axis', type: 2, i: 0 }]), g.int64s([1], true)], '/Range');
        const rows = g.op('Unsqueeze', [pos, g.int64s([1])], '/U1');
        const cols = g.op('Unsqueeze', [pos, g.int64s([0])], '/U0');
        const causal = g.op('Where', [g.op('Less', [rows, cols], '/Less'), g.scalar(-3.4028234663852886e38), g.scalar(0)], '/Where');
        return slidingWindowMask(g, causal, window, false);
      });
      expect(y.dims).toEqual(kv ? [1, 1, S, total] : [S, total]);
      for (let t = 0; t < S; t++) {
        const i = past + t;
        for (let j = 0; j < total; j++) {
          const visible = j <= i && i - j < window && !(kv && j === 1);
          expect(y.data[t * total + j], `query ${i}, key ${j}`).toBe(visible ? 0 : -3.4028234663852886e38);
        }
      }
    });
  }

  it('embedding scale √hidden in the embedding dtype: 1152 → 34 in bfloat16, 33.9375 in float16', () => {
    expect(gemma3EmbedScale(1152, DataType.BFLOAT16)).toBe(34);
    expect(gemma3EmbedScale(1152, DataType.FLOAT16)).toBe(33.9375);
    expect(gemma3EmbedScale(1152, DataType.FLOAT)).toBe(Math.fround(Math.sqrt(1152)));
    // transformers' note: √3072 = 55.4256 becomes 55.5 in bfloat16
    expect(gemma3EmbedScale(3072, DataType.BFLOAT16)).toBe(55.5);
  });

  it('layer kinds: every sliding_window_pattern-th layer is full, layer_types wins when given', () => {
    expect(gemma3LayerTypes({ sliding_window_pattern: 6 }, 'config.json', 7).map((t) => t[0])).toEqual(['s', 's', 's', 's', 's', 'f', 's']);
    expect(gemma3LayerTypes({}, 'config.json', 6).at(-1)).toBe('full_attention');
    expect(gemma3LayerTypes({ sliding_window_pattern: 6, layer_types: ['full_attention', 'sliding_attention'] }, 'config.json', 2)).toEqual(['full_attention', 'sliding_attention']);
    expect(() => gemma3LayerTypes({ layer_types: ['full_attention'] }, 'config.json', 2)).toThrow(/^config\.json: layer_types must list 2 entries, each "sliding_attention" or "full_attention", found \["full_attention"\]$/);
  });

  it('RoPE: rope_theta / linear factor for full layers, rope_local_base_freq for sliding ones (also as transformers 5 rope_parameters)', () => {
    const r = gemma3Rope({ rope_theta: 1e6, rope_local_base_freq: 1e4, rope_scaling: { rope_type: 'linear', factor: 8 } }, 'config.json', 8);
    expect(r.full_attention[1]).toBeCloseTo(1 / 1e6 ** (2 / 8) / 8, 18);
    expect(r.sliding_attention[1]).toBeCloseTo(1 / 1e4 ** (2 / 8), 15);
    const v5 = gemma3Rope({ rope_parameters: { full_attention: { rope_type: 'linear', rope_theta: 1e6, factor: 8 }, sliding_attention: { rope_type: 'default', rope_theta: 1e4 } } }, 'config.json', 8);
    expect([...v5.full_attention]).toEqual([...r.full_attention]);
    expect([...v5.sliding_attention]).toEqual([...r.sliding_attention]);
    expect(() => gemma3Rope({ rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'config.json', 8)).toThrow(/^config\.json: rope_scaling type "yarn" is not supported for gemma3_text; pare builds default and linear RoPE$/);
  });

  it('write-back: layer_types of the blocks left, written only when they no longer follow sliding_window_pattern', () => {
    const config = { num_hidden_layers: 6, sliding_window_pattern: 3 };
    expect(GEMMA3_BLOCKS.blockConfig!(config, [0, 1, 2, 3, 4, 5])).toEqual({});
    expect(GEMMA3_BLOCKS.blockConfig!(config, [0, 1, 2])).toEqual({});
    expect(GEMMA3_BLOCKS.blockConfig!(config, [1, 2, 3])).toEqual({ layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'], sliding_window_pattern: undefined });
    const listed = { num_hidden_layers: 3, layer_types: ['full_attention', 'sliding_attention', 'full_attention'] };
    expect(GEMMA3_BLOCKS.blockConfig!(listed, [0, 2])).toEqual({ layer_types: ['full_attention', 'full_attention'] });
  });
});
