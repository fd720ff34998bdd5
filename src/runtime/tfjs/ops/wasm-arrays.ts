import type * as tfjs from '@tensorflow/tfjs';
import type { Tf } from '../../tf.js';

interface WasmBackendInternals {
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  wasm: { HEAPU8: Uint8Array };
}

/**
 * A float32 tensor's values to read at once: on the wasm backend a view into its heap, elsewhere
 * dataSync's array. dataSync on wasm copies into a fresh array, ≈ 1–5 ms of CPU for a [4,8,128,128]
 * attention matrix (a product of it takes ≈ 2). The view is valid until the heap grows: read it
 * before creating another tensor, and never write to it (tensors are shared by reference count).
 */
export function valuesNow(tf: Tf, t: tfjs.Tensor): Float32Array {
  if (tf.getBackend() === 'wasm') {
    const backend = tf.backend() as unknown as WasmBackendInternals;
    const data = backend.dataIdMap.get(t.dataId);
    if (data) return new Float32Array(backend.wasm.HEAPU8.buffer, data.memoryOffset, t.size);
  }
  return t.dataSync() as Float32Array;
}

/**
 * An array for a product's output that becomes a tensor at once: on wasm one array serves every
 * product (tf.tensor copies it into the heap; a fresh 2 MB array per product made the garbage
 * collector the cost), elsewhere a new one (other backends keep the array).
 */
export function outputArray(tf: Tf, size: number): Float32Array {
  if (tf.getBackend() !== 'wasm') return new Float32Array(size);
  if (scratch.length < size) scratch = new Float32Array(size);
  return scratch.subarray(0, size);
}

let scratch = new Float32Array(0);
