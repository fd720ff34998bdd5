import { byteLength, DataType, dtypeFromName, elementCount } from '../model/dtype.js';
import { GraphIndex } from '../model/graph.js';
import type { GramPrecision } from '../linalg/gram.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { int64ToNumber, type NodeProto, type ValueInfoProto } from '../model/onnx-schema.js';
import { hasSubgraph, sliceFor, subModel } from '../model/subgraph.js';
import { calibrationSessionOptions, captureSession, ort } from '../runtime/ort.js';
import { phases } from '../util/phase-timer.js';
import type { LayerGroup } from './blocks.js';
import type { BoundaryStore } from './boundary-store.js';
import type { Feeds } from './feeds.js';
import { InputStatsAccumulator, type InputStats, type StatsNeeds } from './stats.js';

/**
 * Float initializers at least this large that a step reads (the token embedding the first step
 * Gathers from: 147 MB in GPT-2 small) are fed as inputs instead of inlined: ONNX Runtime reads a
 * fed tensor in place, where an inline one exists twice while the session is built (in the encoded
 * model and in the session).
 */
export const FED_WEIGHT_BYTES = 16 * 2 ** 20;

/** What one step ran, for tests and the scale bench. */
export interface StepTrace {
  group: string;
  /** nodes in the step's sub-graph (0 when every input was already cached) */
  nodes: number;
  /** values it was fed: cached boundary values and graph inputs */
  fed: string[];
  /** values it computed and cached for later steps */
  cached: string[];
  /** initializers it was fed as inputs rather than inlined (see FED_WEIGHT_BYTES) */
  weights: string[];
}

/** Why a graph cannot be cut into per-block sub-graphs, or undefined when it can. */
export function uncuttable(model: Model): string | undefined {
  const n = (model.graph.node ?? []).find(hasSubgraph);
  return n ? `node '${n.name ?? n.op_type}' (${n.op_type}) has a subgraph whose outer-scope reads cannot be cut` : undefined;
}

/**
 * Sequential calibration in O(blocks) runs: step j runs only the nodes between the values already
 * cached and group j's layer inputs, instead of the whole model prefix.
 *
 * Identity kept: every value step j reads equals what the current model computes. The passes change
 * only the weights of the group just calibrated (rewrites keep each layer's input and output
 * names), so a value computed from the calibration inputs is still valid while no group upstream
 * of it has been changed since it was computed: a value computed at step j whose nearest upstream group at or after j is g stays valid
 * through step g. Those values are cached, but only the ones a later step's slice will read: the
 * block's input hidden state, RoPE cos/sin, masks, shape values. So after group j−1 was changed,
 * step j recomputes block j−1's tail through its new weights once and then block j up to its
 * layer inputs, about two block forwards per block instead of the whole prefix.
 */
export class BlockCut {
  /** expiry step of each cached value: it is valid through step `expires` */
  private readonly expires = new Map<string, number>();
  readonly trace: StepTrace[] = [];
  private readonly graphInputs: Map<string, ValueInfoProto>;

  constructor(
    private readonly model: Model,
    private readonly groups: readonly LayerGroup[],
    private readonly feeds: readonly Feeds[],
    private readonly store: BoundaryStore,
    private readonly threads: number,
    private readonly opts: { fedWeightBytes?: number; hessianPrecision?: GramPrecision } = {},
  ) {
    this.graphInputs = new Map((model.graph.input ?? []).filter((v) => !model.hasInitializer(v.name ?? '')).map((v) => [v.name ?? '', v]));
  }

