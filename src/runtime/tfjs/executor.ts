import type * as tfjs from '@tensorflow/tfjs';
import { UserError } from '../../errors.js';
import { attrFloat, attrInt, attrInts, attrString, findAttribute } from '../../model/graph.js';
import type { HostTensor, Model } from '../../model/model.js';
import type { NodeProto } from '../../model/onnx-schema.js';
import { loadTf, type Tf } from '../tf.js';
import { constantNodeValue, constantVal } from './constants.js';
import type { FakeQuantWeight } from './fake-quant.js';
import { decodeTensor, HostArray } from './host.js';
import { CONV_OPS } from './ops/conv.js';
import { ELEMENTWISE } from './ops/elementwise.js';
import { LINEAR_OPS } from './ops/linear.js';
import { QUANT_OPS } from './ops/quant.js';
import { REDUCE_OPS } from './ops/reduce.js';
import type { HostFeeds } from '../../model/io.js';
import { SHAPE_OPS } from './ops/shape.js';
import { FUSED_OPS } from './ops/rotate-half.js';
import { fuseRotateHalf } from './fusions.js';
import { isHost, type OpArgs, type OpEntry, type Val } from './ops/types.js';
import { nodeOpKey, opTable } from './op-table.js';
import { buildSteps, stepsFor, topoSort, type Step } from './plan.js';
import { computedNBitsInputs, createTrainables, writeTrainables, type Trainables } from './trainables.js';

/**
 * Runs an ONNX graph on TensorFlow.js so that distillation can differentiate it. Shape arithmetic
 * runs on the host; every value that depends only on constants and the feeds' shapes (RoPE tables,
 * causal masks, reshape targets) is computed once per feed-shape signature and reused, so a
 * training step executes only the nodes that depend on the feed values or the trainable weights.
 */

export interface ExecutorOptions {
  /** initializer names held as trainable tf.Variable; every other initializer is a constant. Default: none. */
  trainable?: (initializerName: string) => boolean;
}

/** Every op the executor implements, checked for duplicates when this module loads. */
export const EXECUTOR_OPS: readonly OpEntry[] = [...ELEMENTWISE, ...SHAPE_OPS, ...REDUCE_OPS, ...LINEAR_OPS, ...CONV_OPS, ...QUANT_OPS, ...FUSED_OPS];
const OPS = opTable(EXECUTOR_OPS);
/** feed-shape signatures whose static values are kept */
const SIGNATURES_KEPT = 4;

interface StaticCache {
  values: Map<string, Val>;
  uploads: Map<HostArray, tfjs.Tensor>;
}

export class OnnxExecutor {
  readonly variables: Map<string, tfjs.Variable>;
  private readonly steps: Step[];
  private readonly plans = new Map<string, Step[]>();
  private readonly caches = new Map<string, StaticCache>();
  private readonly constUploads = new Map<HostArray, tfjs.Tensor>();
  private readonly memos = new Map<NodeProto, tfjs.Tensor>();
  /** tensors the executor owns across runs: handed out as clones */
  private readonly persistent = new Set<tfjs.Tensor>();
  private readonly attrTensors = new Map<NodeProto, HostArray | undefined>();
  private readonly constHosts = new Set<HostArray>();

  private constructor(
    readonly tf: Tf,
    readonly backend: string,
    readonly fallback: string | undefined,
    private readonly model: Model,
    private readonly constants: Map<string, Val>,
    private readonly trainables: Trainables,
    private readonly graphOutputs: string[],
    private readonly opset: number,
  ) {
    this.variables = trainables.variables;
    const feeds = new Set((model.graph.input ?? []).map((v) => v.name ?? '').filter((n) => !constants.has(n) && !trainables.variables.has(n)));
    const available = new Set([...constants.keys(), ...trainables.variables.keys(), ...feeds]);
    const nodes = fuseRotateHalf((model.graph.node ?? []).filter((n) => n.op_type !== 'Constant'), constants);
    this.steps = buildSteps(topoSort(nodes, available), new Set([...feeds, ...trainables.variables.keys()]));
    for (const c of this.constants.values()) {
      if (isHost(c)) this.constHosts.add(c);
      else this.persistent.add(c);
    }
  }

