/**
 * src/runtime — layer 5 (above data): ONNX Runtime sessions and feeds, and the TensorFlow.js
 * executor for ONNX graphs (runtime/tfjs). Knows models, not passes or datasets' meaning.
 */
import { createRequire } from 'node:module';
import * as ort from 'onnxruntime-node';
import type { Model } from '../model/model.js';
import { encodeInline, encodeInlineWithOutputs } from '../model/onnx-io.js';
import { failingOperator, firstLine, RuntimeFailure } from './session.js';

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
    // capture sessions leave initializers unused on purpose; ORT's warnings about them are noise
    logSeverityLevel: 3,
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

/** A session over a model file on disk (external data resolves against the file's folder). */
export async function sessionFromFile(path: string, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(path, toOrtOptions(opts));
  } catch (e) {
    throw new RuntimeFailure('node', path, firstLine(e), failingOperator(String((e as Error)?.message ?? e)));
  }
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


/** A session over `model` whose only outputs are `outputs`, so ONNX Runtime runs just what they need. */
export async function captureSession(model: Model, outputs: string[], opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const bytes = encodeInlineWithOutputs(model, outputs);
  try {
    return await ort.InferenceSession.create(bytes, toOrtOptions(opts));
  } catch (e) {
    throw new Error(`ONNX Runtime cannot build a capture session for ${outputs.join(', ')} of ${model.path}: ${firstLine(e)}`);
  }
}

