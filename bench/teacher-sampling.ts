/**
 * Distillation's data-free windows: sampling from a teacher with a KV cache one token per step
 * (present.* → past) against re-running the whole prefix for every token, on fixtures/stories260K-kv
 * (2 ONNX Runtime threads, temperature 1, seeded); the rows must agree token for token.
 * Run: npx tsc -p tsconfig.json && node dist/bench/teacher-sampling.js [rows]
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { sampleFromTeacher } from '../src/distill/data.js';
import { modelIo } from '../src/model/io.js';
import { readOnnx } from '../src/model/onnx-io.js';
import { sessionFromFile } from '../src/runtime/ort.js';
import { seededRandom } from '../src/util/random.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MODEL = resolve(ROOT, 'fixtures/stories260K-kv/model.onnx');
const SEQ = 128;

export async function benchTeacherSampling(rows = 64): Promise<string> {
  const session = await sessionFromFile(MODEL, { threads: 2 });
  const io = modelIo(readOnnx(MODEL));
  const lines = ['| teacher sampling | windows | wall s | CPU s |', '| --- | ---: | ---: | ---: |'];
  const results: Int32Array[][] = [];
  for (const useCache of [true, false]) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    results.push(await sampleFromTeacher(session, io, { rows, seqLen: SEQ, vocab: 512, startToken: 1, temperature: 1, random: seededRandom(7), useCache }));
    const c = process.cpuUsage(c0);
    lines.push(`| ${useCache ? 'KV cache, one token per step' : 'whole prefix every step'} | ${rows} × ${SEQ} | ${((performance.now() - t0) / 1000).toFixed(2)} | ${((c.user + c.system) / 1e6).toFixed(2)} |`);
  }
  await session.release();
  const [cached, full] = results as [Int32Array[], Int32Array[]];
  const same = cached.reduce((n, r, i) => n + r.filter((t, j) => t === full[i]![j]).length, 0);
  lines.push('', `Tokens equal in both: ${same} of ${rows * SEQ}.`);
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(await benchTeacherSampling(Number(process.argv[2] ?? 64)));
}
