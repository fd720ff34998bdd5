import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { loadModel } from '../../../src/model/load.js';
import { PASSES } from '../../../src/pipeline/registry.js';
import { runCli } from '../../cli/run-cli.js';
import { allClose, tempDir } from '../../helpers.js';
import { argmax, Decoder, position } from '../kv-decode.js';
import { randomTokens, writeTokenFile, type TinyCheckpoint, type TinyFamily } from './checkpoints.js';

/**
 * Every registered pass on one family's tiny checkpoint, table-driven: each case is a small recipe
 * (calibration: random token ids from a file) run through `pare compress` in-process. A pass that
 * applies must exit 0, report the layers it changed, and leave a model that keeps the KV-cache I/O,
 * decodes with the cache exactly as by re-running, and (for exact rewrites) computes what the input
 * did. A pass that cannot apply to the family must exit 2 with one line saying why (`refuses`).
 */

export interface PassCase {
  /** the pass id, as registered */
  id: string;
  /** the recipe's `passes:` entries (YAML, indented two spaces) */
  passes: string;
  calibration?: boolean;
  /** the one-line reason the family cannot take this pass */
  refuses?: RegExp;
  /** outputs equal the input's within this relative Frobenius error (rewrites exact in float) */
  exact?: number;
}

const pass = (id: string, targets: string, params = '') => `  - pass: ${id}\n    targets: [${targets}]\n${params ? `    params: { ${params} }\n` : ''}`;

/** One small case per registered pass, for a Llama-architecture checkpoint's layer names. */
export const PASS_CASES: readonly PassCase[] = [
  { id: 'prune.magnitude', passes: pass('prune.magnitude', '"layers.*"', 'sparsity: 0.5') },
  { id: 'prune.sparsegpt', passes: pass('prune.sparsegpt', '"layers.*"', 'sparsity: 0.5, block_size: 16'), calibration: true },
  { id: 'prune.wanda', passes: pass('prune.wanda', '"layers.*"', 'pattern: "2:4"'), calibration: true },
  { id: 'prune.channels', passes: pass('prune.channels', '"layers.*.mlp.*"', 'sparsity: 0.25'), calibration: true },
  { id: 'prune.heads', passes: pass('prune.heads', '"layers.*.self_attn.*"', 'sparsity: 0.5'), calibration: true },
  { id: 'prune.layers', passes: pass('prune.layers', '"layers.*"', 'count: 1'), calibration: true },
  { id: 'quantize.rtn', passes: pass('quantize.rtn', '"layers.*.self_attn.*"', 'bits: 8') + pass('quantize.rtn', '"layers.*.mlp.gate_proj", "layers.*.mlp.up_proj"', 'bits: 4, granularity: group, group_size: 16') },
  { id: 'quantize.gptq', passes: pass('quantize.gptq', '"layers.*"', 'bits: 4, granularity: channel, block_size: 16'), calibration: true },
  // AWQ alone only rescales and folds: the float outputs stay
  { id: 'quantize.awq', passes: pass('quantize.awq', '"layers.*"', 'bits: 4, granularity: group, group_size: 16'), calibration: true, exact: 1e-5 },
  { id: 'quantize.mixed', passes: pass('quantize.mixed', '"layers.*"', 'budget_bits: 9, bits: [4, 8], group_sizes: [16], sensitivity: output, block_size: 16'), calibration: true },
  // reconstruction trains the codes a quantizer wrote
  { id: 'quantize.reconstruct', passes: pass('quantize.rtn', '"layers.*"', 'bits: 4, granularity: group, group_size: 16, format: matmulnbits') + pass('quantize.reconstruct', '"layers.*"', 'epochs: 1'), calibration: true },
  // trellis-coded weights: a constant decoder subgraph ORT folds at load
  { id: 'quantize.trellis', passes: pass('quantize.trellis', '"layers.*"', 'bits: 2, state_bits: 8, block_size: 16'), calibration: true },
  { id: 'quantize.smoothquant', passes: pass('quantize.smoothquant', '"layers.*"', 'alpha: 0.5'), calibration: true, exact: 1e-5 },
  // an orthogonal rotation of the residual stream: exact in float
  { id: 'quantize.rotate', passes: '  - pass: quantize.rotate\n', exact: 1e-5 },
  { id: 'quantize.w8a8', passes: pass('quantize.w8a8', '"layers.*"') },
  { id: 'quantize.cast', passes: pass('quantize.cast', '"*"', 'dtype: float16') },
  // graph-wide passes select no layers; hidden 48 takes blocks of 16
  { id: 'quantize.embeddings', passes: pass('quantize.embeddings', '"*"', 'bits: 8, block_size: 16') },
  { id: 'quantize.f16', passes: pass('quantize.f16', '"*"', 'io: float32') },
  // a QDQ int8 model made by quantize.rtn, back to float
  { id: 'quantize.dequantize', passes: pass('quantize.rtn', '"layers.*"', 'bits: 8') + '  - pass: quantize.dequantize\n' },
  { id: 'decompose.svd', passes: pass('decompose.svd', '"layers.*"', 'ratio: 0.5') },
  { id: 'decompose.kronecker', passes: pass('decompose.kronecker', '"layers.*.mlp.up_proj"', 'm1: 8, n1: 6, terms: 2') },
  { id: 'share.embeddings', passes: pass('share.embeddings', '"lm_head"', 'max_relative_change: 2') },
  { id: 'share.layers', passes: pass('share.layers', '"layers.*"', 'pairs: 1'), calibration: true },
  {
    id: 'distill.kd',
    passes: pass('prune.magnitude', '"layers.*"', 'sparsity: 0.5') + pass('distill.kd', '"layers.*"', 'steps: 3, batch_size: 2, seq_len: 16, samples: 4, warmup: 1, start_token: 1, checkpoint_every: 0'),
  },
];

