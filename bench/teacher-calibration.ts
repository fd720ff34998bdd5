/**
 * Data-free calibration text for issue #22's GPTQ rows: `rows` windows of 128 tokens sampled from
 * stories260K (its KV form, fixtures/stories260K-kv; temperature 1, each window from BOS, seeded),
 * written as a uint16 token file that a recipe's `calibration.data: {kind: tokens}` reads.
 * Run: npx tsc -p tsconfig.json && node dist/bench/teacher-calibration.js OUT.u16 [rows] [seed]
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { sampleFromTeacher } from '../src/distill/data.js';
import { modelIo } from '../src/model/io.js';
import { readOnnx } from '../src/model/onnx-io.js';
import { sessionFromFile } from '../src/runtime/ort.js';
import { seededRandom } from '../src/util/random.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MODEL = resolve(ROOT, 'fixtures/stories260K-kv/model.onnx');
export const TEACHER_SEQ = 128;

export async function teacherCalibration(out: string, rows: number, seed: number): Promise<void> {
  const session = await sessionFromFile(MODEL, { threads: 2 });
  const io = modelIo(readOnnx(MODEL));
  const windows = await sampleFromTeacher(session, io, { rows, seqLen: TEACHER_SEQ, vocab: 512, startToken: 1, temperature: 1, random: seededRandom(seed) });
  await session.release();
  const ids = new Uint16Array(rows * TEACHER_SEQ);
  windows.forEach((w, i) => ids.set(w, i * TEACHER_SEQ));
  writeFileSync(out, ids);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await teacherCalibration(process.argv[2]!, Number(process.argv[3] ?? 512), Number(process.argv[4] ?? 7));
  const c = process.cpuUsage(c0);
  console.log(`wrote ${process.argv[2]}: ${((performance.now() - t0) / 1000).toFixed(1)} s wall, ${((c.user + c.system) / 1e6).toFixed(1)} s CPU`);
}
