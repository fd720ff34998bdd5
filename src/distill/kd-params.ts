import { z } from 'zod';
import { DatasetSpec } from '../data/spec.js';

/** distill.kd's params (kd.ts). */
export const KdParams = z.strictObject({
  steps: z.number().int().min(1).default(300).describe('optimizer steps'),
  batch_size: z.number().int().min(1).default(8).describe('token windows per step'),
  seq_len: z.number().int().min(2).default(128).describe('tokens per window'),
  lr: z.number().positive().optional().describe('peak learning rate (Adam); when absent 1e-3 if the trained weights include quantized codes (fake quantization), else 2e-3 (the learning-rate sweep in bench/RESULTS.md)'),
  warmup: z.number().int().min(0).default(20).describe('steps of linear warm-up'),
  schedule: z.enum(['constant', 'linear', 'cosine']).default('cosine').describe('decay after warm-up'),
  weight_decay: z.number().min(0).default(0).describe('decoupled weight decay (AdamW)'),
  clip: z.number().min(0).default(1).describe('global gradient-norm clip; 0 = none'),
  temperature: z.number().positive().default(1).describe('softmax temperature of the KL term'),
  kl: z.enum(['forward', 'reverse']).default('forward').describe('forward KL(teacher‖student) or reverse KL(student‖teacher) (MiniLLM)'),
  loss_weights: z
    .object({
      kl: z.number().min(0).default(1),
      hidden: z.number().min(0).default(0).describe('MSE between student and teacher block outputs'),
      attention: z.number().min(0).default(0).describe("MSE between student and teacher attention outputs (each block's o_proj output)"),
      ce: z.number().min(0).default(0).describe('cross-entropy on the next token of the data'),
    })
    .prefault({}),
  data: z
    .union([z.enum(['teacher', 'calibration']), DatasetSpec])
    .default('teacher')
    .describe('teacher: text sampled from the teacher (data-free); calibration: the recipe calibration set; or a dataset spec (a classifier: calibration or an image dataset)'),
  samples: z.number().int().min(1).default(256).describe('windows sampled from the teacher, or the most windows (a classifier: samples) taken from the data'),
  sample_temperature: z.number().min(0).default(1).describe('temperature of teacher sampling; 0 = greedy'),
  start_token: z.number().int().min(0).optional().describe('first token of every sampled window (e.g. BOS = 1 for Llama tokenizers); random when absent'),
  teacher: z.string().optional().describe('teacher ONNX file (relative to the recipe); the model before the first pass when absent'),
  checkpoint_every: z.number().int().min(0).default(50).describe('save the training state every N steps for --resume; 0 = never'),
  held_out: z.number().int().min(0).default(0).describe('windows held out of the training data for early stopping: KL to the teacher on them every eval_every steps, and the best state is kept; 0 = off'),
  eval_every: z.number().int().min(1).default(50).describe('steps between held-out measurements (with held_out)'),
  patience: z.number().int().min(0).default(0).describe('stop after this many held-out measurements in a row without a new best; 0 = run every step (the best state is still kept)'),
  teacher_thread: z.boolean().default(true).describe("run the teacher's ONNX Runtime forward in a worker thread, so that the next step's targets are computed on another core while this thread trains (the same targets bit for bit); false runs it on this thread"),
  threads: z.number().int().min(0).default(1).describe('threads sharing each batch (this one plus worker threads, each differentiating a share of the rows; the same result up to float rounding, so 1, the default, gives the same bytes on every machine); 0 = min(2, cores, batch_size)'),
});
export type KdParams = z.output<typeof KdParams>;
