/**
 * ONNX Runtime latency of each weight format against float32, on stories260K, on the generated
 * MobileLLM-125M and GPT-2 small checkpoints (seeded random weights, every block linear converted,
 * embeddings and lm_head left float32), and on a stack of MLP blocks with MobileLLM-125M widths
 * (576→1536→576, the linears alone): ms per token at batch 1 (one token, no KV cache) and per
 * batch of 8×128.
 * Every format is produced by the real pass on the same model and run with default session options.
 * Run: npx tsc -p tsconfig.json && node dist/bench/latency.js
 */
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { measureLatency } from '../src/eval/latency.js';
import { makeNode } from '../src/model/graph.js';
import { linears } from '../src/model/linears.js';
import { loadModel } from '../src/model/load.js';
import { Model } from '../src/model/model.js';
import { readOnnx } from '../src/model/onnx-io.js';
import type { Pass } from '../src/pass/pass.js';
import { seededRandom } from '../src/util/random.js';
import { cast } from '../src/quantize/cast.js';
import { rtn } from '../src/quantize/rtn.js';
import { w8a8 } from '../src/quantize/w8a8.js';
import type { HostFeeds } from '../src/model/io.js';
import { nodeSession } from '../src/runtime/node-session.js';
import { sessionFromModel } from '../src/runtime/ort.js';
import { BLOCK_LINEAR, realisticModelPath } from './models.js';

const ROOT = resolve(import.meta.dirname, '../..');

/** x [batch, seq, hidden] through `blocks` residual MLP blocks hidden→ffn→hidden with ReLU. */
export function mlpStack(hidden: number, ffn: number, blocks: number, seed = 1): Model {
  const r = seededRandom(seed);
  const weight = (name: string, k: number, n: number) => {
    const w = Float32Array.from({ length: k * n }, () => (r() - 0.5) * 0.05);
    return { name, data_type: 1, dims: [k, n], raw_data: new Uint8Array(w.buffer) };
  };
  const nodes = [];
  const inits = [];
  let x = 'x';
  for (let b = 0; b < blocks; b++) {
    const p = `/layers.${b}/mlp`;
    inits.push(weight(`layers.${b}.up`, hidden, ffn), weight(`layers.${b}.down`, ffn, hidden));
    nodes.push(
      makeNode('MatMul', [x, `layers.${b}.up`], [`${p}/up_proj/out`], `${p}/up_proj/MatMul`),
      makeNode('Relu', [`${p}/up_proj/out`], [`${p}/act`], `${p}/Relu`),
      makeNode('MatMul', [`${p}/act`, `layers.${b}.down`], [`${p}/down_proj/out`], `${p}/down_proj/MatMul`),
      makeNode('Add', [x, `${p}/down_proj/out`], [`/layers.${b}/out`], `/layers.${b}/Add`),
    );
    x = `/layers.${b}/out`;
  }
  const type = (dims: (number | string)[]) => ({ tensor_type: { elem_type: 1, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } });
  return new Model(
    {
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      graph: { name: 'mlp-stack', node: nodes, initializer: inits, input: [{ name: 'x', type: type(['batch', 'seq', hidden]) }], output: [{ name: x, type: type(['batch', 'seq', hidden]) }] },
    },
    'mlp-stack.onnx',
  );
}

interface Format {
  label: string;
  pass?: Pass;
  params?: Record<string, unknown>;
}

