import { basename } from 'node:path';
import { UserError } from '../../errors.js';
import { byteLength, DataType, elementCount } from '../dtype.js';
import { attr, makeNode } from '../graph.js';
import { Model } from '../model.js';
import type { AttributeProto, NodeProto, TensorProto, TypeProto, ValueInfoProto } from '../onnx-schema.js';
import type { SafetensorsFile } from '../safetensors.js';

/**
 * Writes an ONNX graph by hand over a safetensors checkpoint: unique value names, constants, and
 * checkpoint tensors as initializers that keep their names and point into the safetensors file as
 * ONNX external data (offset and length), so nothing is read until a pass or a session asks for it.
 */
export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly constants = new Map<string, string>();
  private readonly weights = new Map<string, string>();
  private readonly stores = new Set<string>();
  private readonly domains = new Set<string>();

  constructor(
    private readonly st: SafetensorsFile,
    /** the family, for error messages: 'a Llama model with 5 layers' */
    private readonly what: string,
  ) {}

  has(name: string): boolean {
    return this.st.tensors.has(name);
  }

  /** A checkpoint tensor as a float32 value (a Cast follows 16-bit and other stored types). */
  weight(name: string): string {
    const cached = this.weights.get(name);
    if (cached) return cached;
    const e = this.stored(name);
    const value = e.dataType === DataType.FLOAT ? name : this.op('Cast', [name], `/${name}/Cast`, [attr.int('to', DataType.FLOAT)]);
    this.weights.set(name, value);
    return value;
  }

  /**
   * A checkpoint tensor as an initializer of its stored bytes, optionally seen with another type and
   * shape of the same byte length (int32-packed 4-bit codes as MatMulNBits' uint8 blocks).
   */
  stored(name: string, view?: { dataType: number; dims: number[] }): { name: string; dataType: number; dims: number[] } {
    const e = this.st.tensors.get(name);
    if (!e) throw new UserError(`${this.st.path}: tensor '${name}' is missing for ${this.what}; is config.json from the same checkpoint?`);
    const dataType = view?.dataType ?? e.dataType;
    const dims = view?.dims ?? e.shape;
    if (view && byteLength(dataType, elementCount(dims)) !== e.end - e.begin) {
      throw new UserError(`${this.st.path}: tensor '${name}' holds ${e.end - e.begin} bytes, ${this.what} needs ${byteLength(dataType, elementCount(dims))}`);
    }
    if (!this.stores.has(name)) {
      this.stores.add(name);
      this.initializers.push({
        name,
        data_type: dataType,
        dims,
        data_location: 1,
        external_data: [
          { key: 'location', value: basename(this.st.path) },
          { key: 'offset', value: String(this.st.dataStart + e.begin) },
          { key: 'length', value: String(e.end - e.begin) },
        ],
      });
    }
    return { name, dataType, dims };
  }

  /** Raw bytes of a checkpoint tensor, read now. */
  read(name: string): Uint8Array {
    if (!this.st.tensors.has(name)) throw new UserError(`${this.st.path}: tensor '${name}' is missing for ${this.what}; is config.json from the same checkpoint?`);
    return this.st.read(name);
  }

  /** A tensor computed at build time (converted codes, packed zero points), stored inline. */
  inline(name: string, dataType: number, dims: number[], data: Uint8Array): string {
    this.initializers.push({ name, data_type: dataType, dims, raw_data: data });
    return name;
  }

  /** Imports an opset domain beside the default one (com.microsoft for MatMulNBits). */
  useDomain(domain: string): void {
    this.domains.add(domain);
  }

  /** Checks a tensor's shape against what config.json implies. */
  expectShape(name: string, shape: number[]): void {
    const e = this.st.tensors.get(name);
    if (e && (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i]))) {
      throw new UserError(`${this.st.path}: tensor '${name}' has shape [${e.shape.join(', ')}], config.json implies [${shape.join(', ')}] for ${this.what}`);
    }
  }

  /** Adds a node named `name` (a PyTorch-export-style path) and returns its first output. */
  op(opType: string, inputs: string[], name: string, attributes: AttributeProto[] = [], domain?: string): string {
    return this.opMulti(opType, inputs, name, 1, attributes, domain)[0]!;
  }

  opMulti(opType: string, inputs: string[], name: string, outputs: number, attributes: AttributeProto[] = [], domain?: string): string[] {
    const outs = Array.from({ length: outputs }, (_, i) => `${name}_output_${i}`);
    this.nodes.push(makeNode(opType, inputs, outs, name, attributes, domain));
    return outs;
  }

  /** Adds a node whose outputs are named by the caller (a graph output such as `present.0.key`). */
  node(opType: string, inputs: string[], outputs: string[], name: string): void {
    this.nodes.push(makeNode(opType, inputs, outputs, name));
  }

  int64s(values: number[], scalar = false): string {
    const key = `i64:${scalar}:${values.join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_i64_${this.constants.size}`;
      this.initializers.push({ name, data_type: DataType.INT64, dims: scalar ? [] : [values.length], raw_data: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
      this.constants.set(key, name);
    }
    return name;
  }

  floats(values: ArrayLike<number>, dims: number[]): string {
    const key = `f32:${dims.join('x')}:${Array.from(values).join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_f32_${this.constants.size}`;
      this.initializers.push({ name, data_type: DataType.FLOAT, dims, raw_data: new Uint8Array(Float32Array.from(values).buffer) });
      this.constants.set(key, name);
    }
    return name;
  }

  scalar(value: number): string {
    return this.floats([value], []);
  }

  /**
   * The finished model, opset 17, read from (and written back to) the safetensors file. Its inputs and
   * outputs are `io`'s (a KV cache's), by default input_ids int64 [batch, sequence] → logits float32
   * [batch, sequence, vocab].
   */
  finish(graphName: string, logits: string, vocab: number, io?: { inputs: ValueInfoProto[]; outputs: ValueInfoProto[] }): Model {
    this.nodes.push(makeNode('Identity', [logits], ['logits'], '/logits/Identity'));
    return new Model(
      {
        ir_version: 8,
        producer_name: 'pare',
        opset_import: [{ domain: '', version: 17 }, ...[...this.domains].map((domain) => ({ domain, version: 1 }))],
        graph: {
          name: graphName,
          node: this.nodes,
          initializer: this.initializers,
          input: io?.inputs ?? [{ name: 'input_ids', type: tensorType(DataType.INT64, ['batch', 'sequence']) }],
          output: io?.outputs ?? [{ name: 'logits', type: tensorType(DataType.FLOAT, ['batch', 'sequence', vocab]) }],
        },
      },
      this.st.path,
      'safetensors',
    );
  }
}

