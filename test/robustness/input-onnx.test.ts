import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeConvNet } from '../../fixtures/generate-convnet.js';
import { readOnnxFile } from '../../src/model/onnx-io.js';
import type { GraphProto, ModelProto, TensorProto } from '../../src/model/onnx-schema.js';
import { modelProblems } from '../../src/model/validate.js';
import { runtimeLoadProblem } from '../../src/runtime/load-check.js';
import { ort } from '../../src/runtime/ort.js';
import { runCli } from '../cli/run-cli.js';
import { npy } from '../data/build.js';
import { fixturePath, FIXTURES, tempDir } from '../helpers.js';
import { attr, expectUserError, f32, listing, makeNode, modelOf, sha256, tensorInput, tinyGraph, writeModel } from './input-helpers.js';

/**
 * Issue #24 items 5 and 6: a graph ONNX Runtime cannot load, or whose tensors promise more than the
 * file holds, is refused when any command opens it, before anything runs, with exit 2 and one line
 * naming the node or tensor; the input is untouched and nothing is written.
 */

const tmp = tempDir('pare-onnx-');
afterAll(() => tmp.cleanup());

let data: string;
let recipe: string;
beforeAll(() => {
  data = join(tmp.dir, 'x.npy');
  writeFileSync(data, npy('<f4', [5, 4], Float32Array.from({ length: 20 }, (_, i) => i / 20)));
  recipe = join(tmp.dir, 'cast.yaml');
  writeFileSync(recipe, 'version: 1\npasses:\n  - pass: quantize.cast\n    targets: ["*"]\n');
});

