import { UserError } from '../errors.js';
import { GraphIndex } from '../model/graph.js';
import { tokenFeeds, type KvLayerIo, type ModelIo } from '../model/io.js';
import type { Model } from '../model/model.js';
import type { NodeProto, ValueInfoProto } from '../model/onnx-schema.js';
import { sliceFor, subModel } from '../model/subgraph.js';
import { ortFeeds } from './feeds.js';
import { captureSession, ortMessage } from './ort.js';
import { checkRuntimeLoads } from './load-check.js';

interface Probe {
  layer: KvLayerIo;
  past: string;
  which: 'key' | 'value';
  /** the tensor the past is concatenated with: this step's keys or values */
  operand: string;
  concat: NodeProto;
  node: string;
}

/**
 * Checks each past tensor against the attention it feeds and fills in what the graph leaves
 * symbolic. The past is concatenated with this step's keys (values) along the sequence axis, so the
 * other operand of that Concat, computed for one token, has the cache's true [1, kv_heads, 1,
 * head_dim]. A declared head count or head size that disagrees is a user error naming the input.
 * Returns `io` with every layer's heads and head size known where the graph lets them be read.
 */
export async function resolveKvShapes(model: Model, io: ModelIo, threads = 1): Promise<ModelIo> {
  if (!io.kv) return io;
  const index = new GraphIndex(model.graph);
  const probes: Probe[] = [];
  for (const layer of io.kv.layers) {
    for (const [which, past] of [['key', layer.pastKey], ['value', layer.pastValue]] as const) {
      const concat = (index.consumers.get(past) ?? []).find((n) => n.op_type === 'Concat' && (n.domain ?? '') === '');
      const operand = concat?.input?.find((x) => x && x !== past);
      if (concat && operand) probes.push({ layer, past, which, operand, concat, node: concat.name ?? concat.op_type ?? 'Concat' });
    }
  }
  const shapes = probes.length > 0 ? await operandShapes(model, io, probes, threads) : new Map<string, readonly number[]>();
  const layers = io.kv.layers.map((l) => ({ ...l }));
  for (const p of probes) {
    const dims = shapes.get(p.operand);
    if (!dims) continue;
    if (dims.length !== 4) throw new UserError(`${model.path}: input '${p.past}' is concatenated (node '${p.node}') with a rank-${dims.length} tensor; pare fills KV caches of [batch, kv_heads, past_sequence, head_dim]`);
    const layer = layers.find((l) => l.index === p.layer.index)!;
    const [heads, headDim] = [dims[1]!, dims[3]!];
    const declaredDim = p.which === 'key' ? layer.headDim : (layer.valueHeadDim ?? layer.headDim);
    if ((layer.heads !== undefined && layer.heads !== heads) || (declaredDim !== undefined && declaredDim !== headDim)) {
      throw new UserError(
        `${model.path}: input '${p.past}' declares ${layer.heads ?? '?'} KV heads of size ${declaredDim ?? '?'}, but the attention it feeds (node '${p.node}') computes ${heads} heads of size ${headDim}`,
      );
    }
    layer.heads = heads;
    if (p.which === 'key') layer.headDim = headDim;
    else if (headDim !== layer.headDim) layer.valueHeadDim = headDim;
  }
  return { ...io, kv: { ...io.kv, layers } };
}

/**
 * Shapes of the probe operands for one token of id 0, computed by the part of the graph they need.
 * Concat(past, x) along the sequence axis is x when the past is empty, so the probe graph drops the
 * past from each probed Concat: a later layer's operand, which depends on an earlier layer's
 * attention, is then computed without knowing any cache shape.
 */
async function operandShapes(model: Model, io: ModelIo, probes: Probe[], threads: number): Promise<Map<string, readonly number[]>> {
  const pasts = new Map(probes.map((p) => [p.concat, p.past]));
  // Concat(past, x) -> Identity(x)   (past length 0)
  const node = (model.graph.node ?? []).map((n): NodeProto => {
    const past = pasts.get(n);
    if (!past) return n;
    const rest = (n.input ?? []).filter((x) => x !== past);
    return rest.length === 1 ? { op_type: 'Identity', name: n.name, input: rest, output: n.output } : { ...n, input: rest };
  });
  const probeModel = model.derive({ ...model.proto, graph: { ...model.graph, node } });
  const index = new GraphIndex(probeModel.graph);
  const inputs = new Map((model.graph.input ?? []).map((v) => [v.name ?? '', v]));
  const targets = [...new Set(probes.map((p) => p.operand))];
  const slice = sliceFor(probeModel, index, targets, (name) => inputs.has(name) && !model.hasInitializer(name));
  const feeds = tokenFeeds(io, [0], 1, 1);
  // an operand computed from the past itself cannot be probed at past length 0 without knowing its shape
  if (slice.reads.some((r) => !feeds[r])) return new Map();
  const sub = subModel(probeModel, slice.nodes, slice.reads.map((r) => inputs.get(r) as ValueInfoProto));
  let session: Awaited<ReturnType<typeof captureSession>>;
  try {
    session = await captureSession(sub, targets, { threads });
  } catch (e) {
    // the user's model when ONNX Runtime refuses it as a whole; pare's slicing otherwise
    await checkRuntimeLoads(model);
    throw e;
  }
  try {
    const fed = ortFeeds(Object.fromEntries(slice.reads.map((r) => [r, feeds[r]!])));
    let out: Awaited<ReturnType<typeof session.run>>;
    try {
      out = await session.run(fed, targets);
    } catch (e) {
      throw new UserError(`${model.path}: ONNX Runtime failed running the model's attention for one token (${ortMessage(e)})`);
    }
    return new Map(targets.map((t) => [t, out[t]!.dims]));
  } finally {
    await session.release();
  }
}
