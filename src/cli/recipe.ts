import type { Command } from 'commander';
import { loadModel } from '../model/load.js';
import { checkRuntimeLoads } from '../runtime/load-check.js';
import { describePasses, type PassDescription } from '../recipe/describe.js';
import { loadRecipe } from '../recipe/parse.js';
import { expandSweep } from '../recipe/sweep-axes.js';
import { PASSES } from '../pipeline/registry.js';
import { checkLayersUpFront, passesCheckedUpFront, planRecipe } from '../pipeline/plan.js';
import { expandSchedules } from '../pipeline/schedule.js';
import { entryWhere } from '../recipe/stage-path.js';
import type { Io } from './io.js';
import { table } from './table.js';

export function formatPasses(passes: PassDescription[]): string {
  return passes
    .map((p) => {
      const head = `${p.id}${p.needsCalibration ? '  (needs calibration)' : ''}\n  ${p.summary}`;
      const rows = p.params.map((q) => [q.name, q.type, q.required ? 'required' : q.default !== undefined ? JSON.stringify(q.default) : '-', q.description ?? '']);
      return rows.length ? `${head}\n${table(['param', 'type', 'default', 'meaning'], rows).replace(/^/gm, '  ')}` : head;
    })
    .join('\n\n');
}

export function registerRecipeCommands(program: Command, io: Io, setCode: (c: number) => void): void {
  const recipe = program.command('recipe').description('check recipes and list the passes they can use');
  recipe
    .command('validate')
    .description('check a recipe: YAML, every pass id and params, and (with --model) that each pass selects layers its params fit')
    .argument('<recipe>', 'recipe .yaml file')
    .option('--model <model>', 'also check each pass\'s targets and params against this model\'s layers')
    .action(async (path: string, opts: { model?: string }) => {
      const loaded = loadRecipe(path, PASSES);
      const lines = [`${path}: ok, ${loaded.recipe.passes.length} pass${loaded.recipe.passes.length === 1 ? '' : 'es'}`];
      // a sweep: section's points are validated as pare sweep would
      if (loaded.recipe.sweep) lines.push(`  sweep: ${expandSweep(loaded, [], PASSES).points.length} points`);
      if (opts.model) {
        const model = loadModel(opts.model);
        try {
          if (model.format === 'onnx') await checkRuntimeLoads(model);
          // a schedule's stages, as the run expands them on this model
          const expanded = expandSchedules(model, loaded);
          const plan = planRecipe(model, expanded);
          checkLayersUpFront(model, expanded);
          const checked = passesCheckedUpFront(expanded);
          const where = (i: number) => entryWhere(expanded.recipe.passes[i]!, i);
          for (const p of plan) {
            const later = p.index >= checked ? ` (params checked against its layers when it runs: ${where(checked - 1)} changes layers)` : '';
            lines.push(`  ${where(p.index)} ${p.pass}: ${p.layers.length} layers${later}`);
          }
        } finally {
          model.close();
        }
      } else {
        loaded.recipe.passes.forEach((p, i) => lines.push(`  passes[${i}] ${p.pass} targets ${JSON.stringify(p.targets)}`));
      }
      io.out(lines.join('\n'));
      setCode(0);
    });
  recipe
    .command('passes')
    .description('every pass id, what it does, and its params with defaults')
    .option('--json', 'print one JSON document')
    .action((opts: { json?: boolean }) => {
      const passes = describePasses(PASSES);
      io.out(opts.json ? JSON.stringify(passes, null, 2) : formatPasses(passes));
      setCode(0);
    });
}
