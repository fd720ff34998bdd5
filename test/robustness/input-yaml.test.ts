import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { datasetSpecFromCli } from '../../src/data/cli-spec.js';
import { UserError } from '../../src/errors.js';
import { INPUT_LIMITS } from '../../src/util/read-file.js';
import { parseYamlBounded, YAML_LIMITS, YamlError } from '../../src/util/yaml.js';
import { runCli } from '../cli/run-cli.js';
import { FIXTURES, tempDir } from '../helpers.js';
import { expectUserError, listing, sha256 } from './input-helpers.js';

/**
 * Issue #24 item 3: recipes and dataset spec files are read with a size cap, alias, depth and
 * expansion limits, and every problem is a user error at file:line:col, never an internal error.
 */

const tmp = tempDir('pare-yaml-');
afterAll(() => tmp.cleanup());

function file(name: string, text: string): string {
  const p = join(tmp.dir, name);
  writeFileSync(p, text);
  return p;
}

/** "billion laughs": 9 levels of 9 aliases, 90 aliases in all, 9⁹ ≈ 387 M values once expanded */
const BOMB = ['version: 1', 'l0: &l0 [x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 9 }, (_, i) => `l${i + 1}: &l${i + 1} [${Array(9).fill(`*l${i}`).join(', ')}]`), 'passes: []', ''].join('\n');

const compress = (recipe: string) => runCli(['compress', FIXTURES.stories, '-r', recipe, '-o', join(tmp.dir, 'out.onnx')]);

describe('recipes are parsed with bounds', () => {
  it('an alias bomb is a recipe error at the alias that crosses the limit, in bounded time', async () => {
    const recipe = file('bomb.yaml', BOMB);
    const before = listing(tmp.dir);
    const hash = sha256(recipe);
    const t0 = performance.now();
    const r = await compress(recipe);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(r.code, r.err).toBe(2);
    expect(r.err).not.toMatch(/internal error|Excessive alias count|\n\s+at /);
    // l5 (line 7) is the first level past 200,000 values (l4 holds 66,430): its 4th alias crosses
    expect(r.err).toContain(`${recipe}:7:25 YAML expands to more than ${YAML_LIMITS.values} values (through its aliases)`);
    expect(listing(tmp.dir)).toEqual(before);
    expect(sha256(recipe)).toBe(hash);
  });

  it('more aliases than the limit, each harmless, are refused at the first one past it', () => {
    const text = `version: 1\na: &a 1\nb: [${Array(YAML_LIMITS.aliases + 1).fill('*a').join(', ')}]\npasses: []\n`;
    const e = (() => {
      try {
        parseYamlBounded(text, 'many.yaml');
      } catch (err) {
        return err as YamlError;
      }
      throw new Error('parsed');
    })();
    expect(e).toBeInstanceOf(YamlError);
    // the 101st "*a" starts at column 5 + 4·100
    expect(e.message).toBe(`many.yaml:3:${5 + 4 * YAML_LIMITS.aliases} more than ${YAML_LIMITS.aliases} YAML aliases (*name); write the values out`);
  });

  it('a few aliases, as a real recipe might use them, parse as before', async () => {
    const recipe = file('anchors.yaml', 'version: 1\npasses:\n  - pass: prune.magnitude\n    targets: &blocks ["layers.*"]\n    params: &half { sparsity: 0.5 }\n  - pass: quantize.cast\n    targets: *blocks\n');
    const r = await runCli(['recipe', 'validate', recipe, '--model', FIXTURES.stories]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('2 passes');
  });

  it('nesting deeper than the limit is refused at the node that crosses it', () => {
    // the top-level map is one level, so `a:` holds at most 63 nested sequences
    const n = YAML_LIMITS.depth;
    expect(() => parseYamlBounded(`a: ${'['.repeat(n)}1${']'.repeat(n)}\n`, 'deep.yaml')).toThrow(`deep.yaml:1:${3 + n} YAML nested deeper than ${n} levels`);
    expect(parseYamlBounded(`a: ${'['.repeat(n - 1)}1${']'.repeat(n - 1)}\n`, 'ok.yaml').data).toBeDefined();
  });

  it('half a million open brackets are a syntax error with a position, not a stack overflow', async () => {
    const recipe = file('brackets.yaml', `${'['.repeat(500_000)}\n`);
    const r = await compress(recipe);
    expect(r.code, r.err).toBe(2);
    expect(r.err).not.toMatch(/internal error|\n\s+at /);
    expect(r.err).toMatch(new RegExp(`${recipe.replace(/[.]/g, '\\.')}:\\d+:\\d+ YAML`));
  });

  it('a recipe over the size cap is refused before it is parsed', async () => {
    // 1.9 M entries would take seconds and gigabytes to parse; the cap refuses it at once
    const recipe = file('huge.yaml', `version: 1\npasses: []\nextra:\n${'  - {a: 1}\n'.repeat(200_000)}`);
    const t0 = performance.now();
    const r = await compress(recipe);
    expect(performance.now() - t0).toBeLessThan(2000);
    expectUserError(r, `${recipe}: recipe of 2.10 MiB is larger than pare reads (1.00 MiB); a recipe is a short YAML file`);
    expect(INPUT_LIMITS.yaml).toBe(2 ** 20);
  });
});

describe('dataset spec files are parsed with the same bounds', () => {
  it('an alias bomb in a spec is one line at its line and column', () => {
    const spec = file('bomb.data.yaml', BOMB.replace('version: 1', 'kind: text'));
    expect(() => datasetSpecFromCli(spec, {}, tmp.dir)).toThrow(UserError);
    expect(() => datasetSpecFromCli(spec, {}, tmp.dir)).toThrow(`${spec}:7:25 not a readable dataset spec (YAML expands to more than ${YAML_LIMITS.values} values (through its aliases))`);
  });

  it('through pare eval: exit 2 with one line', async () => {
    const spec = file('deep.data.yaml', `kind: ${'['.repeat(100)}text${']'.repeat(100)}\n`);
    expectUserError(await runCli(['eval', FIXTURES.stories, '--data', spec, '--no-latency']), `${spec}:1:`, 'YAML nested deeper than 64 levels');
  });

  it('a spec over the size cap is refused', async () => {
    const spec = file('big.data.yaml', `kind: text\n# ${'x'.repeat(2 ** 20)}\n`);
    expectUserError(await runCli(['eval', FIXTURES.stories, '--data', spec, '--no-latency']), `${spec}: dataset spec of 1.00 MiB is larger than pare reads (1.00 MiB)`);
  });
});
