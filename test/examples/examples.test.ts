import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { readDocument } from '../../src/report/io.js';
import type { SweepReport } from '../../src/report/sweep.js';
import { PARE_BIN } from '../cli/pare-process.js';
import { tempDir } from '../helpers.js';

/**
 * The CI examples are valid YAML of the shape each engine expects, and the pare commands in them
 * are run here as written (on stories260K, examples/sweep-recipe.yaml's small settings): the shards
 * as separate processes with the variables the engine would set, then the merge.
 */
const ROOT = resolve(__dirname, '../..');
const tmp = tempDir('pare-examples-');
afterAll(() => tmp.cleanup());

/** A folder laid out like the checkout the example's commands run in (fixtures/ and examples/ linked). */
function checkout(dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const f of ['fixtures', 'examples']) symlinkSync(join(ROOT, f), join(dir, f));
  return dir;
}

/** the runner's own shard variables (a GitLab parallel job running this suite has CI_NODE_*) must not leak into the example's */
const SHARD_VARS = ['PARE_SHARD_INDEX', 'PARE_SHARD_COUNT', 'JOB_COMPLETION_INDEX', 'JOB_COMPLETIONS', 'CI_NODE_INDEX', 'CI_NODE_TOTAL'];
const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !SHARD_VARS.includes(k)));

