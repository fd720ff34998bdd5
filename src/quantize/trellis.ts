import { z } from 'zod';
import { readWeight } from '../model/linear-weights.js';
import { reconstructionError } from '../obs/output-error.js';
import { eachCalibratedLayer } from '../pass/layer-loop.js';
import { definePass, onValidFields } from '../pass/pass.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { type TrellisLayer, trellisQuantizeLayer, trellisStoredBytes } from './trellis-layer.js';
import { BlockFinetune, FINETUNE_FIELD } from './block-finetune.js';
import { checkTrellisOpset, emitTrellisAtLoad } from './trellis-onnx.js';
import { MAX_ROTATION_SEED } from './trellis-rotation.js';

export const TRELLIS_ROTATE = z.enum(['both', 'inputs', 'outputs', 'none']);
type Rotate = z.output<typeof TRELLIS_ROTATE>;

/**
 * The rotation seeds of a coded layer (−1: that side is not rotated). Every layer uses the same two,
 * so layers of the same shape share their rotations' subgraphs in the file.
 */
export function layerSeeds(seed: number, rotate: Rotate): { out: number; in: number } {
  return { out: rotate === 'both' || rotate === 'outputs' ? seed : -1, in: rotate === 'both' || rotate === 'inputs' ? seed + 1 : -1 };
}

/** Writes a coded layer into the model (stream, scale and exponents; the weight is rebuilt at load); returns the bytes stored. */
export function emitTrellis(model: Model, layer: LinearLayer, t: TrellisLayer): number {
  const { storedBytes } = emitTrellisAtLoad(model, layer, t);
  if (storedBytes !== trellisStoredBytes(t.rows, t.cols, t.shape)) throw new Error(`quantize.trellis: '${layer.name}' stored ${storedBytes} bytes, expected ${trellisStoredBytes(t.rows, t.cols, t.shape)}`);
  return storedBytes;
}

const TrellisParams = z.strictObject({
  bits: z.number().int().min(1).max(8).default(3).describe('k: stored bits per weight (the stream adds L − k bits a layer)'),
  state_bits: z.number().int().min(2).max(17).default(12).describe('L: trellis state bits (2^L codebook entries; the encoder costs 2^(L+1) operations a weight)'),
  seed: z.number().int().min(0).max(MAX_ROTATION_SEED - 1).default(0).describe('seed of the incoherence rotations (outputs: seed, inputs: seed + 1)'),
  dampening: z.number().min(0).max(1).default(0.01).describe('λ: H += λ·mean(diag H)·I'),
  block_size: z.number().int().min(1).default(128).describe('columns per lazy-update block of the GPTQ loop'),
  rotate: TRELLIS_ROTATE.default('both').describe('which sides of each weight the incoherence rotation mixes'),
  scale_factor: z.number().positive().default(1).describe('the stored scale is this times the rms of the rotated weight'),
  ...FINETUNE_FIELD,
}).superRefine((p, ctx) => {
  if (p.bits >= p.state_bits) ctx.addIssue({ code: 'custom', path: ['bits'], message: `a trellis of ${p.state_bits} state bits codes fewer than ${p.state_bits} bits a weight; got bits ${p.bits} (raise state_bits or lower bits)` });
}, onValidFields);
type TrellisParams = z.output<typeof TrellisParams>;

export const trellis = definePass({
  id: 'quantize.trellis',
  summary: 'trellis-coded weights (QTIP bitshift trellis, computed Gaussian code, DCT incoherence, GPTQ feedback), rebuilt at load',
  params: TrellisParams,
  needsCalibration: () => ({ need: 'required' }),
  eligible: (layer) => layer.kind !== 'conv',
  async apply(model, params: TrellisParams, ctx) {
    checkTrellisOpset(model);
    const shape = { L: params.state_bits, k: params.bits };
    const finetune = await BlockFinetune.create(model, ctx, params.finetune, this.id);
    try {
      const layers = await eachCalibratedLayer(model, ctx, { hessian: true }, async (layer, s) => {
        const [rows, cols] = [layer.outFeatures, layer.inFeatures];
        const W = readWeight(model, layer);
        const seeds = layerSeeds(params.seed, params.rotate);
        const t = await trellisQuantizeLayer(W, rows, cols, s, { shape, seeds, dampening: params.dampening, blockSize: params.block_size, scaleFactor: params.scale_factor, pass: this.id, layer: layer.name });
        const error = await reconstructionError(W, t.weight, rows, s);
        const bytes = emitTrellis(model, layer, t);
        const tuned = await finetune?.coded(layer, t.weight);
        return { bytes_before: rows * cols * 4, bytes_after: bytes, objective: error, extra: { obs_loss: t.loss, ...tuned } };
      });
      return { layers, warnings: [] };
    } finally {
      finetune?.dispose();
    }
  },
  estimateBytes: (layer, params) => trellisStoredBytes(layer.outFeatures, layer.inFeatures, { L: params.state_bits, k: params.bits }),
});
