/**
 * The URL of a worker thread's entry module in src/distill (`name` without extension): the
 * compiled one beside this module, or under vitest (which runs the TypeScript sources, and a worker
 * cannot load those) the one in dist/.
 */
export function distillWorkerUrl(name: string): URL {
  const here = new URL(import.meta.url);
  return here.pathname.endsWith('.ts') ? new URL(`../../dist/src/distill/${name}.js`, here) : new URL(`./${name}.js`, here);
}
