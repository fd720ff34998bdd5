/**
 * CPU per call of attention's inner-128 products with a narrow output (P·V, Pᵀ·∂O, ∂S·K on
 * [4,8,128,128] with [4,8,128,8], P a causal softmax): the wasm backend's BatchMatMul against
 * src/runtime/tfjs/ops/narrow-output.ts. Run: npx tsc -p tsconfig.json && node dist/bench/narrow-output.js
 */
import { pathToFileURL } from 'node:url';
import type * as tfjs from '@tensorflow/tfjs';
import { loadTf } from '../src/runtime/tf.js';
import { narrowOutputProduct } from '../src/runtime/tfjs/ops/narrow-output.js';
import { seededRandom } from '../src/util/random.js';

export async function benchNarrowOutput(calls = 60): Promise<string> {
  const { tf, backend } = await loadTf();
  const [B, H, S, D] = [4, 8, 128, 8];
  const r = seededRandom(1);
  const P = new Float32Array(B * H * S * S);
  for (let row = 0; row < B * H * S; row++) {
    const p = P.subarray(row * S, (row + 1) * S);
    for (let j = 0; j <= row % S; j++) p[j] = Math.exp(r());
    const sum = p.reduce((a, b) => a + b, 0);
    p.forEach((x, j) => (p[j] = x / sum));
  }
  const p = tf.tensor(P, [B, H, S, S]);
  const v = tf.tensor(Float32Array.from({ length: B * H * S * D }, () => r() - 0.5), [B, H, S, D]);
  const kt = tf.tensor(Float32Array.from({ length: B * H * S * D }, () => r() - 0.5), [B, H, D, S]);
  const cpuMs = (f: () => tfjs.Tensor) => {
    for (let i = 0; i < 3; i++) tf.dispose(f());
    const c0 = process.cpuUsage();
    for (let i = 0; i < calls; i++) tf.dispose(f());
    const c = process.cpuUsage(c0);
    return ((c.user + c.system) / 1000 / calls).toFixed(2);
  };
  const cases: [string, tfjs.Tensor, tfjs.Tensor, boolean, boolean][] = [
    ['P·V', p, v, false, false],
    ['Pᵀ·∂O', p, v, true, false],
    ['∂S·K (Kᵀ stored)', p, kt, false, true],
  ];
  const lines = cases.map(([name, a, b, ta, tb]) => `${name}: BatchMatMul ${cpuMs(() => tf.matMul(a, b, ta, tb))} CPU ms, narrow-output loop ${cpuMs(() => narrowOutputProduct(tf, a, b, ta, tb)!)} CPU ms`);
  tf.dispose([p, v, kt]);
  return `${backend} backend, ${calls} calls each\n${lines.join('\n')}`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) console.log(await benchNarrowOutput());
