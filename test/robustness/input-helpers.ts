import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { attr, makeNode } from '../../src/model/graph.js';
import { ModelProtoType, type GraphProto, type ModelProto, type TensorProto, type ValueInfoProto } from '../../src/model/onnx-schema.js';

/** Helpers of the input-robustness tests (test/robustness/input-*.test.ts). */

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * A failed run as the issue asks for it: exit 2, the `pare:` line the last thing on stderr and on one
 * line (progress lines may come before it until they are TTY-only), no stack trace, naming `mentions`.
 */
export function expectUserError(r: { code: number; err: string }, ...mentions: string[]): void {
  expect(r.code, r.err).toBe(2);
  const lines = r.err.trim().split('\n');
  const pare = lines.filter((l) => l.startsWith('pare:'));
  expect(pare, r.err).toHaveLength(1);
  expect(lines.at(-1), r.err).toBe(pare[0]);
  expect(r.err).not.toMatch(/internal error|\n\s+at /);
  for (const m of mentions) expect(pare[0], r.err).toContain(m);
}

/** Files in `dir` now, to compare against a listing taken before a run. */
export function listing(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String).sort();
}

export const f32 = (name: string, dims: number[], values?: number[]): TensorProto => {
  const n = dims.reduce((a, b) => a * b, 1);
  return { name, data_type: 1, dims, raw_data: new Uint8Array(Float32Array.from(values ?? Array.from({ length: n }, (_, i) => (i % 7) / 7 - 0.4)).buffer) };
};

export const tensorInput = (name: string, dims: (number | string)[], elemType = 1): ValueInfoProto => ({
  name,
  type: { tensor_type: { elem_type: elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } },
});

/**
 * A model ONNX Runtime runs: y = Relu(x · W + b) with x float[batch, 4], W [4, 3], b [3]. Tests
 * break one thing in it at a time.
 */
export function tinyGraph(): GraphProto {
  return {
    name: 'tiny',
    node: [makeNode('MatMul', ['x', 'W'], ['xw'], 'matmul'), makeNode('Add', ['xw', 'b'], ['pre'], 'add'), makeNode('Relu', ['pre'], ['y'], 'relu')],
    initializer: [f32('W', [4, 3]), f32('b', [3])],
    input: [tensorInput('x', ['batch', 4])],
    output: [tensorInput('y', ['batch', 3])],
  };
}

export function modelOf(graph: GraphProto, opsets: { domain?: string; version: number }[] = [{ domain: '', version: 17 }]): ModelProto {
  return { ir_version: 8, producer_name: 'pare-test', opset_import: opsets, graph };
}

export function writeModel(path: string, model: ModelProto): string {
  writeFileSync(path, ModelProtoType.encode(model as never).finish());
  return path;
}

export { attr, makeNode, join };