  static async create(model: Model, opts: ExecutorOptions = {}): Promise<OnnxExecutor> {
    checkSupported(model);
    const rt = await loadTf();
    const tf = rt.tf;
    const trainable = opts.trainable ?? (() => false);
    const trainables = createTrainables(tf, model, trainable);
    const constants = new Map<string, Val>();
    for (const init of model.graph.initializer ?? []) {
      const name = init.name ?? '';
      if (trainables.variables.has(name)) continue;
      constants.set(name, constantVal(tf, decodeTensor(model.tensor(name))));
    }
    for (const n of model.graph.node ?? []) if (n.op_type === 'Constant') constants.set(n.output![0]!, constantVal(tf, constantNodeValue(model, n)));
    const outputs = (model.graph.output ?? []).map((o) => o.name ?? '');
    return new OnnxExecutor(tf, rt.backend, rt.fallback, model, constants, trainables, outputs, model.opset());
  }

  /**
   * Host feeds as the tensors run() takes: integer ids, masks and positions as int32 (tfjs has no
   * int64), KV caches as float32. The caller owns them.
   */
  feeds(host: HostFeeds): Record<string, tfjs.Tensor> {
    const tf = this.tf;
    const out: Record<string, tfjs.Tensor> = {};
    for (const [name, f] of Object.entries(host)) {
      if (f.type === 'float16') throw new UserError(`${this.model.path}: input '${name}' is float16; the tfjs executor feeds float32 KV caches only`);
      const data = f.type === 'int64' ? Int32Array.from(f.data as BigInt64Array, Number) : f.data;
      out[name] = tf.tensor(data as Float32Array | Int32Array | Uint8Array, f.dims, f.type === 'float32' ? 'float32' : f.type === 'bool' ? 'bool' : 'int32');
    }
    return out;
  }

  /** Runs the graph; see the interface notes in the module header. The caller owns the returned tensors. */
  run(feeds: Record<string, tfjs.Tensor>, outputs: string[] = this.graphOutputs): Record<string, tfjs.Tensor> {
    const tf = this.tf;
    const cache = this.cacheFor(feeds);
    const env = new Map<string, Val>(Object.entries(feeds));
    const lookup = (name: string): Val => {
      const v = env.get(name) ?? cache.values.get(name) ?? this.trainables.variables.get(name) ?? this.constants.get(name);
      if (v === undefined) throw new Error(`value '${name}' is not computed (missing feed or unknown name)`);
      return v;
    };
    for (const step of this.planFor(outputs)) {
      if (step.isStatic && step.outputs.every((o) => !o || cache.values.has(o))) continue;
      const args = this.args(step, lookup, cache);
      const impl = OPS.get(nodeOpKey(step.node))!;
      let result: Val | Val[];
      try {
        result = impl(args);
      } catch (e) {
        if (e instanceof UserError) throw e;
        throw new Error(`tfjs executor: node '${step.node.name}' (${step.node.op_type}): ${(e as Error).message}`);
      }
      const vals = Array.isArray(result) ? result : [result];
      step.outputs.forEach((o, i) => {
        if (!o || vals[i] === undefined) return;
        const v = vals[i]!;
        if (step.isStatic) cache.values.set(o, isHost(v) ? v : this.keep(v));
        else env.set(o, v);
      });
    }
    const out: Record<string, tfjs.Tensor> = {};
    for (const name of outputs) {
      const v = lookup(name);
      if (isHost(v)) out[name] = tf.tensor(v.data, v.shape, v.dtype);
      else out[name] = this.persistent.has(v) || v instanceof tf.Variable ? tf.clone(v) : v;
    }
    return out;
  }

  /** Writes the variables' current values back into `model`'s initializers, in their own dtype and layout. */
  writeBack(model: Model): void {
    writeTrainables(this.trainables, model);
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    for (const fq of this.trainables.fakeQuant.values()) fq.dispose();
    for (const t of this.persistent) t.dispose();
    this.persistent.clear();
    this.caches.clear();
  }

  private keep(t: tfjs.Tensor): tfjs.Tensor {
    if (t instanceof this.tf.Variable) return t;
    this.persistent.add(this.tf.keep(t));
    return t;
  }

  private planFor(outputs: string[]): Step[] {
    const key = outputs.join('\u0000');
    let plan = this.plans.get(key);
    if (!plan) {
      plan = stepsFor(this.steps, outputs);
      this.plans.set(key, plan);
    }
    return plan;
  }

