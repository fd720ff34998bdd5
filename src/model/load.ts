import { statSync } from 'node:fs';
import { extname } from 'node:path';
import { UserError } from '../errors.js';
import { statInput } from '../util/read-file.js';
import type { Model } from './model.js';
import { buildFromSafetensors, type BuildOptions } from './builders/index.js';
import { modelFileOf } from './hf-folder.js';
import { readOnnx } from './onnx-io.js';

export type CheckpointFormat = 'onnx' | 'safetensors';

/** The checkpoint format a path names, by extension. */
export function formatOf(path: string): CheckpointFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.onnx') return 'onnx';
  if (ext === '.safetensors') return 'safetensors';
  throw new UserError(`${path}: unknown checkpoint format '${ext || '(no extension)'}', expected .onnx or .safetensors`);
}

/** A user error unless `path` is a regular file (a model checkpoint, by the caller's reading). */
export function checkModelFile(path: string): void {
  let directory = false;
  try {
    directory = statSync(path).isDirectory();
  } catch {
    // statInput names the errno
  }
  if (directory) throw new UserError(`${path}: is a directory, expected a .onnx or .safetensors file`);
  statInput(path, 'model file');
}

/**
 * Load a checkpoint (or a model folder's fp32 model) as a Model (ONNX graph). safetensors checkpoints are built into a graph from
 * config.json, with `build`'s options (an ONNX file is read as it is). The compress and eval paths
 * open a `Checkpoint` instead, which also holds the hash and the safetensors source.
 */
export function loadModel(modelPath: string, build: BuildOptions = {}): Model {
  const path = modelFileOf(modelPath);
  checkModelFile(path);
  const format = formatOf(path);
  if (format === 'onnx') return readOnnx(path);
  return buildFromSafetensors(path, build);
}
