import { UserError } from '../errors.js';
import { DataType, dtypeName } from './dtype.js';
import type { Model } from './model.js';
import { int64ToNumber, type ValueInfoProto } from './onnx-schema.js';

/**
 * What a model takes and gives, read from the graph's declared inputs and outputs: the one data
 * input (token ids or a float tensor), the first output, and for decoders the inputs pare fills
 * itself — an all-ones `attention_mask`, `position_ids` counting from the past length, and the KV
 * cache (`past_key_values.{i}.key/value` in, `present.{i}.key/value` out, Hugging Face Optimum's
 * names). Everything that feeds a model (eval, calibration, distillation's teacher and student,
 * latency, generation) builds its feeds from this one description.
 */
export interface ModelIo {
  task: 'causal-lm' | 'classification';
  /** the data input: token ids for causal LMs */
  inputName: string;
  /** its declared dims; a symbolic dim is -1 */
  inputDims: number[];
  /** int64 or int32 for token ids */
  inputType: number;
  /** the first output: logits for causal LMs */
  outputName: string;
  /** static last dim of the output (the vocabulary for causal LMs), when the model declares it */
  outputWidth?: number;
  /** [batch, past + sequence] ones (int64, int32 or bool) */
  attentionMask?: { name: string; dataType: number };
  /** [batch, sequence] past..past+sequence−1 (int64 or int32) */
  positionIds?: { name: string; dataType: number };
  kv?: KvCacheIo;
}

export interface KvLayerIo {
  /** i of past_key_values.{i} */
  index: number;
  pastKey: string;
  pastValue: string;
  presentKey: string;
  presentValue: string;
  /** declared KV heads and head size of the past key (undefined when symbolic) */
  heads?: number;
  headDim?: number;
  /** declared head size of the past value, when it differs from the key's */
  valueHeadDim?: number;
}

/** The KV cache as the graph declares it: per layer [batch, kv_heads, past_sequence, head_dim]. */
export interface KvCacheIo {
  layers: KvLayerIo[];
  /** float32 or float16 */
  dataType: number;
}

const PAST = /^past_key_values\.(\d+)\.(key|value)$/;
const PRESENT = /^(?:present|present_key_values)\.(\d+)\.(key|value)$/;

/** A KV-cache graph input (`past_key_values.3.key`) or output (`present.3.value`). */
export function isKvCacheName(name: string): boolean {
  return PAST.test(name) || PRESENT.test(name);
}

/** The layer index of a KV-cache name and the name it has at another index (`present.3.key` → `present.1.key`). */
export function kvCacheSlot(name: string): { index: number; at: (index: number) => string } | undefined {
  const m = PAST.exec(name) ?? PRESENT.exec(name);
  if (!m) return undefined;
  const i = Number(m[1]);
  return { index: i, at: (j) => name.replace(`.${i}.`, `.${j}.`) };
}
const TOKEN_TYPES = new Set<number>([DataType.INT64, DataType.INT32]);
const MASK_TYPES = new Set<number>([DataType.INT64, DataType.INT32, DataType.BOOL]);

function elemType(v: ValueInfoProto): number | undefined {
  return v.type?.tensor_type?.elem_type;
}

/** Declared dims, a symbolic (or missing) dim as -1; undefined when the value declares no shape. */
function declaredDims(v: ValueInfoProto): number[] | undefined {
  const dims = v.type?.tensor_type?.shape?.dim;
  return dims?.map((d) => (d.dim_value !== undefined && d.dim_value !== null ? int64ToNumber(d.dim_value) : -1));
}

function known(d: number | undefined): number | undefined {
  return d !== undefined && d > 0 ? d : undefined;
}