/** A case in its own folder (external data files go beside the model). */
function caseDir(name: string): string {
  const dir = join(tmp.dir, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

const withGraph = (edit: (g: GraphProto) => void, opsets?: { domain?: string; version: number }[]): ModelProto => {
  const g = tinyGraph();
  edit(g);
  return modelOf(g, opsets);
};

const external = (name: string, dims: number[], location: string, extra: Record<string, string> = {}): TensorProto => ({
  name,
  data_type: 1,
  dims,
  data_location: 1,
  external_data: [{ key: 'location', value: location }, ...Object.entries(extra).map(([key, value]) => ({ key, value }))],
});

interface Case {
  name: string;
  model: (dir: string) => ModelProto;
  /** what the one-line message names besides the file */
  mentions: string[];
}

const CASES: Case[] = [
  {
    name: 'a cycle',
    // pre = Add(xw, back); back = Relu(pre): each needs the other
    model: () => withGraph((g) => {
      g.node = [makeNode('MatMul', ['x', 'W'], ['xw'], 'matmul'), makeNode('Add', ['xw', 'back'], ['pre'], 'add'), makeNode('Relu', ['pre'], ['back'], 'relu'), makeNode('Relu', ['pre'], ['y'], 'out')];
    }),
    mentions: ["node 'add' (Add) reads 'back' before node 'relu' (Relu) produces it", 'or the graph has a cycle'],
  },
  {
    name: 'a node reading its own output',
    model: () => withGraph((g) => {
      g.node![1] = makeNode('Add', ['xw', 'pre'], ['pre'], 'add');
    }),
    mentions: ["node 'add' (Add) reads its own output 'pre'"],
  },
  {
    name: 'nodes out of topological order',
    model: () => withGraph((g) => {
      g.node = [g.node![1]!, g.node![0]!, g.node![2]!];
    }),
    mentions: ["node 'add' (Add) reads 'xw' before node 'matmul' (MatMul) produces it"],
  },
  {
    name: 'a dangling input',
    model: () => withGraph((g) => {
      g.node![0] = makeNode('MatMul', ['x', 'W_gone'], ['xw'], 'matmul');
    }),
    mentions: ["node 'matmul' (MatMul) reads 'W_gone', which is no graph input, initializer or output of an earlier node"],
  },
  {
    name: 'a graph output nothing produces',
    model: () => withGraph((g) => {
      g.output!.push(tensorInput('z', ['batch', 3]));
    }),
    mentions: ["graph output 'z' is not produced"],
  },
  {
    name: 'a value produced twice',
    model: () => withGraph((g) => {
      g.node!.splice(2, 0, makeNode('Relu', ['xw'], ['pre'], 'again'));
    }),
    mentions: ["value 'pre' is defined twice (again by node 'again' (Relu))"],
  },
  {
    name: 'an initializer shorter than its shape',
    model: () => withGraph((g) => {
      g.initializer![0]!.raw_data = g.initializer![0]!.raw_data!.subarray(0, 40);
    }),
    mentions: ["initializer 'W' holds 40 bytes of raw_data, its float32[4, 3] needs 48"],
  },
  {
    name: 'typed-field values fewer than the shape',
    model: () => withGraph((g) => {
      g.initializer![1] = { name: 'b', data_type: 1, dims: [3], float_data: [1, 2] };
    }),
    mentions: ["initializer 'b' holds 2 values in float_data, its float32[3] needs 3"],
  },
  {
    name: 'dims promising terabytes in a 1 KB file',
    // an unused initializer of 2^20 × 2^20 float32 and no data: 4 TiB declared
    model: () => withGraph((g) => {
      g.initializer!.push({ name: 'huge', data_type: 1, dims: [2 ** 20, 2 ** 20] });
    }),
    mentions: ["its tensors declare 4.00 TiB but the file holds", "initializer 'huge', float32[1048576, 1048576]"],
  },
  {
    name: 'a negative dimension',
    model: () => withGraph((g) => {
      g.initializer![1] = { ...g.initializer![1]!, dims: [-3] };
    }),
    mentions: ["initializer 'b' has dimension -3; dims must be non-negative integers"],
  },
  {
    name: 'dims whose product passes 2^53',
    model: () => withGraph((g) => {
      g.initializer!.push({ name: 'wide', data_type: 2, dims: [2 ** 30, 2 ** 30, 2 ** 10] });
    }),
    mentions: ["initializer 'wide' declares 1.18e+21 elements, more than 2^53"],
  },
  {
    name: 'an unknown data type',
    model: () => withGraph((g) => {
      g.initializer![1] = { ...g.initializer![1]!, data_type: 90 };
    }),
    mentions: ["initializer 'b' has unknown data type 90"],
  },
  {
    name: 'a Constant whose tensor is short',
    model: () => withGraph((g) => {
      g.initializer!.pop();
      g.node!.unshift(makeNode('Constant', [], ['b'], 'bias', [attr.tensor('value', { ...f32('', [3]), raw_data: new Uint8Array(8) })]));
    }),
    mentions: ["node 'bias' (Constant) attribute 'value' holds 8 bytes of raw_data, its float32[3] needs 12"],
  },
  {
    name: 'a broken initializer inside a subgraph',
    model: () => withGraph((g) => {
      const branch = (name: string, t: TensorProto): GraphProto => ({ name, node: [makeNode('Add', ['y0', 'k'], [`${name}_out`], `${name}_add`)], initializer: [t], output: [tensorInput(`${name}_out`, ['batch', 3])] });
      g.initializer!.push({ name: 'cond', data_type: 9, dims: [], raw_data: new Uint8Array([1]) });
      g.node![2] = makeNode('Relu', ['pre'], ['y0'], 'relu');
      g.node!.push(makeNode('If', ['cond'], ['y'], 'branch', [{ name: 'then_branch', type: 5, g: branch('then', { ...f32('k', [3]), raw_data: new Uint8Array(4) }) }, { name: 'else_branch', type: 5, g: branch('else', f32('k', [3])) }]));
    }),
    mentions: ["node 'branch' (If) attribute 'then_branch': initializer 'k' holds 4 bytes of raw_data, its float32[3] needs 12"],
  },
  {
    name: 'an operator domain ONNX Runtime does not know',
    model: () => withGraph((g) => {
      g.node![2] = makeNode('FancyRelu', ['pre'], ['y'], 'relu', [], 'ai.onnx.contrib');
    }, [{ domain: '', version: 17 }, { domain: 'ai.onnx.contrib', version: 1 }]),
    mentions: ["imports operator domain 'ai.onnx.contrib', which ONNX Runtime does not know"],
  },
  {
    name: 'an operator ONNX Runtime does not have',
    model: () => withGraph((g) => {
      g.node![2] = makeNode('Reluu', ['pre'], ['y'], 'relu');
    }),
    mentions: ['Reluu', 'No Op registered'],
  },
  {
    name: 'an unused tensor whose external data lies outside the model folder',
    model: () => withGraph((g) => {
      g.initializer!.push(external('unused', [4], '../../etc/passwd'));
    }),
    mentions: ["initializer 'unused' has external data location '../../etc/passwd' outside the model's folder"],
  },
  {
    name: 'external data at an absolute path',
    model: () => withGraph((g) => {
      g.initializer![0] = external('W', [4, 3], '/etc/passwd');
    }),
    mentions: ["initializer 'W' has external data location '/etc/passwd' outside the model's folder"],
  },
  {
    name: 'external data that does not exist',
    model: () => withGraph((g) => {
      g.initializer!.push(external('unused', [4], 'weights.bin'));
    }),
    mentions: ["initializer 'unused': external data file 'weights.bin' does not exist beside the model"],
  },
  {
    name: 'external data shorter than the tensor',
    model: (dir) => {
      writeFileSync(join(dir, 'weights.bin'), new Uint8Array(40));
      return withGraph((g) => {
        g.initializer![0] = external('W', [4, 3], 'weights.bin', { offset: '0', length: '48' });
      });
    },
    mentions: ["initializer 'W': external data 'weights.bin' holds 40 bytes, the tensor needs bytes 0 to 48"],
  },
  {
    name: 'an external length that disagrees with the shape',
    model: (dir) => {
      writeFileSync(join(dir, 'weights.bin'), new Uint8Array(64));
      return withGraph((g) => {
        g.initializer![0] = external('W', [4, 3], 'weights.bin', { offset: '0', length: '64' });
      });
    },
    mentions: ["initializer 'W' has external data length '64', its float32[4, 3] needs 48 bytes"],
  },
];

describe('invalid ONNX graphs are refused by every command before anything runs', () => {
  it('the intact tiny model passes inspect, eval and compress (so each case below breaks one thing)', async () => {
    const dir = caseDir('intact');
    const path = writeModel(join(dir, 'model.onnx'), modelOf(tinyGraph()));
    expect((await runCli(['inspect', path])).code).toBe(0);
    const ev = await runCli(['eval', path, '--data', data, '--no-latency']);
    expect(ev.code, ev.err).toBe(0);
    const out = join(dir, 'out.onnx');
    const c = await runCli(['compress', path, '-r', recipe, '-o', out]);
    expect(c.code, c.err).toBe(0);
    await (await ort.InferenceSession.create(out)).release();
  });

  for (const c of CASES) {
    it(`${c.name}: exit 2 naming it, input unchanged, nothing written`, async () => {
      const dir = caseDir(c.name.replace(/\W+/g, '-'));
      const path = writeModel(join(dir, 'model.onnx'), c.model(dir));
      const hash = sha256(path);
      const before = listing(dir);
      const out = join(dir, 'out.onnx');
      for (const args of [['inspect', path], ['eval', path, '--data', data, '--no-latency', '-o', join(dir, 'report.json')], ['compress', path, '-r', recipe, '-o', out, '--report', join(dir, 'r.json')]]) {
        const r = await runCli(args);
        // eval and compress load the model the way ONNX Runtime sessions do; inspect asks ONNX Runtime directly
        expectUserError(r, path, ...c.mentions);
      }
      expect(sha256(path)).toBe(hash);
      expect(listing(dir)).toEqual(before);
    });
  }
});

describe('inspect --lenient', () => {
  it('shows a broken model marked as broken, its problems listed and the broken tensors left out of the sizes', async () => {
    const dir = caseDir('lenient');
    const path = writeModel(join(dir, 'model.onnx'), withGraph((g) => {
      g.initializer!.push({ name: 'huge', data_type: 1, dims: [2 ** 20, 2 ** 20] });
      g.node = [g.node![1]!, g.node![0]!, g.node![2]!];
    }));
    const text = await runCli(['inspect', path, '--lenient']);
    expect(text.code, text.err).toBe(0);
    expect(text.out).toMatch(/^BROKEN: pare refuses this model \(3 problems;/);
    expect(text.out).toContain("  - its tensors declare 4.00 TiB but the file holds");
    expect(text.out).toContain("  - node 'add' (Add) reads 'xw' before node 'matmul' (MatMul) produces it");
    expect(text.out).not.toContain('TiB,');
    const json = JSON.parse((await runCli(['inspect', path, '--lenient', '--json'])).out);
    expect(json.problems).toHaveLength(3);
    // W (48 bytes) and b (12 bytes) are what is left once 'huge' is set aside
    expect(json.size.bytes_by_dtype).toEqual({ float32: 60 });
  });

  it('a model ONNX Runtime refuses is listed with ONNX Runtime\'s reason', async () => {
    const dir = caseDir('lenient-ort');
    const path = writeModel(join(dir, 'model.onnx'), withGraph((g) => {
      g.node![2] = makeNode('Reluu', ['pre'], ['y'], 'relu');
    }));
    const json = JSON.parse((await runCli(['inspect', path, '--lenient', '--json'])).out);
    expect(json.problems).toHaveLength(1);
    expect(json.problems[0]).toMatch(/^ONNX Runtime cannot load it: .*Reluu/);
  });

  it('a sound model shows no problems', async () => {
    const json = JSON.parse((await runCli(['inspect', FIXTURES.stories, '--lenient', '--json'])).out);
    expect(json.problems).toBeUndefined();
    expect(json.linears).toHaveLength(36);
  });
});

describe('pare\'s own models pass the checks', () => {
  const models: [string, () => string][] = [
    ['stories260K', () => FIXTURES.stories],
    ['stories260K-kv', () => fixturePath('stories260K-kv/model.onnx')],
    ['mnist-8', () => FIXTURES.mnist],
    ['the generated convnet', () => writeConvNet(join(tmp.dir, 'convnet.onnx'))],
  ];
  for (const [name, path] of models) {
    it(`${name}: no problems, and ONNX Runtime loads its skeleton`, async () => {
      const { model, bytes } = readOnnxFile(path());
      try {
        expect(modelProblems(model.proto, model.path, bytes.byteLength)).toEqual([]);
        expect(await runtimeLoadProblem(model)).toBeUndefined();
      } finally {
        model.close();
      }
    });
  }
});
