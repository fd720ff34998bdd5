/**
 * Weight quantization beyond the papers' code (issue #22): every block linear at any group size,
 * MSE clipping, AWQ and mixed precision, on stories260K under bench/quality.ts's protocol
 * (calibration = stories 1–10 of valid-head.txt, 128-token segments, 128 samples; eval = stories
 * 11–46; targets = the 35 block linears), and on shakespeare-char when ../shared holds it.
 *
 * Bits per weight is counted one way for every row: the bytes each pass reports for its layers
 * after quantization (codes, MatMulNBits' padding included, + float32 scales + zero points) · 8 over
 * the layers' weight count. Perplexity is pare's report (ONNX Runtime; MatMulNBits at accuracy level
 * 0 computes with the dequantized float weights).
 *
 * Run all rows: npx tsc -p tsconfig.json && node dist/bench/quant.js
 * One row: node dist/bench/quant.js <row id>   (ids in the last column); PARE_BENCH_MODEL=stories260K (or shakespeare-char) runs one model
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { run } from '../src/cli/main.js';
import { TEACHER_SEQ, teacherCalibration } from './teacher-calibration.js';

const ROOT = resolve(import.meta.dirname, '../..');
const TEXT = join(ROOT, 'fixtures/tinystories/valid-head.txt');
const TOK = join(ROOT, 'fixtures/stories260K/tok512.bin');
const SHARED = resolve(ROOT, '../shared');

interface Subject {
  name: string;
  model: string;
  calibration: Record<string, unknown>;
  eval: Record<string, unknown>;
}

const STORIES: Subject = {
  name: 'stories260K',
  model: join(ROOT, 'fixtures/stories260K/model.onnx'),
  calibration: { data: { kind: 'text', path: TEXT, tokenizer: TOK, select: '1-10', segment: 128 }, samples: 128 },
  eval: { data: { kind: 'text', path: TEXT, tokenizer: TOK, select: '11-46' } },
};

/** shakespeare-char (../shared): calibration 128 × 128-token windows of train.u16.bin, eval the README's 64 × 256 of val.u16.bin. */
function shakespeare(): Subject | undefined {
  const dir = join(SHARED, 'models/shakespeare-char');
  if (!existsSync(join(dir, 'model.onnx'))) return undefined;
  return {
    name: 'shakespeare-char',
    model: join(dir, 'model.onnx'),
    calibration: { data: { kind: 'tokens', path: join(dir, 'train.u16.bin'), dtype: 'uint16', seq_len: 128, count: 128, offset: 0 }, samples: 128 },
    eval: { data: { kind: 'tokens', path: join(dir, 'val.u16.bin'), dtype: 'uint16', seq_len: 256, count: 64, offset: 0 } },
  };
}

interface Row {
  id: string;
  label: string;
  passes: { pass: string; params: Record<string, unknown> }[];
  /** calibrate on this many 128-token windows sampled from stories260K (bench/teacher-calibration.ts, seed 7) instead of the subject's calibration text */
  teacherWindows?: number;
}

