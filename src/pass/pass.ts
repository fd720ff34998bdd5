import type { z } from 'zod';
import type { Model } from '../model/model.js';
import type { LinearLayer } from '../model/linears.js';
import type { PassSpec } from './pass-spec.js';
import type { Calibrator } from '../calibrate/calibrator.js';
import type { LayerStat } from '../report/schema.js';
import type { RunHooks } from './hooks.js';

export type { LayerStat };

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

/** A pass is data plus a function: it matches its targets first, then changes the model once. */
export interface Pass<P extends z.ZodObject<any> = z.ZodObject<any>> extends PassSpec {
  params: P;
  /** which layers the pass can change; the recipe's targets select among these */
  eligible?: (layer: LinearLayer) => boolean;
  apply(model: Model, params: z.output<P>, ctx: PassContext): Promise<PassResult>;
  /** bytes of a layer's weight after the pass, for `--dry-run`; the dense size when absent */
  estimateBytes?: (layer: LinearLayer, params: z.output<P>, bytesBefore: number) => number;
}

/** Declares a pass with its params type inferred from the schema. */
export function definePass<P extends z.ZodObject<any>>(pass: Pass<P>): Pass<P> {
  return pass;
}
