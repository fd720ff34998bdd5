import { ortFeeds } from './feeds.js';
import type { ort } from './ort.js';
import { failingOperator, firstLine, RuntimeFailure, type HostOutput, type RuntimeSession } from './session.js';

/** An onnxruntime-node session behind the runtime-agnostic interface; `path` names the model in errors. */
export function nodeSession(session: ort.InferenceSession, path: string): RuntimeSession {
  return {
    runtime: 'node',
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, outputs) {
      let out: ort.InferenceSession.ReturnType;
      try {
        out = outputs ? await session.run(ortFeeds(feeds), [...outputs]) : await session.run(ortFeeds(feeds));
      } catch (e) {
        throw new RuntimeFailure('node', path, firstLine(e), failingOperator(String((e as Error)?.message ?? e)));
      }
      const host: Record<string, HostOutput> = {};
      for (const [name, t] of Object.entries(out)) host[name] = { type: t.type, dims: [...t.dims], data: t.data as HostOutput['data'] };
      return host;
    },
    release: () => session.release(),
  };
}