  private cacheFor(feeds: Record<string, tfjs.Tensor>): StaticCache {
    const key = Object.keys(feeds)
      .sort()
      .map((k) => `${k}:${feeds[k]!.dtype}[${feeds[k]!.shape.join(',')}]`)
      .join(';');
    let c = this.caches.get(key);
    if (c) return c;
    if (this.caches.size >= SIGNATURES_KEPT) {
      const [oldKey, old] = this.caches.entries().next().value as [string, StaticCache];
      const shared = new Set<tfjs.Tensor>([...this.constUploads.values(), ...this.memos.values()]);
      for (const t of [...old.values.values(), ...old.uploads.values()]) {
        if (!isHost(t) && !shared.has(t) && !(t instanceof this.tf.Variable) && this.persistent.delete(t)) t.dispose();
      }
      this.caches.delete(oldKey);
    }
    c = { values: new Map(), uploads: new Map() };
    this.caches.set(key, c);
    return c;
  }

  private upload(h: HostArray, cache: StaticCache): tfjs.Tensor {
    const store = this.constHosts.has(h) ? this.constUploads : cache.uploads;
    let t = store.get(h);
    if (!t) {
      t = this.keep(this.tf.tensor(h.data, h.shape, h.dtype));
      store.set(h, t);
    }
    return t;
  }

  private args(step: Step, lookup: (name: string) => Val, cache: StaticCache): OpArgs {
    const node = step.node;
    const tf = this.tf;
    const present = (i: number) => !!step.inputs[i];
    const val = (i: number) => {
      if (!present(i)) throw new Error(`input ${i} is missing`);
      return lookup(step.inputs[i]!);
    };
    const host = (i: number): HostArray => {
      const v = val(i);
      if (isHost(v)) return v;
      const dtype = v.dtype === 'float32' ? 'float32' : v.dtype === 'bool' ? 'bool' : 'int32';
      const data = v.dataSync();
      return new HostArray(dtype, v.shape, dtype === 'float32' ? Float32Array.from(data) : dtype === 'bool' ? Uint8Array.from(data) : Int32Array.from(data));
    };
    return {
      node,
      tf,
      opset: this.opset,
      inputCount: step.inputs.length,
      has: present,
      val,
      allHost: () => step.inputs.every((n, i) => !n || isHost(val(i))),
      tensor: (i) => {
        const v = val(i);
        return isHost(v) ? this.upload(v, cache) : v;
      },
      host,
      ints: (i) => host(i).numbers(),
      fakeQuant: (i): FakeQuantWeight | undefined => (present(i) ? this.trainables.fakeQuant.get(step.inputs[i]!) : undefined),
      int: (name, fallback) => attrInt(node, name, fallback),
      intList: (name) => attrInts(node, name),
      float: (name, fallback) => attrFloat(node, name, fallback),
      str: (name, fallback) => attrString(node, name, fallback),
      tensorAttr: (name) => {
        if (!this.attrTensors.has(node)) {
          const t = findAttribute(node, name)?.t;
          this.attrTensors.set(node, t ? decodeTensor(this.model.tensor(t)) : undefined);
        }
        return this.attrTensors.get(node);
      },
      initializer: (i): HostTensor | undefined => (present(i) && this.model.hasInitializer(step.inputs[i]!) ? this.model.tensor(step.inputs[i]!) : undefined),
      memo: (make) => {
        let t = this.memos.get(node);
        if (!t) {
          t = this.keep(make());
          this.memos.set(node, t);
        }
        return t;
      },
    };
  }
}

/** Every op of the graph has an implementation, or a UserError lists those that do not. */
function checkSupported(model: Model): void {
  const missing = new Set<string>();
  for (const n of model.graph.node ?? []) {
    const op = n.op_type ?? '';
    // packed or float16-scale storage computes MatMulNBits' inputs with ops this executor lacks: say why, not which op
    if (op === 'MatMulNBits' && [1, 2, 3].some((i) => (i < 3 || n.input?.[i]) && !model.hasInitializer(n.input?.[i] ?? ''))) throw new UserError(`${model.path}: ${computedNBitsInputs(n)}`);
    const domain = n.domain ?? '';
    if (op === 'Constant' && !domain) continue;
    if (!OPS.has(nodeOpKey(n))) missing.add(domain ? `${domain}.${op}` : op);
  }
  if (missing.size) throw new UserError(`${model.path}: the tfjs executor does not implement ${[...missing].sort().join(', ')}`);
}
