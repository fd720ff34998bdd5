import { z } from 'zod';
import { UserError } from '../errors.js';
import { decoderBlocks, layerBlockIndex, type DecoderBlock } from '../model/blocks.js';
import { DataType } from '../model/dtype.js';
import { GraphIndex } from '../model/graph.js';
import type { HostFeeds } from '../model/io.js';
import { readWeight, writeWeight } from '../model/linear-weights.js';
import { linears, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { readOnnx } from '../model/onnx-io.js';
import type { PassContext } from '../pass/pass.js';
import { OnnxExecutor } from '../runtime/tfjs/executor.js';
import { foldNBitsInputs } from './nbits-fold.js';
import { blockData, type BlockData, checkSameStream, hostFeeds, trainBlock } from './reconstruct.js';

/**
 * Within-block fine-tuning while a pass codes its layers (QuIP#, Tseng et al. 2024, §5: after each
 * linear of a block is quantized, the block's linears not yet quantized are trained to absorb its
 * error). After layer j of block b is coded, the float weights of b's targeted layers not yet
 * coded train with Adam to minimise Σ_s ‖block_b(x_s) − y_s‖², x_s the block's input in the model as
 * coded so far and y_s the float model's block output on its own input, over the calibration
 * samples (quantize.reconstruct's target). Post-training, not distillation: block outputs on the
 * calibration samples only, no logits, no end-to-end training. The coded layers never change; the
 * layers coded later are coded from their trained weights. Unlike quantize.reconstruct it needs no
 * trainable grid, so it serves trellis-coded layers too.
 *
 * The training runs on a float mirror of the model in which every coded layer holds its decoded
 * weight Ŵ as a float initializer (what MatMulNBits or the trellis decoder compute at run time), so
 * the tfjs executor runs the blocks without the coded forms' ops.
 */
export const FinetuneParams = z.strictObject({
  epochs: z.number().int().min(1).max(1000).default(5).describe('passes over the calibration samples per coded layer (one sample a step)'),
  lr: z.number().positive().max(1).default(1e-4).describe("Adam's peak learning rate on the float weights (cosine decay over each training)"),
});
export type FinetuneParams = z.output<typeof FinetuneParams>;

export const FINETUNE_FIELD = {
  finetune: FinetuneParams.optional().describe(
    "after each layer is coded, train the float weights of its decoder block's targeted layers not yet coded to match the float model's block output on the calibration samples (QuIP#'s within-block fine-tuning; post-training, no distillation): { epochs, lr }",
  ),
};

/** Plain float32 weights only this layer reads (through Transposes at most): what the executor can train as they are stored. */
function trainableWeight(model: Model, index: GraphIndex, layer: LinearLayer): boolean {
  const init = model.initializer(layer.weight);
  return init?.data_type === DataType.FLOAT && index.consumerCount(layer.weight) === 1 && layer.weightChain.every((n) => n.op_type === 'Transpose');
}

export class BlockFinetune {
  private readonly done = new Set<string>();
  private data: { block: number; value: BlockData } | undefined;
  private streamChecked = false;

  private constructor(
    private readonly model: Model,
    private readonly work: Model,
    private readonly float: Model,
    private readonly fexec: OnnxExecutor,
    private readonly feeds: HostFeeds[],
    /** the targets as layers of `work`, by name */
    private readonly targets: Map<string, LinearLayer>,
    /** the targets as layers of `model`, by name */
    private readonly own: Map<string, LinearLayer>,
    private readonly blocks: Map<number, { work: DecoderBlock; float: DecoderBlock }>,
    private readonly params: FinetuneParams,
    private readonly pass: string,
  ) {}

  /** The fine-tuner of a pass whose params ask for it (undefined otherwise); dispose it after the pass. */
  static async create(model: Model, ctx: PassContext, params: FinetuneParams | undefined, pass: string): Promise<BlockFinetune | undefined> {
    if (!params) return undefined;
    const originalPath = ctx.original?.();
    if (!originalPath) throw new UserError(`${ctx.where}: ${pass}'s finetune needs the float model its targets come from; run it inside \`pare compress\``);
    const { work } = await foldNBitsInputs(model);
    const names = new Set(ctx.layers.map((l) => l.name));
    const targets = new Map(linears(work).filter((l) => names.has(l.name)).map((l) => [l.name, l]));
    const float = readOnnx(originalPath);
    try {
      const floatBlocks = new Map(decoderBlocks(float).map((b) => [b.index, b]));
      const blocks = new Map<number, { work: DecoderBlock; float: DecoderBlock }>();
      for (const b of decoderBlocks(work)) {
        const f = floatBlocks.get(b.index);
        if (f) blocks.set(b.index, { work: b, float: f });
      }
      if (![...targets.keys()].some((n) => blocks.has(layerBlockIndex(n) ?? -1))) {
        throw new UserError(`${ctx.where}: ${pass}'s finetune found no decoder block (nodes named /layers.N/… with one residual output) holding its targets in both this model and the float model ${originalPath}; it fine-tunes transformer blocks only`);
      }
      const feeds = ctx.calibration!.feedsFor(model).map(hostFeeds);
      const fexec = await OnnxExecutor.create(float);
      return new BlockFinetune(model, work, float, fexec, feeds, targets, new Map(ctx.layers.map((l) => [l.name, l])), blocks, params, pass);
    } catch (e) {
      float.close();
      throw e;
    }
  }

  /**
   * `layer` (a layer of the pass's model) was just coded; `decoded` is its weight as the model now
   * computes it ([out, in]). Trains the rest of its block; returns that training's block loss
   * (Σ‖y_q − y‖² / Σ‖y‖² before → after), or undefined when nothing in the block is left to train.
   */
  async coded(layer: LinearLayer, decoded: Float32Array): Promise<{ finetune_loss: string } | undefined> {
    const mirror = this.targets.get(layer.name);
    if (!mirror) return undefined;
    writeWeight(this.work, mirror, decoded);
    this.done.add(layer.name);
    const b = layerBlockIndex(layer.name);
    const block = b === undefined ? undefined : this.blocks.get(b);
    if (b === undefined || !block) return undefined;
    const index = new GraphIndex(this.work.graph);
    const rest = [...this.targets.values()].filter((l) => layerBlockIndex(l.name) === b && !this.done.has(l.name) && trainableWeight(this.work, index, l));
    if (rest.length === 0) return undefined;
    const data = await this.blockData(b, block);
    const loss = await trainBlock(this.work, block.work, new Set(rest.map((l) => l.weight)), data, this.feeds, this.params);
    if (loss.kept) for (const l of rest) writeWeight(this.model, this.own.get(l.name)!, readWeight(this.work, l));
    return { finetune_loss: `${loss.before.toExponential(3)} -> ${loss.after.toExponential(3)}${loss.kept ? '' : ' (not kept)'}` };
  }

  /** The block's inputs (fixed once the blocks before it are coded) and float targets, kept while its layers are coded. */
  private async blockData(b: number, block: { work: DecoderBlock; float: DecoderBlock }): Promise<BlockData> {
    if (this.data?.block === b) return this.data.value;
    this.data?.value.dispose();
    this.data = undefined;
    if (!this.streamChecked) {
      await checkSameStream(this.fexec, this.work, block.work.input, this.feeds[0], this.pass);
      this.streamChecked = true;
    }
    const value = await blockData(this.work, block.work, this.fexec, block.float.output, this.feeds);
    this.data = { block: b, value };
    return value;
  }

  dispose(): void {
    this.data?.value.dispose();
    this.fexec.dispose();
    this.float.close();
  }
}
