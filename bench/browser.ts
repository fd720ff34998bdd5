/**
 * Shipping to the browser, measured in onnxruntime-web's wasm backend (one thread, in Node) beside
 * onnxruntime-node:
 *   - the bytes of MobileLLM-125M (seeded random weights, KV-cache graph) as fp32, q4 (block linears
 *     4-bit g32 MatMulNBits) and q4f16 + quantized embeddings (q4, the token embedding 4-bit g32 read
 *     by GatherBlockQuantized with the tied head on the same codes, then quantize.f16); target: q4f16
 *     at most 0.16× the fp32 bytes;
 *   - stories260K q4 (GPTQ, group 32) perplexity in onnxruntime-web against onnxruntime-node; target:
 *     within 0.5 %;
 *   - the quality cost of quantize.embeddings on stories260K (and shakespeare-char when ../shared is there);
 *   - batch-1 decode speed with the KV cache (tokens/s of one-token steps after an 8-token prompt)
 *     for fp32, q4 and q4f16, in onnxruntime-web and onnxruntime-node, one thread each.
 * Every file is written under a temporary folder and removed at the end.
 * Run: npx tsc -p tsconfig.json && node dist/bench/browser.js [--no-mobilellm]
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Calibrator } from '../src/calibrate/calibrator.js';
import { calibrationFeeds } from '../src/calibrate/feeds.js';
import { loadDataset } from '../src/data/load.js';
import type { DatasetSpec } from '../src/data/spec.js';
import type { TokenDataset } from '../src/data/types.js';
import { generate, openCausalLm } from '../src/eval/generate.js';
import { evaluateCausalLM } from '../src/eval/lm.js';
import { modelIo } from '../src/model/io.js';
import { linears } from '../src/model/linears.js';
import { loadModel } from '../src/model/load.js';
import type { Model } from '../src/model/model.js';
import { readOnnx, writeOnnx } from '../src/model/onnx-io.js';
import { fileBytes } from '../src/model/size.js';
import { configurePass, type Pass, type PassContext } from '../src/pass/pass.js';
import { embeddings } from '../src/quantize/embeddings.js';
import { f16 } from '../src/quantize/f16.js';
import { gptq } from '../src/quantize/gptq.js';
import { rtn } from '../src/quantize/rtn.js';
import { resolveKvShapes } from '../src/runtime/kv-shapes.js';
import { openSession } from '../src/runtime/open.js';
import { ortWebVersion } from '../src/runtime/ort-web.js';
import { ortVersion } from '../src/runtime/ort.js';
import type { RuntimeName } from '../src/runtime/session.js';
import { generateCheckpoint, MODELS } from '../fixtures/generate-models.js';
import { measureLatency } from '../src/eval/latency.js';
import { mlpStack } from './latency.js';
import { BLOCK_LINEAR } from './models.js';

const ROOT = resolve(import.meta.dirname, '../..');
const FIXTURES = join(ROOT, 'fixtures');
const SHARED = resolve(ROOT, '../shared');
const Q4 = { bits: 4, granularity: 'group', group_size: 32, symmetric: true, format: 'matmulnbits', accuracy_level: 0 };
const noProgress = { layer() {} };

function context(model: Model, pass: Pass, filter: (name: string) => boolean, calibration?: Calibrator): PassContext {
  const layers = pass.graphWide ? [] : linears(model).filter((l) => filter(l.name));
  return { layers, seed: 0, random: seededUniform(7), calibration, progress: noProgress, where: 'bench' };
}

function seededUniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function run(model: Model, pass: Pass, params: Record<string, unknown>, filter: (name: string) => boolean = () => true, calibration?: Calibrator): Promise<void> {
  await configurePass(pass, params).apply(model, context(model, pass, filter, calibration));
}

type Variant = 'fp32' | 'q4' | 'q4f16';

/** The model at `path` as fp32, q4 or q4f16 + quantized embeddings, written to `out` (with external data when large). */
async function build(path: string, variant: Variant, out: string, filter: (name: string) => boolean, calibration?: (m: Model) => Calibrator, quantizer: Pass = rtn): Promise<string[]> {
  const model = loadModel(path);
  try {
    if (variant !== 'fp32') await run(model, quantizer, Q4, filter, calibration?.(model));
    if (variant === 'q4f16') {
      await run(model, embeddings, { bits: 4, block_size: 32 });
      await run(model, f16, {}, undefined, calibration?.(model));
    }
    return writeOnnx(model, out, { externalData: true, externalThreshold: 1024 }).files;
  } finally {
    model.close();
  }
}

