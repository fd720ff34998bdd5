import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Calibrator, type CalibratorOptions } from '../../src/calibrate/calibrator.js';
import type { Feeds } from '../../src/calibrate/feeds.js';
import type { InputStats, StatsNeeds } from '../../src/calibrate/stats.js';
import { emitLowRank } from '../../src/decompose/svd.js';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears, type LinearLayer } from '../../src/model/linears.js';
import { loadModel } from '../../src/model/load.js';
import { makeNode } from '../../src/model/graph.js';
import { Model } from '../../src/model/model.js';
import { AttributeType } from '../../src/model/onnx-schema.js';
import { seededRandom } from '../../src/util/random.js';
import { ort } from '../../src/runtime/ort.js';
import { allClose, FIXTURES, tempDir } from '../helpers.js';
import { lmFeeds, modelIo } from '../../src/model/io.js';
import { ortFeeds } from '../../src/runtime/feeds.js';

const SOURCES = {
  'exported graph': 'fixtures/stories260K/model.onnx',
  'builder graph': FIXTURES.storiesSafetensors,
};
const NEEDS: StatsNeeds = { hessian: true, absmax: true, sqnorm: true, sum: true };

function tokenFeeds(model: Model, samples: number, length: number, seed: number): Feeds[] {
  const rand = seededRandom(seed);
  const io = modelIo(model);
  return Array.from({ length: samples }, (_, s) => {
    // lengths differ per sample so cached values of several shapes go through the store
    const n = length - 3 * s;
    const ids = Int32Array.from({ length: n }, (_, i) => (i === 0 ? 1 : Math.floor(rand() * 512)));
    return ortFeeds(lmFeeds(io, ids, 1, n));
  });
}

/**
 * What a pass does to a block, the same on every copy: every weight scaled by a seeded per-entry
 * factor, and the first layer of the block rewritten into two MatMuls (a graph rewrite, as SVD does).
 */
function changeBlock(model: Model, layers: readonly LinearLayer[], seed: number): void {
  for (const [i, layer] of layers.entries()) {
    const rand = seededRandom(seed * 131 + i);
    const W = readWeight(model, layer);
    for (let k = 0; k < W.length; k++) W[k] *= 0.5 + rand();
    if (i > 0 || layer.kind !== 'matmul') {
      writeWeight(model, layer, W);
      continue;
    }
    // W = A·B with A = W, B = I: the exact rewrite, through the graph path low-rank factoring takes
    const k = layer.inFeatures;
    const B = new Float32Array(k * k);
    for (let d = 0; d < k; d++) B[d * k + d] = 1;
    emitLowRank(model, layer, W, B, k);
  }
}

/** Runs one calibrator over all block groups of `path`, changing each block after its statistics are taken. */
async function sequentialStats(path: string, options: CalibratorOptions): Promise<{ stats: Map<string, InputStats>[]; cal: Calibrator; nodes: number }> {
  const model = loadModel(path);
  const feeds = tokenFeeds(model, 3, 48, 7);
  const cal = new Calibrator(feeds, 'sequential', 1, options);
  const layers = linears(model);
  const stats: Map<string, InputStats>[] = [];
  const nodes = model.graph.node!.length;
  let g = 0;
  for await (const { group, stats: s } of cal.blocks(model, layers, NEEDS)) {
    stats.push(s);
    changeBlock(model, group.layers, g++);
  }
  model.close();
  return { stats, cal, nodes };
}

function expectSameStats(a: Map<string, InputStats>[], r: Map<string, InputStats>[]): number {
  expect(a.length).toBe(r.length);
  let worst = 0;
  for (const [j, ref] of r.entries()) {
    expect([...a[j]!.keys()].sort()).toEqual([...ref.keys()].sort());
    for (const [name, want] of ref) {
      const got = a[j]!.get(name)!;
      expect(got.rows).toBe(want.rows);
      for (const field of ['xtx', 'absmax', 'sqnorm', 'sum'] as const) {
        const c = allClose(got[field]!, want[field]!, 1e-5, 1e-6 * Math.max(...Array.from(want[field]!, Math.abs)));
        expect(c.ok, `${name}.${field}: ${c.worst}`).toBe(true);
        expect(c.relFro).toBeLessThanOrEqual(1e-5);
        worst = Math.max(worst, c.relFro);
      }
    }
  }
  return worst;
}

