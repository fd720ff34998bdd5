/**
 * Vision models through `pare compress`: int8 per tensor and per channel (QDQ), 4-bit MatMulNBits on
 * the fc layers, and conv channel pruning at 30 % and 50 %, on mnist-8 (the first 1,000 MNIST test
 * digits of fixtures/), squeezenet-cifar10 (../shared, 2,000 CIFAR-10 test images, when present) and
 * a generated ResNet-like graph (fixtures/generate-vision.ts). The ResNet-like one has random weights,
 * so its column is top-1 agreement with the original and the cosine of their logits on MNIST digits,
 * not accuracy (a random network's top-1 barely changes across inputs, so agreement is nearly all or
 * nothing; the cosine is the finer measure). distill.kd trains on the first 1,000 of the evaluation
 * images, without their labels (it matches the original's outputs), so its rows are not held-out
 * accuracy. Wall and CPU
 * seconds of each whole run (compress plus evaluation), in this process (process.cpuUsage).
 *
 *   node dist/bench/vision.js
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { smallResNet } from '../fixtures/generate-vision.js';
import { run } from '../src/cli/main.js';
import { writeOnnx } from '../src/model/onnx-io.js';

const ROOT = resolve(import.meta.dirname, '../..');
const SHARED = resolve(ROOT, '../shared');
const MNIST = { kind: 'idx', images: join(ROOT, 'fixtures/mnist/t10k-head1000-images-idx3-ubyte.gz'), labels: join(ROOT, 'fixtures/mnist/t10k-head1000-labels-idx1-ubyte.gz') };

interface Subject {
  name: string;
  model: (dir: string) => string;
  data: Record<string, unknown>;
  /** random weights: report agreement with the original instead of accuracy */
  fidelity?: boolean;
  /** the Gemm/MatMul layers (4-bit MatMulNBits takes only these) */
  fc: string[];
  /** distill.kd's temperature and peak learning rate: raw logits in the hundreds (mnist-8) need T > 1; a Softmax output is compared on log-probabilities, best at T = 1 */
  kd: { temperature: number; lr: number };
}

const SUBJECTS: Subject[] = [
  { name: 'mnist-8', model: () => join(ROOT, 'fixtures/mnist-8/model.onnx'), data: { ...MNIST, scale: 1 }, fc: ['Times212'], kd: { temperature: 4, lr: 2e-3 } },
  ...(existsSync(join(SHARED, 'models/squeezenet-cifar10/model.onnx'))
    ? [{
        name: 'squeezenet-cifar10',
        model: () => join(SHARED, 'models/squeezenet-cifar10/model.onnx'),
        data: { kind: 'images', path: join(SHARED, 'data/cifar10/test_x_u8_nhwc_10000x32x32x3.bin'), labels: join(SHARED, 'data/cifar10/test_y_u8_10000.bin'), shape: [32, 32, 3], layout: 'nhwc', scale: 1 / 255, limit: 2000 },
        fc: [],
        kd: { temperature: 1, lr: 5e-4 },
      }]
    : []),
  {
    name: 'ResNet-like (generated, random weights)',
    model: (dir) => {
      const path = join(dir, 'resnet.onnx');
      writeOnnx(smallResNet(), path);
      return path;
    },
    data: { kind: 'idx', images: MNIST.images, scale: 1 / 255 },
    fidelity: true,
    fc: ['fc'],
    kd: { temperature: 4, lr: 2e-3 },
  },
];

