/**
 * `npm run bench`: every benchmark, written to bench/RESULTS.md with the command and machine that
 * produced it. Not part of CI (minutes, and the numbers depend on the machine).
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { releaseKernels } from '../src/linalg/backend.js';
import { ortVersion } from '../src/runtime/ort.js';
import { benchLatency } from './latency.js';
import { benchLinalg } from './linalg.js';
import { benchConvQuality, benchQuality } from './quality.js';
import { benchDistill } from './distill.js';
import { benchVision } from './vision.js';
import { benchReference } from './reference.js';
import { benchOwl } from './owl.js';
import { benchKroneckerLatency } from './kronecker-latency.js';
import { benchKroneckerAls } from './kronecker-als.js';
import { benchDistillGptq3 } from './distill-gptq3.js';
import { benchQuant } from './quant.js';
import { benchScale } from './scale.js';
import { benchTokenize } from './tokenize.js';
import { benchBrowser } from './browser.js';
import { benchCalibration } from './calibration.js';
import { benchTeacherSampling } from './teacher-sampling.js';

const ROOT = resolve(import.meta.dirname, '../..');

const sections: [string, string, () => Promise<string>][] = [
  ['Quality on stories260K', 'node dist/bench/quality.js', benchQuality],
  ['Structured conv pruning on squeezenet-cifar10', 'node dist/bench/quality.js', benchConvQuality],
  ['Vision models: int8, 4-bit and conv channel pruning', 'node dist/bench/vision.js', benchVision],
  ['pare vs float64 reference SparseGPT/GPTQ on stories260K', 'node dist/bench/reference.js', benchReference],
  ['OWL layerwise sparsity vs uniform (SparseGPT, Wanda 60 %)', 'node dist/bench/owl.js', benchOwl],
  ['Weight quantization: any K, MSE clipping, AWQ, mixed precision (issue #22)', 'node dist/bench/quant.js', () => benchQuant()],
  ['Distillation recovery on stories260K', 'node dist/bench/distill.js', benchDistill],
  ['GPTQ 3-bit + distillation with early stopping on stories260K', 'node dist/bench/distill-gptq3.js', () => benchDistillGptq3()],
  ['ONNX Runtime latency by weight format', 'node dist/bench/latency.js', benchLatency],
  ['Kronecker latency and memory in ONNX Runtime', 'node dist/bench/kronecker-latency.js', benchKroneckerLatency],
  ['Kronecker ALS (iterative mode) time per layer', 'node dist/bench/kronecker-als.js', () => benchKroneckerAls()],
  ['Linear algebra kernels', 'node dist/bench/linalg.js', benchLinalg],
  ['Passes at realistic scale (MobileLLM-125M, GPT-2 small)', 'node dist/bench/scale.js', benchScale],
  ['Tokenizing a WikiText-2-sized text', 'node dist/bench/tokenize.js', benchTokenize],
  ['Shipping to the browser: onnxruntime-web', 'node dist/bench/browser.js', benchBrowser],
  ['Calibration cost on one-row samples (batched Gram)', 'node dist/bench/calibration.js', benchCalibration],
  ['Distillation: sampling training windows from a KV-cache teacher', 'node dist/bench/teacher-sampling.js', () => benchTeacherSampling()],
];

const machine = `${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()} threads, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, onnxruntime-node ${ortVersion()}`;
const out = [`# Benchmark results`, '', `Produced by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${machine}.`, ''];
for (const [title, command, bench] of sections) {
  process.stderr.write(`bench: ${title}\n`);
  out.push(`## ${title}`, '', `\`${command}\``, '', await bench(), '');
}
await releaseKernels();
writeFileSync(join(ROOT, 'bench/RESULTS.md'), out.join('\n'));
process.stderr.write('bench: wrote bench/RESULTS.md\n');
