import { parentPort, workerData } from 'node:worker_threads';
import { UserError } from '../errors.js';
import { Teacher, type TeacherSpec } from './teacher.js';
import { ownedBuffer, type TeacherReply, type TeacherRequest } from './teacher-thread.js';

/**
 * The teacher's worker thread (teacher-thread.ts): builds the ORT session from the spec, then for
 * each request runs the teacher on its token ids and posts the targets back, transferred.
 */

const port = parentPort!;
const post = (m: TeacherReply, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const failure = (e: unknown) => ({ error: (e as Error)?.message ?? String(e), user: e instanceof UserError });

const teacher = Teacher.fromSpec(workerData as TeacherSpec);
teacher.catch((e: unknown) => post(failure(e)));

port.on('message', async (req: TeacherRequest) => {
  try {
    const t = await (await teacher).run(req.ids, req.batch, req.seqLen);
    const logits = ownedBuffer(t.logits);
    const hidden = [...t.hidden].map(([i, a]) => [i, ownedBuffer(a)] as [number, Float32Array]);
    const attention = [...t.attention].map(([i, a]) => [i, ownedBuffer(a)] as [number, Float32Array]);
    const buffers = new Set([logits, ...hidden.map((h) => h[1]), ...attention.map((a) => a[1])].map((a) => a.buffer as ArrayBuffer));
    post({ id: req.id, logits, hidden, attention }, [...buffers]);
  } catch (e) {
    post({ id: req.id, ...failure(e) });
  }
});
