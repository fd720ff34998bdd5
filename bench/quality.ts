/**
 * Quality of every pass on stories260K under the protocol of the pruning and quantization issues:
 * calibration = stories 1–10 of valid-head.txt (BOS-encoded, concatenated, 128-token segments);
 * eval = stories 11–46 (BOS, ≤ 512 tokens); targets = the 35 block linears (W8A8 rows: every linear, lm_head included). Each row is one
 * `pare compress` run of a generated recipe; perplexities come from its report.
 * Run: npx tsc -p tsconfig.json && node dist/bench/quality.js
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { run } from '../src/cli/main.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');
const TEXT = join(ROOT, 'fixtures/tinystories/valid-head.txt');
const TOK = join(ROOT, 'fixtures/stories260K/tok512.bin');

export interface QualityRow {
  label: string;
  pass: string;
  params: Record<string, unknown>;
  targets?: string[];
  ignore?: string[];
  /** a pass run first (e.g. SmoothQuant before W8A8) */
  before?: { pass: string; params: Record<string, unknown> };
}

export const QUALITY_ROWS: QualityRow[] = [
  { label: 'magnitude 50 %', pass: 'prune.magnitude', params: { sparsity: 0.5 } },
  { label: 'Wanda 50 %', pass: 'prune.wanda', params: { sparsity: 0.5 } },
  { label: 'SparseGPT 50 %', pass: 'prune.sparsegpt', params: { sparsity: 0.5 } },
  { label: 'magnitude 2:4', pass: 'prune.magnitude', params: { pattern: '2:4' } },
  { label: 'Wanda 2:4', pass: 'prune.wanda', params: { pattern: '2:4' } },
  { label: 'SparseGPT 2:4', pass: 'prune.sparsegpt', params: { pattern: '2:4' } },
  { label: 'FFN channels 30 % (activation importance)', pass: 'prune.channels', params: { sparsity: 0.3, importance: 'activation' }, targets: ['layers.*.mlp.*'] },
  { label: 'FFN channels 30 % (weight importance)', pass: 'prune.channels', params: { sparsity: 0.3, importance: 'weight' }, targets: ['layers.*.mlp.*'] },
  { label: 'attention heads: 1 of 4 KV groups per layer (activation importance)', pass: 'prune.heads', params: { sparsity: 0.25, importance: 'activation' }, targets: ['layers.*.self_attn.*'] },
  { label: 'remove 1 block (angular distance)', pass: 'prune.layers', params: { count: 1 } },
  { label: 'SVD, 75 % of params', pass: 'decompose.svd', params: { ratio: 0.75 } },
  { label: 'activation-aware SVD, 75 % of params', pass: 'decompose.svd', params: { ratio: 0.75, activation_aware: true } },
  { label: 'SVD, 50 % of params', pass: 'decompose.svd', params: { ratio: 0.5 } },
  { label: 'activation-aware SVD, 50 % of params', pass: 'decompose.svd', params: { ratio: 0.5, activation_aware: true } },
  { label: 'Kronecker, 75 % of params (shape and terms from the budget)', pass: 'decompose.kronecker', params: { ratio: 0.75 } },
  { label: 'Kronecker, 75 % of params + permutation search (structure + 2 greedy rounds)', pass: 'decompose.kronecker', params: { ratio: 0.75, permute: true, permutation_rounds: 2 } },
  { label: 'Kronecker, 75 % of params, iterative (output-aware ALS, 3 sweeps, sequential)', pass: 'decompose.kronecker', params: { ratio: 0.75, mode: 'iterative', als_iterations: 3 } },
  { label: 'Kronecker, 50 % of params (shape and terms from the budget)', pass: 'decompose.kronecker', params: { ratio: 0.5 } },
  { label: 'Kronecker, 50 % of params + permutation search (structure + 2 greedy rounds)', pass: 'decompose.kronecker', params: { ratio: 0.5, permute: true, permutation_rounds: 2 } },
  { label: 'share 2 block pairs (MobileLLM-LS)', pass: 'share.layers', params: { pairs: 2 } },
  { label: 'RTN int8 per-channel (DequantizeLinear)', pass: 'quantize.rtn', params: { bits: 8, granularity: 'channel' } },
  { label: 'RTN 4-bit per-channel', pass: 'quantize.rtn', params: { bits: 4, granularity: 'channel', symmetric: false } },
  { label: 'GPTQ 4-bit per-channel', pass: 'quantize.gptq', params: { bits: 4, granularity: 'channel', symmetric: false } },
  { label: 'RTN 3-bit per-channel', pass: 'quantize.rtn', params: { bits: 3, granularity: 'channel', symmetric: false } },
  { label: 'GPTQ 3-bit per-channel', pass: 'quantize.gptq', params: { bits: 3, granularity: 'channel', symmetric: false } },
  { label: 'RTN 4-bit group 32 (MatMulNBits; down_proj, 172 wide, left fp32)', pass: 'quantize.rtn', params: { bits: 4, granularity: 'group', group_size: 32, symmetric: false }, ignore: ['layers.*.mlp.down_proj'] },
  { label: 'GPTQ 4-bit group 32 (MatMulNBits; down_proj left fp32)', pass: 'quantize.gptq', params: { bits: 4, granularity: 'group', group_size: 32, symmetric: false }, ignore: ['layers.*.mlp.down_proj'] },
  { label: 'RTN 3-bit group 32 (MatMulNBits; down_proj left fp32)', pass: 'quantize.rtn', params: { bits: 3, granularity: 'group', group_size: 32, symmetric: false }, ignore: ['layers.*.mlp.down_proj'] },
  { label: 'GPTQ 3-bit group 32 (MatMulNBits; down_proj left fp32)', pass: 'quantize.gptq', params: { bits: 3, granularity: 'group', group_size: 32, symmetric: false }, ignore: ['layers.*.mlp.down_proj'] },
  { label: 'W8A8 per-token activations (MatMulInteger)', pass: 'quantize.w8a8', params: {}, targets: ['*'] },
  { label: 'SmoothQuant α 0.5 + W8A8', pass: 'quantize.w8a8', params: {}, targets: ['*'], before: { pass: 'quantize.smoothquant', params: { alpha: 0.5 } } },
  { label: 'float16 weights', pass: 'quantize.cast', params: { dtype: 'float16' } },
];

