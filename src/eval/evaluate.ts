/**
 * src/eval — layer 8 (above obs): quality, fidelity, latency and generation measured in ONNX Runtime.
 */
import { availableParallelism } from 'node:os';
import type { Dataset } from '../data/types.js';
import { UserError } from '../errors.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { modelSize, type SizeStats } from '../model/size.js';
import { DataType } from '../model/dtype.js';
import { float32ToFloat16 } from '../model/pack.js';
import { openSession } from '../runtime/open.js';
import { ortVersion } from '../runtime/ort.js';
import { ortWebVersion } from '../runtime/ort-web.js';
import { RUNTIME_PACKAGE, RuntimeFailure, type RuntimeName, type RuntimeSession } from '../runtime/session.js';
import { evaluateClassifier, type ClassificationQuality } from './classify.js';
import { evaluateRegression, inferTensorTask } from './regress.js';
import type { RegressionQuality, TensorTask } from './regression.js';
import type { Fidelity } from './fidelity.js';
import { measureLatency, type Latency } from './latency.js';
import { evaluateCausalLM, type LMQuality } from './lm.js';
import { lmFeeds, modelIo, type HostFeed, type ModelIo } from '../model/io.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';

export interface Measure {
  path: string;
  sha256: string;
  size: SizeStats;
  quality?: Quality;
  latency?: Latency;
}

export type Quality = LMQuality | ClassificationQuality | RegressionQuality;
/** what a model's quality is measured as; `lm` is a causal LM on token data */
export type EvalTask = TensorTask | 'lm';

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
  /** the runtimes to measure in, the primary first (default: node) */
  runtimes?: RuntimeName[];
  /** default: lm on token data, else from the model's output (see inferTensorTask) */
  task?: EvalTask;
  /** L of PSNR and SSIM; default from the targets (255 past 2, else 1) */
  dataRange?: number;
}

/** Quality and latency as one runtime measured them. */
export interface RuntimeMeasure {
  quality?: Quality;
  latency?: Latency;
}

/** One runtime's measurements, or why it could not run a model (the operator, when ONNX Runtime names one). */
export interface RuntimeEvaluation {
  /** the package: onnxruntime-node or onnxruntime-web */
  runtime: string;
  version: string;
  model?: RuntimeMeasure;
  reference?: RuntimeMeasure;
  fidelity?: Fidelity;
  error?: { path: string; message: string; op?: string; node?: string };
}

