import { extname } from 'node:path';
import type { Command } from 'commander';
import { datasetSpecFromCli } from '../data/cli-spec.js';
import { loadDataset, loadProgressText } from '../data/load.js';
import { UserError } from '../errors.js';
import { resolve } from 'node:path';
import { specFiles } from '../data/spec-files.js';
import type { DatasetSpec } from '../data/spec.js';
import { folderTokenizer } from '../model/hf-folder.js';
import { evalReport } from '../report/eval-report.js';
import type { EvalTask } from '../eval/evaluate.js';
import { reportJson } from '../report/io.js';
import { renderReportMarkdown } from '../report/markdown.js';
import { OutputPlan, type PlannedInput } from '../util/output-plan.js';
import { StagedOutputs } from '../util/staged-outputs.js';
import { progressFor, type Io } from './io.js';
import { runtimesFor } from '../runtime/session.js';

interface EvalFlags {
  data: string;
  reference?: string;
  output?: string;
  json?: boolean;
  tokenizer?: string;
  seqLen?: string;
  count?: string;
  maxLength?: string;
  select?: string;
  labels?: string;
  labelsDtype?: 'uint8' | 'uint16' | 'int32';
  shape?: string;
  layout?: 'nhwc' | 'nchw';
  scale?: string;
  mean?: string;
  std?: string;
  preset?: string;
  resize?: string;
  crop?: string;
  color?: string;
  labelFrom?: string;
  labelPattern?: string;
  features?: string;
  limit?: string;
  latency: boolean;
  kvCache: boolean;
  runs?: string;
  threads?: string;
  mkdir?: boolean;
  progress?: boolean;
  runtime: string;
  task?: string;
  dataRange?: string;
  targets?: string;
}

function num(flag: string, v: string | undefined, integer = true): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < 0) throw new UserError(`${flag} expects a ${integer ? 'non-negative integer' : 'number'}, got ${v}`);
  return n;
}

const TASKS = ['classification', 'regression', 'image-to-image', 'lm'] as const;

function evalTask(v: string | undefined): EvalTask | undefined {
  if (v === undefined) return undefined;
  if (!(TASKS as readonly string[]).includes(v)) throw new UserError(`--task expects ${TASKS.join(', ')}, got ${v}`);
  return v as EvalTask;
}

function positive(flag: string, v: string | undefined): number | undefined {
  const n = num(flag, v, false);
  if (n === 0) throw new UserError(`${flag} expects a number > 0, got ${v}`);
  return n;
}

/** "0.485,0.456,0.406" */
function numList(flag: string, v: string | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  return v.split(',').map((x) => {
    const n = Number(x);
    if (x.trim() === '' || !Number.isFinite(n)) throw new UserError(`${flag} expects numbers separated by commas, got ${v}`);
    return n;
  });
}

/** "1/255" or "0.0039" */
function scale(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^\s*([\d.]+)\s*\/\s*([\d.]+)\s*$/.exec(v);
  return m ? Number(m[1]) / Number(m[2]) : num('--scale', v, false);
}

