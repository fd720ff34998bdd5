/**
 * ONNX Runtime latency of MatMulNBits weight storage forms that ONNX Runtime expands at load (issue
 * #22): 4-bit g32 with float32 scales (the reference), with float16 scales behind a Cast, and 3-bit
 * codes packed 8 per 3 bytes behind the unpacking subgraph, if present. Each form is made by
 * quantize.rtn on every linear of stories260K's blocks and of an MLP stack with MobileLLM-125M
 * widths (24 × 576→1536→576). Forms are timed in turns (PARE_BENCH_ROUNDS rounds, default 5; median of the rounds' medians) so
 * load on the machine hits each alike. Each row also gives the ops of the graph ONNX Runtime's
 * optimizer leaves (the expanding subgraphs folded away) and, for the packed 3-bit form, whether its
 * output equals the 4-bit container's bit for bit.
 * Run: npx tsc -p tsconfig.json && node dist/bench/scale-storage.js
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { measureLatency } from '../src/eval/latency.js';
import type { HostFeeds } from '../src/model/io.js';
import { linears } from '../src/model/linears.js';
import type { Model } from '../src/model/model.js';
import { decodeModelProto, encodeInline, readOnnx } from '../src/model/onnx-io.js';
import { rtn } from '../src/quantize/rtn.js';
import { nodeSession } from '../src/runtime/node-session.js';
import { ort, sessionFromModel } from '../src/runtime/ort.js';
import { mlpStack } from './latency.js';

const ROOT = resolve(import.meta.dirname, '../..');
const THREADS = 2;
const ROUNDS = Number(process.env.PARE_BENCH_ROUNDS ?? 5);

const BASE = { granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0, mse_clip: false } as const;
export const STORAGE_FORMATS: { label: string; params: Record<string, unknown> }[] = [
  { label: '4-bit g32, float32 scales', params: { ...BASE, bits: 4 } },
  { label: '4-bit g32, float16 scales (Cast)', params: { ...BASE, bits: 4, scale_dtype: 'float16' } },
  { label: '3-bit g32 in the 4-bit container', params: { ...BASE, bits: 3 } },
  { label: '3-bit g32 packed 8 per 3 bytes (unpacking subgraph)', params: { ...BASE, bits: 3, packed_3bit: true } },
];

interface Subject {
  name: string;
  load: () => Model;
  filter: (n: string) => boolean;
  feed: (b: number, s: number) => HostFeeds;
}

const SUBJECTS: Subject[] = [
  {
    name: 'stories260K (35 block linears)',
    load: () => readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx')),
    filter: (n) => n.startsWith('layers.'),
    feed: (b, s) => ({ input_ids: { type: 'int64', data: new BigInt64Array(b * s).fill(5n), dims: [b, s] } }),
  },
  {
    name: 'MLP stack, MobileLLM-125M widths (24 × 576→1536→576)',
    load: () => mlpStack(576, 1536, 24),
    filter: () => true,
    feed: (b, s) => ({ x: { type: 'float32', data: new Float32Array(b * s * 576).fill(0.1), dims: [b, s, 576] } }),
  },
];

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

/** Op counts of the graph ONNX Runtime runs after its optimizer (basic level: constant folding), and the outputs on `feeds`. */
async function optimized(model: Model, feeds: HostFeeds): Promise<{ ops: string; out: Float32Array }> {
  const dir = mkdtempSync(join(tmpdir(), 'pare-bench-storage-'));
  try {
    const path = join(dir, 'optimized.onnx');
    const session = await ort.InferenceSession.create(encodeInline(model), { optimizedModelFilePath: path, graphOptimizationLevel: 'basic', logSeverityLevel: 4, intraOpNumThreads: THREADS });
    const counts = new Map<string, number>();
    for (const n of decodeModelProto(readFileSync(path), path).graph?.node ?? []) if (n.op_type !== 'Constant') counts.set(n.op_type ?? '', (counts.get(n.op_type ?? '') ?? 0) + 1);
    const feed = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor(v.type, v.data, v.dims)]));
    const out = (await session.run(feed))[session.outputNames[0]!]!.data as Float32Array;
    await session.release();
    return { ops: [...counts].filter(([op]) => /MatMul|Cast|Div|Mod|Reshape/.test(op)).map(([op, n]) => `${n}× ${op}`).join(', '), out };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchScaleStorage(): Promise<string> {
  const lines = [`${THREADS} ONNX Runtime threads; median over ${ROUNDS} interleaved rounds of each round's median ms.`, '', '| model | storage | batch 1 × 1 token (ms) | 8 × 128 tokens (ms) | MatMul/Cast/Div/Mod/Reshape ops after ORT\'s optimizer | packed output vs the 4-bit container |', '| --- | --- | ---: | ---: | --- | --- |'];
  for (const subject of SUBJECTS) {
    const sessions = [];
    const checks: { ops: string; out: Float32Array }[] = [];
    for (const f of STORAGE_FORMATS) {
      const model = subject.load();
      const layers = linears(model).filter((l) => subject.filter(l.name));
      await rtn.apply(model, rtn.params.parse(f.params), { layers, seed: 0, random: Math.random, progress: { layer() {} }, where: 'bench' });
      checks.push(await optimized(model, subject.feed(2, 16)));
      sessions.push(nodeSession(await sessionFromModel(model, { threads: THREADS }), model.path));
      model.close();
    }
    const times = STORAGE_FORMATS.map(() => ({ one: [] as number[], big: [] as number[] }));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, s] of sessions.entries()) {
        process.stderr.write(`scale-storage: ${subject.name} ${STORAGE_FORMATS[i]!.label} round ${round + 1}\n`);
        times[i]!.one.push((await measureLatency(s, subject.feed(1, 1), { runs: 100, warmup: 10, threads: THREADS, batch: 1, seqLen: 1 })).median_ms);
        times[i]!.big.push((await measureLatency(s, subject.feed(8, 128), { runs: 5, warmup: 1, threads: THREADS, batch: 8, seqLen: 128 })).median_ms);
      }
    }
    for (const s of sessions) await s.release();
    for (const [i, f] of STORAGE_FORMATS.entries()) {
      // the packed form against the container form just above it, which holds the same codes
      const container = f.params.packed_3bit ? checks[i - 1]!.out : undefined;
      const same = container ? (checks[i]!.out.every((v, k) => v === container[k]) ? 'bit-identical' : 'differs') : '–';
      lines.push(`| ${subject.name} | ${f.label} | ${median(times[i]!.one).toFixed(3)} | ${median(times[i]!.big).toFixed(1)} | ${checks[i]!.ops} | ${same} |`);
    }
  }
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await benchScaleStorage());
}
