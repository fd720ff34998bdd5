import * as tfjs from '@tensorflow/tfjs';

/**
 * TensorFlow.js for the work that needs autodiff (distillation). `@tensorflow/tfjs-node` is an
 * optional accelerator: its install step downloads libtensorflow, which fails on machines without
 * general internet, so it is used when it imports and skipped otherwise; then the WebAssembly
 * backend runs, and the plain CPU backend when wasm cannot start.
 */
export type Tf = typeof tfjs;

export interface TfRuntime {
  tf: Tf;
  backend: string;
  /** why a faster backend was not used, for the report's warnings */
  fallback?: string;
}

let runtime: Promise<TfRuntime> | undefined;

async function start(): Promise<TfRuntime> {
  let fallback: string | undefined;
  try {
    const node = (await import('@tensorflow/tfjs-node' as string)) as Tf;
    await node.ready();
    return { tf: node, backend: node.getBackend() };
  } catch (e) {
    fallback = `@tensorflow/tfjs-node unavailable (${String((e as Error).message).split('\n')[0]})`;
  }
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    if (await tfjs.setBackend('wasm')) {
      await tfjs.ready();
      shareIdentityOnWasm();
      return { tf: tfjs, backend: 'wasm', fallback };
    }
  } catch (e) {
    fallback += `; wasm backend failed (${String((e as Error).message).split('\n')[0]})`;
  }
  await tfjs.setBackend('cpu');
  await tfjs.ready();
  return { tf: tfjs, backend: 'cpu', fallback };
}

/**
 * tfjs keeps every tensor a gradient needs through the Identity kernel, and the wasm backend's
 * Identity copies the buffer (≈ 12 ms of CPU in a 4 × 128 stories260K distillation step). This one
 * shares it by reference count, as the cpu backend's Identity and wasm's own Reshape do: tfjs
 * tensors are never written in place (a Variable's assign swaps in a new buffer).
 */
function shareIdentityOnWasm(): void {
  const copy = tfjs.getKernel('Identity', 'wasm');
  if (!copy) return;
  tfjs.unregisterKernel('Identity', 'wasm');
  tfjs.registerKernel({
    ...copy,
    kernelFunc: (args) => {
      const x = args.inputs.x as tfjs.TensorInfo;
      if (x.dtype === 'string') return copy.kernelFunc(args);
      (args.backend as tfjs.KernelBackend).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
  });
}

/** The TensorFlow.js runtime, started once per process. */
export function loadTf(): Promise<TfRuntime> {
  runtime ??= start();
  return runtime;
}
