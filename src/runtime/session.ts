import { UserError } from '../errors.js';
import type { HostFeed, HostFeeds } from '../model/io.js';
import { float16ToFloat32 } from '../model/pack.js';

/**
 * One interface over the ONNX Runtimes pare measures in: onnxruntime-node (native, the reference)
 * and onnxruntime-web (its WebAssembly backend, what a browser page runs). Feeds and outputs are
 * plain typed arrays, so evaluation, latency and generation run one code path on either.
 */
export type RuntimeName = 'node' | 'web';

export const RUNTIME_NAMES: readonly RuntimeName[] = ['node', 'web'];

/** The npm package behind each runtime: how reports name it. */
export const RUNTIME_PACKAGE: Record<RuntimeName, string> = { node: 'onnxruntime-node', web: 'onnxruntime-web' };

/**
 * `--runtime` / `eval.runtime` as the runtimes to measure in: onnxruntime-node always (the reference
 * the report's main numbers come from), onnxruntime-web beside it when `web` is named.
 */
export function runtimesFor(value: string, where: string): RuntimeName[] {
  const names = value.split(',').map((s) => s.trim());
  const bad = names.find((n) => !RUNTIME_NAMES.includes(n as RuntimeName));
  if (bad !== undefined || names.length === 0) throw new UserError(`${where}: expected node, web or node,web, got '${value}'`);
  return names.includes('web') ? ['node', 'web'] : ['node'];
}

/** An output as the runtime returned it: its element type (ONNX Runtime's name), dims and data. */
export interface HostOutput {
  type: string;
  dims: number[];
  data: ArrayLike<number | bigint> & { length: number };
}

export interface RuntimeSession {
  readonly runtime: RuntimeName;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** runs the model on `feeds`; returns `outputs` (default: all) */
  run(feeds: HostFeeds, outputs?: readonly string[]): Promise<Record<string, HostOutput>>;
  release(): Promise<void>;
}

/** A float output as float32: float16 outputs (a q4f16 model's logits) are widened, float32 returned as it is. */
export function floatOutput(out: HostOutput, name: string, where: string): Float32Array {
  if (out.type === 'float32') return out.data as Float32Array;
  if (out.type === 'float16') return float16ToFloat32(out.data as Uint16Array);
  throw new UserError(`${where}: output '${name}' is ${out.type}; pare reads float32 or float16 outputs`);
}

/** An output fed back as an input (a decoder's present.* as the next step's past). */
export function asFeed(out: HostOutput, name: string): HostFeed {
  const t = out.type;
  if (t !== 'float32' && t !== 'float16' && t !== 'int64' && t !== 'int32' && t !== 'bool') throw new Error(`output '${name}' is ${t}; it cannot be fed back as an input`);
  return { type: t, dims: [...out.dims], data: out.data as HostFeed['data'] };
}

/**
 * Why a runtime could not load or run a model, with the operator when ONNX Runtime names one: the
 * browser's runtime may lack a kernel the native one has.
 */
export class RuntimeFailure extends UserError {
  constructor(
    readonly runtime: RuntimeName,
    readonly path: string,
    /** ONNX Runtime's own message, first line */
    readonly detail: string,
    /** the operator ONNX Runtime names (op type, and the node when it says which) */
    readonly op?: { type: string; node?: string },
  ) {
    super(`${path}: ${RUNTIME_PACKAGE[runtime]} cannot run the model${op ? `: operator ${op.type}${op.node ? ` (node '${op.node}')` : ''}` : ''} (${detail})`);
    this.name = 'RuntimeFailure';
  }
}

/**
 * The operator an ONNX Runtime error names, from the messages both runtimes print: no kernel for an
 * op ("Could not find an implementation for Rfft(1) node with name 'n'"), an op the schema registry
 * does not know ("No Op registered for Foo with domain_version of 1") or a kernel failing while it
 * runs ("Non-zero status code returned while running Foo node. Name:'n'").
 */
export function failingOperator(message: string): { type: string; node?: string } | undefined {
  const kernel = /Could not find an implementation for (\w+)\(\d+\) node with name '([^']*)'/.exec(message);
  if (kernel) return { type: kernel[1]!, node: kernel[2] || undefined };
  const unknown = /No Op registered for (\w+) with domain_version/.exec(message);
  if (unknown) return { type: unknown[1]! };
  const running = /while running (\w+) node\. Name:'([^']*)'/.exec(message);
  if (running) return { type: running[1]!, node: running[2] || undefined };
  return undefined;
}

export function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0]!;
}
