/**
 * src/pass — layer 10 (above report): the contract every pass implements and the loops they share;
 * the pass families sit above it and the registry above them (pipeline/registry.ts).
 */
import type { z } from 'zod';
import type { Model } from '../model/model.js';
import type { LinearLayer } from '../model/linears.js';
import { assertStrictParams, parseParams, type ParamsSchema, type ParsedParams, type PassSpec, type SpecDefinition } from './pass-spec.js';
import type { Calibrator } from '../calibrate/calibrator.js';
import type { LayerStat } from '../report/schema.js';
import type { RunHooks } from './hooks.js';

export type { LayerStat };
export type { CalibrationNeed, ParamsSchema } from './pass-spec.js';
export { onValidFields } from './pass-spec.js';

export interface PassResult {
  layers: LayerStat[];
  warnings: string[];
  /** pass-level numbers (a training run's steps, tokens, losses, wall time) for the report */
  summary?: Record<string, number | string>;
}

/** Per-layer progress reporting, so the pipeline can draw "layer j/M" with an ETA. */
export interface LayerProgress {
  layer(index: number, total: number, name: string): void;
  /** a training step with its running loss; passes without steps never call it */
  step?(index: number, total: number, text: string): void;
}

export interface PassContext {
  /** the layers the recipe's targets/ignore selected for this pass, in graph order */
  layers: LinearLayer[];
  seed: number;
  /** uniform [0, 1), seeded from `seed` and the pass's position so reruns repeat exactly */
  random: () => number;
  /** present when the pass needs calibration */
  calibration?: Calibrator;
  progress: LayerProgress;
  /** `passes[i]`, for messages */
  where: string;
  /** the recipe's folder: relative paths in pass params resolve against it */
  recipeDir?: string;
  /** the model as it was before the first pass, as an ONNX file (distillation's teacher) */
  original?: () => string;
  /** a file in the run's work dir, kept across --resume and removed on success (a long pass's own checkpoints) */
  workFile?: (name: string) => string;
  /** the run continues an interrupted one (--resume) */
  resume?: boolean;
  /** where a test may hold the run (see hooks.ts) */
  hooks?: RunHooks;
}

/** A problem a pass's params have with one of the layers it would change. */
export interface LayerProblem {
  /** the param the problem is about (`group_size`): the recipe error points at it */
  param: string;
  message: string;
}

/** What a pass module declares: data plus a function that matches its targets first, then changes the model once. */
export interface PassDefinition<P extends ParamsSchema> extends SpecDefinition<P> {
  /** which layers the pass can change; the recipe's targets select among these */
  eligible?(layer: LinearLayer): boolean;
  apply(model: Model, params: z.output<P>, ctx: PassContext): Promise<PassResult>;
  /** bytes of a layer's weight after the pass, for `--dry-run`; the dense size when absent */
  estimateBytes?(layer: LinearLayer, params: z.output<P>, bytesBefore: number): number;
  /** the model-dependent rules (pass-spec.ts, kind 3) on the selected layers, as the model is before the pass */
  checkLayers?(params: z.output<P>, layers: readonly LinearLayer[]): LayerProblem[];
  /** removes, replaces or resizes linear layers (structured pruning, factorization, block removal) */
  changesLayers?: boolean;
  /** files the params name (a teacher model, a dataset), relative to the recipe: the run checks no output overwrites them */
  inputFiles?(params: z.output<P>): PassInputFile[];
  /** rewrites the graph as a whole (float16 conversion, the token embedding): `targets` select no layers and `ctx.layers` is empty */
  graphWide?: boolean;
  /** `targets` also select MatMulNBits layers (model/nbits-layers.ts), whose packed codes the pass trains */
  selectsNBits?: boolean;
  /**
   * the pass also trains the factors a decomposition stores outside every layer (Kronecker's
   * runtime dense_at_load; distill/trainable.ts), so its targets may select no layer when the model has such factors
   */
  trainsStoredFactors?: boolean;
}

/** A file a pass reads, by the param that names it (`teacher`, `data.path`). */
export interface PassInputFile {
  param: string;
  path: string;
}

/**
 * A pass bound to one recipe entry's params. The pass makes it when it parses them (`parse`), so
 * the params keep their schema's type inside and no caller hands an untyped object to `apply`.
 */
export interface ConfiguredPass extends ParsedParams {
  readonly id: string;
  /** later passes' model checks wait until they start: this pass changes the layers they would see */
  readonly changesLayers: boolean;
  /** the pass selects no layers (PassDefinition.graphWide) */
  readonly graphWide: boolean;
  /** targets also select MatMulNBits layers (PassDefinition.selectsNBits) */
  readonly selectsNBits: boolean;
  /** targets may select no layer when the model stores factors outside its layers (PassDefinition.trainsStoredFactors) */
  readonly trainsStoredFactors: boolean;
  eligible(layer: LinearLayer): boolean;
  apply(model: Model, ctx: PassContext): Promise<PassResult>;
  estimateBytes(layer: LinearLayer, bytesBefore: number): number;
  checkLayers(layers: readonly LinearLayer[]): LayerProblem[];
  inputFiles(): PassInputFile[];
}

export interface Pass<P extends ParamsSchema = ParamsSchema> extends PassDefinition<P>, PassSpec<P, ConfiguredPass> {}

/** Declares a pass with its params type inferred from the schema. */
export function definePass<P extends ParamsSchema>(definition: PassDefinition<P>): Pass<P> {
  assertStrictParams(definition);
  const pass: Pass<P> = {
    ...definition,
    parse: (raw) =>
      parseParams(definition, raw, (params, written) => ({
        id: pass.id,
        written,
        calibration: pass.needsCalibration(params),
        changesLayers: pass.changesLayers ?? false,
        graphWide: pass.graphWide ?? false,
        selectsNBits: pass.selectsNBits ?? false,
        trainsStoredFactors: pass.trainsStoredFactors ?? false,
        eligible: (layer) => pass.eligible?.(layer) ?? true,
        apply: (model, ctx) => pass.apply(model, params, ctx),
        estimateBytes: (layer, bytesBefore) => pass.estimateBytes?.(layer, params, bytesBefore) ?? bytesBefore,
        checkLayers: (layers) => pass.checkLayers?.(params, layers) ?? [],
        inputFiles: () => pass.inputFiles?.(params) ?? [],
      })),
  };
  return pass;
}

/** `pass.parse` for params written in code (bench, tests): throws zod's error when they do not fit. */
export function configurePass(pass: Pass, raw: unknown): ConfiguredPass {
  const r = pass.parse(raw);
  if (!r.success) throw r.error;
  return r.data;
}

/**
 * apply's own guard for callers that skip the runner (bench, tests): the runner and `pare recipe
 * validate` report these first, located in the recipe, so reaching this from the CLI is a bug.
 */
export function assertLayersFit(problems: readonly LayerProblem[]): void {
  if (problems.length > 0) throw new Error(`${problems.map((p) => p.message).join('\n')} (params.${problems[0]!.param})`);
}
