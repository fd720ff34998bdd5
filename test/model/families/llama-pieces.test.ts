import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../../src/errors.js';
import { DataType } from '../../../src/model/dtype.js';
import { openSafetensors } from '../../../src/model/safetensors.js';
import { writeModelAsSafetensors } from '../../../src/model/to-safetensors.js';
import { buildFromSafetensors } from '../../../src/model/builders/index.js';
import { defaultInverseFrequencies, inverseFrequencies, llama3InverseFrequencies } from '../../../src/model/builders/rope.js';
import type { Model } from '../../../src/model/model.js';
import { loadModel } from '../../../src/model/load.js';
import { runCli } from '../../cli/run-cli.js';
import { allClose, tempDir } from '../../helpers.js';
import { llamaFamilyForward, ropeFrequency } from '../../reference/llama-family-forward.js';
import { Decoder } from '../kv-decode.js';
import { randomTokens, writeTinyCheckpoint, writeTokenFile, type TinyFamily } from './checkpoints.js';
import { LLAMA3, QWEN2, QWEN3, refConfig } from './llama-families.js';

/**
 * The pieces that set Llama 3.x, Qwen2 and Qwen3 apart from Llama, each against a closed form or an
 * invariant: llama3 RoPE frequencies, Qwen3's q/k norm, Qwen2's biases; prune.heads through both;
 * and config.json values pare cannot build, refused in one line naming the key.
 */

const tmp = tempDir('pare-llama-pieces-');
afterAll(() => tmp.cleanup());
let n = 0;
const dirFor = (name: string) => join(tmp.dir, `${name}-${n++}`);

async function logits(model: Model, ids: number[][]): Promise<Float32Array> {
  const d = await Decoder.open(model);
  try {
    return await d.full(ids);
  } finally {
    await d.release();
  }
}

const IDS = randomTokens(97, 2, 23, 41);

