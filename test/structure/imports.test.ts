import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The layers of src/ as README.md's Layout section describes them, bottom first. A file may import
 * from its own folder and from folders of lower layers; folders of one layer never import each
 * other. Every import counts, `import type` included.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['errors', 'version'],
  ['util'],
  ['model'],
  ['linalg'],
  ['data'],
  ['runtime'],
  ['calibrate'],
  ['obs'],
  ['eval'],
  ['report'],
  ['pass'],
  ['prune', 'quantize', 'decompose', 'share', 'distill'],
  ['recipe'],
  ['pipeline'],
  ['cli'],
];

const SRC = resolve(__dirname, '../../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Relative imports of each file, resolved to source paths. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    const targets = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+'(\.{1,2}\/[^']+)'/g), ...text.matchAll(/\bimport\(\s*'(\.{1,2}\/[^']+)'\s*\)/g)].map((m) =>
      resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')),
    );
    graph.set(file, targets);
  }
  return graph;
}

/** `model` for src/model/onnx-io.ts, `errors` for src/errors.ts. */
function folderOf(file: string): string {
  return relative(SRC, file).split('/')[0]!.replace(/\.ts$/, '');
}

function rankOf(folder: string): number {
  return LAYERS.findIndex((l) => l.includes(folder));
}

/** Strongly connected components with more than one file (Tarjan), or a file importing itself. */
function cycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.map((f) => relative(SRC, f)).sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('src/ import structure', () => {
  const graph = importGraph();

  it('every folder of src/ belongs to one documented layer', () => {
    const folders = [...new Set([...graph.keys()].map(folderOf))];
    expect(folders.filter((f) => rankOf(f) < 0)).toEqual([]);
  });

  it('has no import cycles', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('imports only downwards between layers, never sideways between folders of one layer', () => {
    const bad: string[] = [];
    for (const [file, targets] of graph) {
      const from = folderOf(file);
      for (const target of targets) {
        const to = folderOf(target);
        if (to === from) continue;
        if (rankOf(to) >= rankOf(from)) bad.push(`${relative(SRC, file)} -> ${relative(SRC, target)}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('the pass registry is imported only by the runner and the CLI', () => {
    const importers = [...graph].filter(([, t]) => t.some((x) => relative(SRC, x) === 'pipeline/registry.ts')).map(([f]) => folderOf(f));
    expect(new Set(importers)).toEqual(new Set(['pipeline', 'cli']));
  });
});