/** A shell script as CI runs it, with `npx pare` and `pare` being this checkout's built CLI; the process group dies on timeout. */
function shell(script: string, cwd: string, env: Record<string, string>, timeoutMs = 240_000): Promise<{ code: number | null; err: string }> {
  const prelude = `npx() { if [ "$1" = pare ]; then shift; node ${JSON.stringify(PARE_BIN)} "$@"; else echo "this test runs only npx pare, not npx $1" >&2; return 127; fi; }\npare() { node ${JSON.stringify(PARE_BIN)} "$@"; }\n`;
  return new Promise((done, fail) => {
    const child = spawn('bash', ['-e', '-c', prelude + script], { cwd, env: { ...baseEnv, ...env }, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
      fail(new Error(`${script} ran past ${timeoutMs} ms: ${err.slice(-2000)}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, err });
    });
  });
}

function sweepAt(path: string): SweepReport {
  const doc = readDocument(path);
  if (doc.kind !== 'sweep') throw new Error(`${path} is not a sweep`);
  return doc.sweep;
}

interface Step {
  name?: string;
  run?: string;
  uses?: string;
  env?: Record<string, string>;
  id?: string;
}

let github: SweepReport | undefined;

describe('examples/github-actions-sweep.yml', () => {
  const workflow = parse(readFileSync(join(ROOT, 'examples/github-actions-sweep.yml'), 'utf8')) as {
    jobs: { sweep: { strategy: { matrix: { shard: number[] } }; steps: Step[] }; merge: { needs: string; steps: Step[] } };
  };
  const step = (job: Step[], name: string) => {
    const s = job.find((x) => x.name === name);
    if (!s?.run) throw new Error(`no step '${name}' with a run script`);
    return s as Step & { run: string };
  };

  it('is a matrix of shards, then a merge job that posts the Markdown diff', () => {
    const { sweep, merge } = workflow.jobs;
    expect(sweep.strategy.matrix.shard).toEqual([1, 2, 3]);
    expect(merge.needs).toBe('sweep');
    expect(step(sweep.steps, 'Sweep this shard').env).toEqual({ PARE_SHARD_INDEX: '${{ matrix.shard }}', PARE_SHARD_COUNT: '${{ strategy.job-total }}' });
    expect(step(merge.steps, 'Post the diff on the pull request').run).toMatch(/gh pr comment .* --body-file diff\.md/);
    // every pare command is in a step this test runs, and those steps need no expression evaluated
    const pareSteps = [...sweep.steps, ...merge.steps].filter((s) => s.run?.includes('npx pare'));
    expect(pareSteps.map((s) => s.name)).toEqual(['Sweep this shard', 'Merge the shards', 'Diff against main']);
    for (const s of pareSteps) expect(s.run).not.toContain('${{');
  });

  it("its commands run: 3 shard jobs, the merge, the HTML, and the diff against main's sweep", async () => {
    const { sweep, merge } = workflow.jobs;
    const shards = sweep.strategy.matrix.shard;
    const sweepStep = step(sweep.steps, 'Sweep this shard');
    const jobs = shards.map((shard) => {
      const dir = checkout(join(tmp.dir, 'github', `shard-${shard}`));
      const env = Object.fromEntries(Object.entries(sweepStep.env!).map(([k, v]) => [k, v.replace('${{ matrix.shard }}', String(shard)).replace('${{ strategy.job-total }}', String(shards.length))]));
      return shell(sweepStep.run, dir, env).then((r) => ({ ...r, dir }));
    });
    const done = await Promise.all(jobs);
    for (const r of done) expect(r.code, r.err).toBe(0);

    // download-artifact with merge-multiple: every shard's sweep-out in one folder
    const dir = checkout(join(tmp.dir, 'github', 'merge'));
    for (const r of done) cpSync(join(r.dir, 'sweep-out'), join(dir, 'sweep-out'), { recursive: true });
    const merged = await shell(step(merge.steps, 'Merge the shards').run, dir, {});
    expect(merged.code, merged.err).toBe(0);
    github = sweepAt(join(dir, 'sweep.json'));
    expect(github.points).toHaveLength(6);
    expect(readFileSync(join(dir, 'sweep.md'), 'utf8')).toContain('## pare sweep');
    expect(readFileSync(join(dir, 'sweep.html'), 'utf8')).toContain('<svg class="chart scatter"');

    const diff = step(merge.steps, 'Diff against main').run;
    const output = join(dir, 'github-output');
    writeFileSync(output, '');
    expect((await shell(diff, dir, { GITHUB_OUTPUT: output })).code).toBe(0);
    expect(readFileSync(output, 'utf8')).toBe('code=0\n');
    expect(readFileSync(join(dir, 'diff.md'), 'utf8')).toBe('No sweep from main to compare with yet.\n');
    // main's sweep: this one, so every budget holds on every point
    mkdirSync(join(dir, 'main-sweep'));
    cpSync(join(dir, 'sweep.json'), join(dir, 'main-sweep', 'sweep.json'));
    writeFileSync(output, '');
    expect((await shell(diff, dir, { GITHUB_OUTPUT: output })).code).toBe(0);
    expect(readFileSync(output, 'utf8')).toBe('code=0\n');
    const md = readFileSync(join(dir, 'diff.md'), 'utf8');
    expect(md).toContain('## pare sweep diff');
    expect(md).toContain('✅ every budget holds on all 6 points both sweeps have');
  });
});

describe('examples/k8s-sweep-job.yaml', () => {
  const docs = parseAllDocuments(readFileSync(join(ROOT, 'examples/k8s-sweep-job.yaml'), 'utf8'));
  type Container = { command: string[]; args: string[]; workingDir: string; env?: { name: string; value: string }[]; volumeMounts: { name: string; mountPath: string }[] };
  type Job = { kind: string; metadata: { name: string; labels: Record<string, string> }; spec: { completionMode?: string; completions?: number; parallelism?: number; template: { spec: { containers: Container[]; volumes: { name: string; persistentVolumeClaim: { claimName: string } }[] } } } };
  const objects = docs.map((d) => {
    expect(d.errors).toEqual([]);
    return d.toJS() as Job;
  });
  const [claim, indexed, merge] = objects as [Job, Job, Job];

  it('is a volume claim, an Indexed Job whose pods sweep --shard-from-env into it, and a merge Job', () => {
    expect(objects.map((o) => o.kind)).toEqual(['PersistentVolumeClaim', 'Job', 'Job']);
    expect(indexed.spec).toMatchObject({ completionMode: 'Indexed', completions: 3, parallelism: 3 });
    const pod = indexed.spec.template.spec;
    const sweep = pod.containers[0]!;
    expect(sweep.args[0]).toMatch(/^pare sweep .* --shard-from-env$/);
    // Kubernetes sets JOB_COMPLETION_INDEX itself; the count must be passed and equal completions
    expect(sweep.env).toEqual([{ name: 'JOB_COMPLETIONS', value: String(indexed.spec.completions) }]);
    for (const job of [indexed, merge]) {
      expect(job.spec.template.spec.volumes).toEqual([{ name: 'sweep', persistentVolumeClaim: { claimName: claim.metadata.name } }]);
      expect(job.spec.template.spec.containers[0]!.volumeMounts).toEqual([{ name: 'sweep', mountPath: '/sweep' }]);
    }
    expect([claim, indexed, merge].map((o) => o.metadata.labels.stage)).toEqual(['sweep', 'sweep', 'merge']);
    expect(merge.spec.template.spec.containers[0]!.args[0]).toMatch(/^pare report merge /);
  });

  it('its commands run: 3 pods with JOB_COMPLETION_INDEX 0..2 on one volume, then the merge; the same points and bytes as the GitHub Actions shards', async () => {
    const volume = join(tmp.dir, 'k8s', 'volume');
    mkdirSync(volume, { recursive: true });
    const container = (job: Job) => job.spec.template.spec.containers[0]!;
    const command = (c: Container) => {
      expect(c.command).toEqual(['sh', '-c']);
      return c.args[0]!.replaceAll(`${c.volumeMounts[0]!.mountPath}/`, `${volume}/`);
    };
    const workdir = checkout(join(tmp.dir, 'k8s', container(indexed).workingDir.replace(/\//g, '_')));
    const podEnv = Object.fromEntries((container(indexed).env ?? []).map((e) => [e.name, e.value]));
    const pods = await Promise.all(Array.from({ length: indexed.spec.completions! }, (_, i) => shell(command(container(indexed)), workdir, { ...podEnv, JOB_COMPLETION_INDEX: String(i) })));
    for (const p of pods) expect(p.code, p.err).toBe(0);
    const m = await shell(command(container(merge)), workdir, {});
    expect(m.code, m.err).toBe(0);
    const sweep = sweepAt(join(volume, 'sweep.json'));
    expect(sweep.points).toHaveLength(6);
    expect(existsSync(join(volume, 'sweep.html'))).toBe(true);
    expect(readdirSync(join(volume, 'stats')).length).toBeGreaterThan(0);
    if (github) expect(sweep.points.map((p) => [p.id, p.output!.sha256])).toEqual(github.points.map((p) => [p.id, p.output!.sha256]));
  });
});
