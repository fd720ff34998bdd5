import { statSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { UserError } from '../errors.js';
import { formatBytes } from '../util/read-file.js';
import { DataType, dtypeName } from './dtype.js';
import type { AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto } from './onnx-schema.js';

/**
 * Checks an ONNX model as read from a file, before anything allocates or runs it: what ONNX Runtime
 * would refuse when loading it, and what would make pare allocate more than the file holds.
 *
 * - every tensor (initializers at any depth, Constant values and other tensor attributes, sparse
 *   initializers' parts): a known data type, dims that are non-negative integers whose product stays
 *   below 2^53, and stored bytes that match dims × dtype (raw_data, the typed fields, or external
 *   data whose location stays inside the model's folder, exists, is a regular file and is long enough);
 * - the total the tensors declare against what the file (and its external data) can hold;
 * - the graph: nodes in topological order, every node input defined (a graph input, an initializer,
 *   an earlier node's output, or for a subgraph a value of the enclosing scope; '' is an absent
 *   optional input), no value produced twice in one graph, every graph output produced;
 * - opset imports and node domains that ONNX Runtime knows, or that the model's own functions define.
 *
 * Each problem is one line naming the tensor or node.
 */

/** Domains ONNX Runtime's CPU build registers operator schemas for; anything else needs a custom-op library. */
export const ORT_DOMAINS: ReadonlySet<string> = new Set([
  '',
  'ai.onnx',
  'ai.onnx.ml',
  'ai.onnx.preview.training',
  'ai.onnx.training',
  'com.microsoft',
  'com.microsoft.experimental',
  'com.microsoft.nchwc',
  'com.ms.internal.nhwc',
  'org.pytorch.aten',
]);

export interface ModelProblem {
  message: string;
  /** the tensor the problem is about, when it is one: a lenient reader leaves it out */
  tensor?: TensorProto;
}

/** Declared tensor bytes may exceed the file's by this factor: int64_data stores a small value in one byte. */
const TYPED_FIELD_EXPANSION = 8;
const MAX_PROBLEMS = 100;

/** Every problem found in `proto`, read from `path` (`fileBytes` long); external data resolves against its folder. */
export function modelProblems(proto: ModelProto, path: string, fileBytes: number): ModelProblem[] {
  const v = new Validator(proto, path);
  v.run(fileBytes);
  return v.problems;
}

/** Throws the first problem as a one-line user error, counting the rest. */
export function checkModel(proto: ModelProto, path: string, fileBytes: number): void {
  const problems = modelProblems(proto, path, fileBytes);
  if (problems.length === 0) return;
  const more = problems.length > 1 ? ` (and ${problems.length >= MAX_PROBLEMS ? 'more than ' : ''}${problems.length - 1} more problem${problems.length === 2 ? '' : 's'}; pare inspect --lenient lists them)` : '';
  throw new UserError(`${path}: ${problems[0]!.message}${more}`);
}

/** Text from a file made safe for a one-line message: control characters (newlines among them) escaped. */
export function escapeControl(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A name from the file as a message shows it: quoted, control characters escaped, long names cut. */
export function quoteName(name: string | undefined): string {
  const s = escapeControl(name ?? '');
  return `'${s.length > 120 ? `${s.slice(0, 117)}...` : s}'`;
}

function nodeLabel(n: NodeProto, index: number): string {
  return n.name ? `node ${quoteName(n.name)} (${quoteName(n.op_type).slice(1, -1) || 'no op_type'})` : `node #${index} (${quoteName(n.op_type).slice(1, -1) || 'no op_type'})`;
}

interface Declared {
  tensor: TensorProto;
  what: string;
  bytes: number;
}

class Validator {
  readonly problems: ModelProblem[] = [];
  private readonly dir: string;
  private readonly domains: Set<string>;
  private readonly declared: Declared[] = [];
  /** external data files: size, once each */
  private readonly externalFiles = new Map<string, number>();

  constructor(
    private readonly proto: ModelProto,
    private readonly path: string,
  ) {
    this.dir = dirname(path);
    const functions = (proto.functions ?? []) as { domain?: string }[];
    this.domains = new Set([...ORT_DOMAINS, ...functions.map((f) => f.domain ?? '')]);
  }

  run(fileBytes: number): void {
    this.checkOpsets();
    const graph = this.proto.graph;
    if (!graph) return this.add('the model has no graph');
    this.checkGraph(graph, new Set(), '');
    this.checkTotal(fileBytes);
  }

  private add(message: string, tensor?: TensorProto): void {
    if (this.problems.length < MAX_PROBLEMS) this.problems.push({ message, tensor });
  }

  private checkOpsets(): void {
    for (const o of this.proto.opset_import ?? []) {
      const domain = o.domain ?? '';
      const version = typeof o.version === 'number' ? o.version : NaN;
      if (!this.domains.has(domain)) {
        this.add(`imports operator domain ${quoteName(domain)}, which ONNX Runtime does not know (custom operators need a library pare does not load)`);
      } else if (!Number.isSafeInteger(version) || version < 1) {
        this.add(`imports domain ${quoteName(domain || 'ai.onnx')} at opset version ${String(o.version)}, expected a positive integer`);
      }
    }
  }

  /** One graph's values and nodes; `outer` holds the values of the enclosing scopes. */
  private checkGraph(g: GraphProto, outer: ReadonlySet<string>, scope: string): void {
    const defined = new Set(outer);
    const local = new Set<string>();
    const define = (name: string, by: string): void => {
      if (local.has(name)) this.add(`${scope}value ${quoteName(name)} is defined twice (again by ${by})`);
      local.add(name);
      defined.add(name);
    };
    for (const t of g.initializer ?? []) {
      this.checkTensor(t, `${scope}initializer ${quoteName(t.name)}`);
      define(t.name ?? '', `initializer ${quoteName(t.name)}`);
    }
    for (const s of (g.sparse_initializer ?? []) as { values?: TensorProto; indices?: TensorProto }[]) {
      if (s.values) this.checkTensor(s.values, `${scope}sparse initializer ${quoteName(s.values.name)}`);
      if (s.indices) this.checkTensor(s.indices, `${scope}indices of sparse initializer ${quoteName(s.values?.name)}`);
      if (s.values?.name) define(s.values.name, `sparse initializer ${quoteName(s.values.name)}`);
    }
    // an IR < 4 model lists its initializers among the inputs too
    for (const i of g.input ?? []) if (!local.has(i.name ?? '')) define(i.name ?? '', `graph input ${quoteName(i.name)}`);

    const nodes = g.node ?? [];
    const producedAt = new Map<string, number>();
    nodes.forEach((n, i) => {
      for (const o of n.output ?? []) if (o && !producedAt.has(o)) producedAt.set(o, i);
    });
    nodes.forEach((n, i) => {
      const label = `${scope}${nodeLabel(n, i)}`;
      if (!n.op_type) this.add(`${label} has no op_type`);
      const domain = n.domain ?? '';
      if (!this.domains.has(domain)) this.add(`${label} is in operator domain ${quoteName(domain)}, which ONNX Runtime does not know (custom operators need a library pare does not load)`);
      for (const input of n.input ?? []) {
        if (!input || defined.has(input)) continue;
        const at = producedAt.get(input);
        if (at === i) this.add(`${label} reads its own output ${quoteName(input)}: the graph has a cycle`);
        else if (at !== undefined) {
          this.add(`${label} reads ${quoteName(input)} before ${nodeLabel(nodes[at]!, at)} produces it: the nodes are not in topological order, or the graph has a cycle`);
        } else this.add(`${label} reads ${quoteName(input)}, which is no graph input, initializer or output of an earlier node`);
      }
      for (const a of n.attribute ?? []) this.checkAttribute(a, label, defined);
      for (const o of n.output ?? []) if (o) define(o, label);
    });
    for (const o of g.output ?? []) {
      if (!defined.has(o.name ?? '')) this.add(`${scope}graph output ${quoteName(o.name)} is not produced by any node, input or initializer`);
    }
  }

  private checkAttribute(a: AttributeProto, label: string, defined: ReadonlySet<string>): void {
    const where = `${label} attribute ${quoteName(a.name)}`;
    if (a.t) this.checkTensor(a.t, where);
    for (const t of a.tensors ?? []) this.checkTensor(t, where);
    if (a.g) this.checkGraph(a.g, defined, `${where}: `);
    for (const g of a.graphs ?? []) this.checkGraph(g, defined, `${where}: `);
  }

  /** dtype, dims and stored bytes of one tensor; its declared size is kept for the total. */
  private checkTensor(t: TensorProto, what: string): void {
    const dt = t.data_type ?? 0;
    const bits = BITS[dt];
    if (bits === undefined) return this.add(`${what} has unknown data type ${dt}`, t);
    let count = 1;
    for (const d of t.dims ?? []) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) return this.add(`${what} has dimension ${dimText(d)}; dims must be non-negative integers`, t);
      count *= d;
    }
    if (count > Number.MAX_SAFE_INTEGER) return this.add(`${what} declares ${count.toExponential(2)} elements, more than 2^53`, t);
    const bytes = Math.ceil((count * bits) / 8);
    this.declared.push({ tensor: t, what, bytes });
    const shape = `${dtypeName(dt)}[${(t.dims ?? []).join(', ')}]`;

    if (t.data_location === 1) return this.checkExternal(t, what, bytes, shape);
    if (t.raw_data && t.raw_data.byteLength > 0) {
      if (dt === DataType.STRING) return this.add(`${what} is a string tensor stored as raw_data, which ONNX does not allow`, t);
      if (t.raw_data.byteLength !== bytes) this.add(`${what} holds ${t.raw_data.byteLength} bytes of raw_data, its ${shape} needs ${bytes}`, t);
      return;
    }
    if (count === 0) return;
    const [field, n] = typedField(dt, count, bytes);
    const held = ((t as unknown as Record<string, unknown[] | undefined>)[field] ?? []).length;
    if (held !== n) this.add(`${what} holds ${held} values in ${field}, its ${shape} needs ${n}`, t);
  }

  private checkExternal(t: TensorProto, what: string, bytes: number, shape: string): void {
    const info = new Map((t.external_data ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = info.get('location');
    if (!location) return this.add(`${what} is stored externally but names no location`, t);
    const norm = normalize(location);
    if (isAbsolute(location) || norm === '..' || norm.startsWith(`..${sep}`) || location.includes('\0')) {
      return this.add(`${what} has external data location ${quoteName(location)} outside the model's folder; it must be a relative path inside it`, t);
    }
    const offset = info.has('offset') ? Number(info.get('offset')) : 0;
    const length = info.has('length') ? Number(info.get('length')) : bytes;
    if (!Number.isSafeInteger(offset) || offset < 0) return this.add(`${what} has external data offset ${quoteName(info.get('offset'))}, expected a non-negative integer`, t);
    if (length !== bytes) return this.add(`${what} has external data length ${quoteName(info.get('length'))}, its ${shape} needs ${bytes} bytes`, t);
    const file = join(this.dir, location);
    let size = this.externalFiles.get(file);
    if (size === undefined) {
      try {
        const st = statSync(file);
        if (!st.isFile()) return this.add(`${what}: external data ${quoteName(location)} is not a regular file`, t);
        size = st.size;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        return this.add(`${what}: external data file ${quoteName(location)} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`} beside the model`, t);
      }
      this.externalFiles.set(file, size);
    }
    if (offset + bytes > size) this.add(`${what}: external data ${quoteName(location)} holds ${size} bytes, the tensor needs bytes ${offset} to ${offset + bytes}`, t);
  }

  /** What the tensors declare, against what the file and its external data can hold. */
  private checkTotal(fileBytes: number): void {
    let external = 0;
    for (const s of this.externalFiles.values()) external += s;
    const limit = TYPED_FIELD_EXPANSION * fileBytes + external;
    let total = 0;
    let largest: Declared | undefined;
    for (const d of this.declared) {
      total += d.bytes;
      if (!largest || d.bytes > largest.bytes) largest = d;
    }
    if (total > limit && largest) {
      const t = largest.tensor;
      // first: it says more than the tensor-by-tensor problems it explains
      this.problems.unshift(
        {
          message: `its tensors declare ${formatBytes(total)} but the file${external ? ' and its external data' : ''} hold${external ? '' : 's'} ${formatBytes(fileBytes + external)} (largest: ${largest.what}, ${dtypeName(t.data_type ?? 0)}[${(t.dims ?? []).join(', ')}])`,
          tensor: t,
        },
      );
    }
  }
}

function dimText(d: unknown): string {
  if (typeof d === 'number') return String(d);
  if (d && typeof d === 'object' && 'high' in d) return 'beyond 2^53';
  return String(d);
}

/** Storage bits per element, by ONNX data type (string tensors hold no fixed-size bytes). */
const BITS: Record<number, number> = {
  [DataType.FLOAT]: 32, [DataType.UINT8]: 8, [DataType.INT8]: 8, [DataType.UINT16]: 16, [DataType.INT16]: 16,
  [DataType.INT32]: 32, [DataType.INT64]: 64, [DataType.STRING]: 0, [DataType.BOOL]: 8, [DataType.FLOAT16]: 16,
  [DataType.DOUBLE]: 64, [DataType.UINT32]: 32, [DataType.UINT64]: 64, [DataType.COMPLEX64]: 64, [DataType.COMPLEX128]: 128,
  [DataType.BFLOAT16]: 16, [DataType.FLOAT8E4M3FN]: 8, [DataType.FLOAT8E4M3FNUZ]: 8, [DataType.FLOAT8E5M2]: 8,
  [DataType.FLOAT8E5M2FNUZ]: 8, [DataType.UINT4]: 4, [DataType.INT4]: 4, [DataType.FLOAT4E2M1]: 4,
};

/** The typed field a tensor without raw_data keeps its values in, and how many entries it needs (onnx.proto's rules, as Model reads them). */
function typedField(dt: number, count: number, bytes: number): [string, number] {
  switch (dt) {
    case DataType.FLOAT:
      return ['float_data', count];
    case DataType.COMPLEX64:
      return ['float_data', 2 * count];
    case DataType.DOUBLE:
      return ['double_data', count];
    case DataType.COMPLEX128:
      return ['double_data', 2 * count];
    case DataType.INT64:
      return ['int64_data', count];
    case DataType.UINT32:
    case DataType.UINT64:
      return ['uint64_data', count];
    case DataType.STRING:
      return ['string_data', count];
    case DataType.INT4:
    case DataType.UINT4:
    case DataType.FLOAT4E2M1:
      return ['int32_data', bytes];
    default:
      return ['int32_data', count];
  }
}