const FORMATS: Format[] = [
  { label: 'float32' },
  { label: 'float16 weights (Cast)', pass: cast as Pass, params: { dtype: 'float16' } },
  { label: 'int8 per-channel (DequantizeLinear)', pass: rtn as Pass, params: { bits: 8, granularity: 'channel', group_size: 128, symmetric: true, format: 'qdq', accuracy_level: 0, mse_clip: false } },
  { label: '8-bit g32 MatMulNBits, accuracy 4', pass: rtn as Pass, params: { bits: 8, granularity: 'group', group_size: 32, symmetric: true, format: 'matmulnbits', accuracy_level: 4, mse_clip: false } },
  { label: '4-bit g32 MatMulNBits, accuracy 0', pass: rtn as Pass, params: { bits: 4, granularity: 'group', group_size: 32, symmetric: true, format: 'matmulnbits', accuracy_level: 0, mse_clip: false } },
  { label: '4-bit g32 MatMulNBits, accuracy 4', pass: rtn as Pass, params: { bits: 4, granularity: 'group', group_size: 32, symmetric: true, format: 'matmulnbits', accuracy_level: 4, mse_clip: false } },
  { label: 'W8A8 per-token (MatMulInteger)', pass: w8a8 as Pass, params: { epsilon: 1e-8 } },
];

async function timeModel(model: Model, feed: (batch: number, seq: number) => HostFeeds, threads: number): Promise<[number, number]> {
  const s = nodeSession(await sessionFromModel(model, { threads }), model.path);
  const one = await measureLatency(s, feed(1, 1), { runs: 50, warmup: 5, threads, batch: 1, seqLen: 1 });
  const big = await measureLatency(s, feed(8, 128), { runs: 5, warmup: 1, threads, batch: 8, seqLen: 128 });
  await s.release();
  return [one.median_ms, big.median_ms];
}

export async function benchLatency(): Promise<string> {
  const threads = availableParallelism();
  const subjects: { name: string; load: () => Model; filter: (n: string) => boolean; feed: (b: number, s: number) => HostFeeds }[] = [
    {
      name: 'stories260K (35 block linears)',
      load: () => readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx')),
      filter: (n) => n.startsWith('layers.') && !n.endsWith('down_proj'),
      feed: (b, s) => ({ input_ids: { type: 'int64' as const, data: new BigInt64Array(b * s).fill(5n), dims: [b, s] } }),
    },
    ...['mobilellm-125m', 'gpt2-small'].map((name) => ({
      name: `${name} (every block linear)`,
      load: () => loadModel(realisticModelPath(name)),
      filter: (n: string) => BLOCK_LINEAR.test(n),
      feed: (b: number, s: number) => ({ input_ids: { type: 'int64' as const, data: new BigInt64Array(b * s).fill(5n), dims: [b, s] } }),
    })),
    {
      name: 'MLP stack, MobileLLM-125M widths (24 × 576→1536→576)',
      load: () => mlpStack(576, 1536, 24),
      filter: () => true,
      feed: (b, s) => ({ x: { type: 'float32', data: new Float32Array(b * s * 576).fill(0.1), dims: [b, s, 576] } }),
    },
  ];
  const lines = [`${threads} ONNX Runtime threads; median ms.`, '', '| model | format | batch 1 × 1 token (ms) | speed-up | 8 × 128 tokens (ms) | speed-up |', '| --- | --- | ---: | ---: | ---: | ---: |'];
  for (const subject of subjects) {
    let base: [number, number] | undefined;
    for (const f of FORMATS) {
      const model = subject.load();
      if (f.pass) {
        const layers = linears(model).filter((l) => subject.filter(l.name) && (f.pass!.eligible?.(l) ?? true));
        if (layers.length === 0) {
          lines.push(`| ${subject.name} | ${f.label} | no eligible layers (${f.pass.id} rewrites MatMul only) | | | |`);
          model.close();
          continue;
        }
        await f.pass.apply(model, f.params!, { layers, seed: 0, random: Math.random, progress: { layer() {} }, where: 'bench' });
      }
      process.stderr.write(`latency: ${subject.name} ${f.label}\n`);
      const t = await timeModel(model, subject.feed, threads);
      model.close();
      base ??= t;
      lines.push(`| ${subject.name} | ${f.label} | ${t[0].toFixed(3)} | ${(base[0] / t[0]).toFixed(2)}× | ${t[1].toFixed(1)} | ${(base[1] / t[1]).toFixed(2)}× |`);
    }
  }
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await benchLatency());
}
