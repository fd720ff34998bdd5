import { z } from 'zod';
import { UserError } from '../errors.js';
import { feedsNll } from '../eval/feeds-loss.js';
import { readWeight, writeWeight } from '../model/linear-weights.js';
import { prepareHessian } from '../obs/hessian.js';
import { reconstructionError } from '../obs/output-error.js';
import { eachCalibratedLayer } from '../pass/layer-loop.js';
import { assertLayersFit, definePass, type LayerStat, onValidFields } from '../pass/pass.js';
import { allocate, type Option } from './allocate.js';
import { gramError } from './awq.js';
import { biasCorrection, BIAS_CORRECTION_FIELD } from './bias-correction.js';
import { BlockFinetune, FINETUNE_FIELD } from './block-finetune.js';
import { gptqQuantize, gptqRefit } from './gptq.js';
import { dequantizeMatrix, quantizeMatrix } from './grid.js';
import { gridSpec, quantizedBytes, quantizeLayerProblems, type WeightQuantParams } from './params.js';
import { emitQuantized } from './rtn.js';
import type { TrellisShape } from './trellis-code.js';
import { trellisQuantizeLayer, trellisStoredBytes } from './trellis-layer.js';
import { emitTrellis, layerSeeds, TRELLIS_ROTATE } from './trellis.js';
import type { LinearLayer } from '../model/linears.js';

/**
 * Mixed precision to a budget: each layer gets its own bits and group size (MatMulNBits), chosen to
 * minimise the predicted increase of the model's loss with the stored bytes of the targets (codes +
 * scales + zero points, integer or float) within the budget.
 *
 * Prediction: layer l at choice c raises the loss by λ_l·E_l(c), E_l(c) = ‖X·(W − Q_c(W))ᵀ‖²/n its
 * output error under round-to-nearest at c on the calibration inputs (from XᵀX), and λ_l the loss
 * increase measured by rounding layer l alone at its most damaging choice, divided by that choice's
 * E_l: how much a unit of this layer's output error costs at the model's output. The prediction
 * treats layers as independent (their increases add) and is linear in E, which the report checks:
 * it lists the predicted total beside the loss increase measured after quantizing. The allocation
 * is an exact multiple-choice knapsack (allocate.ts); the layers are then quantized with GPTQ (or
 * RTN), block by block, each at its choice. `sensitivity: output` skips the model runs and weighs every
 * layer's output error alike (λ_l = 1).
 */

const CHOICE_BITS = z.union([z.literal(2), z.literal(3), z.literal(4), z.literal(8)]);

