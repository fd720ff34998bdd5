import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import { UserError } from '../../src/errors.js';
import { GraphIndex } from '../../src/model/graph.js';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears, type LinearLayer } from '../../src/model/linears.js';
import { loadModel } from '../../src/model/load.js';
import type { Model } from '../../src/model/model.js';
import { modelSize } from '../../src/model/size.js';
import { seededRandom } from '../../src/util/random.js';
import { heads } from '../../src/prune/heads.js';
import { captureSession, ort, sessionFromModel } from '../../src/runtime/ort.js';
import { writeModelAsSafetensors } from '../../src/model/to-safetensors.js';
import { generateCheckpoint, llamaSpec } from '../../fixtures/generate-models.js';
import { allClose, FIXTURES, itWithShared, SHARED_MODELS, tempDir } from '../helpers.js';
import { decoderFeeds } from '../decoder-feeds.js';

const ROOT = resolve(__dirname, '../..');
const STORIES_EXPORT = join(ROOT, 'fixtures/stories260K/model.onnx');
const STORIES_BUILT = FIXTURES.storiesSafetensors;

interface Arch {
  path: string;
  /** reads ../shared */
  shared?: boolean;
  vocab: number;
  layers: number;
  hidden: number;
  heads: number;
  groups: number;
  headDim: number;
}

const STORIES = { vocab: 512, layers: 5, hidden: 64, heads: 8, groups: 4, headDim: 8 };
// shakespeare-char's attention (6 heads in 2 KV groups of 3, head_dim 32) in a seeded random 2-block model
const gqa = tempDir('pare-heads-');
afterAll(() => gqa.cleanup());
const GQA_R3 = { hidden_size: 96, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 6, num_key_value_heads: 2, vocab_size: 65, tie_word_embeddings: true };
const GQA_R3_PATH = join(generateCheckpoint(llamaSpec('gqa-r3', GQA_R3, { normStd: 0.1 }), join(gqa.dir, 'generated-gqa-r3'), { seed: 5, onnx: false }).dir, 'model.safetensors');
const MODELS: Arch[] = [
  { path: STORIES_EXPORT, ...STORIES },
  { path: STORIES_BUILT, ...STORIES },
  { path: GQA_R3_PATH, vocab: 65, layers: 2, hidden: 96, heads: 6, groups: 2, headDim: 16 },
  { path: SHARED_MODELS.shakespeare, shared: true, vocab: 65, layers: 8, hidden: 192, heads: 6, groups: 2, headDim: 32 },
];

