/**
 * Passes at realistic size: MobileLLM-125M and GPT-2 small (seeded random weights, generated when missing) with
 * 32 × 512 calibration tokens (seeded random ids), every block linear targeted. Each pass runs in
 * its own child process so its peak RSS (VmHWM) is its own; the output size is the compressed model
 * written as ONNX with external data after the pass. Calibration time is
 * the time spent waiting on the calibrator's block generator (ORT sub-graph forwards plus XᵀX
 * accumulation); its GFLOP/s counts only the XᵀX products (2·tokens·d² per distinct layer input),
 * so it is a lower bound on what the kernels achieve.
 * Rows marked --stream keep the rewritten weights in a spill file, as `pare compress --stream` does.
 * Run: npx tsc -p tsconfig.json && node dist/bench/scale.js [--models mobilellm-125m,gpt2-small] [--samples 32] [--seq 512] [--jobs 0,4]
 * (PARE_HESSIAN_PRECISION=float64 computes XᵀX with float64 products, calibration.hessian_precision's other setting)
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { STREAM_RESIDENT_BYTES } from '../src/calibrate/boundary-store.js';
import { Calibrator } from '../src/calibrate/calibrator.js';
import type { Feeds } from '../src/calibrate/feeds.js';
import { svdPass } from '../src/decompose/svd.js';
import { byteLength } from '../src/model/dtype.js';
import { lmFeeds, modelIo } from '../src/model/io.js';
import { linears, type LinearLayer } from '../src/model/linears.js';
import { loadModel } from '../src/model/load.js';
import type { Model } from '../src/model/model.js';
import { writeOnnx } from '../src/model/onnx-io.js';
import { configurePass, type Pass } from '../src/pass/pass.js';
import { seededRandom } from '../src/util/random.js';
import { sparsegpt } from '../src/prune/sparsegpt.js';
import { gptq } from '../src/quantize/gptq.js';
import { rtn } from '../src/quantize/rtn.js';
import { ortFeeds } from '../src/runtime/feeds.js';
import { phases, type PhaseTime } from '../src/util/phase-timer.js';
import { BLOCK_LINEAR, realisticModelPath } from './models.js';
import { traceRss } from './rss-trace.js';

const ROOT = resolve(import.meta.dirname, '../..');
const SCRIPT = join(ROOT, 'dist/bench/scale.js');

interface Job {
  label: string;
  pass: Pass;
  params: Record<string, unknown>;
  /** the target on a 2-core machine, minutes */
  targetMin: number;
  /** rewritten weights go to a spill file (pare compress --stream) */
  stream?: boolean;
}

const JOBS: Job[] = [
  { label: 'prune.sparsegpt 50 %', pass: sparsegpt, params: { sparsity: 0.5 }, targetMin: 10 },
  // group 64, not the 128: MobileLLM's 576 inputs are not a multiple of 128, and MatMulNBits blocks are powers of two
  { label: 'quantize.gptq 4-bit g64', pass: gptq, params: { bits: 4, granularity: 'group', group_size: 64, format: 'matmulnbits' }, targetMin: 10 },
  { label: 'quantize.rtn 4-bit g64', pass: rtn, params: { bits: 4, granularity: 'group', group_size: 64, format: 'matmulnbits' }, targetMin: 1 },
  { label: 'decompose.svd ratio 0.5', pass: svdPass, params: { ratio: 0.5 }, targetMin: 5 },
  { label: 'prune.sparsegpt 50 %, --stream', pass: sparsegpt, params: { sparsity: 0.5 }, targetMin: 10, stream: true },
  { label: 'quantize.gptq 4-bit g64, --stream', pass: gptq, params: { bits: 4, granularity: 'group', group_size: 64, format: 'matmulnbits' }, targetMin: 10, stream: true },
];