const G32 = { granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits' } as const;
/** block-wise output reconstruction with its defaults, after a quantizer */
const RECON = { pass: 'quantize.reconstruct', params: {} };
/** the grid AWQ optimises for (it stores nothing itself) */
const AWQ_G32 = { granularity: 'group', group_size: 32, symmetric: false } as const;

export const QUANT_ROWS: Row[] = [
  { id: 'rtn4g32', label: 'RTN 4-bit g32, every block linear (MatMulNBits; stories\' 172-wide down_proj in a padded last block)', passes: [{ pass: 'quantize.rtn', params: { bits: 4, ...G32 } }] },
  { id: 'rtn4g32-mse', label: 'RTN 4-bit g32 + MSE clipping', passes: [{ pass: 'quantize.rtn', params: { bits: 4, ...G32, mse_clip: true } }] },
  { id: 'gptq4g32', label: 'GPTQ 4-bit g32, every block linear', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32 } }] },
  { id: 'gptq4g32-mse', label: 'GPTQ 4-bit g32 + MSE clipping (H-diagonal weighted)', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true } }] },
  { id: 'gptq4g32-mse-dyn', label: 'GPTQ 4-bit g32 + MSE clipping, dynamic groups (the reference default)', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, static_groups: false } }] },
  { id: 'gptq4g32-mse-act', label: 'GPTQ 4-bit g32 + MSE clipping + act_order (static groups)', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, act_order: true } }] },
  { id: 'gptq3g32', label: 'GPTQ 3-bit g32, every block linear', passes: [{ pass: 'quantize.gptq', params: { bits: 3, ...G32 } }] },
  { id: 'awq-gptq3g32', label: 'AWQ (3-bit g32 grid) + GPTQ 3-bit g32', passes: [{ pass: 'quantize.awq', params: { bits: 3, ...AWQ_G32 } }, { pass: 'quantize.gptq', params: { bits: 3, ...G32 } }] },
  { id: 'awq-gptq3g32-mse-act', label: 'AWQ + GPTQ 3-bit g32 + MSE clipping + act_order', passes: [{ pass: 'quantize.awq', params: { bits: 3, ...AWQ_G32 } }, { pass: 'quantize.gptq', params: { bits: 3, ...G32, mse_clip: true, act_order: true } }] },
  { id: 'awq-gptq3g32-novo', label: 'AWQ without v_proj → o_proj (v_to_o: false) + GPTQ 3-bit g32', passes: [{ pass: 'quantize.awq', params: { bits: 3, ...AWQ_G32, v_to_o: false } }, { pass: 'quantize.gptq', params: { bits: 3, ...G32 } }] },
  { id: 'awq-gptq3g32-mse-act-novo', label: 'AWQ without v_proj → o_proj (v_to_o: false) + GPTQ 3-bit g32 + MSE clipping + act_order', passes: [{ pass: 'quantize.awq', params: { bits: 3, ...AWQ_G32, v_to_o: false } }, { pass: 'quantize.gptq', params: { bits: 3, ...G32, mse_clip: true, act_order: true } }] },
  { id: 'awq-gptq3g32-act', label: 'AWQ + GPTQ 3-bit g32 + act_order (recipes/awq-gptq-3bit.yaml)', passes: [{ pass: 'quantize.awq', params: { bits: 3, ...AWQ_G32 } }, { pass: 'quantize.gptq', params: { bits: 3, ...G32, act_order: true } }] },
  { id: 'awq-gptq3g32-act-novo', label: 'AWQ without v_proj → o_proj (v_to_o: false) + GPTQ 3-bit g32 + act_order', passes: [{ pass: 'quantize.awq', params: { bits: 3, ...AWQ_G32, v_to_o: false } }, { pass: 'quantize.gptq', params: { bits: 3, ...G32, act_order: true } }] },
  { id: 'awq-rtn3g32', label: 'AWQ + RTN 3-bit g32', passes: [{ pass: 'quantize.awq', params: { bits: 3, ...AWQ_G32 } }, { pass: 'quantize.rtn', params: { bits: 3, ...G32 } }] },
  { id: 'awq-rtn3g32-novo', label: 'AWQ without v_proj → o_proj (v_to_o: false) + RTN 3-bit g32', passes: [{ pass: 'quantize.awq', params: { bits: 3, ...AWQ_G32, v_to_o: false } }, { pass: 'quantize.rtn', params: { bits: 3, ...G32 } }] },
  { id: 'rtn3g32', label: 'RTN 3-bit g32', passes: [{ pass: 'quantize.rtn', params: { bits: 3, ...G32 } }] },
  { id: 'awq-gptq4g32-mse', label: 'AWQ + GPTQ 4-bit g32 + MSE clipping', passes: [{ pass: 'quantize.awq', params: { bits: 4, ...AWQ_G32 } }, { pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true } }] },
  { id: 'awq-gptq4g32-mse-novo', label: 'AWQ without v_proj → o_proj (v_to_o: false) + GPTQ 4-bit g32 + MSE clipping', passes: [{ pass: 'quantize.awq', params: { bits: 4, ...AWQ_G32, v_to_o: false } }, { pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true } }] },
  { id: 'mixed3.5', label: 'mixed precision ≤ 3.5 bits/weight (2/3/4/8-bit × g32/64/128, GPTQ + MSE clipping)', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5 } }] },
  { id: 'mixed3.5-act', label: 'mixed precision ≤ 3.5 bits/weight, GPTQ act_order', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, act_order: true } }] },
  { id: 'gptq2g64', label: 'GPTQ 2-bit g64 + MSE clipping (uniform, for comparison)', passes: [{ pass: 'quantize.gptq', params: { bits: 2, ...G32, group_size: 64, mse_clip: true } }] },
  { id: 'gptq3g32-mse-act', label: 'GPTQ 3-bit g32 + MSE clipping + act_order', passes: [{ pass: 'quantize.gptq', params: { bits: 3, ...G32, mse_clip: true, act_order: true } }] },
  { id: 'rtn4g32-refit', label: 'RTN 4-bit g32 + scale refit (least squares on the weights)', passes: [{ pass: 'quantize.rtn', params: { bits: 4, ...G32, refit_scales: true } }] },
  { id: 'gptq4g32-refit', label: 'GPTQ 4-bit g32 + scale refit (least squares on XᵀX)', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, refit_scales: true } }] },
  { id: 'gptq4g32-mse-refit', label: 'GPTQ 4-bit g32 + MSE clipping + scale refit', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true } }] },
  { id: 'gptq4g32-mse-refit3', label: 'GPTQ 4-bit g32 + MSE clipping + 3 rounds of refit → GPTQ on the refitted grid', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, refit_rounds: 3 } }] },
  ...[0.001, 0.003, 0.03, 0.1].map((d) => ({ id: `gptq4g32-mse-damp${d}`, label: `GPTQ 4-bit g32 + MSE clipping, dampening ${d}`, passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, dampening: d } }] })),
  { id: 'gptq4g32-mse-f16', label: 'GPTQ 4-bit g32 + MSE clipping, float16 scales (Cast)', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, scale_dtype: 'float16' } }] },
  { id: 'mixed3.5-f16', label: 'mixed precision ≤ 3.5 bits/weight, float16 scales', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16' } }] },
  { id: 'mixed3.5-f16-refit', label: 'mixed precision ≤ 3.5 bits/weight, float16 scales + scale refit', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', refit_scales: true } }] },
  { id: 'gptq3g32-mse-packed', label: 'GPTQ 3-bit g32 + MSE clipping, packed 3-bit codes, float16 scales', passes: [{ pass: 'quantize.gptq', params: { bits: 3, ...G32, mse_clip: true, packed_3bit: true, scale_dtype: 'float16' } }] },
  { id: 'gptq3g64-mse-act-packed', label: 'GPTQ 3-bit g64 + MSE clipping + act_order, packed 3-bit codes, float16 scales (uniform, ≤ 3.5 bits/weight)', passes: [{ pass: 'quantize.gptq', params: { bits: 3, ...G32, group_size: 64, mse_clip: true, act_order: true, packed_3bit: true, scale_dtype: 'float16' } }] },
  { id: 'mixed3.5-f16-p3', label: 'mixed precision ≤ 3.5 bits/weight, float16 scales, packed 3-bit codes', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true } }] },
  { id: 'mixed3.5-f16-p3-refit', label: 'mixed precision ≤ 3.5 bits/weight, float16 scales, packed 3-bit codes + scale refit', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true } }] },
  { id: 'mixed3.5-f16-p3-refit-act', label: 'mixed precision ≤ 3.5 bits/weight, float16 scales, packed 3-bit codes + scale refit, act_order', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true } }] },
  { id: 'mixed3.5-f16-p3-refit-act-fzp', label: 'mixed precision ≤ 3.5 bits/weight, float16 scales and float zero points (2 bytes a group, counted in the budget), packed 3-bit codes + joint scale/zero-point refit, act_order', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true, float_zero_points: true } }] },
  { id: 'mixed3.5-f16-p3-refit-sym', label: 'mixed precision ≤ 3.5 bits/weight, float16 scales, packed 3-bit codes + scale refit, symmetric (no zero points)', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, symmetric: true } }] },
  { id: 'gptq4g32-mse-fzp-refit', label: 'GPTQ 4-bit g32 + MSE clipping + joint scale/zero-point refit, float32 zero points', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, float_zero_points: true } }] },
  { id: 'gptq4g32-mse-fzp-refit3', label: 'GPTQ 4-bit g32 + MSE clipping + 3 rounds of joint scale/zero-point refit → GPTQ, float32 zero points', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, refit_rounds: 3, float_zero_points: true } }] },
  { id: 'gptq4g32-mse-fzp-refit3-f16', label: 'GPTQ 4-bit g32 + MSE clipping + 3 rounds of joint scale/zero-point refit → GPTQ, float16 scales and zero points', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, refit_rounds: 3, float_zero_points: true, scale_dtype: 'float16' } }] },
  { id: 'rot-gptq4g32-mse', label: 'rotation (randomized Hadamard, residual stream) + GPTQ 4-bit g32 + MSE clipping', passes: [{ pass: 'quantize.rotate', params: {} }, { pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true } }] },
  { id: 'rot-gptq4g32', label: 'rotation + GPTQ 4-bit g32', passes: [{ pass: 'quantize.rotate', params: {} }, { pass: 'quantize.gptq', params: { bits: 4, ...G32 } }] },
  { id: 'rot-rtn4g32', label: 'rotation + RTN 4-bit g32', passes: [{ pass: 'quantize.rotate', params: {} }, { pass: 'quantize.rtn', params: { bits: 4, ...G32 } }] },
  ...[1, 2].map((seed) => ({ id: `rot${seed}-gptq4g32-mse`, label: `rotation (seed ${seed}) + GPTQ 4-bit g32 + MSE clipping`, passes: [{ pass: 'quantize.rotate', params: { seed } }, { pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true } }] })),
  { id: 'rot-mixed3.5-f16-p3-refit-act', label: 'rotation + mixed precision ≤ 3.5 bits/weight, float16 scales, packed 3-bit codes + scale refit, act_order', passes: [{ pass: 'quantize.rotate', params: {} }, { pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true } }] },
  { id: 'rot-gptq3g32-mse-act', label: 'rotation + GPTQ 3-bit g32 + MSE clipping + act_order', passes: [{ pass: 'quantize.rotate', params: {} }, { pass: 'quantize.gptq', params: { bits: 3, ...G32, mse_clip: true, act_order: true } }] },
  ...[128, 512].map((n) => ({ id: `gptq4g32-mse-teacher${n}`, label: `GPTQ 4-bit g32 + MSE clipping, calibration: ${n} windows of 128 tokens sampled from the model`, teacherWindows: n, passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true } }] })),
  { id: 'w8a8', label: 'W8A8: int8 per-channel weights, int8 per-token dynamic activations (MatMulInteger)', passes: [{ pass: 'quantize.w8a8', params: {} }] },
  { id: 'rot-w8a8', label: 'rotation + W8A8', passes: [{ pass: 'quantize.rotate', params: {} }, { pass: 'quantize.w8a8', params: {} }] },
  { id: 'gptq4g32-mse-fzp-refit3-f16-act', label: 'GPTQ 4-bit g32 + MSE clipping + act_order + 3 rounds of joint scale/zero-point refit, float16 scales and zero points', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, act_order: true, refit_scales: true, refit_rounds: 3, float_zero_points: true, scale_dtype: 'float16' } }] },
  { id: 'gptq4g32-mse-fzp-refit8-f16', label: 'GPTQ 4-bit g32 + MSE clipping + 8 rounds of joint scale/zero-point refit, float16 scales and zero points', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, refit_rounds: 8, float_zero_points: true, scale_dtype: 'float16' } }] },
  { id: 'gptq4g32-fzp-refit3-f16', label: 'GPTQ 4-bit g32 (no MSE clipping) + 3 rounds of joint scale/zero-point refit, float16 scales and zero points', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, refit_scales: true, refit_rounds: 3, float_zero_points: true, scale_dtype: 'float16' } }] },
  { id: 'gptq4g32-mse-refit3-f16', label: 'GPTQ 4-bit g32 + MSE clipping + 3 rounds of scale refit, float16 scales, integer zero points', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, refit_rounds: 3, scale_dtype: 'float16' } }] },
  { id: 'gptq4g32-mse-bc', label: 'GPTQ 4-bit g32 + MSE clipping + bias correction', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, bias_correction: true } }] },
  { id: 'gptq4g32-mse-fzp-refit8-f16-bc', label: 'GPTQ 4-bit g32 + MSE clipping + 8 rounds of joint scale/zero-point refit, float16 scales and zero points + bias correction (float16 bias)', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, refit_rounds: 8, float_zero_points: true, scale_dtype: 'float16', bias_correction: true } }] },
  { id: 'gptq3g32-mse-act-bc', label: 'GPTQ 3-bit g32 + MSE clipping + act_order + bias correction', passes: [{ pass: 'quantize.gptq', params: { bits: 3, ...G32, mse_clip: true, act_order: true, bias_correction: true } }] },
  { id: 'mixed3.5-f16-p3-refit-act-bc', label: 'mixed precision ≤ 3.5 bits/weight (bias bytes inside the budget), float16 scales, packed 3-bit codes + scale refit, act_order + bias correction (float16 bias)', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true, bias_correction: true } }] },
  { id: 'gptq4g32-mse-bcc', label: 'GPTQ 4-bit g32 + MSE clipping + bias correction, GPTQ on the centred XᵀX', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, bias_correction: true, center_hessian: true } }] },
  { id: 'gptq4g32-mse-fzp-refit8-f16-bcc', label: 'GPTQ 4-bit g32 + MSE clipping + 8 rounds of joint scale/zero-point refit, float16 scales and zero points + bias correction (float16 bias), all on the centred XᵀX', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, refit_rounds: 8, float_zero_points: true, scale_dtype: 'float16', bias_correction: true, center_hessian: true } }] },
  { id: 'gptq4g32-mse-fzp-refit3-f16-bcc', label: 'GPTQ 4-bit g32 + MSE clipping + 3 rounds of joint scale/zero-point refit, float16 scales and zero points + bias correction (float16 bias), all on the centred XᵀX', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, refit_rounds: 3, float_zero_points: true, scale_dtype: 'float16', bias_correction: true, center_hessian: true } }] },
  { id: 'gptq4g32-mse-fzp-refit8-f16-act-bcc', label: 'GPTQ 4-bit g32 + MSE clipping + act_order + 8 rounds of joint scale/zero-point refit, float16 scales and zero points + bias correction (float16 bias), all on the centred XᵀX', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, act_order: true, refit_scales: true, refit_rounds: 8, float_zero_points: true, scale_dtype: 'float16', bias_correction: true, center_hessian: true } }] },
  { id: 'gptq3g32-mse-act-bcc', label: 'GPTQ 3-bit g32 + MSE clipping + act_order + bias correction, GPTQ on the centred XᵀX', passes: [{ pass: 'quantize.gptq', params: { bits: 3, ...G32, mse_clip: true, act_order: true, bias_correction: true, center_hessian: true } }] },
  { id: 'awq-gptq3g32-mse-act-novo-bcc', label: 'AWQ without v_proj → o_proj + GPTQ 3-bit g32 + MSE clipping + act_order + bias correction, GPTQ on the centred XᵀX', passes: [{ pass: 'quantize.awq', params: { bits: 3, ...AWQ_G32, v_to_o: false } }, { pass: 'quantize.gptq', params: { bits: 3, ...G32, mse_clip: true, act_order: true, bias_correction: true, center_hessian: true } }] },
  // the float-zero refit recipe with and without the correction at two other dampenings: how far the 4-bit difference is from the grid's own spread
  ...[0.003, 0.03].flatMap((dampening) => [false, true].map((bcc) => ({
    id: `gptq4g32-mse-fzp-refit8-f16${bcc ? '-bcc' : ''}-damp${dampening}`,
    label: `GPTQ 4-bit g32 + MSE clipping + 8 rounds of joint scale/zero-point refit, float16 scales and zero points${bcc ? ' + bias correction, centred XᵀX' : ''}, dampening ${dampening}`,
    passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, refit_rounds: 8, float_zero_points: true, scale_dtype: 'float16', dampening, ...(bcc ? { bias_correction: true, center_hessian: true } : {}) } }],
  }))),
  { id: 'awq-gptq4g32-mse-fzp-refit8-f16-bcc', label: 'AWQ (4-bit g32 grid) + the float-zero refit recipe (8 rounds, float16) + bias correction, centred XᵀX', passes: [{ pass: 'quantize.awq', params: { bits: 4, ...AWQ_G32 } }, { pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true, refit_scales: true, refit_rounds: 8, float_zero_points: true, scale_dtype: 'float16', bias_correction: true, center_hessian: true } }] },
  { id: 'rtn4g32-bc', label: 'RTN 4-bit g32 + bias correction', passes: [{ pass: 'quantize.rtn', params: { bits: 4, ...G32, bias_correction: true } }] },
  // quantize.reconstruct after the quantizer (block-wise output reconstruction, default 5 epochs, lr 1e-3)
  { id: 'gptq4g32-mse-recon', label: 'GPTQ 4-bit g32 + MSE clipping + block-wise reconstruction', passes: [{ pass: 'quantize.gptq', params: { bits: 4, ...G32, mse_clip: true } }, RECON] },
  { id: 'gptq3g32-mse-act-recon', label: 'GPTQ 3-bit g32 + MSE clipping + act_order + block-wise reconstruction', passes: [{ pass: 'quantize.gptq', params: { bits: 3, ...G32, mse_clip: true, act_order: true } }, RECON] },
  { id: 'mixed3.5-f16-p3-refit-act-recon', label: 'mixed precision ≤ 3.5 bits/weight, float16 scales, packed 3-bit codes + scale refit, act_order + block-wise reconstruction', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true } }, RECON] },
  { id: 'mixed3.5-recon', label: 'mixed precision ≤ 3.5 bits/weight (2/3/4/8-bit × g32/64/128, GPTQ + MSE clipping) + block-wise reconstruction', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5 } }, RECON] },
  { id: 'mixed3.5-f16-p3-refit-act-recon10', label: 'mixed precision ≤ 3.5 bits/weight, float16 scales, packed 3-bit codes + scale refit, act_order + block-wise reconstruction, 10 epochs', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true } }, { pass: 'quantize.reconstruct', params: { epochs: 10 } }] },
  // trellis-coded weights (quantize.trellis: QTIP bitshift trellis, rebuilt at load), alone and as quantize.mixed choices
  { id: 'trellis3', label: 'trellis 3-bit (L = 12, DCT incoherence, column exponents, GPTQ feedback), every block linear', passes: [{ pass: 'quantize.trellis', params: { bits: 3 } }] },
  { id: 'trellis4', label: 'trellis 4-bit, every block linear', passes: [{ pass: 'quantize.trellis', params: { bits: 4 } }] },
  { id: 'mixed3.5-trellis', label: 'mixed precision ≤ 3.5 bits/weight with trellis 2/3/4-bit choices beside the grids (float16 scales, packed 3-bit codes + scale refit, act_order)', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true, trellis_bits: [2, 3, 4] } }] },
  { id: 'mixed3.5-trellis-recon', label: 'the same + block-wise reconstruction of its grid-coded layers', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true, trellis_bits: [2, 3, 4] } }, RECON] },
  { id: 'mixed3.5-trellis-recon10', label: 'the same, 10 epochs of reconstruction', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true, trellis_bits: [2, 3, 4] } }, { pass: 'quantize.reconstruct', params: { epochs: 10 } }] },
  { id: 'mixed3.5-trellis14-recon', label: 'mixed ≤ 3.5 bits/weight with trellis choices at L = 14 + block-wise reconstruction', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true, trellis_bits: [2, 3, 4], trellis_state_bits: 14 } }, RECON] },
  // within-block fine-tuning of the layers not yet coded (finetune: QuIP#'s step), after each coded layer
  { id: 'mixed3.5-trellis-ft', label: 'mixed ≤ 3.5 bits/weight with trellis choices + within-block fine-tuning (finetune: 5 epochs, lr 1e-4)', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true, trellis_bits: [2, 3, 4], finetune: { epochs: 5, lr: 1e-4 } } }] },
  { id: 'mixed3.5-trellis-ft-recon', label: 'the same + block-wise reconstruction of its grid-coded layers', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true, trellis_bits: [2, 3, 4], finetune: { epochs: 5, lr: 1e-4 } } }, RECON] },
  { id: 'mixed3.5-trellis-ft10', label: 'mixed ≤ 3.5 bits/weight with trellis choices + within-block fine-tuning, 10 epochs', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true, trellis_bits: [2, 3, 4], finetune: { epochs: 10, lr: 1e-4 } } }] },
  { id: 'mixed3.5-f16-p3-refit-act-ft', label: 'mixed ≤ 3.5 bits/weight, grids only (float16 scales, packed 3-bit codes + scale refit, act_order) + within-block fine-tuning', passes: [{ pass: 'quantize.mixed', params: { budget_bits: 3.5, scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true, finetune: { epochs: 5, lr: 1e-4 } } }] },
  { id: 'trellis3-ft', label: 'trellis 3-bit, every block linear + within-block fine-tuning', passes: [{ pass: 'quantize.trellis', params: { bits: 3, finetune: { epochs: 5, lr: 1e-4 } } }] },
];

