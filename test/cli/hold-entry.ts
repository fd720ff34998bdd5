import { main } from '../../src/cli/main.js';

/**
 * `pare` that holds at a known point, for the interruption tests:
 *   node dist/test/cli/hold-entry.js <pass|step> <n> <pare arguments…>
 * runs the CLI and never returns once pass n (or training step n) is saved, so the test can kill it
 * there. Built by tsc with the rest of test/.
 */
const [point, n, ...args] = process.argv.slice(2);
if ((point !== 'pass' && point !== 'step') || !/^\d+$/.test(n ?? '')) throw new Error(`usage: hold-entry.js <pass|step> <n> <pare arguments…>, got ${process.argv.slice(2).join(' ')}`);
const hold = async (done: number): Promise<void> => {
  if (done === Number(n)) await new Promise(() => setInterval(() => {}, 1000));
};
await main(args, point === 'pass' ? { afterPass: hold } : { afterTrainingStep: hold });
