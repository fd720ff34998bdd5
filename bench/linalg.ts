/**
 * Throughput of src/linalg at the sizes pare meets: GEMM at 1024² and 576×1536×16384 (a calibration
 * batch through a GPT-2-sized layer), Gram accumulation of 16384 tokens × 1536 channels, Cholesky at
 * 1536 and 3072, exact and truncated SVD of 576×1536. Each kernel is warmed once, then timed as the median
 * of a few runs. GFLOP/s counts 2mkn for GEMM, 2·rows·d² for the Gram (symmetry not exploited), n³/3
 * for Cholesky and 2n³/3 for hessianInverseUpperCholesky (Cholesky + triangular inverse); SVD rows report
 * time only. On a shared 2-core machine expect ±30% run to run.
 * Run: npx tsc -p tsconfig.json && node dist/bench/linalg.js
 */
import { pathToFileURL } from 'node:url';
import { releaseKernels } from '../src/linalg/backend.js';
import { cholesky, hessianInverseUpperCholesky } from '../src/linalg/cholesky.js';
import { matmul } from '../src/linalg/gemm.js';
import { GramAccumulator } from '../src/linalg/gram.js';
import { svd, truncatedSvd } from '../src/linalg/svd.js';

function random(count: number, seed: number, T: Float32ArrayConstructor | Float64ArrayConstructor): Float32Array | Float64Array {
  const out = new T(count);
  let s = seed;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

function spd(n: number): Float64Array {
  // diagonally dominant symmetric: cheap to build, positive definite
  const A = random(n * n, n, Float64Array) as Float64Array;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) A[j * n + i] = A[i * n + j]!;
    A[i * n + i] = n;
  }
  return A;
}

async function time(fn: () => Promise<unknown>, reps: number): Promise<number> {
  await fn();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await fn();
    ts.push((performance.now() - t0) / 1000);
  }
  return ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)]!;
}

function row(kernel: string, precision: string, seconds: number, flops?: number): string {
  const gf = flops === undefined ? '—' : (flops / seconds / 1e9).toFixed(1);
  return `| ${kernel} | ${precision} | ${(seconds * 1000).toFixed(1)} | ${gf} |`;
}

export async function benchLinalg(): Promise<string> {
  const rows = ['| kernel | precision | ms (median) | GFLOP/s |', '|---|---|---:|---:|'];
  for (const [m, k, n] of [[1024, 1024, 1024], [576, 16384, 1536]] as const) {
    for (const [T, name] of [[Float32Array, 'float32'], [Float64Array, 'float64']] as const) {
      const A = random(m * k, 1, T);
      const B = random(k * n, 2, T);
      const s = await time(() => matmul(A, B, m, k, n), 3);
      rows.push(row(`matmul ${m}×${k}·${k}×${n}`, name, s, 2 * m * k * n));
    }
  }
  {
    const [r, d] = [16384, 1536];
    const X = random(r * d, 3, Float32Array) as Float32Array;
    const s = await time(async () => {
      const g = new GramAccumulator(d);
      await g.add(X, r);
      await g.result();
    }, 2);
    rows.push(row(`gram XᵀX, X ${r}×${d} float32`, 'float64', s, 2 * r * d * d));
  }
  for (const n of [1536, 3072]) {
    const A = spd(n);
    rows.push(row(`cholesky ${n}`, 'float64', await time(() => cholesky(A, n), 2), n ** 3 / 3));
    rows.push(row(`hessianInverseUpperCholesky ${n}`, 'float64', await time(() => hessianInverseUpperCholesky(A, n), 1), (2 * n ** 3) / 3));
  }
  {
    const [m, n] = [576, 1536];
    const A = random(m * n, 4, Float32Array) as Float32Array;
    rows.push(row(`svd ${m}×${n} (exact, Gram-eigen)`, 'float64', await time(() => svd(A, m, n), 1)));
    rows.push(row(`truncatedSvd ${m}×${n} rank 64`, 'float64', await time(() => truncatedSvd(A, m, n, 64), 1)));
  }
  await releaseKernels();
  return rows.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await benchLinalg());
}
