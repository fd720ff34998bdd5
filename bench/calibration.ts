/**
 * Calibration cost on one-row samples: a classifier's fc layer sees one row per image, and XᵀX used
 * to be one float64 Gemm (and a dim×dim double output) per image. GramAccumulator now buffers rows
 * into blocks of up to 4096 (16 MiB) and does one Gram per block. Rows: the fc input of mnist-8
 * (`Times212`, 256 wide) over 256 MNIST test digits, captured in ONNX Runtime, and 256 seeded rows
 * 3136 wide (the fc1 of a PyTorch MNIST CNN, 64·7·7), each accumulated per sample (blockRows 1, the
 * old path) and blocked; then the whole `Calibrator.collect` of mnist-8's Hessian at 256 images.
 * CPU time is process.cpuUsage (user + system, all threads); the machine is shared and loaded, so
 * wall times are inflated.
 * Run: npx tsc -p tsconfig.json && node dist/bench/calibration.js
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { calibrationFeeds } from '../src/calibrate/feeds.js';
import { Calibrator } from '../src/calibrate/calibrator.js';
import { loadDataset } from '../src/data/load.js';
import type { TensorDataset } from '../src/data/types.js';
import { releaseKernels } from '../src/linalg/backend.js';
import { GramAccumulator } from '../src/linalg/gram.js';
import { linears } from '../src/model/linears.js';
import { loadModel } from '../src/model/load.js';
import { captureSession } from '../src/runtime/ort.js';

const ROOT = resolve(import.meta.dirname, '../..');
const IMAGES = 256;

async function timed(fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

async function accumulate(rows: Float32Array[], dim: number, blockRows?: number): Promise<void> {
  const acc = new GramAccumulator(dim, blockRows === undefined ? {} : { blockRows });
  for (const r of rows) await acc.add(r, 1);
  await acc.result();
}

function seededRows(count: number, dim: number): Float32Array[] {
  let s = 7;
  return Array.from({ length: count }, () =>
    Float32Array.from({ length: dim }, () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return Math.max(0, s / 4294967296 - 0.3);
    }),
  );
}

export async function benchCalibration(): Promise<string> {
  const model = loadModel(resolve(ROOT, 'fixtures/mnist-8/model.onnx'));
  const data = (await loadDataset({ kind: 'idx', images: 'fixtures/mnist/t10k-head1000-images-idx3-ubyte.gz', scale: 1, limit: IMAGES }, ROOT)) as TensorDataset;
  const feeds = calibrationFeeds(model, data, IMAGES);
  const fc = linears(model).find((l) => l.name === 'Times212')!;
  const session = await captureSession(model, [fc.input]);
  const captured: Float32Array[] = [];
  for (const f of feeds) captured.push(Float32Array.from((await session.run(f))[fc.input]!.data as Float32Array));
  await session.release();

  const out = ['| accumulation | rows × width | per sample: CPU s (wall s) | blocked: CPU s (wall s) | CPU speed-up |', '|---|---|---:|---:|---:|'];
  for (const [what, rows] of [[`mnist-8 \`${fc.name}\` input, ${IMAGES} MNIST digits`, captured], [`seeded rows as wide as a PyTorch MNIST CNN's fc1`, seededRows(IMAGES, 3136)]] as const) {
    const dim = rows[0]!.length;
    await accumulate(rows.slice(0, 4), dim); // warm the Gram kernel
    const before = await timed(() => accumulate(rows, dim, 1));
    const after = await timed(() => accumulate(rows, dim));
    out.push(`| ${what} | ${rows.length} × ${dim} | ${before.cpu.toFixed(3)} (${before.wall.toFixed(3)}) | ${after.cpu.toFixed(3)} (${after.wall.toFixed(3)}) | ${(before.cpu / after.cpu).toFixed(1)}× |`);
  }
  const whole = await timed(async () => {
    const cal = new Calibrator(feeds, 'oneshot', 1);
    await cal.collect(model, [fc], { hessian: true });
  });
  out.push('', `Whole \`Calibrator.collect\` of \`${fc.name}\`'s XᵀX on ${IMAGES} images (${IMAGES} ONNX Runtime runs at batch 1, blocked Gram): CPU ${whole.cpu.toFixed(3)} s, wall ${whole.wall.toFixed(3)} s.`);
  await releaseKernels();
  return out.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(await benchCalibration());
}