function recipeYaml(row: QualityRow): string {
  return JSON.stringify({
    version: 1,
    calibration: { data: { kind: 'text', path: TEXT, tokenizer: TOK, select: '1-10', segment: 128 }, samples: 128 },
    passes: [
      ...(row.before ? [{ pass: row.before.pass, targets: row.targets ?? ['layers.*'], params: row.before.params }] : []),
      { pass: row.pass, targets: row.targets ?? ['layers.*'], ignore: row.ignore ?? [], params: row.params },
    ],
    eval: { data: { kind: 'text', path: TEXT, tokenizer: TOK, select: '11-46' } },
  });
}

export async function benchQuality(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'pare-bench-quality-'));
  const lines = [
    '| method | targets | perplexity | Δ vs dense | file bytes | time (s) |',
    '| --- | --- | ---: | ---: | ---: | ---: |',
  ];
  let dense: number | undefined;
  try {
    for (const [i, row] of QUALITY_ROWS.entries()) {
      const recipe = join(dir, `r${i}.yaml`);
      writeFileSync(recipe, recipeYaml(row));
      const report = join(dir, `r${i}.json`);
      const t0 = performance.now();
      const code = await run(['compress', MODEL, '-r', recipe, '-o', join(dir, `m${i}.onnx`), '--report', report], { out: () => {}, err: () => {}, fancy: false });
      const seconds = (performance.now() - t0) / 1000;
      if (code !== 0) {
        lines.push(`| ${row.label} | – | failed (exit ${code}) | | | |`);
        continue;
      }
      const r = JSON.parse(readFileSync(report, 'utf8'));
      const ref = r.measurements.reference.quality.perplexity as number;
      const ppl = r.measurements.model.quality.perplexity as number;
      if (dense === undefined) {
        dense = ref;
        lines.splice(2, 0, `| dense fp32 | – | ${ref.toFixed(3)} | – | ${r.measurements.reference.size.file_bytes} | – |`);
      }
      const layers = r.passes.at(-1).layers.length;
      const what = row.pass === 'share.layers' ? r.passes.at(-1).layers.map((l: { name: string; extra: { shares_weights_of: string } }) => `${l.name} reuses ${l.extra.shares_weights_of}`).join(', ') : row.pass === 'prune.channels' ? `${layers} MLPs` : row.pass === 'prune.heads' ? `${layers} attention blocks` : row.pass === 'prune.layers' ? `${r.passes.at(-1).layers.map((l: { name: string }) => l.name).join(', ')} removed` : `${layers} linears`;
      lines.push(`| ${row.label} | ${what} | ${ppl.toFixed(3)} | ${(((ppl - dense) / dense) * 100).toFixed(1)} % | ${r.measurements.model.size.file_bytes} | ${seconds.toFixed(1)} |`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join('\n');
}

/** Structured conv pruning on squeezenet-cifar10, evaluated on the CIFAR-10 test set. */
export async function benchConvQuality(): Promise<string> {
  const shared = resolve(ROOT, '../shared');
  const dir = mkdtempSync(join(tmpdir(), 'pare-bench-conv-'));
  const lines = ['| model | method | top-1 | file bytes | params |', '| --- | --- | ---: | ---: | ---: |'];
  try {
    for (const sparsity of [0.3, 0.5]) {
      const recipe = join(dir, `conv${sparsity}.yaml`);
      writeFileSync(recipe, JSON.stringify({
        version: 1,
        passes: [{ pass: 'prune.channels', targets: ['*'], params: { sparsity, importance: 'weight' } }],
        eval: { data: { kind: 'images', path: join(shared, 'data/cifar10/test_x_u8_nhwc_10000x32x32x3.bin'), labels: join(shared, 'data/cifar10/test_y_u8_10000.bin'), shape: [32, 32, 3], layout: 'nhwc', scale: 1 / 255 } },
      }));
      const report = join(dir, `conv${sparsity}.json`);
      const code = await run(['compress', join(shared, 'models/squeezenet-cifar10/model.onnx'), '-r', recipe, '-o', join(dir, `conv${sparsity}.onnx`), '--report', report], { out: () => {}, err: () => {}, fancy: false });
      if (code !== 0) {
        lines.push(`| squeezenet-cifar10 | conv channels ${sparsity * 100} % | failed (exit ${code}) | | |`);
        continue;
      }
      const r = JSON.parse(readFileSync(report, 'utf8'));
      const m = r.measurements;
      if (sparsity === 0.3) lines.push(`| squeezenet-cifar10 | dense | ${(m.reference.quality.top1 * 100).toFixed(2)} % | ${m.reference.size.file_bytes} | ${m.reference.size.params} |`);
      lines.push(`| squeezenet-cifar10 | conv channels ${sparsity * 100} % (filter L2 norm, no recovery) | ${(m.model.quality.top1 * 100).toFixed(2)} % | ${m.model.size.file_bytes} | ${m.model.size.params} |`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await benchQuality());
  console.log();
  console.log(await benchConvQuality());
}
