/**
 * src/runtime — layer 5 (above data): ONNX Runtime sessions and feeds, and the TensorFlow.js
 * executor for ONNX graphs (runtime/tfjs). Knows models, not passes or datasets' meaning.
 */
import { createRequire } from 'node:module';
import * as ort from 'onnxruntime-node';
import type { Model } from '../model/model.js';
import { escapeControl } from '../model/validate.js';
import { encodeInline, encodeInlineWithOutputs } from '../model/onnx-io.js';
import { UserError } from '../errors.js';
import { failingOperator, RuntimeFailure } from './session.js';

export { ort };

export interface SessionOptions {
  /** intra-op threads; 0 lets ONNX Runtime choose */
  threads?: number;
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** expose these intermediate values as extra outputs (only for sessions built from a Model) */
  extraOutputs?: string[];
  /**
   * accuracy_level ORT gives the MatMulNBits it fuses from DequantizeLinear → MatMul (its default 4
   * computes with int8 activations); 0 keeps float32 arithmetic, so outputs equal the dequantized model's
   */
  qdqMatMulNBitsAccuracyLevel?: 0 | 1 | 2 | 3 | 4;
}

export function ortVersion(): string {
  const require = createRequire(import.meta.url);
  try {
    return (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function toOrtOptions(opts: SessionOptions): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: opts.threads ?? 0,
    interOpNumThreads: 1,
    graphOptimizationLevel: opts.optimization ?? 'all',
    executionMode: 'sequential',
    // capture sessions leave initializers unused on purpose; ORT's warnings about them are noise, and
    // its errors come back as exceptions (pare prints one line), so only fatal ones are logged
    logSeverityLevel: 4,
    ...(opts.qdqMatMulNBitsAccuracyLevel !== undefined ? { extra: { session: { qdq_matmulnbits_accuracy_level: String(opts.qdqMatMulNBitsAccuracyLevel) } } } : {}),
  };
}

/**
 * Sessions that measure calibration statistics: float32 arithmetic for quantized layers (ORT's
 * default fuses int8 DequantizeLinear → MatMul into an int8-activation MatMulNBits), so block i is
 * calibrated on the outputs of the fake-quantized float model, as the GPTQ/SparseGPT protocol has it.
 */
export function calibrationSessionOptions(threads: number): SessionOptions {
  return { threads, qdqMatMulNBitsAccuracyLevel: 0 };
}

/**
 * A session over a model file on disk (external data resolves against the file's folder). The file
 * is the user's: ONNX Runtime refusing it, or failing while running it (an index out of range in a
 * corrupted constant), is a user error naming it.
 */
export async function sessionFromFile(path: string, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(path, toOrtOptions(opts));
  } catch (e) {
    throw new RuntimeFailure('node', path, firstLine(e), failingOperator(String((e as Error)?.message ?? e)));
  }
  const run = session.run.bind(session) as (...args: unknown[]) => Promise<ort.InferenceSession.OnnxValueMapType>;
  session.run = (async (...args: unknown[]) => {
    try {
      return await run(...args);
    } catch (e) {
      throw new UserError(`${path}: ONNX Runtime failed running the model (${firstLine(e)})`);
    }
  }) as ort.InferenceSession['run'];
  return session;
}

/** A session over an in-memory Model (external tensors are inlined; keep this for models under 2 GB). */
export async function sessionFromModel(model: Model, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const bytes = encodeInline(model, opts.extraOutputs);
  try {
    return await ort.InferenceSession.create(bytes, toOrtOptions(opts));
  } catch (e) {
    throw new Error(`ONNX Runtime cannot load the model built from ${model.path}: ${firstLine(e)}`);
  }
}

/**
 * ONNX Runtime's message as one line for a user: its first line, without the "Load model from …
 * failed:" and C++ source-location prefixes, control characters escaped, cut at 400 characters.
 */
export function ortMessage(e: unknown): string {
  const first = String((e as Error)?.message ?? e).split('\n')[0]!;
  const bare = first.replace(/^Load model from .*? failed:/, '').replace(/\/onnxruntime_src\/\S+:\d+ .*?\)(?: const)?\s(?=[A-Z[])/g, '');
  const clean = escapeControl(bare.trim());
  return clean.length > 400 ? `${clean.slice(0, 397)}...` : clean;
}

const firstLine = ortMessage;

/** A session over `model` whose only outputs are `outputs`, so ONNX Runtime runs just what they need. */
export async function captureSession(model: Model, outputs: string[], opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  return sessionFromBytes(encodeInlineWithOutputs(model, outputs), opts, `a capture session for ${outputs.join(', ')} of ${model.path}`);
}

/**
 * A session over serialized model bytes (captureSession's, or a copy of them in a worker thread:
 * the same bytes and options give the same session and the same outputs). `what` names it in errors.
 */
export async function sessionFromBytes(bytes: Uint8Array, opts: SessionOptions, what: string): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(bytes, toOrtOptions(opts));
  } catch (e) {
    throw new Error(`ONNX Runtime cannot build ${what}: ${firstLine(e)}`);
  }
}

