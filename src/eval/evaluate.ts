import { availableParallelism } from 'node:os';
import type { Dataset } from '../data/types.js';
import { UserError } from '../errors.js';
import { readOnnx } from '../model/onnx-io.js';
import type { Model } from '../model/model.js';
import { int64ToNumber } from '../model/onnx-schema.js';
import { modelSize, type SizeStats } from '../model/size.js';
import { ort, sessionFromFile } from '../runtime/ort.js';
import { sha256File } from '../util/hash.js';
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

/** Run `modelPath` (and `referencePath`, when given) in ONNX Runtime on `data`, measuring quality, size and latency. */
export async function evaluate(modelPath: string, data: Dataset, opts: EvalOptions = {}, referencePath?: string): Promise<Evaluation> {
  const threads = opts.threads ?? availableParallelism();
  const model = readOnnx(modelPath);
  const io = await resolveKvShapes(model, modelIo(model), threads);
  checkTask(io, data, modelPath, opts.dataPath);
  const session = await sessionFromFile(modelPath, { threads });
  const refSession = referencePath ? await sessionFromFile(referencePath, { threads }) : undefined;
  let refIo: ModelIo | undefined;
  if (referencePath) {
    const ref = readOnnx(referencePath);
    refIo = await resolveKvShapes(ref, modelIo(ref), threads);
    checkSameIo(io, refIo, modelPath, referencePath);
  }

  const run = async (s: ort.InferenceSession, sIo: ModelIo, reference?: { session: ort.InferenceSession; io: ModelIo }) =>
    data.kind === 'tokens'
      ? evaluateCausalLM({ session: s, io: sIo }, data, { vocab: io.outputWidth, reference, dataPath: opts.dataPath })
      : evaluateClassifier(s, data, { ...io, dataPath: opts.dataPath }, reference?.session);

  const main = await run(session, io, refSession && refIo ? { session: refSession, io: refIo } : undefined);
  const measure = async (path: string, m: Model, s: ort.InferenceSession, quality: Measure['quality']): Promise<Measure> => ({
    path,
    sha256: sha256File(path),
    size: modelSize(m),
    quality,
    latency: opts.latency === false ? undefined : await latencyOf(s, io, data, threads, opts.latency ?? {}),
  });
  const result: Evaluation = { model: await measure(modelPath, model, session, main.quality), fidelity: main.fidelity };
  if (referencePath && refSession) {
    const refQuality = (await run(refSession, refIo!)).quality;
    result.reference = await measure(referencePath, readOnnx(referencePath), refSession, refQuality);
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
