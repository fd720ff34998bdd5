import { nodeSession } from './node-session.js';
import { sessionFromFile, type SessionOptions } from './ort.js';
import { webSessionFromFile } from './ort-web.js';
import type { RuntimeName, RuntimeSession } from './session.js';

/**
 * A session over a model file in `runtime`. onnxruntime-node takes `opts` as given; onnxruntime-web
 * always runs one thread with all graph optimizations, as a browser page does.
 */
export async function openSession(runtime: RuntimeName, path: string, opts: SessionOptions = {}): Promise<RuntimeSession> {
  if (runtime === 'web') return webSessionFromFile(path);
  return nodeSession(await sessionFromFile(path, opts), path);
}