function recipe(subject: Subject, row: Row, teacherFile: string): string {
  const calibration = row.teacherWindows ? { data: { kind: 'tokens', path: teacherFile, dtype: 'uint16', seq_len: TEACHER_SEQ, count: row.teacherWindows }, samples: row.teacherWindows } : subject.calibration;
  return JSON.stringify({
    version: 1,
    calibration,
    passes: row.passes.map((p) => ({ pass: p.pass, ...(p.pass === 'quantize.rotate' ? {} : { targets: ['layers.*'] }), params: p.params })),
    eval: subject.eval,
  });
}

interface LayerEntry {
  bytes_before: number;
  bytes_after: number;
}

export async function benchQuant(ids: string[] = []): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'pare-bench-quant-'));
  const lines = [
    '| model | method | layers | bits/weight | perplexity | file bytes | wall (s) | CPU (s) | command |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  const rows = QUANT_ROWS.filter((r) => ids.length === 0 || ids.includes(r.id));
  const only = process.env.PARE_BENCH_MODEL;
  const subjects = [STORIES, shakespeare()].filter((s): s is Subject => s !== undefined && (!only || s.name === only));
  try {
    for (const subject of subjects) {
      let dense = false;
      for (const row of rows) {
        const path = join(dir, `${subject.name}-${row.id}.yaml`);
        const teacherFile = join(dir, `teacher-${row.teacherWindows}.u16`);
        if (row.teacherWindows && !existsSync(teacherFile)) {
          if (subject.name !== 'stories260K') continue;
          await teacherCalibration(teacherFile, row.teacherWindows, 7);
        }
        writeFileSync(path, recipe(subject, row, teacherFile));
        const report = join(dir, `${subject.name}-${row.id}.json`);
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        const code = await run(['compress', subject.model, '-r', path, '-o', join(dir, `${subject.name}-${row.id}.onnx`), '--report', report], { out: () => {}, err: (s: string) => process.stderr.write(s), fancy: false });
        const cpu = process.cpuUsage(c0);
        const wall = (performance.now() - t0) / 1000;
        const command = `\`${only ? `PARE_BENCH_MODEL=${only} ` : ''}node dist/bench/quant.js ${row.id}\``;
        if (code !== 0) {
          lines.push(`| ${subject.name} | ${row.label} | – | – | failed (exit ${code}) | | | | ${command} |`);
          continue;
        }
        const r = JSON.parse(readFileSync(report, 'utf8'));
        if (!dense) {
          dense = true;
          lines.push(`| ${subject.name} | dense fp32 | – | 32 | ${r.measurements.reference.quality.perplexity.toFixed(3)} | ${r.measurements.reference.size.file_bytes} | – | – | – |`);
        }
        // the last pass that writes the layers decides their stored bytes (quantize.reconstruct keeps them)
        const passes: { id: string; layers: LayerEntry[]; ms: number; cpu_ms: number }[] = r.passes;
        const layers = passes.filter((p) => p.id !== 'quantize.reconstruct').at(-1)!.layers;
        for (const p of passes) process.stderr.write(`${row.id}: ${p.id} ${(p.ms / 1000).toFixed(1)} s wall, ${(p.cpu_ms / 1000).toFixed(1)} s CPU\n`);
        const weights = layers.reduce((a, l) => a + l.bytes_before / 4, 0);
        const bpw = (layers.reduce((a, l) => a + l.bytes_after, 0) * 8) / weights;
        const ppl = r.measurements.model.quality.perplexity as number;
        lines.push(`| ${subject.name} | ${row.label} | ${layers.length} | ${bpw.toFixed(3)} | ${ppl.toFixed(3)} | ${r.measurements.model.size.file_bytes} | ${wall.toFixed(1)} | ${((cpu.user + cpu.system) / 1e6).toFixed(1)} | ${command} |`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.stdout.write(`${await benchQuant(process.argv.slice(2))}\n`);
}