describe('sequential calibration on cut block sub-graphs', () => {
  for (const [label, path] of Object.entries(SOURCES)) {
    it(`equals the full-prefix statistics after every block is changed (${label})`, async () => {
      const cut = await sequentialStats(path, { cut: true });
      const full = await sequentialStats(path, { cut: false });
      expect(cut.cal.warnings).toEqual([]);
      const worst = expectSameStats(cut.stats, full.stats);
      expect(worst).toBeLessThanOrEqual(1e-5); // measured 0: the same float32 arithmetic

      // the changes reach later blocks: statistics differ from an unchanged model's
      const model = loadModel(path);
      const plain = await new Calibrator(tokenFeeds(model, 3, 48, 7), 'oneshot', 1).collect(model, linears(model), NEEDS);
      const last = full.stats.at(-1)!;
      const [name, changed] = [...last][0]!;
      expect(allClose(changed.xtx!, plain.get(name)!.xtx!, 1e-2, 0).relFro).toBeGreaterThan(1e-2);
      model.close();

      // O(blocks): all steps together run about two forwards of each block, not a prefix per block
      const nodesRun = cut.cal.trace.reduce((s, t) => s + t.nodes, 0);
      expect(cut.cal.trace.length).toBe(full.stats.length);
      expect(nodesRun).toBeLessThan(2.2 * cut.nodes); // measured 1.75× (exported) and 1.77× (builder); full prefixes: ~3.5×
      // each step after the first is fed the previous block's input hidden state, not the token ids alone
      for (const t of cut.cal.trace.slice(1)) expect(t.fed.length).toBeGreaterThan(0);
    }, 60_000);
  }

  it('weights fed as inputs instead of inlined give bit-identical statistics', async () => {
    // threshold 1 byte: every float initializer a step reads is fed (in real models only the token embedding is)
    const fed = await sequentialStats(SOURCES['exported graph'], { fedWeightBytes: 1 });
    const inline = await sequentialStats(SOURCES['exported graph'], {});
    expect(fed.cal.warnings).toEqual([]);
    expect(fed.cal.trace[0]!.weights.length).toBeGreaterThan(0);
    expect(inline.cal.trace.every((t) => t.weights.length === 0)).toBe(true);
    expect(fed.stats.length).toBe(inline.stats.length);
    for (const [j, want] of inline.stats.entries()) {
      for (const [name, w] of want) {
        const got = fed.stats[j]!.get(name)!;
        for (const field of ['xtx', 'absmax', 'sqnorm', 'sum'] as const) expect(got[field], `${name}.${field}`).toEqual(w[field]);
      }
    }
  }, 60_000);

  it('spilled boundary values give bit-identical statistics and their files are removed', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const spilled = await sequentialStats(SOURCES['exported graph'], { residentBytes: 0, spillDir: dir });
      const resident = await sequentialStats(SOURCES['exported graph'], {});
      expectSameStats(spilled.stats, resident.stats);
      for (const [j, want] of resident.stats.entries()) {
        for (const [name, w] of want) for (const field of ['xtx', 'absmax', 'sqnorm', 'sum'] as const) expect(spilled.stats[j]!.get(name)![field], `${name}.${field}`).toEqual(w[field]);
      }
      expect(spilled.cal.peakBoundaryBytes).toBe(0);
      // the resident run releases each value's samples after their last read (a read after that throws)
      expect(resident.cal.peakBoundaryBytes).toBeGreaterThan(0);
      expect(spilled.cal.spilledBytes).toBeGreaterThan(0);
      expect(resident.cal.spilledBytes).toBe(0);
      expect(existsSync(dir) && readdirSync(dir)).toEqual([]);
    } finally {
      cleanup();
    }
  }, 60_000);
});

/** x [1, n, 4] -> If(true: Identity x) -> MatMul W1 -> MatMul W2: two blocks behind a node with a subgraph. */
function modelWithIf(): Model {
  const r = seededRandom(3);
  const w = (name: string) => ({ name, data_type: 1, dims: [4, 4], raw_data: new Uint8Array(Float32Array.from({ length: 16 }, () => r() - 0.5).buffer) });
  const type = { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_param: 'n' }, { dim_value: 4 }] } } };
  const branch = (name: string) => ({ name, node: [makeNode('Identity', ['x'], [`${name}_y`], `${name}/Identity`)], output: [{ name: `${name}_y`, type }] });
  return new Model(
    {
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      graph: {
        name: 'if-blocks',
        node: [
          makeNode('If', ['cond'], ['y'], '/If', [{ name: 'then_branch', type: AttributeType.GRAPH, g: branch('then') }, { name: 'else_branch', type: AttributeType.GRAPH, g: branch('else') }]),
          makeNode('MatMul', ['y', 'w1'], ['h1'], '/layers.0/mlp/up_proj/MatMul'),
          makeNode('MatMul', ['h1', 'w2'], ['h2'], '/layers.1/mlp/up_proj/MatMul'),
        ],
        initializer: [w('w1'), w('w2'), { name: 'cond', data_type: 9, dims: [], raw_data: Uint8Array.of(1) }],
        input: [{ name: 'x', type }],
        output: [{ name: 'h2', type }],
      },
    },
    'if-blocks.onnx',
  );
}

describe('graphs that cannot be cut', () => {
  it('fall back to full prefixes with a warning and the same statistics', async () => {
    const feeds = [0, 1].map((s) => ({ x: new ort.Tensor('float32', Float32Array.from({ length: 20 }, (_, i) => Math.sin(i + 7 * s)), [1, 5, 4]) }));
    const run = async (cut: boolean) => {
      const model = modelWithIf();
      const warnings: string[] = [];
      const cal = new Calibrator(feeds, 'sequential', 1, { cut, onWarning: (w) => warnings.push(w) });
      const out: Map<string, InputStats>[] = [];
      let g = 0;
      for await (const { group, stats } of cal.blocks(model, linears(model), NEEDS)) {
        out.push(stats);
        changeBlock(model, group.layers, g++);
      }
      return { out, warnings, trace: cal.trace };
    };
    const fallback = await run(true);
    const full = await run(false);
    expect(fallback.warnings).toHaveLength(1);
    expect(fallback.warnings[0]).toMatch(/whole model prefix.*'\/If' \(If\) has a subgraph/);
    expect(fallback.trace).toEqual([]);
    expect(full.warnings).toEqual([]);
    expectSameStats(fallback.out, full.out);
  });
});