  /**
   * Statistics of group j's layer inputs on the model as it is now. Call with j = 0, 1, 2, ...
   * `stats: false` only computes and caches the boundary values later steps read (the caller has
   * the statistics already) and returns an empty map.
   */
  async step(j: number, needs: StatsNeeds, opts: { stats?: boolean } = {}): Promise<Map<string, InputStats>> {
    const wantStats = opts.stats ?? true;
    const model = this.model;
    const index = new GraphIndex(model.graph);
    const nearest = this.nearestUpstreamGroup(j);
    const dynamic = this.dataDependent();
    for (const name of this.store.names()) if (this.expires.get(name)! < j) this.drop(name);

    const known = (name: string) => this.store.has(name) || this.graphInputs.has(name);
    const targets = inputsOf(this.groups[j]!.layers);
    const slice = sliceFor(model, index, targets, known);

    // what this step computes that stays valid after group j changes, and that later steps read
    const candidates = new Set<string>();
    for (const n of slice.nodes) {
      for (const o of n.output ?? []) if (o && dynamic.has(o) && (nearest.get(o) ?? Infinity) > j) candidates.add(o);
    }
    const later = inputsOf(this.groups.slice(j + 1).flatMap((g) => g.layers));
    const laterReads = new Set(sliceFor(model, index, later, (name) => known(name) || candidates.has(name)).reads);
    const cache = [...candidates].filter((c) => laterReads.has(c));
    // cached values this step reads for the last time: each sample is freed once the step is done with it
    const lastReads = slice.reads.filter((r) => this.store.has(r) && !laterReads.has(r));

    const accumulators = new Map<string, InputStatsAccumulator>();
    if (wantStats) for (const layer of this.groups[j]!.layers) if (!accumulators.has(layer.input)) accumulators.set(layer.input, new InputStatsAccumulator(layer, needs, this.opts.hessianPrecision));
    const computed = wantStats ? targets.filter((t) => !known(t)) : [];
    const outputs = [...new Set([...computed, ...cache])];
    const weights = outputs.length > 0 ? this.largeWeights(slice.nodes) : {};
    this.trace.push({ group: this.groups[j]!.key, nodes: slice.nodes.length, fed: slice.reads, cached: cache, weights: Object.keys(weights) });

    const session =
      outputs.length > 0
        ? await phases.time('calibrate.session', () => captureSession(this.stepModel(slice.nodes, slice.reads, weights), outputs, calibrationSessionOptions(this.threads)))
        : undefined;
    try {
      for (const [s, feed] of this.feeds.entries()) {
        const fed: Feeds = phases.timeSync('calibrate.boundary', () => {
          const f: Feeds = { ...weights };
          for (const r of slice.reads) f[r] = this.value(r, s, feed);
          return f;
        });
        const out = session ? await phases.time('calibrate.forward', () => session.run(fed, outputs)) : {};
        for (const [name, acc] of accumulators) {
          const t = out[name] ?? this.value(name, s, feed);
          await phases.time('calibrate.xtx', () => acc.add(t.data as Float32Array, t.dims as number[]));
        }
        phases.timeSync('calibrate.boundary', () => {
          for (const r of lastReads) this.store.release(r, s);
          for (const c of cache) this.store.put(c, s, out[c]!);
        });
      }
    } finally {
      if (session) await phases.time('calibrate.session', () => session.release());
    }
    for (const c of cache) this.expires.set(c, nearest.get(c) ?? Infinity);
    // values no later step reads are freed now
    for (const name of this.store.names()) if (!laterReads.has(name)) this.drop(name);

    const stats = new Map<string, InputStats>();
    for (const [name, acc] of accumulators) stats.set(name, await phases.time('calibrate.xtx', () => acc.result()));
    return stats;
  }

  /** bytes of boundary values written to spill files so far */
  get spilledBytes(): number {
    return this.store.spilledBytes;
  }

  /** the most boundary bytes held in memory at once so far */
  get peakResidentBytes(): number {
    return this.store.peakResidentBytes;
  }

  close(): void {
    this.store.close();
    this.expires.clear();
  }

  private drop(name: string): void {
    this.store.delete(name);
    this.expires.delete(name);
  }

  private value(name: string, sample: number, feed: Feeds) {
    if (this.store.has(name)) return this.store.get(name, sample);
    const v = feed[name];
    if (!v) throw new Error(`calibration: graph input '${name}' is not in the calibration feeds`);
    return v;
  }

