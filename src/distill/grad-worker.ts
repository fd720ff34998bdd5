import { parentPort, workerData } from 'node:worker_threads';
import { decodeModelProto } from '../model/onnx-io.js';
import { Model } from '../model/model.js';
import { OnnxExecutor } from '../runtime/tfjs/executor.js';
import type { KdParams } from './kd-params.js';
import { studentLoss } from './student-loss.js';
import type { StepRequest, WorkerReply, WorkerSetup } from './parallel.js';

/**
 * A data-parallel gradient worker (parallel.ts): builds its own executor over the student, then for
 * each request takes the main thread's weights, differentiates the loss of its share of the batch
 * and posts the loss and the gradients back (transferred, by initializer name).
 */

const setup = workerData as WorkerSetup;
const port = parentPort!;
const post = (m: WorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

try {
  const model = new Model(decodeModelProto(setup.model, setup.path), setup.path);
  const trainable = new Set(setup.trainable);
  const exec = await OnnxExecutor.create(model, { trainable: (n) => trainable.has(n) });
  const tf = exec.tf;
  const p = setup.params as KdParams;
  const varByTfName = new Map([...exec.variables].map(([init, v]) => [v.name, init]));
  const varList = [...exec.variables.values()];
  port.on('message', (req: StepRequest) => {
    try {
      for (const [name, v] of exec.variables) tf.tidy(() => v.assign(tf.tensor(req.weights[name]!, v.shape)));
      const target = { logits: req.logits, hidden: new Map(req.hidden), attention: new Map(req.attention) };
      const { value, grads } = tf.variableGrads(() => studentLoss(exec, { ...p, batch_size: req.rows }, setup.io, req.ids, target, setup.hidden, setup.attention), varList);
      const out: Record<string, Float32Array> = {};
      for (const [tfName, g] of Object.entries(grads)) {
        out[varByTfName.get(tfName)!] = (g.dataSync() as Float32Array).slice();
        g.dispose();
      }
      const loss = value.dataSync()[0]!;
      value.dispose();
      post({ loss, grads: out }, Object.values(out).map((a) => a.buffer as ArrayBuffer));
    } catch (e) {
      post({ error: (e as Error).message });
    }
  });
  post({ ready: true });
} catch (e) {
  post({ error: (e as Error).message });
}
