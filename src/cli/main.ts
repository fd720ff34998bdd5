/**
 * src/cli — layer 14, the top: commander wiring; the only code that prints or sets the exit code.
 */
import { Command, CommanderError } from 'commander';
import { isExpectedError } from '../errors.js';
import { RecipeError } from '../recipe/parse.js';
import { removeTempFiles } from '../util/atomic-write.js';
import { fsErrorMessage, isEnvironmentFsError } from '../util/fs-errors.js';
import { VERSION } from '../version.js';
import { registerCompressCommand } from './compress.js';
import { registerEvalCommand } from './eval.js';
import { registerGenerateCommand } from './generate.js';
import { formatInspection, inspectionWarnings, runInspect } from './inspect.js';
import { registerRecipeCommands } from './recipe.js';
import { registerReportCommands } from './report.js';
import { registerSweepCommand } from './sweep.js';
import { RunInterrupted, type RunHooks } from '../pass/hooks.js';
import type { Io } from './io.js';

export type { Io, RunHooks };

const processIo: Io = {
  out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
};

function buildProgram(io: Io, setCode: (code: number) => void, hooks?: RunHooks): Command {
  const program = new Command()
    .name('pare')
    .description('Compress neural networks into checkpoints ONNX Runtime runs, with a report you can diff in CI')
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });

  program
    .command('inspect')
    .description('sizes, parameters by dtype, ops, inputs/outputs and linear layers of an ONNX or safetensors checkpoint')
    .argument('<model>', '.onnx or .safetensors file')
    .option('--json', 'print one JSON document')
    .option('--lenient', 'show a model pare would refuse, marked as broken, with its problems listed')
    .action(async (path: string, opts: { json?: boolean; lenient?: boolean }) => {
      const result = await runInspect(path, { lenient: opts.lenient });
      for (const w of inspectionWarnings(result)) io.err(w);
      io.out(opts.json ? JSON.stringify(result, null, 2) : formatInspection(result));
      setCode(0);
    });

  registerEvalCommand(program, io, setCode);
  registerGenerateCommand(program, io, setCode);
  registerCompressCommand(program, io, setCode, hooks);
  registerSweepCommand(program, io, setCode, hooks);
  registerRecipeCommands(program, io, setCode);
  registerReportCommands(program, io, setCode);
  return program;
}

/**
 * The single exit point: returns the process exit code. 0 ok, 1 bug, 2 user error, 3 budget failed.
 * `hooks` let a test hold the run at a known point; `pare` passes none.
 */
export async function run(argv: string[], io: Io = processIo, hooks?: RunHooks): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => (code = c), hooks);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (isExpectedError(e)) {
      // a recipe's errors are listed one per line (each located); every other message is one line
      io.err(`pare: ${e instanceof RecipeError ? e.message : oneLine(e.message)}`);
      return e.exitCode;
    }
    // a hook stopped the run as a signal would: the work folder stays for --resume
    if (e instanceof RunInterrupted) {
      io.err(`pare: interrupted (${e.message}); no output was written`);
      return 130;
    }
    // a filesystem failure no writer turned into a UserError is still the environment's, not a bug
    if (isEnvironmentFsError(e)) {
      io.err(`pare: ${fsErrorMessage(e.code!, e.path ?? '(unknown path)', e.syscall ?? 'access the file')}`);
      return 2;
    }
    io.err(`pare: internal error: ${(e as Error)?.stack ?? String(e)}`);
    return 1;
  }
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, '; ');
}

export async function main(argv: string[] = process.argv.slice(2), hooks?: RunHooks): Promise<void> {
  // an interrupted run removes the temp files it was writing; outputs only ever appear by rename
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(signal, () => {
      removeTempFiles();
      // the work folder stays, so --resume continues from the last completed pass
      process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}pare: interrupted (${signal}); no output was written\n`);
      process.exit(code);
    });
  }
  process.exitCode = await run(argv, processIo, hooks);
}