interface ChildResult {
  passMs: number;
  /** CPU time of the pass, every thread of the process */
  passCpuMs: number;
  /** exclusive wall and CPU time per phase of the pass (src/util/phase-timer.ts) */
  phases: Record<string, PhaseTime>;
  /** one forward of the block linears and attention over all calibration tokens, GFLOP */
  forwardGflop: number;
  calibrationMs: number;
  gramGflop: number;
  layers: number;
  maxRssMb: number;
  /** the compressed model written as ONNX with external data (after maxRSS was taken) */
  outputMb: number;
  /** sub-graph nodes run over graph nodes: about 2 when each block runs twice */
  nodesRunPerGraphNode?: number;
  /** boundary values: the most held in memory at once, and the bytes spilled to files (MB) */
  boundaryPeakMb?: number;
  boundarySpilledMb?: number;
  warnings: string[];
}

/** seeded random ids with the decoder inputs the model declares (mask, positions, an empty KV cache) */
function tokenFeeds(model: Model, samples: number, seq: number, vocab: number): Feeds[] {
  const rand = seededRandom(1234);
  const io = modelIo(model);
  return Array.from({ length: samples }, () => {
    const ids = Array.from({ length: seq }, () => Math.floor(rand() * vocab));
    return ortFeeds(lmFeeds(io, ids, 1, seq));
  });
}

