import { UserError } from '../errors.js';
import { byteLength, elementCount } from '../model/dtype.js';
import type { Model } from '../model/model.js';
import { int64ToNumber, ModelProtoType, type GraphProto, type NodeProto, type TensorProto, type ValueInfoProto } from '../model/onnx-schema.js';
import { ort, ortMessage } from './ort.js';

/**
 * Whether ONNX Runtime accepts a model's graph, asked of ONNX Runtime itself, cheaply: the graph is
 * loaded with its weights replaced by graph inputs of the same type and shape, so ONNX Runtime
 * checks what src/model/validate.ts cannot (operator names and versions, types, attributes, shape
 * inference through the constants that stay) without allocating the weights. A session is created
 * with graph optimizations off and released at once. Only when the skeleton is refused is the file
 * itself loaded, so that a refusal is always ONNX Runtime's verdict on the real model.
 *
 * Only checkpoints read from ONNX files need this; graphs pare builds itself are its own to get right.
 */

/** Initializers at least this large become inputs; smaller ones (shapes, axes, scales) stay constants for shape inference. */
const WEIGHT_BYTES = 1024;

/** ONNX Runtime's reason for refusing `model`, or undefined when it loads. */
export async function runtimeLoadProblem(model: Model): Promise<string | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = ModelProtoType.encode(skeleton(model) as never).finish();
  } catch (e) {
    return `cannot be encoded again (${(e as Error).message})`;
  }
  try {
    await (await ort.InferenceSession.create(bytes, OPTIONS)).release();
    return undefined;
  } catch (e) {
    // a kernel that insists on a constant weight would refuse the skeleton alone: the file decides
    try {
      await (await ort.InferenceSession.create(model.path, OPTIONS)).release();
      return undefined;
    } catch {
      return `ONNX Runtime cannot load it: ${ortMessage(e)}`;
    }
  }
}

const OPTIONS: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'disabled', intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 4 };

/** A user error naming the model when ONNX Runtime would refuse it. */
export async function checkRuntimeLoads(model: Model): Promise<void> {
  const problem = await runtimeLoadProblem(model);
  if (problem) throw new UserError(`${model.path}: ${problem}`);
}

/**
 * A model pare has just written must load: when ONNX Runtime refuses it, a pass wrote a broken graph,
 * which is a bug (a plain Error, exit 1) reported with ONNX Runtime's words (they name the failing
 * node or initializer) before the file is moved to where the user asked for it.
 */
export async function assertWrittenLoads(model: Model, shownAs: string): Promise<void> {
  const problem = await runtimeLoadProblem(model);
  if (problem) throw new Error(`the compressed model for ${shownAs} was not written: ${problem}`);
}

function skeleton(model: Model) {
  const g = model.graph;
  const inputs = new Set((g.input ?? []).map((v) => v.name));
  const kept: TensorProto[] = [];
  const fed: ValueInfoProto[] = [];
  for (const t of g.initializer ?? []) {
    const dims = (t.dims ?? []).map(int64ToNumber);
    if (t.data_location !== 1 && byteLength(t.data_type ?? 0, elementCount(dims)) < WEIGHT_BYTES) {
      kept.push(t);
      continue;
    }
    if (!inputs.has(t.name)) fed.push({ name: t.name, type: { tensor_type: { elem_type: t.data_type, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } });
  }
  const graph: GraphProto = { ...g, initializer: kept, input: [...(g.input ?? []), ...fed], node: (g.node ?? []).map((n) => inlineSubgraphs(model, n)) };
  return { ...model.proto, graph };
}

/** Subgraph tensors stored externally, read inline: a model loaded from bytes has no folder to find them in. */
function inlineSubgraphs(model: Model, n: NodeProto): NodeProto {
  if (!(n.attribute ?? []).some((a) => a.g || a.graphs?.length || a.t?.data_location === 1 || a.tensors?.some((t) => t.data_location === 1))) return n;
  const inlineTensor = (t: TensorProto): TensorProto => {
    if (t.data_location !== 1) return t;
    const { external_data: _e, data_location: _l, ...rest } = t;
    return { ...rest, raw_data: model.tensor(t).data };
  };
  const inlineGraph = (g: GraphProto): GraphProto => ({
    ...g,
    initializer: (g.initializer ?? []).map(inlineTensor),
    node: (g.node ?? []).map((m) => inlineSubgraphs(model, m)),
  });
  return {
    ...n,
    attribute: (n.attribute ?? []).map((a) => ({
      ...a,
      ...(a.t ? { t: inlineTensor(a.t) } : {}),
      ...(a.tensors ? { tensors: a.tensors.map(inlineTensor) } : {}),
      ...(a.g ? { g: inlineGraph(a.g) } : {}),
      ...(a.graphs ? { graphs: a.graphs.map(inlineGraph) } : {}),
    })),
  };
}
