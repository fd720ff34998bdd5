import { readFileSync, writeFileSync } from 'node:fs';
import { main } from '../../src/cli/main.js';

/**
 * `pare` that reports its peak memory, for the bounded-reading tests:
 *   PARE_HWM_FILE=<file> node dist/test/robustness/hwm-entry.js <pare arguments…>
 * runs the CLI and, as the process exits, writes its VmHWM (peak resident set, kB, from
 * /proc/self/status) to the file. Built by tsc with the rest of test/.
 */
const out = process.env.PARE_HWM_FILE;
if (!out) throw new Error('hwm-entry.js needs PARE_HWM_FILE');
process.on('exit', () => {
  const kb = /VmHWM:\s*(\d+)\s*kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  writeFileSync(out, kb ?? 'unknown');
});
await main(process.argv.slice(2));