/** One pass on the model, in this process; prints a ChildResult as JSON. */
async function child(jobIndex: number, path: string, samples: number, seq: number): Promise<void> {
  const job = JOBS[jobIndex]!;
  const model = loadModel(path);
  if (job.stream) model.spillTo(join(ROOT, `.pare-work/scale-spill-${process.pid}.bin`), 16 * 1024);
  const pass = configurePass(job.pass, job.params);
  const layers = linears(model).filter((l) => BLOCK_LINEAR.test(l.name) && pass.eligible(l));
  let calibration: Calibrator | undefined;
  let calibrationMs = 0;
  let gramGflop = 0;
  if (pass.calibration.need === 'required') {
    const vocab = Number(linears(model).find((l) => /lm_head/.test(l.name))?.outFeatures ?? 32000);
    const hessianPrecision = process.env.PARE_HESSIAN_PRECISION === 'float64' ? 'float64' : undefined;
    // --stream spills boundary values past STREAM_RESIDENT_BYTES, as pare compress --stream does
    const cal = new Calibrator(tokenFeeds(model, samples, seq, vocab), 'sequential', 0, { hessianPrecision, residentBytes: job.stream ? STREAM_RESIDENT_BYTES : undefined, spillDir: join(ROOT, '.pare-work') });
    // time spent inside the calibrator's generator, apart from the pass's own kernels
    const blocks = cal.blocks.bind(cal);
    cal.blocks = async function* (m: Model, ls: readonly LinearLayer[], needs) {
      const it = blocks(m, ls, needs);
      for (;;) {
        const t0 = performance.now();
        const next = await it.next();
        calibrationMs += performance.now() - t0;
        if (next.done) return;
        for (const s of next.value.stats.values()) gramGflop += (2 * s.rows * s.dim * s.dim) / 1e9;
        yield next.value;
      }
    };
    calibration = cal;
  }
  const stopTrace = process.env.PARE_RSS_TRACE ? traceRss(process.env.PARE_RSS_TRACE) : undefined;
  phases.reset();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await pass.apply(model, {
    layers,
    seed: 0,
    random: seededRandom(0),
    calibration,
    progress: { layer: (j, total, name) => (j % 20 === 0 ? process.stderr.write(`  ${job.pass.id} ${j}/${total} ${name}\n`) : undefined) },
    where: 'passes[0]',
  });
  const passMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  stopTrace?.();
  const nodes = model.graph.node?.length ?? 1;
  const trace = calibration?.trace ?? [];
  const out: ChildResult = {
    passMs,
    passCpuMs: (cpu.user + cpu.system) / 1000,
    phases: phases.snapshot(),
    forwardGflop: forwardGflop(layers, samples, seq),
    calibrationMs,
    gramGflop,
    layers: result.layers.length,
    maxRssMb: peakRssMb(),
    nodesRunPerGraphNode: trace.length > 0 ? trace.reduce((s, t) => s + t.nodes, 0) / nodes : undefined,
    outputMb: 0,
    boundaryPeakMb: calibration ? calibration.peakBoundaryBytes / 2 ** 20 : undefined,
    boundarySpilledMb: calibration ? calibration.spilledBytes / 2 ** 20 : undefined,
    warnings: [...result.warnings, ...(calibration?.warnings ?? [])],
  };
  const written = writeOnnx(model, join(ROOT, `.pare-work/scale-out-${process.pid}.onnx`), { externalData: true });
  for (const f of written.files) {
    out.outputMb += statSync(f).size / 2 ** 20;
    rmSync(f);
  }
  model.close();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/**
 * One forward over the calibration tokens: 2·tokens per weight of the block linears, plus QKᵀ and
 * PV at full seq² (ONNX Runtime does not skip the causal half), 4·seq²·width per sample and block,
 * width being the attention output projection's input.
 */
function forwardGflop(layers: readonly LinearLayer[], samples: number, seq: number): number {
  let flop = 0;
  for (const l of layers) {
    flop += 2 * samples * seq * l.inFeatures * l.outFeatures;
    if (/(?:o_proj|attn\.c_proj)$/.test(l.name)) flop += 4 * samples * seq * seq * l.inFeatures;
  }
  return flop / 1e9;
}

/** The GEMM rate the FLOP floor assumes: what ONNX Runtime's float32 MatMul reaches on this 2-core machine (issue 21). */
const FLOOR_GFLOPS = 60;

/**
 * This process's peak RSS. Linux's getrusage maxRSS survives fork + exec, so a child would report at
 * least its parent's RSS at spawn time; VmHWM belongs to the process's own address space.
 */
function peakRssMb(): number {
  try {
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}

/** fp32 MB of all weights and of the first block's (the streaming target counts from one block) */
function fp32Mb(path: string): { all: number; block: number } {
  const m = loadModel(path);
  const mb = (dims: readonly unknown[]) => byteLength(1, dims.reduce<number>((a, d) => a * Number(d), 1)) / 2 ** 20;
  const all = (m.graph.initializer ?? []).reduce((a, t) => a + mb(t.dims ?? []), 0);
  const first = /^(?:model\.|transformer\.)?(?:layers|h)\.0\./;
  const block = (m.graph.initializer ?? []).filter((t) => first.test(t.name ?? '')).reduce((a, t) => a + mb(t.dims ?? []), 0);
  m.close();
  return { all, block };
}

const fmt = (x: number, d = 1) => x.toFixed(d);

export async function benchScale(opts: { models?: string[]; samples?: number; seq?: number; jobs?: number[] } = {}): Promise<string> {
  const samples = opts.samples ?? 32;
  const seq = opts.seq ?? 512;
  const rows = [
    `${samples} × ${seq} calibration tokens (seeded random ids), sequential mode, every block linear; each pass in a child process (peak RSS is that process's VmHWM).`,
    '',
    '| model | pass | layers | wall | target | calibration | XᵀX GFLOP/s (lower bound) | sub-graph nodes run / graph nodes | output size | peak RSS | RSS above fp32 weights (≤ 1.5 GB) / above one block for --stream (≤ 1 GB) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const split = [
    `Time split of the calibrated rows: exclusive wall / CPU seconds per phase (CPU counts every thread, so ONNX Runtime's 2 threads can make CPU > wall). FLOP floor: one forward of the block linears and attention plus the XᵀX products, at ${FLOOR_GFLOPS} GFLOP/s.`,
    '',
    '| model | pass | pass wall / CPU | FLOP floor | forward (sub-graph runs) | XᵀX | sub-graph build | boundary values | Hessian prep (Cholesky) | OBS loop (JS) | OBS lazy-update GEMM | layer error | other (pass JS, weights) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const sizes: string[] = [];
  const warnings: string[] = [];
  for (const name of opts.models ?? ['mobilellm-125m', 'gpt2-small']) {
    const path = realisticModelPath(name);
    const weights = fp32Mb(path);
    for (const [i, job] of JOBS.entries()) {
      if (opts.jobs && !opts.jobs.includes(i)) continue;
      process.stderr.write(`scale: ${name} ${job.label}\n`);
      let r: ChildResult;
      try {
        const out = execFileSync(process.execPath, [SCRIPT, '--child', String(i), path, String(samples), String(seq)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
        r = JSON.parse(out.trim().split('\n').at(-1)!) as ChildResult;
        process.stderr.write(`scale: ${JSON.stringify(r)}\n`);
      } catch (e) {
        rows.push(`| ${name} | ${job.label} | failed: ${String((e as Error).message).split('\n')[0]} |`);
        continue;
      }
      const min = r.passMs / 60000;
      const cal = r.calibrationMs > 0 ? `${fmt(r.calibrationMs / 1000)} s` : '—';
      const gflops = r.calibrationMs > 0 ? fmt(r.gramGflop / (r.calibrationMs / 1000)) : '—';
      const above = job.stream ? r.maxRssMb - weights.block : r.maxRssMb - weights.all;
      const limit = job.stream ? 1024 : 1536;
      rows.push(
        `| ${name} | ${job.label} | ${r.layers} | ${fmt(min, 2)} min | ≤ ${job.targetMin} min ${min <= job.targetMin ? '✓' : '✗'} | ${cal} | ${gflops} | ${r.nodesRunPerGraphNode !== undefined ? fmt(r.nodesRunPerGraphNode, 2) : '—'} | ${fmt(r.outputMb, 0)} MB | ${fmt(r.maxRssMb, 0)} MB | ${fmt(above, 0)} MB ${above <= limit ? '✓' : '✗'} |`,
      );
      if (r.calibrationMs > 0) split.push(splitRow(name, job.label, r));
      for (const w of new Set(r.warnings)) warnings.push(`- ${name}, ${job.label}: ${w}`);
    }
    sizes.push(`${name}: fp32 weights ${fmt(weights.all, 0)} MB, one block ${fmt(weights.block, 1)} MB.`);
  }
  return [...rows, '', sizes.join(' '), ...(split.length > 4 ? ['', ...split] : []), ...(warnings.length > 0 ? ['', 'Warnings:', ...warnings] : [])].join('\n');
}

const SPLIT_PHASES = ['calibrate.forward', 'calibrate.xtx', 'calibrate.session', 'calibrate.boundary', 'solve.hessian', 'solve.obs', 'solve.obs-gemm', 'solve.error'];

function splitRow(model: string, label: string, r: ChildResult): string {
  const s = (ms: number) => (ms / 1000).toFixed(1);
  const cell = (p?: PhaseTime) => (p ? `${s(p.wallMs)} / ${s(p.cpuMs)}` : '—');
  let wall = r.passMs;
  let cpu = r.passCpuMs;
  for (const name of SPLIT_PHASES) {
    wall -= r.phases[name]?.wallMs ?? 0;
    cpu -= r.phases[name]?.cpuMs ?? 0;
  }
  const floor = (r.forwardGflop + r.gramGflop) / FLOOR_GFLOPS;
  return `| ${model} | ${label} | ${s(r.passMs)} / ${s(r.passCpuMs)} s | ${floor.toFixed(0)} s (${(r.forwardGflop / 1000).toFixed(2)} + ${(r.gramGflop / 1000).toFixed(2)} TFLOP) | ${SPLIT_PHASES.map((p) => cell(r.phases[p])).join(' | ')} | ${s(wall)} / ${s(cpu)} |`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') {
    await child(Number(argv[1]), argv[2]!, Number(argv[3]), Number(argv[4]));
  } else {
    const arg = (flag: string) => {
      const i = argv.indexOf(flag);
      return i >= 0 ? argv[i + 1] : undefined;
    };
    const models = arg('--models')?.split(',');
    const samples = arg('--samples') ? Number(arg('--samples')) : undefined;
    const seq = arg('--seq') ? Number(arg('--seq')) : undefined;
    const jobs = arg('--jobs')?.split(',').map(Number);
    process.stdout.write(`${await benchScale({ models, samples, seq, jobs })}\n`);
  }
}
