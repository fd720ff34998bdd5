import type { HostFeeds } from '../model/io.js';
import type { RuntimeSession } from '../runtime/session.js';

export interface Latency {
  median_ms: number;
  p90_ms: number;
  runs: number;
  warmup: number;
  threads: number;
  batch: number;
  seq_len?: number;
}

/** Wall time per `session.run` on fixed feeds (either runtime): median and p90 over `runs` after `warmup`. */
export async function measureLatency(
  session: RuntimeSession,
  feeds: HostFeeds,
  opts: { runs: number; warmup: number; threads: number; batch: number; seqLen?: number },
): Promise<Latency> {
  for (let i = 0; i < opts.warmup; i++) await session.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < opts.runs; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  const at = (p: number) => times[Math.min(times.length - 1, Math.floor(p * (times.length - 1) + 0.5))];
  return { median_ms: at(0.5), p90_ms: at(0.9), runs: opts.runs, warmup: opts.warmup, threads: opts.threads, batch: opts.batch, seq_len: opts.seqLen };
}