const MixedParams = z
  .strictObject({
    budget_bits: z.number().min(1).max(32).optional().describe('stored bits per weight over the targets (codes + scales + zero points) · 8 / weights'),
    budget_bytes: z.number().int().min(1).optional().describe('stored bytes of the targets'),
    bits: z.array(CHOICE_BITS).default([2, 3, 4, 8]).describe('bit widths a layer may get'),
    group_sizes: z.array(z.number().int()).min(1).default([32, 64, 128]).describe('group sizes a layer may get (MatMulNBits: powers of two from 16 to 256)'),
    symmetric: z.boolean().default(false).describe('symmetric grids (no zero points) or asymmetric'),
    method: z.enum(['gptq', 'rtn']).default('gptq').describe('how the layers are quantized once their choices are made'),
    mse_clip: z.boolean().default(true).describe('search each group\'s clipping range (weighted by the Hessian diagonal) when quantizing'),
    act_order: z.boolean().default(false).describe('GPTQ: inputs in order of decreasing Hessian diagonal (static groups)'),
    dampening: z.number().min(0).max(1).default(0.01).describe('GPTQ: H += λ·mean(diag H)·I'),
    block_size: z.number().int().min(1).default(128).describe('GPTQ: columns per lazy-update block'),
    sensitivity: z
      .enum(['loss', 'output'])
      .default('loss')
      .describe('loss: weight each layer\'s output error by the calibration-loss increase measured when it alone is rounded (one model run per layer); output: the output errors as they are (no model runs)'),
    sensitivity_samples: z.number().int().min(1).default(32).describe('calibration samples the loss is measured on for each layer\'s sensitivity'),
    accuracy_level: z.union([z.literal(0), z.literal(1), z.literal(2), z.literal(3), z.literal(4)]).default(0).describe('MatMulNBits compute type (0: float32)'),
    scale_dtype: z.enum(['float32', 'float16']).default('float32').describe('scales stored as float32, or float16 behind a Cast (counted at 2 bytes in the budget)'),
    packed_3bit: z.boolean().default(false).describe('3-bit choices stored 8 codes per 3 bytes (rebuilt into the 4-bit container at load), counted at 3 bits in the budget'),
    refit_scales: z.boolean().default(false).describe('GPTQ: refit each row\'s group scales to its codes by least squares on the layer-output error'),
    float_zero_points: z.boolean().default(false).describe('asymmetric zero points stored as floats of the scales\' type (4 bytes a group, 2 with float16 scales, counted so in the budget) instead of packed integers; with refit_scales, each row\'s scales and zero points are refitted jointly'),
    ...BIAS_CORRECTION_FIELD,
    ...FINETUNE_FIELD,
    trellis_bits: z.array(z.number().int().min(1).max(8)).default([]).describe('also offer trellis-coded choices (quantize.trellis: QTIP bitshift trellis, rebuilt at load) at these bits per weight'),
    trellis_state_bits: z.number().int().min(2).max(17).default(12).describe('L of the trellis choices'),
    trellis_rotate: TRELLIS_ROTATE.default('both').describe('which sides of each weight the trellis choices\' incoherence rotation mixes'),
  })
  .superRefine((p, ctx) => {
    if (p.bits.length === 0 && p.trellis_bits.length === 0) ctx.addIssue({ code: 'custom', path: ['bits'], message: 'give at least one choice: bits or trellis_bits' });
    for (const k of p.trellis_bits) if (k >= p.trellis_state_bits) ctx.addIssue({ code: 'custom', path: ['trellis_bits'], message: `a trellis of ${p.trellis_state_bits} state bits codes fewer than ${p.trellis_state_bits} bits a weight; got ${k} (raise trellis_state_bits or lower trellis_bits)` });
    if (p.bias_correction && p.finetune) ctx.addIssue({ code: 'custom', path: ['finetune'], message: 'finetune trains the block without the correction biases; leave out bias_correction or finetune' });
    if (p.bias_correction && p.trellis_bits.length > 0) ctx.addIssue({ code: 'custom', path: ['bias_correction'], message: 'bias_correction is for the grid choices; leave it out with trellis_bits' });
    if (p.float_zero_points && p.symmetric) ctx.addIssue({ code: 'custom', path: ['float_zero_points'], message: 'float_zero_points stores asymmetric zero points; set symmetric: false or leave float_zero_points out' });
    if ((p.budget_bits === undefined) === (p.budget_bytes === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['budget_bits'], message: 'give exactly one of budget_bits and budget_bytes' });
    }
    for (const g of p.group_sizes) {
      if (g < 16 || g > 256 || (g & (g - 1)) !== 0) ctx.addIssue({ code: 'custom', path: ['group_sizes'], message: `MatMulNBits needs group sizes that are powers of two from 16 to 256, got ${g}` });
    }
  }, onValidFields);
type MixedParams = z.output<typeof MixedParams>;

type GridChoice = WeightQuantParams & { bias_correction?: boolean };
type Choice = { kind: 'grid'; grid: GridChoice } | { kind: 'trellis'; shape: TrellisShape };

function gridChoices(p: MixedParams): GridChoice[] {
  return p.bits.flatMap((bits) => p.group_sizes.map((group_size) => ({ bits, granularity: 'group' as const, group_size, symmetric: p.symmetric, format: 'matmulnbits' as const, accuracy_level: p.accuracy_level, scale_dtype: p.scale_dtype, packed_3bit: bits === 3 && p.packed_3bit, float_zero_points: p.float_zero_points, bias_correction: p.bias_correction })));
}

function choices(p: MixedParams): Choice[] {
  return [...gridChoices(p).map((grid) => ({ kind: 'grid' as const, grid })), ...p.trellis_bits.map((k) => ({ kind: 'trellis' as const, shape: { L: p.trellis_state_bits, k } }))];
}