export function modelIo(model: Model): ModelIo {
  const where = model.path;
  const inits = new Set((model.graph.initializer ?? []).map((t) => t.name));
  const inputs = (model.graph.input ?? []).filter((v) => !inits.has(v.name));
  const outputs = model.graph.output ?? [];
  if (inputs.length === 0 || outputs.length === 0) throw new UserError(`${where}: the model has no ${inputs.length === 0 ? 'input' : 'output'} to evaluate`);
  for (const v of inputs) if (!v.type?.tensor_type) throw new UserError(`${where}: input '${v.name}' is not a tensor; pare feeds tensors only`);

  const byName = new Map(inputs.map((v) => [v.name ?? '', v]));
  const past = inputs.filter((v) => PAST.test(v.name ?? ''));
  const mask = byName.get('attention_mask');
  const positions = byName.get('position_ids');
  const decoderInputs = new Set([...past, mask, positions].filter((v): v is ValueInfoProto => v !== undefined));
  const data = inputs.filter((v) => !decoderInputs.has(v));
  const main = data.find((v) => v.name === 'input_ids') ?? (data.length === 1 ? data[0] : undefined);
  if (!main) {
    const extra = data.length === 0 ? 'none is left for data' : `found ${data.map((v) => `'${v.name}'`).join(', ')}`;
    throw new UserError(`${where}: pare feeds one data input (input_ids for language models) plus attention_mask, position_ids and past_key_values.N.key/value; ${extra}`);
  }
  const unfilled = data.find((v) => v !== main);
  if (unfilled) {
    throw new UserError(`${where}: input '${unfilled.name}' cannot be filled: pare feeds '${main.name}' and, for decoders, attention_mask, position_ids and past_key_values.N.key/value`);
  }

  const inputType = elemType(main) ?? 0;
  const task = TOKEN_TYPES.has(inputType) ? 'causal-lm' : 'classification';
  const output = outputs[0]!;
  const last = declaredDims(output)?.at(-1);
  const io: ModelIo = {
    task,
    inputName: main.name ?? '',
    inputDims: declaredDims(main) ?? [],
    inputType,
    outputName: output.name ?? '',
    outputWidth: known(last),
  };
  if (task !== 'causal-lm') {
    const stray = [...decoderInputs][0];
    if (stray) throw new UserError(`${where}: input '${stray.name}' belongs to a decoder, but the data input '${main.name}' is ${dtypeName(inputType)}, not token ids`);
    return io;
  }

  if (mask) {
    const t = elemType(mask) ?? 0;
    if (!MASK_TYPES.has(t)) throw new UserError(`${where}: input 'attention_mask' is ${dtypeName(t)}; pare fills masks of int64, int32 or bool`);
    const dims = declaredDims(mask);
    if (dims && dims.length !== 2) throw new UserError(`${where}: input 'attention_mask' has rank ${dims.length}; pare fills a [batch, past + sequence] mask`);
    io.attentionMask = { name: 'attention_mask', dataType: t };
  }
  if (positions) {
    const t = elemType(positions) ?? 0;
    const dims = declaredDims(positions);
    if (!TOKEN_TYPES.has(t) || (dims && dims.length !== 2)) {
      throw new UserError(`${where}: input 'position_ids' is ${dtypeName(t)}${dims ? `[${dims.map((d) => (d < 0 ? '?' : d)).join(', ')}]` : ''}; pare fills position_ids as int64 or int32 [batch, sequence]`);
    }
    io.positionIds = { name: 'position_ids', dataType: t };
  }
  const kv = kvCache(where, past, outputs);
  if (kv) io.kv = kv;
  return io;
}

/** Pairs past_key_values.{i}.key/value inputs with present.{i}.key/value outputs, layer by layer. */
function kvCache(where: string, past: ValueInfoProto[], outputs: ValueInfoProto[]): KvCacheIo | undefined {
  const presents = outputs.filter((v) => PRESENT.test(v.name ?? ''));
  if (past.length === 0 && presents.length === 0) return undefined;
  const slots = new Map<number, Partial<Record<'pastKey' | 'pastValue' | 'presentKey' | 'presentValue', ValueInfoProto>>>();
  const put = (v: ValueInfoProto, re: RegExp, side: 'past' | 'present') => {
    const m = re.exec(v.name ?? '')!;
    const i = Number(m[1]);
    const key = `${side}${m[2] === 'key' ? 'Key' : 'Value'}` as const;
    slots.set(i, { ...slots.get(i), [key]: v });
  };
  for (const v of past) put(v, PAST, 'past');
  for (const v of presents) put(v, PRESENT, 'present');

  const layers: KvLayerIo[] = [];
  let dataType: number | undefined;
  for (const [i, s] of [...slots].sort((a, b) => a[0] - b[0])) {
    const missing = (['pastKey', 'pastValue', 'presentKey', 'presentValue'] as const).find((k) => !s[k]);
    if (missing) {
      const have = s.pastKey ?? s.pastValue ?? s.presentKey ?? s.presentValue;
      const wanted = { pastKey: `input past_key_values.${i}.key`, pastValue: `input past_key_values.${i}.value`, presentKey: `output present.${i}.key`, presentValue: `output present.${i}.value` }[missing];
      throw new UserError(`${where}: '${have!.name}' has no partner: the KV cache needs ${wanted} (past and present names must pair up layer by layer)`);
    }
    for (const v of [s.pastKey!, s.pastValue!]) {
      const t = elemType(v) ?? 0;
      if (t !== DataType.FLOAT && t !== DataType.FLOAT16) throw new UserError(`${where}: input '${v.name}' is ${dtypeName(t)}; pare fills float32 or float16 KV caches`);
      if (dataType !== undefined && t !== dataType) throw new UserError(`${where}: input '${v.name}' is ${dtypeName(t)}, other past tensors are ${dtypeName(dataType)}`);
      dataType = t;
      const dims = declaredDims(v);
      if (dims && dims.length !== 4) throw new UserError(`${where}: input '${v.name}' has rank ${dims.length}; pare fills KV caches of [batch, kv_heads, past_sequence, head_dim]`);
    }
    const k = declaredDims(s.pastKey!);
    const v = declaredDims(s.pastValue!);
    if (known(k?.[1]) !== undefined && known(v?.[1]) !== undefined && k![1] !== v![1]) {
      throw new UserError(`${where}: input '${s.pastValue!.name}' declares ${v![1]} heads, '${s.pastKey!.name}' ${k![1]}`);
    }
    const layer: KvLayerIo = {
      index: i,
      pastKey: s.pastKey!.name ?? '',
      pastValue: s.pastValue!.name ?? '',
      presentKey: s.presentKey!.name ?? '',
      presentValue: s.presentValue!.name ?? '',
      heads: known(k?.[1]) ?? known(v?.[1]),
      headDim: known(k?.[3]),
    };
    const vd = known(v?.[3]);
    if (vd !== undefined && vd !== layer.headDim) layer.valueHeadDim = vd;
    layers.push(layer);
  }
  return { layers, dataType: dataType ?? DataType.FLOAT };
}