const ctxFor = (model: Model, calibration?: Calibrator) => ({ layers: linears(model), seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]', calibration });

async function logits(model: Model, batch: number, seq: number, vocab: number): Promise<Float32Array> {
  const s = await sessionFromModel(model, { threads: 1 });
  const r = seededRandom(batch * 1000 + seq);
  const ids = BigInt64Array.from({ length: batch * seq }, () => BigInt(Math.floor(r() * vocab)));
  const out = (await s.run(decoderFeeds(s, ids, batch, seq))).logits!;
  expect(out.dims).toEqual([batch, seq, vocab]);
  return out.data as Float32Array;
}

const oProjs = (m: Model): LinearLayer[] => linears(m).filter((l) => l.name.endsWith('self_attn.o_proj'));

/** The original model with the o_proj input columns of the removed KV groups set to zero. */
function zeroGroups(reference: Model, removed: number[][], a: Arch): void {
  const per = (a.heads / a.groups) * a.headDim;
  for (const [b, o] of oProjs(reference).entries()) {
    const W = readWeight(reference, o);
    for (const g of removed[b]!) for (let r = 0; r < o.outFeatures; r++) W.fill(0, r * o.inFeatures + g * per, r * o.inFeatures + (g + 1) * per);
    writeWeight(reference, o, W);
  }
}

const removedOf = (layers: { extra?: Record<string, number | string> }[]) => layers.map((l) => String(l.extra!.removed_groups).split(',').map(Number));

describe('prune.heads', () => {
  for (const a of MODELS) {
    const label = a.path.replace(/.*\/(?=[^/]+\/[^/]+$)/, '');
    (a.shared ? itWithShared : it)(`${label}: removing 1 of ${a.groups} KV groups per block leaves a smaller model equal to zeroing those heads' o_proj columns, for any batch and length`, async () => {
      const pruned = loadModel(a.path);
      const before = modelSize(pruned).params;
      const result = await heads.apply(pruned, { sparsity: 1 / a.groups, importance: 'weight' }, ctxFor(pruned));
      expect(result.layers).toHaveLength(a.layers);
      const r = a.heads / a.groups;
      for (const l of linears(pruned).filter((x) => x.name.includes('self_attn'))) {
        if (l.name.endsWith('q_proj')) expect([l.outFeatures, l.inFeatures]).toEqual([(a.groups - 1) * r * a.headDim, a.hidden]);
        if (/[kv]_proj$/.test(l.name)) expect([l.outFeatures, l.inFeatures]).toEqual([(a.groups - 1) * a.headDim, a.hidden]);
        if (l.name.endsWith('o_proj')) expect([l.outFeatures, l.inFeatures]).toEqual([a.hidden, (a.groups - 1) * r * a.headDim]);
      }
      // one group: r·d q rows, d k rows, d v rows (each `hidden` wide) and r·d o_proj columns (`hidden` tall)
      expect(before - modelSize(pruned).params).toBe(a.layers * a.hidden * a.headDim * (2 * r + 2));
      // every node input still resolves (no dangling shape constants)
      const index = new GraphIndex(pruned.graph);
      const known = new Set([...(pruned.graph.input ?? []).map((v) => v.name), ...(pruned.graph.initializer ?? []).map((t) => t.name), ...index.producer.keys()]);
      for (const n of pruned.graph.node ?? []) for (const i of n.input ?? []) if (i) expect(known.has(i), `${n.name} reads ${i}`).toBe(true);

      const reference = loadModel(a.path);
      zeroGroups(reference, removedOf(result.layers), a);
      for (const [batch, seq] of [[1, 7], [2, 33]] as const) {
        const cmp = allClose(await logits(pruned, batch, seq, a.vocab), await logits(reference, batch, seq, a.vocab), 1e-4, 1e-4);
        expect(cmp.relFro, `[${batch},${seq}] ${cmp.worst}`).toBeLessThanOrEqual(1e-5); // measured 0 on all four (the zero columns add exact zeros); pruned vs original differ by ~1e-1
      }
    });
  }

  it('weight importance removes the group with the smallest ‖W_o[:, g]‖·(‖W_q[g]‖+‖W_k[g]‖+‖W_v[g]‖), computed in float64', async () => {
    const model = loadModel(STORIES_EXPORT);
    const original = linears(model);
    const expected: number[] = [];
    for (let b = 0; b < 5; b++) {
      const W = Object.fromEntries(['q', 'k', 'v', 'o'].map((p) => [p, readWeight(model, original.find((l) => l.name === `layers.${b}.self_attn.${p}_proj`)!)]));
      const norm = (M: Float32Array, cols: number, pick: (r: number, c: number) => boolean, rows: number) => {
        let s = 0;
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if (pick(r, c)) s += M[r * cols + c]! ** 2;
        return Math.sqrt(s);
      };
      const scores = [0, 1, 2, 3].map((g) => {
        const qs = norm(W.q!, 64, (r) => r >= g * 16 && r < (g + 1) * 16, 64);
        const kv = (M: Float32Array) => norm(M, 64, (r) => r >= g * 8 && r < (g + 1) * 8, 32);
        const o = norm(W.o!, 64, (_, c) => c >= g * 16 && c < (g + 1) * 16, 64);
        return o * (qs + kv(W.k!) + kv(W.v!));
      });
      expected.push(scores.indexOf(Math.min(...scores)));
    }
    const result = await heads.apply(model, { sparsity: 0.25, importance: 'weight' }, ctxFor(model));
    expect(removedOf(result.layers)).toEqual(expected.map((g) => [g]));
  });

  it('activation importance removes the group with the smallest Σ_c ‖X_c‖·‖W_o[:, c]‖ over captured o_proj inputs', async () => {
    const model = loadModel(STORIES_EXPORT);
    const r = seededRandom(3);
    const feeds = [0, 1, 2].map(() => ({ input_ids: new ort.Tensor('int64', BigInt64Array.from({ length: 40 }, () => BigInt(Math.floor(r() * 512))), [1, 40]) }));
    // independent statistics: capture o_proj inputs and sum squares per channel in float64
    const os = oProjs(model);
    const capture = await captureSession(model, os.map((o) => o.input), { threads: 1 });
    const sq = os.map(() => new Float64Array(64));
    for (const f of feeds) {
      const out = await capture.run(f, os.map((o) => o.input));
      os.forEach((o, b) => {
        const x = out[o.input]!.data as Float32Array;
        for (let i = 0; i < x.length; i++) sq[b]![i % 64] += x[i]! ** 2;
      });
    }
    await capture.release();
    const expected = os.map((o, b) => {
      const W = readWeight(model, o);
      const col = (c: number) => Math.sqrt(Array.from({ length: 64 }, (_, row) => W[row * 64 + c]! ** 2).reduce((s, v) => s + v, 0));
      const scores = [0, 1, 2, 3].map((g) => Array.from({ length: 16 }, (_, i) => g * 16 + i).reduce((s, c) => s + Math.sqrt(sq[b]![c]!) * col(c), 0));
      return [scores.indexOf(Math.min(...scores))];
    });
    const result = await heads.apply(model, { sparsity: 0.25, importance: 'activation' }, ctxFor(model, new Calibrator(feeds, 'oneshot', 1)));
    expect(removedOf(result.layers)).toEqual(expected);
  });

  it('keeps at least one group, and leaves a block whole when the fraction rounds to none', async () => {
    const model = loadModel(STORIES_EXPORT);
    const most = await heads.apply(model, { sparsity: 0.95, importance: 'weight' }, ctxFor(model));
    expect(most.layers.every((l) => l.extra!.kv_groups_after === 1 && l.extra!.heads_after === 2)).toBe(true);
    expect((await logits(model, 1, 9, 512)).every(Number.isFinite)).toBe(true);
    const whole = loadModel(STORIES_EXPORT);
    const none = await heads.apply(whole, { sparsity: 0.1, importance: 'weight' }, ctxFor(whole));
    expect(none.layers).toHaveLength(0);
    expect(none.warnings).toHaveLength(5);
  });

  it('refuses, naming the node, a graph with a per-head constant on the scores, and changes nothing', async () => {
    const model = loadModel(STORIES_BUILT);
    // an ALiBi-like bias [1, 8, 1, 1] added to layer 2's attention scores
    const nodes = model.graph.node!;
    const at = nodes.findIndex((n) => n.name === '/layers.2/self_attn/Add');
    const add = nodes[at]!;
    model.setInitializer({ name: 'per_head_bias', dataType: 1, dims: [1, 8, 1, 1], data: new Uint8Array(new Float32Array(8).fill(0.5).buffer) });
    nodes.splice(at + 1, 0, { op_type: 'Add', name: '/layers.2/self_attn/alibi', input: [add.output![0]!, 'per_head_bias'], output: ['alibi_out'] });
    for (const n of nodes.slice(at + 2)) n.input = (n.input ?? []).map((i) => (i === add.output![0] ? 'alibi_out' : i));
    const weightsBefore = linears(model).map((l) => l.outFeatures * l.inFeatures);
    const run = heads.apply(model, { sparsity: 0.25, importance: 'weight' }, ctxFor(model));
    await expect(run).rejects.toThrow(UserError);
    await expect(run).rejects.toThrow(/layers\.2\.self_attn.*'\/layers\.2\/self_attn\/alibi'.*one value per head/);
    expect(linears(model).map((l) => l.outFeatures * l.inFeatures)).toEqual(weightsBefore);
  });

  it('a pruned safetensors checkpoint is written back with 6 heads, 3 KV heads and head_dim 8 in config.json, and reloads to the same logits', async () => {
    const pruned = loadModel(STORIES_BUILT);
    await heads.apply(pruned, { sparsity: 0.25, importance: 'weight' }, ctxFor(pruned));
    const { dir, cleanup } = tempDir();
    try {
      writeModelAsSafetensors(pruned, join(dir, 'model.safetensors'));
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      expect([config.num_attention_heads, config.num_key_value_heads, config.head_dim]).toEqual([6, 3, 8]);
      const reloaded = loadModel(join(dir, 'model.safetensors'));
      const cmp = allClose(await logits(reloaded, 2, 19, 512), await logits(pruned, 2, 19, 512), 1e-5, 1e-5);
      expect(cmp.relFro, cmp.worst).toBeLessThanOrEqual(1e-6);
    } finally {
      cleanup();
    }
  });

  it('refuses targets without attention projections', async () => {
    const model = loadModel(STORIES_EXPORT);
    const ctx = { ...ctxFor(model), layers: linears(model).filter((l) => l.name.includes('.mlp.')) };
    await expect(heads.apply(model, { sparsity: 0.25, importance: 'weight' }, ctx)).rejects.toThrow(/passes\[0\]\.targets select no attention block/);
  });
});