const METHODS: { label: string; passes: unknown[]; fcOnly?: boolean; kd?: boolean }[] = [
  { label: 'int8 per tensor (QDQ)', passes: [{ pass: 'quantize.rtn', targets: ['*'], params: { bits: 8, granularity: 'tensor' } }] },
  { label: 'int8 per channel (QDQ)', passes: [{ pass: 'quantize.rtn', targets: ['*'], params: { bits: 8, granularity: 'channel' } }] },
  { label: '4-bit MatMulNBits group 32 (fc layers; convs stay float)', passes: [{ pass: 'quantize.rtn', targets: ['*'], params: { bits: 4, granularity: 'group', group_size: 32, format: 'matmulnbits' } }], fcOnly: true },
  { label: 'conv channels 30 % (filter L2 norm, no recovery)', passes: [{ pass: 'prune.channels', targets: ['*'], params: { sparsity: 0.3, importance: 'weight' } }] },
  { label: 'conv channels 50 % (filter L2 norm, no recovery)', passes: [{ pass: 'prune.channels', targets: ['*'], params: { sparsity: 0.5, importance: 'weight' } }] },
  { label: 'conv channels 30 % + distill.kd (100 steps of 16 images)', passes: [{ pass: 'prune.channels', targets: ['*'], params: { sparsity: 0.3, importance: 'weight' } }], kd: true },
  { label: 'conv channels 50 % + distill.kd (100 steps of 16 images)', passes: [{ pass: 'prune.channels', targets: ['*'], params: { sparsity: 0.5, importance: 'weight' } }], kd: true },
];

/** distill.kd on the evaluation images without their labels (the teacher's distributions are the targets) */
const kdPass = (s: Subject) => {
  const { labels: _labels, ...images } = s.data;
  return { pass: 'distill.kd', targets: ['*'], params: { steps: 100, batch_size: 16, warmup: 5, samples: 1000, checkpoint_every: 0, ...s.kd, data: images } };
};

const pct = (x: number) => `${(x * 100).toFixed(2)} %`;

export async function benchVision(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'pare-bench-vision-'));
  const lines = ['| model | method | quality | file bytes | params | wall s | CPU s |', '| --- | --- | ---: | ---: | ---: | ---: | ---: |'];
  try {
    for (const s of SUBJECTS) {
      const model = s.model(dir);
      let dense = false;
      for (const [i, m] of METHODS.entries()) {
        if (m.fcOnly && s.fc.length === 0) {
          lines.push(`| ${s.name} | ${m.label} | n/a: no Gemm/MatMul layer | | | | |`);
          continue;
        }
        const recipe = join(dir, `r${i}.yaml`);
        // opset 13 for per-channel DequantizeLinear (mnist-8 is opset 8)
        const passes = m.fcOnly ? (m.passes as { targets: string[] }[]).map((p) => ({ ...p, targets: s.fc })) : m.kd ? [...m.passes, kdPass(s)] : m.passes;
        writeFileSync(recipe, JSON.stringify({ version: 1, output: { opset: 13 }, passes, eval: { data: s.data } }));
        const report = join(dir, `r${i}.json`);
        let err = '';
        const [t0, c0] = [performance.now(), process.cpuUsage()];
        const code = await run(['compress', model, '-r', recipe, '-o', join(dir, `r${i}.onnx`), '--report', report], { out: () => {}, err: (t) => (err += t), fancy: false });
        const [wall, cpu] = [(performance.now() - t0) / 1000, process.cpuUsage(c0)];
        if (code !== 0) {
          lines.push(`| ${s.name} | ${m.label} | failed (exit ${code}: ${err.trim().split('\n').at(-1)}) | | | | |`);
          continue;
        }
        const r = JSON.parse(readFileSync(report, 'utf8'));
        const ms = r.measurements;
        const quality = (q: { quality?: { top1?: number } }, f?: { top1_agreement?: number; cosine?: number }) =>
          s.fidelity ? (f ? `${pct(f.top1_agreement!)} agreement, cosine ${f.cosine!.toFixed(4)}` : 'the reference') : pct(q.quality!.top1!);
        if (!dense) {
          lines.push(`| ${s.name} | dense float32 | ${quality(ms.reference)} | ${ms.reference.size.file_bytes} | ${ms.reference.size.params} | | |`);
          dense = true;
        }
        lines.push(`| ${s.name} | ${m.label} | ${quality(ms.model, r.fidelity ?? ms.fidelity)} | ${ms.model.size.file_bytes} | ${ms.model.size.params} | ${wall.toFixed(1)} | ${((cpu.user + cpu.system) / 1e6).toFixed(1)} |`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await benchVision());
}
