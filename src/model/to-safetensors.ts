import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../util/atomic-write.js';
import { dirname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { linears } from './linears.js';
import type { Model } from './model.js';
import { openSafetensors, writeSafetensors, type SafetensorsTensor } from './safetensors.js';

/**
 * Writes a model that came from safetensors back as safetensors: every tensor of the source file,
 * by name, from the model's current initializers (so pruned or rounded weights go back in place).
 * A pass that replaced a tensor with a structure safetensors cannot hold (quantized codes, factors,
 * a Cast) leaves a source tensor missing, and the error says to write .onnx instead. The source's
 * config.json is copied beside the output when the output goes to another folder.
 */
export function writeModelAsSafetensors(model: Model, path: string): string[] {
  if (model.format !== 'safetensors') throw new UserError(`${path}: safetensors output needs a safetensors input; write .onnx`);
  const source = openSafetensors(model.path);
  const tensors: SafetensorsTensor[] = [];
  try {
    // a linear whose weight is no longer a checkpoint tensor (e.g. a pruned tied lm_head, now untied) cannot go back
    for (const l of linears(model)) {
      if (!source.tensors.has(l.weight)) {
        throw new UserError(`${path}: layer '${l.name}' now has its own weight '${l.weight}', which the checkpoint layout has no place for (a tied lm_head changed apart from the embedding?); write the output as .onnx`);
      }
    }
    for (const entry of source.tensors.values()) {
      if (!model.hasInitializer(entry.name)) {
        throw new UserError(`${path}: tensor '${entry.name}' was rewritten into a form safetensors cannot hold (quantized or factored); write the output as .onnx`);
      }
      const t = model.tensor(entry.name);
      tensors.push({ name: entry.name, dataType: t.dataType, shape: t.dims, data: t.data });
    }
  } finally {
    source.close();
  }
  writeSafetensors(path, tensors, source.metadata);
  const files = [path];
  const config = join(dirname(model.path), 'config.json');
  const target = join(dirname(path), 'config.json');
  if (existsSync(config) && resolve(config) !== resolve(target)) {
    writeFileAtomic(target, readFileSync(config));
    files.push(target);
  }
  return files;
}