describe('llama3 RoPE scaling', () => {
  // Llama-3.2-1B's config.json
  const scaling = { factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
  const base = defaultInverseFrequencies(64, 500000);

  it('Llama-3.2-1B: wavelengths below 8192/4 keep their frequency, above 8192/1 divide it by 32, and the three between interpolate', () => {
    const f = inverseFrequencies(64, { theta: 500000, llama3: scaling });
    // 2π·500000^(i/32) < 2048 ⇔ i ≤ 14; > 8192 ⇔ i ≥ 18
    for (let i = 0; i <= 14; i++) expect(f[i], `i ${i}`).toBe(base[i]);
    for (let i = 18; i < 32; i++) expect(f[i]! / (base[i]! / 32) - 1, `i ${i}`).toBeCloseTo(0, 14);
    for (let i = 15; i <= 17; i++) {
      const wavelength = (2 * Math.PI) / base[i]!;
      const s = (8192 / wavelength - 1) / (4 - 1);
      expect(s).toBeGreaterThan(0);
      expect(s).toBeLessThan(1);
      expect(f[i]! / ((1 - s) * (base[i]! / 32) + s * base[i]!) - 1, `i ${i}`).toBeCloseTo(0, 14);
      expect(f[i]).toBeLessThan(base[i]!);
      expect(f[i]).toBeGreaterThan(base[i]! / 32);
    }
    expect(f[0]).toBe(1);
  });

  it('is continuous at both wavelength thresholds (the interpolation meets the kept and the divided frequencies)', () => {
    const at = (wavelength: number) => llama3InverseFrequencies(Float64Array.of((2 * Math.PI) / wavelength), scaling)[0]!;
    for (const [edge, scale] of [[8192 / 4, 1], [8192 / 1, 1 / 32]] as const) {
      const f = (2 * Math.PI) / edge;
      expect(at(edge * (1 - 1e-9)) / (f * scale)).toBeCloseTo(1, 7);
      expect(at(edge * (1 + 1e-9)) / (f * scale)).toBeCloseTo(1, 7);
    }
  });

  it("pare's frequencies equal the test reference's, written apart from them (tiny llama3 config)", () => {
    const c = refConfig(LLAMA3.config);
    const f = inverseFrequencies(12, { theta: 500000, llama3: c.llama3 });
    const regimes = Array.from(f, (v, i) => (v === defaultInverseFrequencies(12, 500000)[i] ? 'kept' : Math.abs(v * 8 - defaultInverseFrequencies(12, 500000)[i]!) < 1e-18 ? 'divided' : 'between'));
    expect(regimes).toEqual(['kept', 'between', 'divided', 'divided', 'divided', 'divided']); // the tiny config reaches every regime
    for (let i = 0; i < 6; i++) expect(f[i]! / ropeFrequency(i, c) - 1).toBeCloseTo(0, 14);
  });
});

/** The relative Frobenius error of the built logits against the reference run with one of the family's pieces switched off. */
async function errorWithout(family: TinyFamily, off: Partial<ReturnType<typeof refConfig>>): Promise<number> {
  const ck = writeTinyCheckpoint(family, dirFor(family.modelType));
  const ref = Float64Array.from(llamaFamilyForward(ck.values, { ...refConfig(ck.config), ...off }, IDS).flatMap((r) => r.flatMap((v) => [...v])));
  return allClose(await logits(buildFromSafetensors(ck.path), IDS), ref, 0, 0).relFro;
}

describe('each family piece changes the logits (the reference test would catch a builder that left it out)', () => {
  it('llama3 scaling, Qwen2 biases and Qwen3 q/k norms: the reference without them is off by more than 1e-3', async () => {
    expect(await errorWithout(LLAMA3, { llama3: undefined })).toBeGreaterThan(1e-3);
    expect(await errorWithout(QWEN2, { qkv_bias: false })).toBeGreaterThan(1e-3);
    expect(await errorWithout(QWEN3, { qk_norm: false })).toBeGreaterThan(1e-3);
  });
});

describe('Qwen3 q/k norm and Qwen2 biases', () => {
  /** `family` with q_proj and k_proj weights 3× larger (the same random draws, std × 3) */
  const scaledQk = (family: TinyFamily): TinyFamily => ({
    ...family,
    tensors: (config) => family.tensors(config).map((t) => (/\.(q|k)_proj\.weight$/.test(t.name) ? { ...t, std: 3 * t.std } : t)),
  });

  it('with q_norm/k_norm, scaling q_proj and k_proj leaves the logits unchanged; without them (Llama) it does not', async () => {
    for (const [family, normed] of [[QWEN3, true], [LLAMA3, false]] as const) {
      const a = buildFromSafetensors(writeTinyCheckpoint(family, dirFor('a')).path);
      const b = buildFromSafetensors(writeTinyCheckpoint(scaledQk(family), dirFor('b')).path);
      const c = allClose(await logits(b, IDS), await logits(a, IDS), 1e-5, 1e-5);
      if (normed) expect(c.relFro, c.worst).toBeLessThan(1e-5); // RMSNorm(3x) = RMSNorm(x) up to eps 1e-6
      else expect(c.relFro).toBeGreaterThan(1e-2);
    }
  });

  it('a Qwen2 checkpoint whose biases are zero gives the logits of the Llama build of the same weights (bit-identical)', async () => {
    const zeroBias: TinyFamily = { ...QWEN2, tensors: (config) => QWEN2.tensors(config).map((t) => (t.name.endsWith('.bias') ? { ...t, std: 0 } : t)) };
    const qwen = writeTinyCheckpoint(zeroBias, dirFor('qwen2-zero'));
    const llama = writeTinyCheckpoint({ ...QWEN2, tensors: (config) => QWEN2.tensors(config).filter((t) => !t.name.endsWith('.bias')) }, dirFor('llama'), { overrides: { model_type: 'llama' } });
    const c = allClose(await logits(buildFromSafetensors(qwen.path), IDS), await logits(buildFromSafetensors(llama.path), IDS), 0, 0);
    expect(c.ok, c.worst).toBe(true);
  });

  for (const family of [QWEN2, QWEN3]) {
    it(`${family.modelType}: prune.heads (${family === QWEN2 ? 'q/k/v biases sliced with their rows' : 'q/k norms kept, shared by the heads'}) equals the original with the removed heads silenced`, async () => {
      const ck = writeTinyCheckpoint(family, dirFor(`${family.modelType}-heads`));
      const recipe = join(tmp.dir, `heads-${family.modelType}.yaml`);
      writeFileSync(recipe, 'version: 1\npasses:\n  - pass: prune.heads\n    targets: ["layers.*.self_attn.*"]\n    params: { sparsity: 0.5, importance: weight }\n');
      const out = join(tmp.dir, `heads-${family.modelType}.onnx`);
      const r = await runCli(['compress', ck.path, '-r', recipe, '-o', out, '--json', '--threads', '1']);
      expect(r.code, r.err).toBe(0);
      const layers = JSON.parse(r.out).passes[0].layers as { name: string; extra: { removed_groups: string } }[];
      expect(layers).toHaveLength(3);
      // silence the removed KV group's 3 query heads: zero their o_proj input columns
      const silenced = buildFromSafetensors(ck.path);
      const d = (ck.config.head_dim as number | undefined) ?? 8;
      for (const l of layers) {
        const name = `model.${l.name}.o_proj.weight`;
        const o = new Float32Array(silenced.tensor(name).data.slice().buffer);
        const cols = 6 * d;
        for (const g of l.extra.removed_groups.split(',').map(Number)) for (let row = 0; row < 48; row++) o.fill(0, row * cols + g * 3 * d, row * cols + (g + 1) * 3 * d);
        silenced.setInitializer({ name, dataType: 1, dims: [48, cols], data: new Uint8Array(o.buffer) });
      }
      const pruned = loadModel(out);
      const c = allClose(await logits(pruned, IDS), await logits(silenced, IDS), 1e-5, 1e-6);
      expect(c.ok, c.worst).toBe(true);
      expect(pruned.tensor('model.layers.0.self_attn.q_proj.weight').dims).toEqual([3 * d, 48]);
      if (family === QWEN2) expect(pruned.tensor('model.layers.0.self_attn.k_proj.bias').dims).toEqual([d]);
      else expect(pruned.tensor('model.layers.0.self_attn.q_norm.weight').dims).toEqual([d]);
    });
  }
});

describe('config.json values pare cannot build are one-line user errors naming the key', () => {
  const cases: [TinyFamily, Record<string, unknown>, RegExp][] = [
    [LLAMA3, { rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64 } }, /config\.json: rope_scaling\.rope_type "yarn" is not supported; pare builds plain RoPE and "llama3" scaling$/],
    [LLAMA3, { rope_scaling: { ...(LLAMA3.config.rope_scaling as object), beta_fast: 32 } }, /config\.json: rope_scaling\.beta_fast is not understood for rope_type "llama3"/],
    [LLAMA3, { rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } }, /config\.json: rope_scaling\.original_max_position_embeddings must be a positive number, found undefined$/],
    [LLAMA3, { attention_bias: true }, /config\.json: attention_bias true is not supported for Llama; its projections have no bias$/],
    [LLAMA3, { hidden_act: 'gelu' }, /config\.json: hidden_act "gelu" is not supported; Llama uses silu$/],
    [QWEN2, { use_sliding_window: true, sliding_window: 16, max_window_layers: 1 }, /config\.json: use_sliding_window true with sliding_window 16 below max_position_embeddings 512 is not supported/],
    [QWEN3, { layer_types: ['full_attention', 'sliding_attention', 'full_attention'] }, /config\.json: layer_types\[1\] is "sliding_attention"; pare builds Qwen3 with full attention in every layer$/],
    [QWEN3, { attention_bias: true }, /config\.json: attention_bias true is not supported for Qwen3/],
    [QWEN3, { head_dim: 10 }, /model\.safetensors: tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' has shape \[72, 48\], config\.json implies \[60, 48\]/],
  ];
  for (const [family, overrides, message] of cases) {
    it(`${family.modelType} with ${JSON.stringify(overrides)}`, () => {
      const ck = writeTinyCheckpoint(family, dirFor('bad'));
      writeFileSync(join(ck.dir, 'config.json'), JSON.stringify({ ...ck.config, ...overrides }));
      expect(() => buildFromSafetensors(ck.path)).toThrow(UserError);
      try {
        buildFromSafetensors(ck.path);
      } catch (e) {
        expect((e as Error).message).not.toContain('\n');
        expect((e as Error).message).toMatch(message);
      }
    });
  }

  it('a sliding window that covers every position, or starts after the last layer, builds', () => {
    const ck = writeTinyCheckpoint(QWEN2, dirFor('window'));
    for (const overrides of [{ use_sliding_window: true, sliding_window: 512 }, { use_sliding_window: true, sliding_window: 16, max_window_layers: 3 }]) {
      writeFileSync(join(ck.dir, 'config.json'), JSON.stringify({ ...ck.config, ...overrides }));
      expect(() => buildFromSafetensors(ck.path).close()).not.toThrow();
    }
  });
});