  /** The step's sub-graph: `reads` and the fed weights are its inputs, other initializers it uses stay inline. */
  private stepModel(nodes: NodeProto[], reads: string[], weights: Feeds): Model {
    const sub = subModel(this.model, nodes, reads.map((r) => this.inputInfo(r)));
    if (Object.keys(weights).length === 0) return sub;
    const g = sub.graph;
    const weightInputs = Object.entries(weights).map(([name, t]): ValueInfoProto => ({
      name,
      type: { tensor_type: { elem_type: dtypeFromName(t.type), shape: { dim: t.dims.map((d) => ({ dim_value: d })) } } },
    }));
    return sub.derive({ ...sub.proto, graph: { ...g, input: [...(g.input ?? []), ...weightInputs], initializer: (g.initializer ?? []).filter((t) => !(t.name! in weights)) } });
  }

  /** The float32/float16 initializers of fedWeightBytes or more that `nodes` read, as tensors to feed. */
  private largeWeights(nodes: readonly NodeProto[]): Feeds {
    const weights: Feeds = {};
    for (const name of new Set(nodes.flatMap((n) => n.input ?? []))) {
      const init = this.model.initializer(name);
      const type = init?.data_type;
      if (!init || (type !== DataType.FLOAT && type !== DataType.FLOAT16)) continue;
      const dims = (init.dims ?? []).map(int64ToNumber);
      if (byteLength(type, elementCount(dims)) < (this.opts.fedWeightBytes ?? FED_WEIGHT_BYTES)) continue;
      const bytes = this.model.tensor(init).data;
      // a typed view needs an aligned offset; raw_data inside a parsed file (a Node Buffer, whose slice() is a view) may not have one
      const own = bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes);
      weights[name] =
        type === DataType.FLOAT
          ? new ort.Tensor('float32', new Float32Array(own.buffer, own.byteOffset, own.byteLength / 4), dims)
          : new ort.Tensor('float16', new Uint16Array(own.buffer, own.byteOffset, own.byteLength / 2), dims);
    }
    return weights;
  }

  private inputInfo(name: string): ValueInfoProto {
    const declared = this.graphInputs.get(name);
    if (declared) return declared;
    const type = this.store.get(name, 0).type;
    const elem = dtypeFromName(type);
    if (elem === undefined) throw new Error(`calibration: cached value '${name}' has type ${type}, which has no ONNX code`);
    return { name, type: { tensor_type: { elem_type: elem } } };
  }

  /**
   * Values computed from the calibration inputs. The others derive from initializers alone (a
   * weight's Transpose, a Constant) and are never cached: a pass may have changed the initializer.
   */
  private dataDependent(): Set<string> {
    const dynamic = new Set(this.graphInputs.keys());
    for (const n of this.model.graph.node ?? []) {
      if ((n.input ?? []).some((i) => dynamic.has(i))) for (const o of n.output ?? []) if (o) dynamic.add(o);
    }
    return dynamic;
  }

  /**
   * For each value, the first group at or after `from` whose layers it depends on (absent: none).
   * Computed on the current graph, in node order; layer outputs keep their names across rewrites.
   */
  private nearestUpstreamGroup(from: number): Map<string, number> {
    const seed = new Map<string, number>();
    for (let g = this.groups.length - 1; g >= from; g--) for (const l of this.groups[g]!.layers) seed.set(l.output, g);
    const nearest = new Map<string, number>();
    for (const n of this.model.graph.node ?? []) {
      let v = Infinity;
      for (const i of n.input ?? []) v = Math.min(v, nearest.get(i) ?? Infinity);
      for (const o of n.output ?? []) {
        const w = Math.min(v, seed.get(o) ?? Infinity);
        if (w < Infinity) nearest.set(o, w);
      }
    }
    return nearest;
  }
}

function inputsOf(layers: readonly LinearLayer[]): string[] {
  return [...new Set(layers.map((l) => l.input))];
}
