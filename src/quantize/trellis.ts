import { z } from 'zod';
import { readWeight } from '../model/linear-weights.js';
import { reconstructionError } from '../obs/output-error.js';
import { eachCalibratedLayer } from '../pass/layer-loop.js';
import { definePass } from '../pass/pass.js';
import { streamBits } from './trellis-code.js';
import { trellisQuantizeLayer } from './trellis-layer.js';
import { checkTrellisOpset, emitTrellisAtLoad } from './trellis-onnx.js';
import { MAX_ROTATION_SEED } from './trellis-rotation.js';

const TrellisParams = z.strictObject({
  bits: z.number().int().min(1).max(8).default(3).describe('k: stored bits per weight (the stream adds L − k bits a layer)'),
  state_bits: z.number().int().min(2).max(17).default(12).describe('L: trellis state bits (2^L codebook entries; the encoder costs 2^(L+1) operations a weight)'),
  seed: z.number().int().min(0).max(MAX_ROTATION_SEED).default(0).describe('seed of the incoherence rotations (each layer adds its index)'),
  dampening: z.number().min(0).max(1).default(0.01).describe('λ: H += λ·mean(diag H)·I'),
  block_size: z.number().int().min(1).default(128).describe('columns per lazy-update block of the GPTQ loop'),
  scale_factor: z.number().positive().default(1).describe('the stored scale is this times the rms of the rotated weight'),
});
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
    let index = 0;
    const layers = await eachCalibratedLayer(model, ctx, { hessian: true }, async (layer, s) => {
      const [rows, cols] = [layer.outFeatures, layer.inFeatures];
      const W = readWeight(model, layer);
      const seeds = { out: (params.seed + 2 * index) % (MAX_ROTATION_SEED + 1), in: (params.seed + 2 * index + 1) % (MAX_ROTATION_SEED + 1) };
      index++;
      const t = await trellisQuantizeLayer(W, rows, cols, s, { shape, seeds, dampening: params.dampening, blockSize: params.block_size, scaleFactor: params.scale_factor, pass: this.id, layer: layer.name });
      const error = await reconstructionError(W, t.weight, rows, s);
      const { storedBytes } = emitTrellisAtLoad(model, layer, t);
      return { bytes_before: rows * cols * 4, bytes_after: storedBytes, objective: error, extra: { obs_loss: t.loss } };
    });
    return { layers, warnings: [] };
  },
  // what emitTrellisAtLoad stores: the stream, its 2 bytes of padding, and the scale
  estimateBytes: (layer, params) => Math.ceil(streamBits(layer.outFeatures * layer.inFeatures, { L: params.state_bits, k: params.bits }) / 8) + 2 + 4,
});
