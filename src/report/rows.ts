import type { Measure } from '../eval/evaluate.js';
import type { Fidelity } from '../eval/fidelity.js';
import type { Unit } from './format.js';

/** One metric of two measurements side by side (reference vs model, or base report vs new report). */
export interface MetricRow {
  /** stable id: `file_bytes`, `bytes.float32`, `perplexity`, `top1`, `latency.median_ms`, `fidelity.kl_mean`… */
  key: string;
  label: string;
  unit: Unit;
  a?: number;
  b?: number;
}

/** Size, quality and latency rows for two measures; a row appears when either side has the metric. */
export function measureRows(a: Measure | undefined, b: Measure | undefined): MetricRow[] {
  const rows: MetricRow[] = [];
  const add = (key: string, label: string, unit: Unit, get: (m: Measure) => number | undefined) => {
    const va = a ? get(a) : undefined;
    const vb = b ? get(b) : undefined;
    if (va !== undefined || vb !== undefined) rows.push({ key, label, unit, a: va, b: vb });
  };
  add('file_bytes', 'file size', 'bytes', (m) => m.size.file_bytes);
  add('params', 'parameters', 'count', (m) => m.size.params);
  const dtypes = [...new Set([...Object.keys(a?.size.bytes_by_dtype ?? {}), ...Object.keys(b?.size.bytes_by_dtype ?? {})])].sort();
  for (const dt of dtypes) add(`bytes.${dt}`, `bytes in ${dt}`, 'bytes', (m) => m.size.bytes_by_dtype[dt] ?? 0);
  add('bits_per_weight', 'bits per weight', 'bits', (m) => m.size.bits_per_weight);
  add('nonzeros', 'nonzero weights', 'count', (m) => m.size.nonzeros);
  add('sparse_bytes', 'sparse size (bitmask + nonzeros)', 'bytes', (m) => m.size.sparse_bytes);

  add('perplexity', 'perplexity', 'ppl', (m) => (m.quality?.task === 'causal-lm' ? m.quality.perplexity : undefined));
  add('nll', 'NLL (nats/token)', 'nats', (m) => (m.quality?.task === 'causal-lm' ? m.quality.nll : undefined));
  add('top1', 'top-1 accuracy', 'fraction', (m) => (m.quality?.task === 'classification' ? m.quality.top1 : undefined));
  add('top5', 'top-5 accuracy', 'fraction', (m) => (m.quality?.task === 'classification' ? m.quality.top5 : undefined));
  const reg = (m: Measure) => (m.quality?.task === 'regression' || m.quality?.task === 'image-to-image' ? m.quality : undefined);
  add('mse', 'MSE', 'value', (m) => reg(m)?.mse);
  add('rmse', 'RMSE', 'value', (m) => reg(m)?.rmse);
  add('psnr', 'PSNR', 'db', (m) => reg(m)?.psnr);
  add('ssim', 'SSIM', 'ratio', (m) => reg(m)?.ssim);

  const setup = latencySetup(a, b);
  add('latency.median_ms', `latency median${setup}`, 'ms', (m) => m.latency?.median_ms);
  add('latency.p90_ms', `latency p90${setup}`, 'ms', (m) => m.latency?.p90_ms);
  return rows;
}

/** "(4 threads, batch 1×128)"; when the two sides ran differently, both settings. */
function latencySetup(a: Measure | undefined, b: Measure | undefined): string {
  const one = (m: Measure | undefined) => {
    const l = m?.latency;
    if (!l) return undefined;
    return `${l.threads} thread${l.threads === 1 ? '' : 's'}, batch ${l.batch}${l.seq_len ? `×${l.seq_len}` : ''}`;
  };
  const sa = one(a);
  const sb = one(b);
  if (sa && sb && sa !== sb) return ` (${sa} vs ${sb})`;
  return sa || sb ? ` (${sa ?? sb})` : '';
}

export function fidelityRows(a: Fidelity | undefined, b: Fidelity | undefined): MetricRow[] {
  if (!a && !b) return [];
  const row = (key: keyof Fidelity, label: string, unit: Unit): MetricRow => ({ key: `fidelity.${key}`, label, unit, a: a?.[key], b: b?.[key] });
  return [
    row('kl_mean', 'KL(reference ‖ model) mean, nats', 'nats'),
    row('kl_p90', 'KL p90', 'nats'),
    row('kl_p99', 'KL p99', 'nats'),
    row('top1_agreement', 'top-1 agreement with reference', 'fraction'),
    row('cosine', 'output cosine to reference', 'ratio'),
  ];
}
