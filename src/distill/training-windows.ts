import { loadDataset } from '../data/load.js';
import type { ModelIo } from '../model/io.js';
import type { ort } from '../runtime/ort.js';
import { UserError } from '../errors.js';
import type { PassContext } from '../pass/pass.js';
import { sampleFromTeacher, sequencesOfFeeds, windowsOf } from './data.js';
import type { KdParams } from './kd-params.js';

/** The windows to train on (and to hold out from), in a fixed order. `session` (the teacher's, on this thread, with present.* outputs) samples them with data: teacher. */
export async function trainingWindows(p: KdParams, ctx: PassContext, teacherIo: ModelIo, session: ort.InferenceSession | undefined, vocab: number | undefined): Promise<Int32Array[]> {
  if (p.data === 'teacher') {
    if (!vocab) throw new UserError(`${ctx.where}: distill.kd data: teacher needs the logits width of the model's output`);
    if (!session) throw new Error('distill.kd data: teacher needs the teacher session on this thread');
    ctx.progress.step?.(0, p.steps, `sampling ${p.samples} windows of ${p.seq_len} tokens from the teacher`);
    const rows = await sampleFromTeacher(session, teacherIo, {
      rows: p.samples,
      seqLen: p.seq_len,
      vocab,
      startToken: p.start_token,
      temperature: p.sample_temperature,
      random: ctx.random,
    });
    return rows;
  }
  let sequences: Int32Array[];
  if (p.data === 'calibration') {
    // needsCalibration makes recipes give calibration for this; direct callers must pass it
    if (!ctx.calibration) throw new Error(`${ctx.where}: distill.kd data: calibration needs ctx.calibration`);
    sequences = sequencesOfFeeds(ctx.calibration.feeds, teacherIo.inputName, ctx.where);
  } else {
    const data = await loadDataset(p.data, ctx.recipeDir ?? '.');
    if (data.kind !== 'tokens') throw new UserError(`${ctx.where}: distill.kd data must be text or token ids, got ${data.kind}`);
    sequences = data.sequences;
  }
  const rows = windowsOf(sequences, p.seq_len).slice(0, p.samples);
  if (rows.length === 0) throw new UserError(`${ctx.where}: distill.kd data has no sequence of ${p.seq_len} tokens; lower params.seq_len`);
  return rows;
}
