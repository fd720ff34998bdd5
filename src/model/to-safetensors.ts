import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { buildFromSafetensors } from './builders/index.js';
import { linears } from './linears.js';
import type { Model } from './model.js';
import { openSafetensors, writeSafetensors, type SafetensorsTensor } from './safetensors.js';

/**
 * Writes a model built from safetensors back as safetensors: every tensor of the source file, by
 * name and in its order, from the model's current initializers (so pruned or rounded weights go back
 * in place, in the dtype they are stored in); tensors the graph never read (e.g. GPT-2's attn.bias
 * buffers) are copied from the source. What a checkpoint plus config.json cannot express is a user
 * error that says to write .onnx: an op the builder never emits (MatMulNBits, DequantizeLinear, a
 * Cast), a tensor a pass added (scales, factors, an untied lm_head), one it removed, or one whose
 * shape changed. The source's config.json is copied beside the output when the output goes to
 * another folder. Returns the files written.
 */
export function writeModelAsSafetensors(model: Model, path: string, sourcePath: string = model.path): string[] {
  if (model.format !== 'safetensors' && sourcePath === model.path) throw new UserError(`${path}: safetensors output needs a safetensors input; write .onnx`);
  const cannot = (what: string) => new UserError(`${path}: ${what}, which a safetensors checkpoint with config.json cannot express; write the output as .onnx`);
  // the graph as the builder makes it (cheap: tensors stay on disk) tells builder constants and unread
  // checkpoint tensors apart from what the passes changed
  const built = buildFromSafetensors(sourcePath);
  const builtTensors = new Set((built.graph.initializer ?? []).map((t) => t.name ?? ''));
  const builtOps = new Set((built.graph.node ?? []).map((n) => `${n.domain ?? ''}:${n.op_type}`));
  built.close();

  const source = openSafetensors(sourcePath);
  const tensors: SafetensorsTensor[] = [];
  try {
    for (const n of model.graph.node ?? []) {
      if (!builtOps.has(`${n.domain ?? ''}:${n.op_type}`)) throw cannot(`node '${n.name}' is a ${n.domain ? `${n.domain}.` : ''}${n.op_type} (quantized or rewritten layer)`);
    }
    for (const l of linears(model)) {
      if (!source.tensors.has(l.weight)) throw cannot(`layer '${l.name}' now has its own weight '${l.weight}' (a tied lm_head changed apart from the embedding?)`);
    }
    for (const t of model.graph.initializer ?? []) {
      const name = t.name ?? '';
      if (!source.tensors.has(name) && !builtTensors.has(name)) throw cannot(`tensor '${name}' was added by a pass (quantization scales, factors)`);
    }
    for (const entry of source.tensors.values()) {
      if (!model.hasInitializer(entry.name)) {
        if (builtTensors.has(entry.name)) throw cannot(`tensor '${entry.name}' was removed by a pass`);
        tensors.push({ name: entry.name, dataType: entry.dataType, shape: entry.shape, data: source.read(entry.name) });
        continue;
      }
      const t = model.tensor(entry.name);
      if (t.dims.length !== entry.shape.length || t.dims.some((d, i) => d !== entry.shape[i])) {
        throw cannot(`tensor '${entry.name}' changed shape from [${entry.shape.join(', ')}] to [${t.dims.join(', ')}] (structured pruning)`);
      }
      tensors.push({ name: entry.name, dataType: t.dataType, shape: t.dims, data: t.data });
    }
  } finally {
    source.close();
  }
  writeSafetensors(path, tensors, Object.keys(source.metadata).length ? source.metadata : undefined);
  const files = [path];
  const config = join(dirname(sourcePath), 'config.json');
  const target = join(dirname(path), 'config.json');
  if (existsSync(config) && resolve(config) !== resolve(target)) {
    writeFileAtomic(target, readFileSync(config));
    files.push(target);
  }
  return files;
}