export interface Evaluation {
  model: Measure;
  reference?: Measure;
  fidelity?: Fidelity;
  /** per runtime, when more than onnxruntime-node was asked for */
  runtimes?: RuntimeEvaluation[];
  /** one line each, for stderr and the report: what was not measured and why */
  warnings: string[];
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

/**
 * Run `model` (and `reference`, when given) on `data` in each of `opts.runtimes` (default: node
 * alone), measuring quality and latency beside the size each already has. The first runtime is the
 * primary: its numbers are `model`, `reference` and `fidelity`, and a model it cannot run is the
 * user's error. Every runtime's numbers also go to `runtimes` when more than node was asked for; a
 * later runtime that cannot run a model is recorded there with the operator that failed.
 */
export async function evaluate(model: EvalSubject, data: Dataset, opts: EvalOptions = {}, reference?: EvalSubject): Promise<Evaluation> {
  const io = model.io;
  checkTask(io, data, model.path, opts.dataPath, opts.task);
  if (reference) checkSameIo(io, reference.io, model.path, reference.path);
  const runtimes = opts.runtimes?.length ? opts.runtimes : (['node'] as RuntimeName[]);
  const measured: RuntimeEvaluation[] = [];
  let primary: Measured | undefined;
  for (const [i, runtime] of runtimes.entries()) {
    try {
      const m = await measureIn(runtime, model, data, opts, reference);
      primary ??= m;
      measured.push({ runtime: RUNTIME_PACKAGE[runtime], version: runtimeVersion(runtime), model: m.model, ...(m.reference ? { reference: m.reference } : {}), ...(m.fidelity ? { fidelity: m.fidelity } : {}) });
    } catch (e) {
      if (i === 0 || !(e instanceof RuntimeFailure)) throw e;
      measured.push({ runtime: RUNTIME_PACKAGE[runtime], version: runtimeVersion(runtime), error: { path: e.path, message: e.detail, ...(e.op ? { op: e.op.type, ...(e.op.node ? { node: e.op.node } : {}) } : {}) } });
    }
  }
  const warnings = data.kind === 'tensors' && !data.labels && !data.targets && !reference ? [`${opts.dataPath ?? 'dataset'}: no labels, no targets and no reference model, so no quality number (size and latency only); give labels, targets or --reference <original model>`] : [];
  const result: Evaluation = { model: { ...facts(model), ...primary!.model }, fidelity: primary!.fidelity, warnings };
  if (reference && primary!.reference) result.reference = { ...facts(reference), ...primary!.reference };
  if (runtimes.length > 1 || runtimes[0] !== 'node') result.runtimes = measured;
  return result;
}

/** What one runtime measured: quality and latency of the model (and the reference), and the fidelity between them. */
interface Measured {
  model: RuntimeMeasure;
  reference?: RuntimeMeasure;
  fidelity?: Fidelity;
}

async function measureIn(runtime: RuntimeName, model: EvalSubject, data: Dataset, opts: EvalOptions, reference?: EvalSubject): Promise<Measured> {
  // onnxruntime-web runs one thread, as a page does
  const threads = runtime === 'web' ? 1 : (opts.threads ?? availableParallelism());
  const io = model.io;
  const open = (subject: EvalSubject) => openSession(runtime, subject.onnx, { threads });
  const session = await open(model);
  const refSession = reference ? await open(reference) : undefined;
  const task = data.kind === 'tokens' ? 'lm' : (opts.task ?? (await inferTensorTask(session, data, { ...io, dataPath: opts.dataPath })));
  const run = async (s: RuntimeSession, subject: EvalSubject, ref?: { session: RuntimeSession; subject: EvalSubject }): Promise<{ quality?: Quality; fidelity?: Fidelity }> => {
    if (data.kind === 'tokens') return evaluateCausalLM({ session: s, io: subject.io, path: subject.path }, data, { vocab: io.outputWidth, reference: ref && { session: ref.session, io: ref.subject.io, path: ref.subject.path }, dataPath: opts.dataPath });
    const tio = { ...subject.io, dataPath: opts.dataPath };
    if (task === 'classification') return evaluateClassifier(s, data, tio, ref?.session);
    return evaluateRegression(s, data, tio, task as 'regression' | 'image-to-image', { reference: ref?.session, dataRange: opts.dataRange });
  };
  const latency = (s: RuntimeSession, subject: EvalSubject) => (opts.latency === false ? undefined : latencyOf(s, subject.io, data, threads, opts.latency ?? {}));

  try {
    const main = await run(session, model, reference && refSession ? { session: refSession, subject: reference } : undefined);
    const out: Measured = { model: { quality: main.quality, latency: await latency(session, model) }, fidelity: main.fidelity };
    if (reference && refSession) out.reference = { quality: (await run(refSession, reference)).quality, latency: await latency(refSession, reference) };
    return out;
  } finally {
    await session.release();
    await refSession?.release();
  }
}

function facts(subject: EvalSubject): Pick<Measure, 'path' | 'sha256' | 'size'> {
  return { path: subject.path, sha256: subject.sha256, size: subject.size };
}

function runtimeVersion(runtime: RuntimeName): string {
  return runtime === 'web' ? ortWebVersion() : ortVersion();
}

function checkTask(io: ModelIo, data: Dataset, modelPath: string, dataPath?: string, task?: EvalTask): void {
  if (task === 'lm' && data.kind !== 'tokens') throw new UserError(`${dataPath ?? 'dataset'}: task lm needs token data, the dataset holds ${data.kind} (field task)`);
  if (task && task !== 'lm' && data.kind === 'tokens') throw new UserError(`${dataPath ?? 'dataset'}: task ${task} needs tensor data, the dataset holds token ids (field task)`);
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

async function latencyOf(s: RuntimeSession, io: ModelIo, data: Dataset, threads: number, o: Partial<LatencyOptions>): Promise<Latency> {
  const runs = o.runs ?? 20;
  const warmup = o.warmup ?? 3;
  if (data.kind === 'tokens') {
    const seqLen = o.seqLen ?? 128;
    const batch = o.batch ?? 1;
    const ids = new Int32Array(batch * seqLen);
    const source = data.sequences.flatMap((s) => Array.from(s));
    for (let i = 0; i < ids.length; i++) ids[i] = source[i % Math.max(source.length, 1)] ?? 0;
    return measureLatency(s, lmFeeds(io, ids, batch, seqLen), { runs, warmup, threads, batch, seqLen });
  }
  const batch = io.inputDims[0] > 0 ? io.inputDims[0] : (o.batch ?? 1);
  const dims = [batch, ...io.inputDims.slice(1).map((d, i) => (d > 0 ? d : data.sampleShape[i] ?? 1))];
  const size = dims.reduce((a, b) => a * b, 1);
  const input = new Float32Array(size);
  input.set(data.data.subarray(0, Math.min(size, data.data.length)));
  const feed: HostFeed = io.inputType === DataType.FLOAT16 ? { type: 'float16', data: float32ToFloat16(input), dims } : { type: 'float32', data: input, dims };
  return measureLatency(s, { [io.inputName]: feed }, { runs, warmup, threads, batch });
}
