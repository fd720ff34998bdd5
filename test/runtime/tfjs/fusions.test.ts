import type * as tfjs from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../../src/model/load.js';
import { lmFeeds, modelIo } from '../../../src/model/io.js';
import type { NodeProto } from '../../../src/model/onnx-schema.js';
import { ortFeeds } from '../../../src/runtime/feeds.js';
import { resolveKvShapes } from '../../../src/runtime/kv-shapes.js';
import { sessionFromModel } from '../../../src/runtime/ort.js';
import { loadTf } from '../../../src/runtime/tf.js';
import { OnnxExecutor } from '../../../src/runtime/tfjs/executor.js';
import { fuseRotateHalf } from '../../../src/runtime/tfjs/fusions.js';
import { rotateHalf, rotateHalfMatrix } from '../../../src/runtime/tfjs/ops/rotate-half.js';
import { HostArray } from '../../../src/runtime/tfjs/host.js';
import { seededRandom } from '../../../src/util/random.js';
import { fixturePath } from '../../helpers.js';
import { expectClose, storiesTokens } from './helpers.js';

const KV_MODEL = fixturePath('stories260K-kv/model.onnx');

describe('rotate-half as one product with a signed permutation', () => {
  it('equals concat(−x₂, x₁) exactly, and its gradient is the inverse rotation exactly (index formula)', async () => {
    const { tf } = await loadTf();
    const r = seededRandom(3);
    const shape = [2, 3, 5, 8];
    const d = 8;
    const h = d / 2;
    const X = Float32Array.from({ length: 240 }, () => (r() - 0.5) * 10);
    const G = Float32Array.from({ length: 240 }, () => r() - 0.5);
    const R = rotateHalfMatrix(tf, d);
    const x = tf.tensor(X, shape);
    const y = rotateHalf(tf, x, R).dataSync();
    const [dx] = tf.grads((v: tfjs.Tensor) => tf.sum(tf.mul(rotateHalf(tf, v, R), tf.tensor(G, shape))))([x]);
    const g = dx!.dataSync();
    for (let i = 0; i < X.length; i++) {
      const j = i % d;
      const row = i - j;
      // y[j] = −x[j+h] for j < h, x[j−h] after; ∂L/∂x[k] = G[k+h] for k < h, −G[k−h] after
      expect(y[i]).toBe(j < h ? -X[row + j + h]! : X[row + j - h]!);
      expect(g[i]).toBe(j < h ? G[row + j + h]! : -G[row + j - h]!);
    }
    tf.dispose([R, x, dx!]);
  });

  it('fuses the ten Split → Neg → Concat rotations of stories260K-kv, and nothing that only looks alike', () => {
    const model = loadModel(KV_MODEL);
    const halves = new HostArray('int32', [2], Int32Array.from([4, 4]));
    const fused = fuseRotateHalf(model.graph.node ?? [], new Map([[model.graph.node!.find((n) => n.op_type === 'Split')!.input![1]!, halves]]));
    expect(fused.filter((n) => n.op_type === 'RotateHalf').length).toBe(10);
    const split = (sizes: string | undefined, axis: number): NodeProto => ({ op_type: 'Split', input: sizes ? ['x', sizes] : ['x'], output: ['a', 'b'], attribute: [{ name: 'axis', i: axis }] });
    const tail: NodeProto[] = [
      { op_type: 'Neg', input: ['b'], output: ['nb'] },
      { op_type: 'Concat', input: ['nb', 'a'], output: ['y'], attribute: [{ name: 'axis', i: -1 }] },
    ];
    const sizes = new Map([
      ['even', new HostArray('int32', [2], Int32Array.from([4, 4]))],
      ['uneven', new HostArray('int32', [2], Int32Array.from([2, 6]))],
    ]);
    const count = (nodes: NodeProto[]) => fuseRotateHalf(nodes, sizes).filter((n) => n.op_type === 'RotateHalf').length;
    expect(count([split(undefined, -1), ...tail])).toBe(1);
    expect(count([split('even', -1), ...tail])).toBe(1);
    expect(count([split('uneven', -1), ...tail])).toBe(0);
    expect(count([split('even', 1), ...tail])).toBe(0);
    // Concat(Neg(x₁), x₂) is a different rotation
    expect(count([split('even', -1), { op_type: 'Neg', input: ['a'], output: ['na'] }, { op_type: 'Concat', input: ['na', 'b'], output: ['y'], attribute: [{ name: 'axis', i: -1 }] }])).toBe(0);
  });

  it('stories260K-kv with a right-padded attention mask matches ONNX Runtime (RotateHalf, the mask Or and Where)', async () => {
    const model = loadModel(KV_MODEL);
    const io = await resolveKvShapes(model, modelIo(model));
    const [B, T] = [2, 48];
    const host = lmFeeds(io, storiesTokens(B, T), B, T);
    const mask = host[io.attentionMask!.name]!;
    for (let t = 30; t < T; t++) (mask.data as unknown as { [i: number]: unknown })[T + t] = mask.data instanceof BigInt64Array ? 0n : 0; // row 1 padded after 30 tokens
    const exec = await OnnxExecutor.create(model);
    try {
      const got = exec.tf.tidy(() => exec.run(exec.feeds(host), [io.outputName])[io.outputName]!.dataSync() as Float32Array);
      const session = await sessionFromModel(model);
      const res = await session.run(ortFeeds(host));
      await session.release();
      const ref = res[io.outputName]!.data as Float32Array;
      const c = expectClose(got, ref, 1e-4);
      expect(c.ok, `relFro ${c.relFro}; ${c.worst}`).toBe(true);
    } finally {
      exec.dispose();
    }
  });
});
