import { readFileSync, writeFileSync } from 'node:fs';

/**
 * For PARE_RSS_TRACE=file (bench/scale.ts): VmRSS every 250 ms until the returned stop function is
 * called, one `seconds MB heap H arrayBuffers A external E` line each (V8's MB), written at stop. The
 * samples land between JS tasks, so a long synchronous solve or ONNX Runtime run shows as a gap.
 */
export function traceRss(file: string): () => void {
  const t0 = performance.now();
  const lines: string[] = [];
  const timer = setInterval(() => {
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    const m = process.memoryUsage();
    const mb = (b: number) => (b / 2 ** 20).toFixed(0);
    if (rss) lines.push(`${((performance.now() - t0) / 1000).toFixed(1)} ${mb(Number(rss[1]) * 1024)} heap ${mb(m.heapUsed)} arrayBuffers ${mb(m.arrayBuffers)} external ${mb(m.external)}`);
  }, 250);
  return () => {
    clearInterval(timer);
    writeFileSync(file, `${lines.join('\n')}\n`);
  };
}
