import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { generateCheckpoint, MODELS } from '../fixtures/generate-models.js';

const ROOT = resolve(import.meta.dirname, '../..');

/** The realistic generated checkpoint (seeded random weights) `name`, generated on first use. */
export function realisticModelPath(name: string): string {
  const dir = join(ROOT, '.pare-work/models', name);
  const path = join(dir, 'model.safetensors');
  if (!existsSync(path)) generateCheckpoint(MODELS[name]!(), dir, { onnx: false });
  return path;
}

/** Block linears of the realistic models (Llama `layers.N.`, GPT-2 `h.N.`), not embeddings or lm_head. */
export const BLOCK_LINEAR = /^(?:model\.)?(?:layers|h)\.\d+\./;