/** A tensor to feed, as plain typed data: the runtimes (ONNX Runtime, tfjs) wrap it in their own type. */
export interface HostFeed {
  type: 'int64' | 'int32' | 'bool' | 'float32' | 'float16';
  dims: number[];
  data: BigInt64Array | Int32Array | Uint8Array | Float32Array | Uint16Array;
}

export type HostFeeds = Record<string, HostFeed>;

function integers(dataType: number, values: ArrayLike<number>, dims: number[]): HostFeed {
  if (dataType === DataType.INT64) return { type: 'int64', dims, data: BigInt64Array.from(values as ArrayLike<number>, (x) => BigInt(x)) };
  if (dataType === DataType.INT32) return { type: 'int32', dims, data: Int32Array.from(values) };
  return { type: 'bool', dims, data: Uint8Array.from(values) };
}

/**
 * Token ids [batch, sequence] with the decoder inputs that go with them when `pastLength` tokens are
 * already in the cache: an all-ones mask over past + sequence and positions past..past+sequence−1.
 * The past tensors themselves are the caller's (emptyPast for a fresh start, present.* of the
 * previous step when decoding).
 */
export function tokenFeeds(io: ModelIo, ids: ArrayLike<number>, batch: number, sequence: number, pastLength = 0): HostFeeds {
  if (ids.length !== batch * sequence) throw new Error(`tokenFeeds: ${ids.length} ids for [${batch}, ${sequence}]`);
  const feeds: HostFeeds = { [io.inputName]: integers(io.inputType, ids, [batch, sequence]) };
  if (io.attentionMask) {
    const total = pastLength + sequence;
    feeds[io.attentionMask.name] = integers(io.attentionMask.dataType, new Uint8Array(batch * total).fill(1), [batch, total]);
  }
  if (io.positionIds) {
    const pos = new Int32Array(batch * sequence);
    for (let b = 0; b < batch; b++) for (let t = 0; t < sequence; t++) pos[b * sequence + t] = pastLength + t;
    feeds[io.positionIds.name] = integers(io.positionIds.dataType, pos, [batch, sequence]);
  }
  return feeds;
}

/** Empty KV-cache inputs [batch, kv_heads, 0, head_dim] for every layer; heads and head size must be known. */
export function emptyPast(io: ModelIo, batch: number, where = 'model'): HostFeeds {
  const feeds: HostFeeds = {};
  for (const l of io.kv?.layers ?? []) {
    if (l.heads === undefined || l.headDim === undefined) {
      throw new UserError(`${where}: input '${l.pastKey}' declares no KV head count or head size, and pare could not read them from the graph`);
    }
    const type = io.kv!.dataType === DataType.FLOAT16 ? 'float16' : 'float32';
    const empty = () => (type === 'float16' ? new Uint16Array(0) : new Float32Array(0));
    feeds[l.pastKey] = { type, dims: [batch, l.heads, 0, l.headDim], data: empty() };
    feeds[l.pastValue] = { type, dims: [batch, l.heads, 0, l.valueHeadDim ?? l.headDim], data: empty() };
  }
  return feeds;
}

/** Everything a full forward from scratch needs: token feeds at past length 0 plus empty past tensors. */
export function lmFeeds(io: ModelIo, ids: ArrayLike<number>, batch: number, sequence: number, where?: string): HostFeeds {
  return { ...tokenFeeds(io, ids, batch, sequence), ...emptyPast(io, batch, where) };
}

/** The next step's past.* inputs: each layer's present.* outputs of this step, through `as` (e.g. into a feed type). */
export function pastFromPresent<T, U = T>(io: ModelIo, present: Record<string, T>, as: (t: T, name: string) => U = (t) => t as unknown as U): Record<string, U> {
  return Object.fromEntries(
    (io.kv?.layers ?? []).flatMap((l) => [
      [l.pastKey, as(present[l.presentKey]!, l.presentKey)],
      [l.pastValue, as(present[l.presentValue]!, l.presentValue)],
    ]),
  );
}

/** Names of the graph outputs a forward returns besides the logits (the present.* tensors), which callers that only score may skip. */
export function presentNames(io: ModelIo): string[] {
  return (io.kv?.layers ?? []).flatMap((l) => [l.presentKey, l.presentValue]);
}