export function registerEvalCommand(program: Command, io: Io, setCode: (c: number) => void): void {
  program
    .command('eval')
    .description('measure a model in ONNX Runtime: perplexity or top-1/top-5, fidelity to a reference, size, latency')
    .argument('<model>', '.onnx, .safetensors with config.json beside it, or a transformers.js model folder')
    .requiredOption('--data <dataset>', 'a dataset spec (.yaml/.json), or a data file: .txt (with --tokenizer), token ids .bin (with --seq-len), MNIST idx3 (.gz), .npy, raw uint8 images (with --shape), a folder of JPEG/PNG/WebP images, or random:uniform / random:normal (with --shape, --count)')
    .option('--reference <model>', 'also evaluate this model and measure fidelity (KL, top-1 agreement, cosine) against it')
    .option('-o, --output <report.json>', 'write the JSON report here')
    .option('--mkdir', 'create the missing folders of -o')
    .option('--json', 'print exactly one JSON document (the report) on stdout')
    .option('--tokenizer <file>', "text data: llama2.c tokenizer.bin or Hugging Face tokenizer.json (default: a model folder's tokenizer.json)")
    .option('--max-length <n>', 'text data: tokens per document, BOS included (default 512)')
    .option('--select <ranges>', 'text data: documents to use, 1-based, e.g. "1-10"')
    .option('--seq-len <n>', 'token-id data: window length')
    .option('--count <n>', 'token-id data: number of windows')
    .option('--labels <file>', 'labels: a .npy or raw integers (--labels-dtype) for arrays and raw images, a file,label CSV for an image folder')
    .option('--labels-dtype <dtype>', 'raw labels file: uint8 (default), uint16 or int32, little-endian')
    .option('--shape <HxWxC>', 'raw image data: per-image shape in file order, e.g. 32x32x3')
    .option('--layout <layout>', 'raw image data: nhwc or nchw')
    .option('--scale <x>', 'image data: multiply pixels by this first, e.g. 1/255')
    .option('--mean <m>', 'image data: per-channel mean subtracted after --scale, e.g. 0.485,0.456,0.406')
    .option('--std <s>', 'image data: per-channel std divided by after the mean, e.g. 0.229,0.224,0.225')
    .option('--preset <name>', 'image folder: imagenet (resize 256, crop 224, /255, ImageNet mean/std), minus1to1 or 0to1')
    .option('--resize <n>', 'image folder: resize the shorter side to n pixels')
    .option('--crop <HxW>', 'image folder: centre crop, e.g. 224 or 224x224')
    .option('--color <c>', 'image folder: rgb (default), bgr or gray')
    .option('--label-from <how>', 'image folder: folders, csv (--labels file.csv), filename or none')
    .option('--label-pattern <regex>', 'image folder: with --label-from filename, a regex whose first group is the class number')
    .option('--features <f>', 'WAV folder: logmel (default), mfcc or waveform; other audio parameters go in a dataset spec file')
    .option('--limit <n>', 'image/array data: first n samples only')
    .option('--task <task>', 'classification, regression, image-to-image or lm (default: lm on token data, else from the output: [N, C] classification, [N, C, H, W] image-to-image, else regression)')
    .option('--data-range <L>', 'regression / image-to-image: the data range of PSNR and SSIM, 1 or 255 (default: 255 when targets pass 2, else 1)')
    .option('--targets <path>', 'what the model should output (regression / image-to-image): a .npy for .npy data, a folder of same-named images for an image folder')
    .option('--no-latency', 'skip the latency measurement')
    .option('--no-kv-cache', 'build a safetensors model as the single-input graph input_ids → logits instead of with the KV cache')
    .option('--runs <n>', 'latency: timed runs after warm-up (default 20)')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .option('--progress', 'print progress lines on stderr even when it is not a terminal')
    .option('--runtime <runtimes>', 'node: onnxruntime-node; web: also onnxruntime-web (wasm, one thread: the browser\'s runtime), side by side', 'node')
    .action(async (modelPath: string, f: EvalFlags) => {
      const runtimes = runtimesFor(f.runtime, '--runtime');
      // a model folder's own tokenizer reads text data when --tokenizer is not given
      const tokenizer = f.tokenizer ?? (extname(f.data).toLowerCase() === '.txt' ? folderTokenizer(modelPath) : undefined);
      const { spec, baseDir } = datasetSpecFromCli(
        f.data,
        {
          tokenizer,
          seqLen: num('--seq-len', f.seqLen),
          count: num('--count', f.count),
          maxLength: num('--max-length', f.maxLength),
          select: f.select,
          labels: f.labels,
          labelsDtype: f.labelsDtype,
          targets: f.targets,
          shape: f.shape?.split(/[x,×]/).map((d) => num('--shape', d)!),
          layout: f.layout,
          scale: scale(f.scale),
          mean: numList('--mean', f.mean),
          std: numList('--std', f.std),
          preset: f.preset,
          resize: num('--resize', f.resize),
          crop: f.crop?.split(/[x,×]/).map((d) => num('--crop', d)!),
          color: f.color,
          labelFrom: f.labelFrom,
          labelPattern: f.labelPattern,
          features: f.features,
          limit: num('--limit', f.limit),
        },
        process.cwd(),
      );
      // the report may overwrite none of the files read, checked before any of them is loaded
      const outputs = new OutputPlan(f.output ? [{ path: f.output, what: 'the report (-o)' }] : [], evalInputs(modelPath, f.reference, f.data, spec, baseDir), { mkdir: f.mkdir });
      const progress = progressFor(io, f.progress);
      let report;
      try {
        const data = await loadDataset(spec, baseDir, { onProgress: (p) => progress.stage(`loading ${f.data}: ${loadProgressText(p)}`) });
        report = await evalReport(
          modelPath,
          data,
          { threads: num('--threads', f.threads), latency: f.latency ? { runs: num('--runs', f.runs) } : false, dataPath: f.data, build: { kvCache: f.kvCache }, runtimes, task: evalTask(f.task), dataRange: positive('--data-range', f.dataRange) },
          f.reference,
          (files, which) => outputs.addInputs(files.map((file) => ({ path: file.path, what: `${file.role === 'model' ? 'the' : `${file.role} of the`} ${which === 'model' ? 'model' : 'reference model'}` }))),
        );
      } finally {
        progress.stop();
      }
      for (const w of report.warnings) io.err(`warning: ${w}`);
      if (f.output) writeStaged(outputs, f.output, reportJson(report));
      io.out(f.json ? JSON.stringify(report, null, 2) : renderReportMarkdown(report));
      setCode(0);
    });
}

/** The model, the reference, the --data file and every file its spec names. */
function evalInputs(model: string, reference: string | undefined, dataArg: string, spec: DatasetSpec, baseDir: string): PlannedInput[] {
  return [
    { path: model, what: 'the model' },
    ...(reference ? [{ path: reference, what: 'the reference model (--reference)' }] : []),
    { path: dataArg, what: 'the --data file' },
    ...specFiles(spec).map((file) => ({ path: resolve(baseDir, file.path), what: `the dataset's ${file.field}`, mustExist: true })),
  ];
}

/** Writes one output through staging, removing it and any folder --mkdir made when that fails. */
function writeStaged(outputs: OutputPlan, path: string, content: string): void {
  const staged = new StagedOutputs();
  try {
    outputs.makeFolders();
    staged.write(path, content);
    staged.commit();
  } catch (e) {
    staged.discard();
    outputs.removeMadeFolders();
    throw e;
  }
}