const label = (c: Choice) => (c.kind === 'grid' ? `${c.grid.bits}-bit g${c.grid.group_size}` : `trellis ${c.shape.k}-bit`);
const choiceBytes = (c: Choice, rows: number, cols: number) => (c.kind === 'grid' ? quantizedBytes(rows, cols, c.grid) : trellisStoredBytes(rows, cols, c.shape));

/** the layer problems of the grid choices (the trellis choices fit any MatMul or Gemm) */
function layerProblems(pass: string, p: MixedParams, layers: readonly LinearLayer[]) {
  const grid = gridChoices(p)[0];
  return grid ? quantizeLayerProblems(pass, grid, layers) : [];
}

export const mixed = definePass({
  id: 'quantize.mixed',
  summary: 'mixed precision to a budget: per-layer bits and group size (MatMulNBits) from measured sensitivities, an exact knapsack, then GPTQ or RTN',
  params: MixedParams,
  needsCalibration: () => ({ need: 'required' }),
  eligible: (layer) => layer.kind !== 'conv',
  checkLayers(params, layers) {
    return layerProblems(this.id, params, layers);
  },
  async apply(model, params: MixedParams, ctx) {
    assertLayersFit(layerProblems(this.id, params, ctx.layers));
    const options = choices(params);
    const calibration = ctx.calibration!;
    const stats = await calibration.collect(model, ctx.layers, { hessian: true });
    const measure = params.sensitivity === 'loss';
    const feeds = calibration.feedsFor(model).slice(0, params.sensitivity_samples);
    const threads = calibration.threads || 1;
    const baseLoss = measure ? await feedsNll(model, feeds, threads) : 0;

    const trellisOptions = (layer: LinearLayer, shape: TrellisShape, feedback: boolean) => ({
      shape,
      seeds: layerSeeds(0, params.trellis_rotate),
      dampening: params.dampening,
      blockSize: params.block_size,
      scaleFactor: 1,
      pass: this.id,
      layer: layer.name,
      feedback,
    });

    // sensitivities: output error per choice (closed form from XᵀX), scaled by the loss one rounding costs
    const predicted: number[][] = [];
    const lambdas: number[][] = [];
    for (const [i, layer] of ctx.layers.entries()) {
      ctx.progress.layer(i, ctx.layers.length, `${layer.name} (sensitivity)`);
      const s = stats.get(layer.input)!;
      const [rows, cols] = [layer.outFeatures, layer.inFeatures];
      const W = readWeight(model, layer);
      // plain min-max grids and trellis codes without feedback: the clipping search and GPTQ at every choice would cost more than they tell
      const rounded: Float32Array[] = [];
      for (const c of options) {
        rounded.push(c.kind === 'grid' ? dequantizeMatrix(quantizeMatrix(W, rows, cols, gridSpec(c.grid))) : (await trellisQuantizeLayer(W, rows, cols, s, trellisOptions(layer, c.shape, false))).weight);
      }
      const errors = rounded.map((Wq) => gramError(W, Wq, rows, cols, s.xtx!) / Math.max(s.rows, 1));
      // one λ per family: a trellis code's error costs the model differently from a grid's (spread evenly over a rotated weight)
      const lambda = new Map<Choice['kind'], number>();
      for (const kind of new Set(options.map((c) => c.kind))) {
        let value = 1;
        if (measure) {
          const members = options.flatMap((c, k) => (c.kind === kind ? [k] : []));
          const worst = members.reduce((a, k) => (errors[k]! > errors[a]! ? k : a));
          writeWeight(model, layer, rounded[worst]!);
          const loss = await feedsNll(model, feeds, threads);
          writeWeight(model, layer, W);
          value = errors[worst]! > 0 ? Math.max(loss - baseLoss, 0) / errors[worst]! : 0;
        }
        lambda.set(kind, value);
      }
      lambdas.push(options.map((c) => lambda.get(c.kind)!));
      predicted.push(errors.map((e, k) => lambda.get(options[k]!.kind)! * e));
    }

    const weights = ctx.layers.reduce((a, l) => a + l.outFeatures * l.inFeatures, 0);
    const budget = params.budget_bytes ?? Math.floor((params.budget_bits! * weights) / 8);
    // a correction bias (counted in every choice's bytes) costs the same at every choice: the budget pays for it first
    const table: Option[][] = ctx.layers.map((l, i) => options.map((c, k) => ({ bytes: choiceBytes(c, l.outFeatures, l.inFeatures), cost: predicted[i]![k]! })));
    const plan = allocate(table, budget);
    if (!plan) {
      const least = table.reduce((a, row) => a + Math.min(...row.map((o) => o.bytes)), 0);
      throw new UserError(`${this.id}: ${ctx.where}.params: a budget of ${budget} bytes (${((budget * 8) / weights).toFixed(3)} bits per weight) is below the smallest choices' ${least} bytes (${((least * 8) / weights).toFixed(3)} bits per weight); raise the budget or add smaller bits/group_sizes`);
    }

    const position = new Map(ctx.layers.map((l, i) => [l.node, i]));
    const finetune = await BlockFinetune.create(model, ctx, params.finetune, this.id);
    let layers: LayerStat[];
    try {
      layers = await eachCalibratedLayer(model, ctx, { hessian: true, sum: params.bias_correction }, async (layer, s) => {
        const i = position.get(layer.node)!;
        const pick = options[plan.picks[i]!]!;
        const [rows, cols] = [layer.outFeatures, layer.inFeatures];
        const W = readWeight(model, layer);
        const original = W.slice();
        const extra = { choice: label(pick), predicted_loss_increase: predicted[i]![plan.picks[i]!]!, loss_per_output_error: lambdas[i]![plan.picks[i]!]! };
        if (pick.kind === 'trellis') {
          const t = await trellisQuantizeLayer(W, rows, cols, s, trellisOptions(layer, pick.shape, true));
          const error = await reconstructionError(original, t.weight, rows, s);
          emitTrellis(model, layer, t);
          const tuned = await finetune?.coded(layer, t.weight);
          return { bytes_before: rows * cols * 4, bytes_after: trellisStoredBytes(rows, cols, pick.shape), objective: error, extra: { ...extra, bits: pick.shape.k, ...tuned } };
        }
        const choice = pick.grid;
        const clipWeights = Float32Array.from({ length: cols }, (_, j) => s.xtx![j * cols + j]!);
        const spec = { ...gridSpec(choice, params.mse_clip), clipWeights };
        let m;
        if (params.method === 'rtn') m = quantizeMatrix(W, rows, cols, spec);
        else {
          const prepared = await prepareHessian(s, W, rows, { dampening: params.dampening, actOrder: params.act_order, pass: this.id, layer: layer.name });
          const opts = { ...spec, blockSize: params.block_size };
          ({ m } = params.refit_scales ? await gptqRefit(original, W, rows, cols, prepared, s.xtx!, { ...opts, rounds: 1, floatZeros: params.float_zero_points }) : await gptqQuantize(W, rows, cols, prepared.Hinv, prepared.perm, opts));
        }
        const Wq = dequantizeMatrix(m);
        const error = await reconstructionError(original, Wq, rows, s);
        const corrected = params.bias_correction ? biasCorrection(original, Wq, rows, cols, s, error, { pass: this.id, layer: layer.name, dtype: params.scale_dtype }) : undefined;
        emitQuantized(model, layer, m, choice, corrected?.bias);
        const tuned = await finetune?.coded(layer, Wq);
        return {
          bytes_before: rows * cols * 4,
          bytes_after: quantizedBytes(rows, cols, choice),
          objective: corrected?.error ?? error,
          extra: { ...extra, bits: choice.bits, group_size: choice.group_size, ...tuned },
        };
      });
    } finally {
      finetune?.dispose();
    }
    const measuredLoss = measure ? await feedsNll(model, feeds, threads) : 0;
    const counts = new Map<string, number>();
    for (const k of plan.picks) counts.set(label(options[k]!), (counts.get(label(options[k]!)) ?? 0) + 1);
    return {
      layers,
      warnings: [],
      summary: {
        budget_bytes: budget,
        bytes: plan.bytes,
        bits_per_weight: (plan.bytes * 8) / weights,
        allocation: [...counts].map(([c, n]) => `${n}× ${c}`).join(', '),
        ...(measure ? { calibration_nll: baseLoss, predicted_nll_increase: plan.cost, measured_nll_increase: measuredLoss - baseLoss } : { predicted_output_error: plan.cost }),
      },
    };
  },
  estimateBytes: (layer, params) => Math.floor(((params.budget_bits ?? 4) * layer.outFeatures * layer.inFeatures) / 8),
});