/** tokens/s of one-token decode steps with the KV cache after an 8-token prompt (median of `repeats`). */
async function decodeSpeed(path: string, runtime: RuntimeName, tokens: number, repeats: number): Promise<{ perSecond: number; ms: number }> {
  const lm = await openCausalLm(path, 1, runtime);
  try {
    const prompt = [1, 403, 407, 261, 378, 412, 282, 261].map((t) => t % (lm.io.outputWidth ?? 512));
    await generate(lm, prompt, { maxNewTokens: 4, sampling: { kind: 'greedy' } });
    const rates: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const d = await generate(lm, prompt, { maxNewTokens: tokens + 1, sampling: { kind: 'greedy' } });
      rates.push(d.timing.decode_tokens_per_s ?? 0);
    }
    rates.sort((a, b) => a - b);
    const perSecond = rates[Math.floor(rates.length / 2)]!;
    return { perSecond, ms: 1000 / perSecond };
  } finally {
    await lm.session.release();
  }
}

async function perplexity(path: string, runtime: RuntimeName, data: TokenDataset): Promise<number> {
  const model = readOnnx(path);
  const io = await resolveKvShapes(model, modelIo(model));
  model.close();
  const session = await openSession(runtime, path, { threads: 1 });
  try {
    return (await evaluateCausalLM({ session, io, path }, data, {})).quality.perplexity;
  } finally {
    await session.release();
  }
}