export function tensorType(elem: number, dims: (number | string)[]): TypeProto {
  return { tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } };
}

/** float32 lowest: the additive mask value that hides a key, as PyTorch's export uses it */
export const LOWEST = -3.4028234663852886e38;

/** Graph options every builder takes. */
export interface BuildOptions {
  /**
   * Optimum's decoder-with-past I/O (attention_mask, position_ids, past_key_values in; present out),
   * the default; false gives the single-input graph input_ids → logits
   */
  kvCache?: boolean;
}

/** The causal mask [S, S] (0 on and below the diagonal, float32 lowest above) for positions `pos` [S]. */
export function causalMask(g: GraphBuilder, pos: string): string {
  const rows = g.op('Unsqueeze', [pos, g.int64s([1])], '/mask/Unsqueeze_rows');
  const cols = g.op('Unsqueeze', [pos, g.int64s([0])], '/mask/Unsqueeze_cols');
  const future = g.op('Less', [rows, cols], '/mask/Less');
  return g.op('Where', [future, g.scalar(LOWEST), g.scalar(0)], '/mask/Where');
}

/** Positions 0..S-1 (int64 [S]) for input_ids [B, S]. */
export function positions(g: GraphBuilder): string {
  const seq = g.op('Gather', [g.op('Shape', ['input_ids'], '/Shape'), g.int64s([1], true)], '/Gather_seq', [attr.int('axis', 0)]);
  return g.op('Range', [g.int64s([0], true), seq, g.int64s([1], true)], '/Range');
}

/** Config numbers with a UserError naming config.json when one is missing or not a positive integer. */
export function configReader(config: Record<string, unknown>, configPath: string) {
  return {
    int(key: string, fallback?: number): number {
      const v = config[key] ?? fallback;
      if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
        throw new UserError(`${configPath}: ${key} must be a positive integer, found ${JSON.stringify(config[key])}`);
      }
      return v;
    },
    /** A layer count, at most `tensors` (each layer has tensors of its own): a corrupt count never builds millions of layers. */
    layers(key: string, tensors: number, file: string): number {
      const v = this.int(key);
      if (v > tensors) throw new UserError(`${configPath}: ${key} ${v} is more layers than ${file} has tensors (${tensors}); check config.json`);
      return v;
    },
    num(key: string, fallback: number): number {
      const v = config[key] ?? fallback;
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new UserError(`${configPath}: ${key} must be a number, found ${JSON.stringify(config[key])}`);
      return v;
    },
  };
}

export { attr };
