import { inspectOnnx, inspectSafetensors, summarizeKvCache, type KvCacheSummary, type OnnxInspection, type SafetensorsInspection } from '../model/inspect.js';
import { modelIo } from '../model/io.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { checkRuntimeLoads, runtimeLoadProblem } from '../runtime/load-check.js';
import { formatOf, loadModel } from '../model/load.js';
import { readOnnxLenient } from '../model/onnx-io.js';
import { bytes, count, pct, table } from './table.js';

/**
 * `pare inspect`: a model pare or ONNX Runtime would refuse is a user error, as in every command.
 * `lenient` shows it anyway, its problems listed and its broken tensors left out.
 */
export async function runInspect(path: string, opts: { lenient?: boolean } = {}): Promise<OnnxInspection | SafetensorsInspection> {
  if (formatOf(path) === 'safetensors') return inspectSafetensors(path);
  if (opts.lenient) return inspectLenient(path);
  const model = loadModel(path);
  try {
    const r = inspectOnnx(model);
    // KV heads the graph leaves symbolic are read by running the attention's first step
    if (r.kv_cache) r.kv_cache = summarizeKvCache((await resolveKvShapes(model, modelIo(model))).kv!);
    await checkRuntimeLoads(model);
    return r;
  } finally {
    model.close();
  }
}

async function inspectLenient(path: string): Promise<OnnxInspection> {
  const { model, problems } = readOnnxLenient(path);
  try {
    // ONNX Runtime is asked only about a model that passed pare's own checks
    const ortProblem = problems.length === 0 ? await runtimeLoadProblem(model) : undefined;
    if (ortProblem) problems.push(ortProblem);
    if (problems.length === 0) return inspectOnnx(model);
    let r: OnnxInspection;
    try {
      r = inspectOnnx(model);
    } catch {
      r = inspectOnnx(model, { readWeights: false });
    }
    return { ...r, problems };
  } finally {
    model.close();
  }
}

function formatKvCache(kv: KvCacheSummary): string {
  const uniform = (xs: (number | null)[]) => (new Set(xs).size === 1 ? String(xs[0] ?? '?') : xs.map((x) => x ?? '?').join('/'));
  const names = (xs: string[]) => (xs.length > 4 ? `${xs.slice(0, 2).join(', ')} … ${xs.at(-1)}` : xs.join(', '));
  return `KV cache: ${kv.layers} layers, ${uniform(kv.kv_heads)} KV heads of size ${uniform(kv.head_dim)}; past ${names(kv.past)}; present ${names(kv.present)}`;
}

export function formatInspection(r: OnnxInspection | SafetensorsInspection): string {
  if (r.format === 'safetensors') {
    const out = [
      `${r.path}  (safetensors)`,
      `file ${bytes(r.file_bytes)}, ${count(r.params)} params, ${Object.entries(r.bytes_by_dtype).map(([k, v]) => `${k} ${bytes(v)}`).join(', ')}`,
    ];
    if (r.config) {
      const c = r.config;
      const keys = ['model_type', 'architectures', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'vocab_size', 'tie_word_embeddings', 'n_embd', 'n_layer', 'n_head'];
      out.push(`config: ${keys.filter((k) => c[k] !== undefined).map((k) => `${k}=${JSON.stringify(c[k])}`).join(' ')}`);
    }
    if (r.family) out.push(`builds as: ${r.family}`);
    if (r.build_problem) out.push(`cannot build: ${r.build_problem}`, `supported model_type: ${r.supported_model_types!.join(', ')}`);
    if (r.unknown_config_keys) out.push(`config keys not understood: ${r.unknown_config_keys.join(', ')}`);
    out.push('', table(['tensor', 'dtype', 'shape'], r.tensors.map((t) => [t.name, t.dtype, `[${t.shape.join(', ')}]`])));
    return out.join('\n');
  }
  const s = r.size;
  const broken = r.problems?.length
    ? [`BROKEN: pare refuses this model (${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}; sizes and layers below leave out the broken tensors):`, ...r.problems.map((p) => `  - ${p}`), '']
    : [];
  const lines = [
    ...broken,
    `${r.path}  (ONNX IR ${r.ir_version}, ${r.opsets.map((o) => `${o.domain} ${o.version}`).join(', ')}${r.producer ? `, from ${r.producer}` : ''})`,
    `file ${bytes(s.file_bytes)}, ${count(s.params)} params, ${s.bits_per_weight.toFixed(2)} bits/weight, ${pct(1 - s.nonzeros / Math.max(s.params, 1))} zeros`,
    `bytes by dtype: ${Object.entries(s.bytes_by_dtype).map(([k, v]) => `${k} ${bytes(v)}`).join(', ')}`,
    `inputs:  ${r.inputs.map((v) => `${v.name} ${v.dtype}[${v.shape.join(', ')}]`).join('; ')}`,
    `outputs: ${r.outputs.map((v) => `${v.name} ${v.dtype}[${v.shape.join(', ')}]`).join('; ')}`,
    ...(r.kv_cache ? [formatKvCache(r.kv_cache)] : []),
    ...(r.io_problem ? [`inputs pare cannot feed: ${r.io_problem}`] : []),
    `ops: ${Object.entries(r.ops).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    '',
    `${r.linears.length} linear layers`,
    table(
      ['layer', 'kind', 'out x in', 'dtype', 'sparsity'],
      r.linears.map((l) => [l.name, l.kind, `${l.shape[0]} x ${l.shape[1]}`, l.dtype, pct(l.sparsity)]),
      ['l', 'l', 'r', 'l', 'r'],
    ),
    ...(r.quantized_layers
      ? [
          '',
          `${r.quantized_layers.length} quantized layers (already ${r.quantized_layers[0]!.dtype}; \`quantize.dequantize\` turns them back into float layers)`,
          table(
            ['layer', 'op', 'out x in', 'dtype', 'scales'],
            r.quantized_layers.map((l) => [l.name, l.op, `${l.shape[0]} x ${l.shape[1]}`, l.dtype, `per ${l.granularity}`]),
            ['l', 'l', 'r', 'l', 'l'],
          ),
        ]
      : []),
  ];
  return lines.join('\n');
}

/** Lines for stderr: config.json keys a buildable checkpoint has that pare ignores without knowing them. */
export function inspectionWarnings(r: OnnxInspection | SafetensorsInspection): string[] {
  if (r.format !== 'safetensors' || !r.unknown_config_keys || r.build_problem) return [];
  return [`warning: config.json keys pare does not understand, ignored when building: ${r.unknown_config_keys.join(', ')}`];
}
