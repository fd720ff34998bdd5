import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { decodeModelProto, readOnnx } from '../../src/model/onnx-io.js';
import { parseRecipe, loadRecipe } from '../../src/recipe/parse.js';
import { PASSES } from '../../src/pipeline/registry.js';
import { expandSchedules } from '../../src/pipeline/schedule.js';
import { pointCost } from '../../src/pipeline/sweep-cost.js';
import type { Report } from '../../src/report/schema.js';
import { ort } from '../../src/runtime/ort.js';
import { sha256File } from '../../src/util/hash.js';
import { fixturePath, FIXTURES, tempDir } from '../helpers.js';
import { runCli } from '../cli/run-cli.js';
import { recipeError } from '../recipe/recipe-error.js';

/** stories260K with a KV cache: its teacher samples distillation text fast */
const MODEL = fixturePath('stories260K-kv/model.onnx');
const tmp = tempDir('pare-schedule-');
afterAll(() => tmp.cleanup());

function file(name: string, text: string): string {
  const path = join(tmp.dir, name);
  writeFileSync(path, text);
  return path;
}

// iterative Kronecker calibrates each stage on the model the earlier stages left
const CALIBRATION = `calibration:
  data: { kind: text, path: ${FIXTURES.validHead}, tokenizer: ${FIXTURES.tok512}, select: "1-4", segment: 32 }
  samples: 4
`;
const KRON = '{ m1: 8, n1: 4, terms: 2, mode: iterative, als_iterations: 2 }';
const DISTILL = '{ steps: 2, batch_size: 2, seq_len: 16, samples: 4, warmup: 0, checkpoint_every: 0 }';

const SCHEDULED = `version: 1
${CALIBRATION}passes:
  - pass: decompose.kronecker
    targets: ["layers.*.self_attn.q_proj", "layers.*.mlp.down_proj"]
    params: ${KRON}
    schedule: { blocks_per_stage: 3, distill: ${DISTILL} }
`;

/** the same schedule written out: blocks 0–2, distil, blocks 3–4, distil */
const targetsOf = (blocks: number[]) => JSON.stringify(blocks.flatMap((b) => [`layers.${b}.self_attn.q_proj`, `layers.${b}.mlp.down_proj`]));
const BY_HAND = `version: 1
${CALIBRATION}passes:
  - pass: decompose.kronecker
    targets: ${targetsOf([0, 1, 2])}
    params: ${KRON}
  - pass: distill.kd
    targets: ["layers.*"]
    params: ${DISTILL}
  - pass: decompose.kronecker
    targets: ${targetsOf([3, 4])}
    params: ${KRON}
  - pass: distill.kd
    targets: ["layers.*"]
    params: ${DISTILL}
`;


