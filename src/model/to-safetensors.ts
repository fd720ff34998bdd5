import { dirname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { Checkpoint } from './checkpoint.js';
import { modelIo } from './io.js';
import { exportLlama, type BlockLayout } from './llama-export.js';
import { linears } from './linears.js';
import { formatOf } from './load.js';
import type { Model } from './model.js';
import { writeSafetensors, type SafetensorsFile, type SafetensorsTensor } from './safetensors.js';
import { int64ToNumber } from './onnx-schema.js';

/**
 * Writes a model built from safetensors back as safetensors + config.json beside it. Families that
 * export (Llama) derive the tensors from the graph (src/model/llama-export.ts): structurally pruned
 * sizes go into config.json, surviving blocks are renumbered, 16-bit weights keep their dtype and
 * quantized layers are stored in the layout of docs/safetensors-layout.md. The others (GPT-2) must
 * keep the checkpoint's layout: every source tensor, by name, shape and order, from the current
 * initializers. What config.json cannot express is a user error that says to write .onnx.
 * Tensors the graph never read are copied from the source. `source` is the checkpoint the model was
 * built from (or its path: then it is opened and closed here). Returns the files written.
 */
export function writeModelAsSafetensors(model: Model, path: string, source: Checkpoint | string = model.path): string[] {
  const notSafetensors = () => new UserError(`${path}: safetensors output needs a safetensors input; write .onnx`);
  if (typeof source === 'string') {
    if (formatOf(source) !== 'safetensors') throw notSafetensors();
    const opened = Checkpoint.open(source);
    try {
      return writeModelAsSafetensors(model, path, opened);
    } finally {
      opened.close();
    }
  }
  const st = source.safetensors;
  if (!st) throw notSafetensors();
  const cannot = (what: string) => new UserError(`${path}: ${what}, which a safetensors checkpoint with config.json cannot express; write the output as .onnx`);
  // the graph as the builder makes it, with the same KV-cache I/O, tells builder constants and
  // unread checkpoint tensors apart from what the passes changed
  const built = source.buildGraph({ kvCache: modelIo(model).kv !== undefined });
  const builtTensors = new Set((built.graph.initializer ?? []).map((t) => t.name ?? ''));
  const builtOps = new Set([...(built.graph.node ?? []).map((n) => `${n.domain ?? ''}:${n.op_type}`), ...st.family.writableOps]);
  built.close();
  for (const n of model.graph.node ?? []) {
    if (!builtOps.has(`${n.domain ?? ''}:${n.op_type}`)) throw cannot(`node '${n.name}' is a ${n.domain ? `${n.domain}.` : ''}${n.op_type} (quantized or rewritten layer)`);
  }

  const sourceConfig = st.config.values;
  const written =
    st.family.writeBack === 'export' ? exportedTensors(model, st.file, sourceConfig, builtTensors, cannot, st.family.blocks) : sameLayoutTensors(model, st.file, sourceConfig, builtTensors, cannot);
  const configSource = st.config.path;
  const configTarget = join(dirname(path), 'config.json');
  const changed = JSON.stringify(written.config) !== JSON.stringify(sourceConfig);
  if (changed && resolve(configSource) === resolve(configTarget)) {
    throw new UserError(`${path}: the compressed model needs its own config.json, which would overwrite the input's ${configSource}; write the output to another folder`);
  }
  writeSafetensors(path, written.tensors, Object.keys(st.file.metadata).length ? st.file.metadata : undefined);
  const files = [path];
  if (changed) {
    writeFileAtomic(configTarget, `${JSON.stringify(written.config, null, 2)}\n`);
    files.push(configTarget);
  } else if (resolve(configSource) !== resolve(configTarget)) {
    writeFileAtomic(configTarget, st.config.bytes);
    files.push(configTarget);
  }
  return files;
}

const BUILDER_CONSTANT = /^const_(i64|f32)_\d+$/;
const BLOCK_TENSOR = /^model\.layers\.(\d+)\./;

/** An exported (Llama) graph's tensors in the source's order (renumbered blocks in place, new tensors last). */
function exportedTensors(
  model: Model,
  source: SafetensorsFile,
  config: Record<string, unknown>,
  builtTensors: ReadonlySet<string>,
  cannot: (what: string) => Error,
  blocks?: BlockLayout,
): { tensors: SafetensorsTensor[]; config: Record<string, unknown> } {
  const exp = exportLlama(model, { config, tensors: source.tensors }, cannot, blocks);
  for (const t of model.graph.initializer ?? []) {
    const name = t.name ?? '';
    if (!exp.used.has(name) && !BUILDER_CONSTANT.test(name)) throw cannot(`tensor '${name}' was added by a pass (quantization scales, factors)`);
  }
  const tensors = [...exp.tensors];
  const exported = new Set(tensors.map((t) => t.name));
  // tensors the builder never reads (buffers) travel with their block, or stay as they are; a
  // quantized module's weight_shape is written again by the export
  for (const entry of source.tensors.values()) {
    if (builtTensors.has(entry.name)) continue;
    const block = BLOCK_TENSOR.exec(entry.name);
    const to = block ? exp.blocks.get(Number(block[1])) : undefined;
    if (block && to === undefined) continue;
    const name = block ? entry.name.replace(BLOCK_TENSOR, `model.layers.${to}.`) : entry.name;
    if (exported.has(name)) continue;
    tensors.push({ name, dataType: entry.dataType, shape: entry.shape, data: () => source.read(entry.name), origin: entry.name });
  }
  // a module ranks where its first tensor was (a quantized source has weight_packed, not weight)
  const moduleOf = (name: string) => name.replace(/\.weight(_[a-z_]+)?$/, '');
  const order = new Map<string, number>();
  [...source.tensors.keys()].forEach((n, i) => order.has(moduleOf(n)) || order.set(moduleOf(n), i));
  const rank = (t: (typeof tensors)[number]) => order.get(moduleOf(t.origin)) ?? order.size;
  return { tensors: tensors.map((t, i) => ({ t, i })).sort((a, b) => rank(a.t) - rank(b.t) || a.i - b.i).map(({ t }) => ({ name: t.name, dataType: t.dataType, shape: t.shape, data: t.data })), config: exp.config };
}

/** Every source tensor by name and in its order, from the model's initializers (shapes unchanged). */
function sameLayoutTensors(
  model: Model,
  source: SafetensorsFile,
  config: Record<string, unknown>,
  builtTensors: ReadonlySet<string>,
  cannot: (what: string) => Error,
): { tensors: SafetensorsTensor[]; config: Record<string, unknown> } {
  for (const l of linears(model)) {
    if (!source.tensors.has(l.weight)) throw cannot(`layer '${l.name}' now has its own weight '${l.weight}' (a tied lm_head changed apart from the embedding?)`);
  }
  for (const t of model.graph.initializer ?? []) {
    const name = t.name ?? '';
    if (!source.tensors.has(name) && !builtTensors.has(name)) throw cannot(`tensor '${name}' was added by a pass (quantization scales, factors)`);
  }
  const tensors: SafetensorsTensor[] = [];
  for (const entry of source.tensors.values()) {
    if (!model.hasInitializer(entry.name)) {
      if (builtTensors.has(entry.name)) throw cannot(`tensor '${entry.name}' was removed by a pass`);
      tensors.push({ name: entry.name, dataType: entry.dataType, shape: entry.shape, data: () => source.read(entry.name) });
      continue;
    }
    const t = model.initializer(entry.name)!;
    const dims = (t.dims ?? []).map(int64ToNumber);
    if (dims.length !== entry.shape.length || dims.some((d, i) => d !== entry.shape[i])) {
      throw cannot(`tensor '${entry.name}' changed shape from [${entry.shape.join(', ')}] to [${dims.join(', ')}] (structured pruning)`);
    }
    tensors.push({ name: entry.name, dataType: t.data_type ?? 0, shape: dims, data: () => model.tensor(t).data });
  }
  return { tensors, config };
}
