/**
 * OWL (outlier-weighted layerwise sparsity) against uniform sparsity, SparseGPT and Wanda at 60 %,
 * on stories260K (calibration stories 1–10 in 128-token segments, eval stories 11–46) and on
 * shakespeare-char when ../shared is there (calibration 32 × 256 tokens of train.u16.bin, eval the
 * first 64 × 256 windows of val.u16.bin). Each row is one `pare compress` run; bytes and bits per
 * weight come from its report (src/model/size.ts, the same count for every method).
 * Run: npx tsc -p tsconfig.json && node dist/bench/owl.js
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { run } from '../src/cli/main.js';

const ROOT = resolve(import.meta.dirname, '../..');
const SHARED = resolve(ROOT, '../shared');

interface BenchModel {
  name: string;
  path: string;
  calibration: Record<string, unknown>;
  eval: Record<string, unknown>;
}

const STORIES_TEXT = { kind: 'text', path: join(ROOT, 'fixtures/tinystories/valid-head.txt'), tokenizer: join(ROOT, 'fixtures/stories260K/tok512.bin') };
const MODELS: BenchModel[] = [
  { name: 'stories260K', path: join(ROOT, 'fixtures/stories260K/model.onnx'), calibration: { data: { ...STORIES_TEXT, select: '1-10', segment: 128 }, samples: 128 }, eval: { data: { ...STORIES_TEXT, select: '11-46' } } },
  {
    name: 'shakespeare-char',
    path: join(SHARED, 'models/shakespeare-char/model.onnx'),
    calibration: { data: { kind: 'tokens', path: join(SHARED, 'models/shakespeare-char/train.u16.bin'), dtype: 'uint16', seq_len: 256, count: 32, offset: 0 }, samples: 32 },
    eval: { data: { kind: 'tokens', path: join(SHARED, 'models/shakespeare-char/val.u16.bin'), dtype: 'uint16', seq_len: 256, count: 64, offset: 0 } },
  },
];

const ROWS: { label: string; pass: string; params: Record<string, unknown> }[] = [
  { label: 'SparseGPT 60 % uniform', pass: 'prune.sparsegpt', params: { sparsity: 0.6 } },
  { label: 'SparseGPT 60 % OWL (block, M 5, λ 0.08)', pass: 'prune.sparsegpt', params: { sparsity: 0.6, owl: { unit: 'block' } } },
  { label: 'SparseGPT 60 % OWL (layer, M 5, λ 0.08)', pass: 'prune.sparsegpt', params: { sparsity: 0.6, owl: { unit: 'layer' } } },
  { label: 'Wanda 60 % uniform', pass: 'prune.wanda', params: { sparsity: 0.6 } },
  { label: 'Wanda 60 % OWL (block, M 5, λ 0.08)', pass: 'prune.wanda', params: { sparsity: 0.6, owl: { unit: 'block' } } },
  { label: 'Wanda 60 % OWL (layer, M 5, λ 0.08)', pass: 'prune.wanda', params: { sparsity: 0.6, owl: { unit: 'layer' } } },
];

export async function benchOwl(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'pare-bench-owl-'));
  const lines = ['| model | method | perplexity | Δ vs dense | sparsity (block linears) | file bytes | bits/weight | per-unit sparsity | wall (s) | CPU (s) |', '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |'];
  try {
    for (const model of MODELS) {
      if (!existsSync(model.path)) {
        lines.push(`| ${model.name} | skipped: no ${model.path} | | | | | | | | |`);
        continue;
      }
      let dense: number | undefined;
      for (const [i, row] of ROWS.entries()) {
        const recipe = join(dir, `${model.name}-${i}.yaml`);
        writeFileSync(recipe, JSON.stringify({ version: 1, calibration: model.calibration, passes: [{ pass: row.pass, targets: ['layers.*'], params: row.params }], eval: model.eval }));
        const report = join(dir, `${model.name}-${i}.json`);
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        const code = await run(['compress', model.path, '-r', recipe, '-o', join(dir, `${model.name}-${i}.onnx`), '--report', report], { out: () => {}, err: () => {}, fancy: false });
        const cpu = process.cpuUsage(c0);
        const seconds = (performance.now() - t0) / 1000;
        if (code !== 0) {
          lines.push(`| ${model.name} | ${row.label} | failed (exit ${code}) | | | | | | | |`);
          continue;
        }
        const r = JSON.parse(readFileSync(report, 'utf8'));
        const m = r.measurements;
        const ppl = m.model.quality.perplexity as number;
        if (dense === undefined) {
          dense = m.reference.quality.perplexity as number;
          lines.push(`| ${model.name} | dense fp32 | ${dense.toFixed(3)} | – | 0 % | ${m.reference.size.file_bytes} | ${m.reference.size.bits_per_weight.toFixed(2)} | | – | – |`);
        }
        const pass = r.passes.at(-1);
        let zeros = 0;
        let total = 0;
        for (const l of pass.layers) {
          const n = l.shape[0] * l.shape[1];
          zeros += l.sparsity * n;
          total += n;
        }
        const units = (pass.summary?.owl_units as string | undefined)?.replace(/\(D [^)]*\)/g, '').replace(/ +,/g, ',').trim() ?? 'uniform';
        lines.push(`| ${model.name} | ${row.label} | ${ppl.toFixed(3)} | ${(((ppl - dense) / dense) * 100).toFixed(1)} % | ${((zeros / total) * 100).toFixed(2)} % | ${m.model.size.file_bytes} | ${m.model.size.bits_per_weight.toFixed(2)} | ${units.length > 200 ? 'per layer (see report)' : units} | ${seconds.toFixed(1)} | ${((cpu.user + cpu.system) / 1e6).toFixed(1)} |`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await benchOwl());
}