describe('schedule: a pass in stages of decoder blocks, each followed by distill.kd', () => {
  it('expands into the hand-written stage passes and writes the same bytes; the report shows each stage and the cost line', async () => {
    const runs = [];
    for (const [name, text] of [['scheduled', SCHEDULED], ['by-hand', BY_HAND]] as const) {
      const out = join(tmp.dir, `${name}.onnx`);
      const report = join(tmp.dir, `${name}.json`);
      const r = await runCli(['compress', MODEL, '-r', file(`${name}.yaml`, text), '-o', out, '--report', report]);
      expect(r.err + r.out).not.toContain('internal error');
      expect(r.code, r.err).toBe(0);
      runs.push({ out, report: JSON.parse(readFileSync(report, 'utf8')) as Report, md: r.out });
    }
    const [scheduled, byHand] = runs as [(typeof runs)[0], (typeof runs)[0]];
    expect(sha256File(scheduled.out)).toBe(sha256File(byHand.out));
    // the same passes on the same layers
    const shape = (rep: Report) => rep.passes.map((p) => [p.id, p.layers.map((l) => l.name)]);
    expect(shape(scheduled.report)).toEqual(shape(byHand.report));
    expect(scheduled.report.passes.map((p) => p.stage)).toEqual([
      { entry: 0, index: 1, count: 2, blocks: [0, 1, 2], role: 'pass' },
      { entry: 0, index: 1, count: 2, blocks: [0, 1, 2, 3, 4], role: 'distill' },
      { entry: 0, index: 2, count: 2, blocks: [3, 4], role: 'pass' },
      { entry: 0, index: 2, count: 2, blocks: [0, 1, 2, 3, 4], role: 'distill' },
    ]);
    expect(scheduled.report.passes[1]!.summary?.steps).toBe(2);
    // the cost line sums its stages
    const [cost] = scheduled.report.schedules!;
    const sum = (role: string, key: 'ms' | 'cpu_ms') => scheduled.report.passes.filter((p) => p.stage?.role === role).reduce((s, p) => s + p[key]!, 0);
    expect(cost).toMatchObject({ entry: 0, pass: 'decompose.kronecker', stages: 2 });
    expect(cost!.distill_ms).toBeCloseTo(sum('distill', 'ms'), 6);
    expect(cost!.distill_cpu_ms).toBeCloseTo(sum('distill', 'cpu_ms'), 6);
    expect(cost!.pass_ms).toBeCloseTo(sum('pass', 'ms'), 6);
    expect(byHand.report.schedules).toBeUndefined();
    expect(scheduled.md).toContain('decompose.kronecker (stage 2/2: blocks 3, 4)');
    expect(scheduled.md).toContain('distill.kd (after stage 1/2)');
    expect(scheduled.md).toMatch(/\*\*schedule:\*\* passes\[0\] decompose\.kronecker in 2 stages: the pass [\d.]+ m?s \(CPU [\d.]+ m?s\), distillation [\d.]+ m?s \(CPU [\d.]+ m?s\)/);
    // every targeted layer of every block was factored
    const names = readOnnx(scheduled.out).graph.initializer!.map((t) => t.name ?? '');
    for (let b = 0; b < 5; b++) for (const l of ['self_attn.q_proj', 'mlp.down_proj']) expect(names).toContain(`layers.${b}.${l}.kron_a`);
  }, 60_000);

  it('runtime dense_at_load on every block linear: the stages and a final distill.kd (whose targets then match no layer) train the stored factors; ORT runs the dense graph, the file stays factored', async () => {
    const text = `version: 1
${CALIBRATION}passes:
  - pass: decompose.kronecker
    targets: ["layers.*"]
    params: { m1: 4, n1: 4, terms: 2, mode: iterative, als_iterations: 2, runtime: dense_at_load }
    schedule: { blocks_per_stage: 3, distill: ${DISTILL} }
  - pass: distill.kd
    targets: ["layers.*"]
    params: ${DISTILL}
`;
    const out = join(tmp.dir, 'at-load.onnx');
    const report = join(tmp.dir, 'at-load.json');
    const r = await runCli(['compress', MODEL, '-r', file('at-load.yaml', text), '-o', out, '--report', report]);
    expect(r.code, r.err).toBe(0);
    const rep = JSON.parse(readFileSync(report, 'utf8')) as Report;
    const projections = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
    // the distillation after stage 2 and the final one trained the factors of all 35 layers
    const distills = rep.passes.filter((x) => x.id === 'distill.kd');
    expect(distills).toHaveLength(3);
    for (const p of distills.slice(1)) {
      const trained = p.layers.map((l) => l.name);
      for (let b = 0; b < 5; b++) for (const l of projections) expect(trained).toEqual(expect.arrayContaining([`layers.${b}.${l}.kron_a`, `layers.${b}.${l}.kron_b`]));
    }
    const optimizedOps = async (path: string) => {
      const optimized = join(tmp.dir, 'optimized.onnx');
      await (await ort.InferenceSession.create(path, { optimizedModelFilePath: optimized, graphOptimizationLevel: 'basic', logSeverityLevel: 4 })).release();
      return (decodeModelProto(readFileSync(optimized), optimized).graph?.node ?? []).map((n) => n.op_type).sort();
    };
    expect(await optimizedOps(out)).toEqual(await optimizedOps(MODEL));
    // per block 2 terms of 4×4 ⊗ (m/4)×(n/4) store 5888 of the 45312 weights: 5·39424·4 = 788480 fewer bytes; the expansion graph costs a few KB
    expect(statSync(MODEL).size - statSync(out).size).toBeGreaterThan(750_000);
  }, 180_000);

  it('schedule params are validated, each error one line at its field', () => {
    const entry = (schedule: string, pass = 'decompose.kronecker') => `version: 1
passes:
  - pass: ${pass}
    params: { m1: 8 }
    schedule: ${schedule}
`;
    expect(recipeError(entry('{ blocks_per_stage: 0 }')).message).toMatch(/^recipe\.yaml:5:\d+ passes\[0\]\.schedule\.blocks_per_stage: .*(>=|at least) ?1/m);
    expect(recipeError(entry('{ distill: { steps: 0 } }')).message).toMatch(/^recipe\.yaml:5:\d+ passes\[0\]\.schedule\.distill\.steps: /m);
    expect(recipeError(entry('{ distill: { stpes: 10 } }')).message).toMatch(/^recipe\.yaml:5:\d+ passes\[0\]\.schedule\.distill\.stpes: unknown key/m);
    expect(recipeError(entry('{ blocks: 2 }')).message).toMatch(/^recipe\.yaml:5:\d+ passes\[0\]\.schedule\.blocks: unknown key/m);
    expect(recipeError(entry('{ distill: { data: calibration } }')).message).toMatch(/passes\[0\]\.schedule\.distill\.data: distill\.kd with data "calibration" needs calibration data/);
    expect(recipeError(entry('{}', 'distill.kd').replace('{ m1: 8 }', '{}')).message).toMatch(/passes\[0\]\.schedule: distill\.kd cannot be scheduled in stages/);
    for (const e of [recipeError(entry('{ blocks_per_stage: 0, distill: { steps: 0 } }'))]) expect(e.errors).toHaveLength(2);
    const ok = parseRecipe(entry('{ distill: { steps: 5 } }'), 'recipe.yaml', PASSES);
    expect(ok.passes[0]!.schedule).toMatchObject({ blocks_per_stage: 1, distill: { params: { steps: 5, batch_size: 8 } } });
  });

  it("a sweep point's cost counts the distillation stages its schedule expands into", async () => {
    const path = file('sweep.yaml', SCHEDULED);
    const r = await runCli(['sweep', MODEL, '-r', path, '--set', 'passes[0].params.terms=2,3', '-o', join(tmp.dir, 'sweep'), '--dry-run', '--json']);
    expect(r.code, r.err).toBe(0);
    const costs = (JSON.parse(r.out) as { points: { cost: number }[] }).points.map((p) => p.cost);
    const recipe = loadRecipe(path, PASSES);
    const expanded = pointCost(expandSchedules(readOnnx(MODEL), recipe));
    // 2 stages: 2 distillations of 2 steps × 2 × 16 tokens, and the pass twice
    expect(expanded).toBeGreaterThan(pointCost(recipe));
    expect(costs).toEqual([expanded, expanded]);
  });

  it('targets outside the decoder blocks are refused with the fix', async () => {
    const path = file('lm-head.yaml', `version: 1
passes:
  - pass: decompose.kronecker
    targets: ["layers.4.*", "lm_head"]
    params: { m1: 8 }
    schedule: { blocks_per_stage: 2 }
`);
    const model = readOnnx(MODEL);
    const recipe = loadRecipe(path, PASSES);
    expect(() => expandSchedules(model, recipe)).toThrow(UserError);
    expect(() => expandSchedules(model, recipe)).toThrow(/passes\[0\]\.schedule: targets select 'lm_head', which is in no decoder block .*add it to ignore/);
    const r = await runCli(['compress', MODEL, '-r', path, '-o', join(tmp.dir, 'x.onnx')]);
    expect(r.code).toBe(2);
    expect(r.err.trim().split('\n')).toHaveLength(1);
  });
});