const text = async (select: string, segment?: number): Promise<TokenDataset> =>
  (await loadDataset({ kind: 'text', path: 'tinystories/valid-head.txt', tokenizer: 'stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512, select, ...(segment ? { segment } : {}) } as DatasetSpec, FIXTURES)) as TokenDataset;

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const pct = (x: number) => (x !== 0 && Math.abs(x) < 1e-4 ? `${(x * 100).toExponential(1)} %` : `${(x * 100).toFixed(3)} %`);

/**
 * One-token latency of a stack of MobileLLM-125M-wide MLP blocks (24 × 576→1536→576, the linears
 * alone) as fp32 MatMul and as 4-bit g32 MatMulNBits at accuracy levels 0 and 4, per runtime.
 */
async function gemvRows(work: string): Promise<string[]> {
  const rows: string[] = [];
  const feed = { x: { type: 'float32' as const, data: new Float32Array(576).fill(0.1), dims: [1, 1, 576] } };
  for (const [label, accuracy] of [['fp32 MatMul', undefined], ['4-bit g32 MatMulNBits, accuracy_level 0', 0], ['4-bit g32 MatMulNBits, accuracy_level 4', 4]] as const) {
    const model = mlpStack(576, 1536, 24);
    if (accuracy !== undefined) await run(model, rtn, { ...Q4, accuracy_level: accuracy });
    const out = join(work, 'mlp.onnx');
    writeOnnx(model, out);
    const cells: string[] = [];
    for (const runtime of ['web', 'node'] as RuntimeName[]) {
      const session = await openSession(runtime, out, { threads: 1 });
      cells.push((await measureLatency(session, feed, { runs: 20, warmup: 3, threads: 1, batch: 1 })).median_ms.toFixed(2));
      await session.release();
    }
    rows.push(`| ${label} | ${cells.join(' | ')} |`);
  }
  return rows;
}

/** MobileLLM-125M's bytes per variant (with the target line) and its decode-speed rows. */
async function mobilellm(work: string): Promise<{ sizeLines: string[]; speedRows: string[] }> {
  const dir = join(work, 'mobilellm-125m');
  process.stderr.write('browser: generating MobileLLM-125M\n');
  generateCheckpoint(MODELS['mobilellm-125m']!(), dir, { onnx: false });
  const st = join(dir, 'model.safetensors');
  const sizes: Partial<Record<Variant, number>> = {};
  const speedRows: string[] = [];
  for (const variant of ['fp32', 'q4', 'q4f16'] as Variant[]) {
    process.stderr.write(`browser: MobileLLM-125M ${variant}\n`);
    const out = join(dir, variant, 'model.onnx');
    const files = await build(st, variant, out, (n) => BLOCK_LINEAR.test(n));
    const bytes = fileBytes(readOnnx(out), files);
    sizes[variant] = bytes;
    const web = await decodeSpeed(out, 'web', 16, 3);
    const node = await decodeSpeed(out, 'node', 16, 3);
    speedRows.push(`| MobileLLM-125M | ${variant} | ${mb(bytes)} | ${web.perSecond.toFixed(1)} (${web.ms.toFixed(0)} ms) | ${node.perSecond.toFixed(1)} (${node.ms.toFixed(0)} ms) |`);
    rmSync(join(dir, variant), { recursive: true, force: true });
  }
  const ratio = sizes.q4f16! / sizes.fp32!;
  const sizeLines = [
    '### MobileLLM-125M size (seeded random weights, KV-cache graph, files with external data)',
    '',
    '| variant | bytes | × fp32 |',
    '| --- | ---: | ---: |',
    ...(['fp32', 'q4', 'q4f16'] as const).map((v) => `| ${v === 'q4f16' ? 'q4f16 + quantized embeddings' : v} | ${mb(sizes[v]!)} | ${(sizes[v]! / sizes.fp32!).toFixed(3)} |`),
    '',
    `Target: q4f16 + quantized embeddings ≤ 0.16× fp32 — ${ratio.toFixed(3)}× ${ratio <= 0.16 ? '✓' : '✗'}.`,
    '',
  ];
  return { sizeLines, speedRows };
}

export async function benchBrowser(opts: { mobilellm?: boolean } = {}): Promise<string> {
  const work = mkdtempSync(join(tmpdir(), 'pare-browser-'));
  const lines = [`onnxruntime-web ${ortWebVersion()} (wasm, 1 thread) and onnxruntime-node ${ortVersion()} (1 thread).`, ''];
  try {
    const mobile = opts.mobilellm !== false ? await mobilellm(work) : undefined;
    lines.push(...(mobile?.sizeLines ?? []));

    // stories260K q4 (GPTQ g32) in both runtimes
    process.stderr.write('browser: stories260K GPTQ q4\n');
    const calib = await text('1-10', 128);
    const evalData = await text('11-46');
    const calibrator = (m: Model) => new Calibrator(calibrationFeeds(m, calib, 128), 'sequential', 1);
    const blocks = (n: string) => n.startsWith('layers.') && !n.endsWith('down_proj');
    const q4 = join(work, 'stories-q4', 'model.onnx');
    await build(join(FIXTURES, 'stories260K/model.onnx'), 'q4', q4, blocks, calibrator, gptq);
    const q4Node = await perplexity(q4, 'node', evalData);
    const q4Web = await perplexity(q4, 'web', evalData);
    const fpNode = await perplexity(join(FIXTURES, 'stories260K/model.onnx'), 'node', evalData);
    const fpWeb = await perplexity(join(FIXTURES, 'stories260K/model.onnx'), 'web', evalData);
    const diff = Math.abs(q4Web / q4Node - 1);
    lines.push(
      '### stories260K perplexity per runtime (TinyStories 11-46; GPTQ calibrated on 1-10, 128 × 128 tokens)',
      '',
      '| model | onnxruntime-node | onnxruntime-web | web vs node |',
      '| --- | ---: | ---: | ---: |',
      `| fp32 | ${fpNode.toFixed(4)} | ${fpWeb.toFixed(4)} | ${pct(Math.abs(fpWeb / fpNode - 1))} |`,
      `| q4 (GPTQ 4-bit g32, MatMulNBits; down_proj float) | ${q4Node.toFixed(4)} | ${q4Web.toFixed(4)} | ${pct(diff)} |`,
      '',
      `Target: q4 perplexity in onnxruntime-web within 0.5 % of onnxruntime-node's — ${pct(diff)} ${diff <= 0.005 ? '✓' : '✗'}.`,
      '',
    );

    // the quality cost of quantized embeddings
    process.stderr.write('browser: quantized embeddings\n');
    const embRows: string[] = [];
    const embCost = async (label: string, path: string, data: TokenDataset) => {
      const base = await perplexity(path, 'node', data);
      embRows.push(`| ${label} | fp32 table | ${base.toFixed(4)} | | |`);
      for (const [bits, block] of [[8, 32], [4, 32], [4, 16]] as const) {
        const out = join(work, `emb-${bits}-${block}`, 'model.onnx');
        const model = loadModel(path);
        await run(model, embeddings, { bits, block_size: block });
        writeOnnx(model, out);
        model.close();
        const ppl = await perplexity(out, 'node', data);
        const web = await perplexity(out, 'web', data);
        embRows.push(`| ${label} | ${bits}-bit g${block} | ${ppl.toFixed(4)} | ${pct(ppl / base - 1)} | ${web.toFixed(4)} |`);
        rmSync(join(work, `emb-${bits}-${block}`), { recursive: true, force: true });
      }
    };
    await embCost('stories260K-kv (tied head), TinyStories 11-46', join(FIXTURES, 'stories260K-kv/model.onnx'), evalData);
    if (existsSync(join(SHARED, 'models/shakespeare-char/model.onnx'))) {
      const val = (await loadDataset({ kind: 'tokens', path: 'models/shakespeare-char/val.u16.bin', dtype: 'uint16', seq_len: 256, count: 64, offset: 0 } as DatasetSpec, SHARED)) as TokenDataset;
      await embCost('shakespeare-char, val.u16.bin 64 × 256', join(SHARED, 'models/shakespeare-char/model.onnx'), val);
    }
    lines.push('### quantize.embeddings: quality cost (onnxruntime-node; the web column is onnxruntime-web on the same file)', '', '| model | embedding | perplexity | change | onnxruntime-web |', '| --- | --- | ---: | ---: | ---: |', ...embRows, '');

    process.stderr.write('browser: MatMulNBits one-token latency\n');
    lines.push(
      '### One token through 24 MLP blocks of MobileLLM-125M width (576→1536→576, linears only): median ms, one thread',
      '',
      '| weights | onnxruntime-web (wasm) | onnxruntime-node |',
      '| --- | ---: | ---: |',
      ...(await gemvRows(work)),
      '',
    );

    // decode speed with the KV cache
    process.stderr.write('browser: decode speed\n');
    const speedRows = [...(mobile?.speedRows ?? [])];
    for (const variant of ['fp32', 'q4', 'q4f16'] as Variant[]) {
      const out = join(work, `kv-${variant}`, 'model.onnx');
      await build(join(FIXTURES, 'stories260K-kv/model.onnx'), variant, out, blocks, variant === 'fp32' ? undefined : calibrator, variant === 'fp32' ? rtn : gptq);
      const size = fileBytes(readOnnx(out), [out, `${out}.data`].filter(existsSync));
      const web = await decodeSpeed(out, 'web', 128, 5);
      const node = await decodeSpeed(out, 'node', 128, 5);
      speedRows.push(`| stories260K-kv | ${variant} | ${mb(size)} | ${web.perSecond.toFixed(0)} (${web.ms.toFixed(2)} ms) | ${node.perSecond.toFixed(0)} (${node.ms.toFixed(2)} ms) |`);
    }
    lines.push(
      '### Batch-1 decode with the KV cache: tokens/s (ms per one-token step), one thread',
      '',
      '| model | variant | bytes | onnxruntime-web (wasm) | onnxruntime-node |',
      '| --- | --- | ---: | ---: | ---: |',
      ...speedRows,
      '',
      'q4: block linears 4-bit g32 MatMulNBits (accuracy_level 0), the rest fp32 (stories260K: GPTQ, down_proj float; MobileLLM: RTN). q4f16: q4, then the token embedding 4-bit g32 (GatherBlockQuantized, the tied head MatMulNBits on the same codes) and quantize.f16 (float16 KV cache and logits). Median of 3 (MobileLLM, 16 steps) or 5 (stories260K, 128 steps) runs after a warm-up.',
    );
    return lines.join('\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await benchBrowser({ mobilellm: !process.argv.includes('--no-mobilellm') }));
}
