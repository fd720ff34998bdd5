/**
 * Time per layer of the output-aware Kronecker fit (alternating least squares, kronecker-weighted.ts)
 * on stories260K's real weights and the shapes the 60 % budget picks, with H = XᵀX of the layer's
 * calibration inputs (stories 1–10, 128-token segments, one-shot), up to 10 ALS sweeps (the
 * pass's default; it stops early when the objective stops falling). Wall and CPU seconds per layer (the machine is shared: CPU is the fairer column).
 * Run: npx tsc -p tsconfig.json && node dist/bench/kronecker-als.js
 */
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Calibrator } from '../src/calibrate/calibrator.js';
import { calibrationFeeds } from '../src/calibrate/feeds.js';
import { loadDataset } from '../src/data/load.js';
import { chooseShape } from '../src/decompose/kronecker-budget.js';
import { nearestKronecker } from '../src/decompose/kronecker-math.js';
import { weightedKronecker } from '../src/decompose/kronecker-weighted.js';
import { releaseKernels } from '../src/linalg/backend.js';
import { readWeight } from '../src/model/linear-weights.js';
import { linears } from '../src/model/linears.js';
import { readOnnx } from '../src/model/onnx-io.js';

const ROOT = resolve(import.meta.dirname, '../..');

export async function benchKroneckerAls(iterations = 10, pick: (name: string) => boolean = (name) => name.startsWith('layers.')): Promise<string> {
  const model = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
  const data = await loadDataset({ kind: 'text', path: 'tinystories/valid-head.txt', tokenizer: 'stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512, select: '1-10', segment: 128 }, join(ROOT, 'fixtures'));
  const layers = linears(model).filter((l) => pick(l.name));
  const stats = await new Calibrator(calibrationFeeds(model, data, 128), 'oneshot', 1).collect(model, layers, { hessian: true });
  const lines = ['| layer | factors | terms | wall (s) | CPU (s) | sweeps | objective before → after |', '| --- | --- | ---: | ---: | ---: | ---: | --- |'];
  let totalWall = 0;
  let totalCpu = 0;
  for (const layer of layers) {
    const W = readWeight(model, layer);
    const choice = (await chooseShape(W, layer.outFeatures, layer.inFeatures, 0.6, { maxCompute: 1 }))!;
    const start = await nearestKronecker(W, choice.shape, choice.terms);
    const H = Float64Array.from(stats.get(layer.input)!.xtx!);
    const n = layer.inFeatures;
    let trace = 0;
    for (let i = 0; i < n; i++) trace += H[i * n + i]!;
    for (let i = 0; i < n; i++) H[i * n + i] += (1e-6 * trace) / n;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const fit = await weightedKronecker(W, H, start, iterations);
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(c0);
    const { m1, n1, m2, n2 } = choice.shape;
    totalWall += wall;
    totalCpu += (cpu.user + cpu.system) / 1e6;
    lines.push(`| ${layer.name} | ${m1}×${n1} ⊗ ${m2}×${n2} | ${choice.terms} | ${wall.toFixed(2)} | ${((cpu.user + cpu.system) / 1e6).toFixed(2)} | ${fit.iterations} | ${fit.objectiveBefore.toExponential(6)} → ${fit.objective.toExponential(6)} |`);
  }
  lines.push(`| all ${layers.length} | | | ${totalWall.toFixed(1)} | ${totalCpu.toFixed(1)} | | |`);
  await releaseKernels();
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await benchKroneckerAls(Number(process.argv[2] ?? 10)));
}
