import { Command, CommanderError } from 'commander';
import { isExpectedError } from '../errors.js';
import { VERSION } from '../version.js';
import { formatInspection, runInspect } from './inspect.js';

/** Output sinks, so tests can run the CLI in-process. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

const processIo: Io = {
  out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
};

function buildProgram(io: Io, setCode: (code: number) => void): Command {
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
    .action((path: string, opts: { json?: boolean }) => {
      const result = runInspect(path);
      io.out(opts.json ? JSON.stringify(result, null, 2) : formatInspection(result));
      setCode(0);
    });

  return program;
}

/** The single exit point: returns the process exit code. 0 ok, 1 bug, 2 user error, 3 budget failed. */
export async function run(argv: string[], io: Io = processIo): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (isExpectedError(e)) {
      io.err(`pare: ${e.message}`);
      return e.exitCode;
    }
    io.err(`pare: internal error: ${(e as Error)?.stack ?? String(e)}`);
    return 1;
  }
}

export async function main(): Promise<void> {
  process.exitCode = await run(process.argv.slice(2));
}