/** A tied head has no copy of its own to share. */
export const TIED_HEAD_REFUSAL = /^share\.embeddings: passes\[0\]\.targets select no \d+→\d+ projection with its own weight \(already tied\?\)$/;

/**
 * Registers one test per registered pass for `family`; `adjust` changes a case by pass id (a family
 * whose head is tied refuses share.embeddings, for instance).
 */
export function everyPassTests(family: TinyFamily, checkpoint: () => TinyCheckpoint, adjust: Readonly<Record<string, Partial<PassCase>>> = {}): void {
  const vocab = family.config.vocab_size as number;
  const tmp = tempDir(`pare-passes-${family.modelType}-`);
  afterAll(() => tmp.cleanup());
  const tokens = () => writeTokenFile(join(tmp.dir, 'calibration.u16'), vocab, 16 * 8, 5);

  it(`${family.modelType}: the table has one case for every registered pass`, () => {
    expect(PASS_CASES.map((c) => c.id).sort()).toEqual(PASSES.map((p) => p.id).sort());
  });

  for (const base of PASS_CASES) {
    const c = { ...base, ...adjust[base.id] };
    it(`${family.modelType}: ${c.id} ${c.refuses ? 'refuses in one line' : 'runs; the result keeps the KV cache and decodes with it as without'}`, async () => {
      const ck = checkpoint();
      const calibration = c.calibration ? `calibration:\n  data: { kind: tokens, path: ${tokens()}, dtype: uint16, seq_len: 16, count: 8 }\n  samples: 8\n` : '';
      const recipe = join(tmp.dir, `${c.id}.yaml`);
      writeFileSync(recipe, `version: 1\n${calibration}passes:\n${c.passes}`);
      const out = join(tmp.dir, `${c.id}.onnx`);
      const r = await runCli(['compress', ck.path, '-r', recipe, '-o', out, '--json', '--threads', '1']);
      if (c.refuses) {
        expect(r.code, r.err).toBe(2);
        const lines = r.err.trim().split('\n');
        expect(lines.at(-1)!.replace(/^pare: /, '')).toMatch(c.refuses);
        return;
      }
      expect(r.code, r.err).toBe(0);
      const report = JSON.parse(r.out) as { passes: { pass: string; layers: unknown[] }[] };
      for (const p of report.passes) expect(p.layers.length, `${p.pass} changed no layer`).toBeGreaterThan(0);
      await checkDecoding(out, vocab, c.exact === undefined ? undefined : { input: ck.path, bound: c.exact });
    });
  }
}

/** The output keeps the KV cache, and greedy decoding with it equals re-running (and, when exact, equals the input's logits). */
async function checkDecoding(path: string, vocab: number, exact?: { input: string; bound: number }): Promise<void> {
  const model = loadModel(path);
  // float32 arithmetic in fused int8 layers, so cached and full decoding run the same numbers
  const float32 = { qdqMatMulNBitsAccuracyLevel: 0 } as const;
  const [cached, full] = [await Decoder.open(model, undefined, float32), await Decoder.open(model, undefined, float32)];
  try {
    expect(cached.io.kv, 'the KV-cache I/O is gone').toBeDefined();
    const seqs = randomTokens(vocab, 2, 6, 3);
    if (exact) {
      const input = loadModel(exact.input);
      const original = await Decoder.open(input);
      try {
        const c = allClose(await full.full(seqs), await original.full(seqs), exact.bound, exact.bound);
        expect(c.relFro, c.worst).toBeLessThanOrEqual(exact.bound);
      } finally {
        await original.release();
        input.close();
      }
    }
    let next = await cached.step(seqs);
    for (let s = 0; s < 4; s++) {
      const len = seqs[0]!.length;
      const ref = await full.full(seqs);
      const stepLen = s === 0 ? len : 1;
      const chosen = seqs.map((_, b) => {
        const got = position(next, vocab, stepLen, b, stepLen - 1);
        const c = allClose(got, position(ref, vocab, len, b, len - 1), 1e-4, 1e-5);
        expect(c.ok, `step ${s} row ${b}: ${c.worst}`).toBe(true);
        expect(got.every(Number.isFinite)).toBe(true);
        return argmax(got);
      });
      seqs.forEach((row, b) => row.push(chosen[b]!));
      next = await cached.step(chosen.map((t) => [t]));
    }
  } finally {
    await cached.release();
    await full.release();
    model.close();
  }
}
