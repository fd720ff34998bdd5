/**
 * ONNX Runtime latency and memory of a Kronecker-factored stories260K (decompose.kronecker at 60 %
 * of the block linears' parameters, weight mode) against the dense model: median ms at batch 1 × 1
 * token, 8 × 128 tokens and 1 × 512 tokens (an eval window), and the process's resident-memory
 * growth over the session's life (each model in its own child process: `node dist/bench/kronecker-latency.js one <which>`).
 * Three models: dense, Kronecker factored (runtime factored) and the same factors expanded to the
 * dense weight by ONNX Runtime at load (runtime dense_at_load), in alternating rounds.
 * Run: npx tsc -p tsconfig.json && node dist/bench/kronecker-latency.js [--rounds 3] [--max-compute 1]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { measureLatency } from '../src/eval/latency.js';
import { linears } from '../src/model/linears.js';
import { readOnnx, writeOnnx } from '../src/model/onnx-io.js';
import { configurePass } from '../src/pass/pass.js';
import { kronecker } from '../src/decompose/kronecker.js';
import { nodeSession } from '../src/runtime/node-session.js';
import { sessionFromModel } from '../src/runtime/ort.js';
import { resolveKvShapes } from '../src/runtime/kv-shapes.js';
import { lmFeeds, modelIo } from '../src/model/io.js';
import type { Model } from '../src/model/model.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');

export interface Measured {
  label: string;
  /** [wall median ms, CPU ms per run] */
  b1: [number, number];
  b8x128: [number, number];
  b1x512: [number, number];
  rssMiB: number;
}

/** ONNX Runtime latency and RSS growth of `model` (a KV-cache model is fed an empty past). */
export async function measureModel(model: Model, label: string): Promise<Measured> {
  const threads = availableParallelism();
  const rss0 = process.memoryUsage().rss;
  const s = nodeSession(await sessionFromModel(model, { threads }), model.path);
  const io = await resolveKvShapes(model, modelIo(model), threads);
  const feed = (b: number, t: number) => lmFeeds(io, new Int32Array(b * t).fill(5), b, t);
  const timed = async (b: number, t: number, runs: number): Promise<[number, number]> => {
    const c0 = process.cpuUsage();
    const l = await measureLatency(s, feed(b, t), { runs, warmup: 2, threads, batch: b, seqLen: t });
    const cpu = process.cpuUsage(c0);
    return [l.median_ms, (cpu.user + cpu.system) / 1e3 / (runs + 2)];
  };
  const b1 = await timed(1, 1, 200);
  const b8x128 = await timed(8, 128, 10);
  const b1x512 = await timed(1, 512, 10);
  const rss = process.memoryUsage().rss;
  await s.release();
  return { label, b1, b8x128, b1x512, rssMiB: (rss - rss0) / 2 ** 20 };
}

type Which = 'dense' | 'kronecker' | 'kronecker-load';
const LABELS: Record<Which, string> = {
  dense: 'dense fp32',
  kronecker: 'Kronecker 60 % of block-linear params (weight mode), runtime factored',
  'kronecker-load': 'Kronecker 60 %, the same factors, runtime dense_at_load',
};

/** stories260K as `which`: the Kronecker variants with the same factors (max_compute 1 unless argv gives another) */
async function build(which: Which, maxCompute: number): Promise<Model> {
  const model = readOnnx(MODEL);
  if (which !== 'dense') {
    const layers = linears(model).filter((l) => l.name.startsWith('layers.'));
    const params = { ratio: 0.6, max_compute: maxCompute, runtime: which === 'kronecker' ? 'factored' : 'dense_at_load' };
    await configurePass(kronecker, params).apply(model, { layers, seed: 0, random: Math.random, progress: { layer() {} }, where: 'bench' });
  }
  return model;
}

/** measureModel on an ONNX file, in a child process of its own (`node dist/bench/kronecker-latency.js file <path> <label>`). */
export function measureFileInChild(path: string, label: string): Measured {
  const out = execFileSync(process.execPath, [import.meta.filename, 'file', path, label], { encoding: 'utf8', timeout: 300_000, killSignal: 'SIGKILL' });
  return JSON.parse(out.trim().split('\n').at(-1)!) as Measured;
}

/**
 * Dense, factored and load-expanded stories260K, each measured in its own child process, in
 * `rounds` alternating rounds (the machine is shared: a slow spell hits every variant alike), one row
 * per model and round. The models are built once and written to a temporary folder.
 */
export async function benchKroneckerLatency(rounds = 3, maxCompute = 1): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'kron-latency-'));
  try {
    const files = new Map<Which, string>();
    for (const which of Object.keys(LABELS) as Which[]) {
      const path = join(dir, `${which}.onnx`);
      writeOnnx(await build(which, maxCompute), path);
      files.set(which, path);
    }
    const lines = [`${availableParallelism()} ONNX Runtime threads; wall median ms / CPU ms per run (process CPU time over the runs and warm-ups: the machine is shared, so wall times are inflated); RSS growth from before the session to after the runs; file bytes.`, '', '| stories260K | round | batch 1 × 1: wall / CPU (ms) | 8 × 128: wall / CPU (ms) | 1 × 512: wall / CPU (ms) | RSS growth (MiB) | file bytes |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |'];
    const cell = ([wall, cpu]: [number, number], digits: number) => `${wall.toFixed(digits)} / ${cpu.toFixed(digits)}`;
    for (let round = 1; round <= rounds; round++) {
      for (const [which, path] of files) {
        const m = measureFileInChild(path, LABELS[which]);
        lines.push(`| ${m.label} | ${round} | ${cell(m.b1, 3)} | ${cell(m.b8x128, 1)} | ${cell(m.b1x512, 1)} | ${m.rssMiB.toFixed(0)} | ${statSync(path).size} |`);
      }
    }
    return lines.join('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values: args, positionals } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, 'max-compute': { type: 'string', default: '1' } }, allowPositionals: true });
  const maxCompute = Number(args['max-compute']);
  const which = positionals[1] as Which;
  if (positionals[0] === 'one') console.log(JSON.stringify(await measureModel(await build(which, maxCompute), LABELS[which])));
  else if (positionals[0] === 'file') console.log(JSON.stringify(await measureModel(readOnnx(positionals[1]!), positionals[2] ?? positionals[1]!)));
  else console.log(await benchKroneckerLatency(Number(args.rounds), maxCompute));
}