describe('bfloat16 checkpoints (as Llama 3.x and Qwen release them)', () => {
  for (const family of [LLAMA3, QWEN2, QWEN3]) {
    it(`${family.modelType}: logits equal the float64 reference on the bfloat16 weights within 1e-5`, async () => {
      const ck = writeTinyCheckpoint(family, dirFor(`${family.modelType}-bf16`), { dataType: DataType.BFLOAT16 });
      const ref = Float64Array.from(llamaFamilyForward(ck.values, refConfig(ck.config), IDS).flatMap((r) => r.flatMap((v) => [...v])));
      const c = allClose(await logits(buildFromSafetensors(ck.path), IDS), ref, 1e-5, 1e-5);
      expect(c.ok, c.worst).toBe(true);
      expect(c.relFro).toBeLessThan(1e-5); // measured ≤ 6e-7
    });
  }

  it('qwen2: smoothquant folds into the bfloat16 norms exactly; with prune.heads and int8 it writes back and reloads with the same logits', async () => {
    const ck = writeTinyCheckpoint(QWEN2, dirFor('qwen2-bf16-passes'), { dataType: DataType.BFLOAT16 });
    const tokens = writeTokenFile(join(ck.dir, 'calibration.u16'), 97, 128, 3);
    const calibration = `calibration:\n  data: { kind: tokens, path: ${tokens}, dtype: uint16, seq_len: 16, count: 8 }\n  samples: 8\n`;
    const smooth = '  - pass: quantize.smoothquant\n    targets: ["layers.*"]\n';
    const run = async (name: string, passes: string) => {
      const recipe = join(ck.dir, `${name}.yaml`);
      writeFileSync(recipe, `version: 1\n${calibration}passes:\n${passes}`);
      const out = join(ck.dir, `${name}.onnx`);
      const r = await runCli(['compress', ck.path, '-r', recipe, '-o', out, '--json', '--threads', '1']);
      expect(r.code, r.err).toBe(0);
      return { out, report: JSON.parse(r.out) as { warnings: string[] } };
    };
    const smoothed = await run('smooth', smooth);
    // only o_proj, fed by the attention, has nothing to fold into
    expect(smoothed.report.warnings.every((w) => /before 'layers\.\d\.self_attn\.o_proj'; left unsmoothed$/.test(w)), smoothed.report.warnings.join('\n')).toBe(true);
    const c = allClose(await logits(loadModel(smoothed.out), IDS), await logits(buildFromSafetensors(ck.path), IDS), 1e-5, 1e-5);
    expect(c.relFro, c.worst).toBeLessThan(1e-5);

    const { out } = await run('all', `${smooth}  - pass: prune.heads\n    targets: ["layers.*.self_attn.*"]\n    params: { sparsity: 0.5, importance: weight }\n  - pass: quantize.rtn\n    targets: ["layers.*.mlp.*"]\n    params: { bits: 8 }\n`);
    const onnx = loadModel(out);
    const written = join(ck.dir, 'written', 'model.safetensors');
    writeModelAsSafetensors(onnx, written, ck.path);
    const st = openSafetensors(written);
    expect(st.tensors.get('model.layers.0.self_attn.q_proj.bias')).toMatchObject({ shape: [24] });
    expect(st.tensors.get('model.layers.0.self_attn.q_proj.weight')).toMatchObject({ shape: [24, 48] });
    expect(st.tensors.get('model.layers.0.mlp.up_proj.weight')).toMatchObject({ dtype: 'I8', shape: [88, 48] });
    st.close();
    const again = allClose(await logits(loadModel(written), IDS), await logits(onnx, IDS), 1e-5, 1e-6);
    expect(again.ok, again.worst).toBe(true);
  });
});
