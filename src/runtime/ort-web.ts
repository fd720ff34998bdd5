import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as OrtWeb from 'onnxruntime-web';
import { readOnnx } from '../model/onnx-io.js';
import { readInputFile } from '../util/read-file.js';
import { failingOperator, firstLine, RuntimeFailure, type HostOutput, type RuntimeSession } from './session.js';

/**
 * onnxruntime-web's WebAssembly backend, running in Node: the runtime a browser page (and
 * transformers.js there) runs models in, not a simulation of it. It loads its .wasm from its own
 * package folder, so nothing is fetched. One thread: a page without cross-origin isolation gets no
 * SharedArrayBuffer and so no wasm threads, and in Node one thread needs no worker.
 */

let loaded: Promise<typeof OrtWeb> | undefined;

/** The package, imported on first use (its wasm module is only instantiated by the first session). */
function ortWeb(): Promise<typeof OrtWeb> {
  loaded ??= import('onnxruntime-web').then((m) => {
    m.env.wasm.numThreads = 1;
    m.env.wasm.proxy = false;
    m.env.logLevel = 'error';
    return m;
  });
  return loaded;
}

export function ortWebVersion(): string {
  // the package's exports map hides package.json; it sits above the entry point
  try {
    let dir = dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
    for (let up = 0; up < 4; up++, dir = dirname(dir)) {
      const manifest = join(dir, 'package.json');
      if (!existsSync(manifest)) continue;
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'onnxruntime-web') return pkg.version ?? 'unknown';
    }
  } catch {
    // not installed: the session would fail first and say so
  }
  return 'unknown';
}

/** The external data files the model names, read whole: onnxruntime-web takes them as buffers beside the model bytes. */
function externalData(path: string): { path: string; data: Uint8Array }[] {
  const model = readOnnx(path);
  const locations = new Set<string>();
  for (const t of model.graph.initializer ?? []) {
    if (t.data_location !== 1) continue;
    const location = (t.external_data ?? []).find((e) => e.key === 'location')?.value;
    if (location) locations.add(location);
  }
  return [...locations].map((location) => ({ path: location, data: readInputFile(join(model.dir, location), 'external data file') }));
}

/** A session over a model file in onnxruntime-web's wasm backend; a model it cannot load is a RuntimeFailure naming the operator. */
export async function webSessionFromFile(path: string): Promise<RuntimeSession> {
  const ort = await ortWeb();
  const bytes = readInputFile(path, 'ONNX model');
  const external = externalData(path);
  let session: OrtWeb.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all', logSeverityLevel: 3, ...(external.length ? { externalData: external } : {}) });
  } catch (e) {
    const message = String((e as Error)?.message ?? e);
    throw new RuntimeFailure('web', path, stripPrefix(firstLine(e)), failingOperator(message));
  }
  return {
    runtime: 'web',
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, outputs) {
      const tensors: Record<string, OrtWeb.Tensor> = {};
      for (const [name, f] of Object.entries(feeds)) tensors[name] = new ort.Tensor(f.type, f.data, f.dims);
      let out: OrtWeb.InferenceSession.ReturnType;
      try {
        out = outputs ? await session.run(tensors, [...outputs]) : await session.run(tensors);
      } catch (e) {
        throw new RuntimeFailure('web', path, stripPrefix(firstLine(e)), failingOperator(String((e as Error)?.message ?? e)));
      }
      const host: Record<string, HostOutput> = {};
      for (const [name, t] of Object.entries(out)) host[name] = { type: t.type, dims: [...t.dims], data: t.data as HostOutput['data'] };
      return host;
    },
    release: () => session.release(),
  };
}

/** "Can't create a session. ERROR_CODE: 9, ERROR_MESSAGE: Could not find…" -> "Could not find…" */
function stripPrefix(message: string): string {
  return message.replace(/^.*ERROR_MESSAGE: /, '');
}
