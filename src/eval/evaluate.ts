/**
 * src/eval — layer 8 (above obs): quality, fidelity, latency and generation measured in ONNX Runtime.
 */
import { availableParallelism } from 'node:os';
import type { Dataset } from '../data/types.js';
import { UserError } from '../errors.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { modelSize, type SizeStats } from '../model/size.js';
import { ort, sessionFromFile } from '../runtime/ort.js';
import { evaluateClassifier, type ClassificationQuality } from './classify.js';
import type { Fidelity } from './fidelity.js';
import { measureLatency, type Latency } from './latency.js';
import { evaluateCausalLM, type LMQuality } from './lm.js';
import { lmFeeds, modelIo, type ModelIo } from '../model/io.js';
import { ortFeeds } from '../runtime/feeds.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';

export interface Measure {
  path: string;
  sha256: string;
  size: SizeStats;
  quality?: LMQuality | ClassificationQuality;
  latency?: Latency;
}

export interface LatencyOptions {
  runs: number;
  warmup: number;
  /** tokens per sequence for causal LMs */
  seqLen: number;
  batch: number;
}

export interface EvalOptions {
  threads?: number;
  /** false skips latency */
  latency?: Partial<LatencyOptions> | false;
  dataPath?: string;
}

export interface Evaluation {
  model: Measure;
  reference?: Measure;
  fidelity?: Fidelity;
}

/**
 * A model as evaluate takes it: the checkpoint's name, hash, size and inputs/outputs, taken from
 * the checkpoint when it was loaded, and the ONNX file ONNX Runtime runs for it.
 */
export interface EvalSubject extends CheckpointFacts {
  /** the checkpoint itself when it is ONNX, else its ONNX form */
  onnx: string;
}

export interface CheckpointFacts {
  path: string;
  sha256: string;
  size: SizeStats;
  io: ModelIo;
}

/**
 * Name, hash, size and IO of a checkpoint's model; `files` are the files it was written as (default:
 * its own path). KV-cache shapes the graph leaves symbolic are read from the graph.
 */
export async function checkpointFacts(checkpoint: Checkpoint, files?: string[]): Promise<CheckpointFacts> {
  const io = await resolveKvShapes(checkpoint.model, modelIo(checkpoint.model));
  return { path: checkpoint.path, sha256: checkpoint.sha256, size: modelSize(checkpoint.model, files), io };
}

/** Run `model` (and `reference`, when given) in ONNX Runtime on `data`, measuring quality and latency beside the size each already has. */
export async function evaluate(model: EvalSubject, data: Dataset, opts: EvalOptions = {}, reference?: EvalSubject): Promise<Evaluation> {
  const threads = opts.threads ?? availableParallelism();
  const io = model.io;
  checkTask(io, data, model.path, opts.dataPath);
  if (reference) checkSameIo(io, reference.io, model.path, reference.path);
  const session = await sessionFromFile(model.onnx, { threads });
  const refSession = reference ? await sessionFromFile(reference.onnx, { threads }) : undefined;

  const run = async (s: ort.InferenceSession, sIo: ModelIo, ref?: { session: ort.InferenceSession; io: ModelIo }) =>
    data.kind === 'tokens'
      ? evaluateCausalLM({ session: s, io: sIo }, data, { vocab: io.outputWidth, reference: ref, dataPath: opts.dataPath })
      : evaluateClassifier(s, data, { ...io, dataPath: opts.dataPath }, ref?.session);

  const main = await run(session, io, reference && refSession ? { session: refSession, io: reference.io } : undefined);
  const measure = async (subject: EvalSubject, s: ort.InferenceSession, quality: Measure['quality']): Promise<Measure> => ({
    path: subject.path,
    sha256: subject.sha256,
    size: subject.size,
    quality,
    latency: opts.latency === false ? undefined : await latencyOf(s, io, data, threads, opts.latency ?? {}),
  });
  const result: Evaluation = { model: await measure(model, session, main.quality), fidelity: main.fidelity };
  if (reference && refSession) {
    const refQuality = (await run(refSession, reference.io)).quality;
    result.reference = await measure(reference, refSession, refQuality);
  }
  return result;
}

function checkTask(io: ModelIo, data: Dataset, modelPath: string, dataPath?: string): void {
  if (io.task === 'causal-lm' && data.kind !== 'tokens') {
    throw new UserError(`${dataPath ?? 'dataset'}: model ${modelPath} takes token ids ('${io.inputName}') but the dataset holds ${data.kind}`);
  }
  if (io.task === 'classification' && data.kind !== 'tensors') {
    throw new UserError(`${dataPath ?? 'dataset'}: model ${modelPath} takes float input '${io.inputName}' but the dataset holds token ids`);
  }
}

function checkSameIo(a: ModelIo, b: ModelIo, pathA: string, pathB: string): void {
  if (a.inputName !== b.inputName || a.outputName !== b.outputName || a.task !== b.task) {
    throw new UserError(`${pathB}: reference has input/output '${b.inputName}'/'${b.outputName}', ${pathA} has '${a.inputName}'/'${a.outputName}'`);
  }
}

async function latencyOf(s: ort.InferenceSession, io: ModelIo, data: Dataset, threads: number, o: Partial<LatencyOptions>): Promise<Latency> {
  const runs = o.runs ?? 20;
  const warmup = o.warmup ?? 3;
  if (data.kind === 'tokens') {
    const seqLen = o.seqLen ?? 128;
    const batch = o.batch ?? 1;
    const ids = new Int32Array(batch * seqLen);
    const source = data.sequences.flatMap((s) => Array.from(s));
    for (let i = 0; i < ids.length; i++) ids[i] = source[i % Math.max(source.length, 1)] ?? 0;
    const feeds = ortFeeds(lmFeeds(io, ids, batch, seqLen));
    return measureLatency(s, feeds, { runs, warmup, threads, batch, seqLen });
  }
  const batch = io.inputDims[0] > 0 ? io.inputDims[0] : (o.batch ?? 1);
  const dims = [batch, ...io.inputDims.slice(1).map((d, i) => (d > 0 ? d : data.sampleShape[i] ?? 1))];
  const size = dims.reduce((a, b) => a * b, 1);
  const input = new Float32Array(size);
  input.set(data.data.subarray(0, Math.min(size, data.data.length)));
  return measureLatency(s, { [io.inputName]: new ort.Tensor('float32', input, dims) }, { runs, warmup, threads, batch });
}
