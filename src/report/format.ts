/** Markdown tables and number formatting shared by the report and diff renderings. */

import { formatBytes } from '../util/read-file.js';

export type Unit = 'bytes' | 'count' | 'bits' | 'fraction' | 'ms' | 'ppl' | 'nats' | 'ratio' | 'db' | 'value';

/** A GitHub-flavoured Markdown table; cells are escaped so a `|` in a layer name cannot split a row. */
export function mdTable(headers: string[], rows: (string | number)[][], align: ('l' | 'r')[] = []): string {
  const cell = (v: string | number) => String(v).replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const line = (r: (string | number)[]) => `| ${r.map(cell).join(' | ')} |`;
  const rule = `|${headers.map((_, i) => ((align[i] ?? 'l') === 'r' ? ' ---: ' : ' --- ')).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

/** A titled section; long content folds into <details> (GitHub renders Markdown inside it after a blank line). */
export function collapsible(title: string, body: string, fold: boolean, heading = '####'): string {
  return fold ? `<details><summary>${title}</summary>\n\n${body}\n\n</details>` : `${heading} ${title}\n\n${body}`;
}

export function bytes(n: number): string {
  return formatBytes(n, 'B');
}

export function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function percent(x: number, digits = 2): string {
  return `${(x * 100).toFixed(digits)}%`;
}

/** A value in its unit, for a table cell; absent values print as an en dash. */
export function formatValue(v: number | undefined | null, unit: Unit): string {
  if (v === undefined || v === null) return '–';
  switch (unit) {
    case 'bytes':
      return bytes(v);
    case 'count':
      return count(v);
    case 'fraction':
      return percent(v);
    case 'ms':
      return `${v.toFixed(v < 10 ? 3 : 1)} ms`;
    case 'bits':
      return v.toFixed(2);
    case 'ppl':
      return v.toFixed(3);
    case 'nats':
    case 'ratio':
      return v.toFixed(4);
    case 'db':
      return `${v.toFixed(2)} dB`;
    case 'value':
      return String(+v.toPrecision(4));
  }
}

/** "+1.80 (+3.57%)" style change from `a` to `b`; fractions change in percentage points. */
export function formatDelta(a: number | undefined | null, b: number | undefined | null, unit: Unit): string {
  if (a === undefined || a === null || b === undefined || b === null) return '–';
  const d = b - a;
  const sign = d > 0 ? '+' : d < 0 ? '-' : '±';
  if (unit === 'fraction') return `${sign}${Math.abs(d * 100).toFixed(2)} pts`;
  const abs = unit === 'bytes' ? bytes(Math.abs(d)) : formatValue(Math.abs(d), unit);
  const rel = a !== 0 ? ` (${sign}${Math.abs((d / a) * 100).toFixed(2)}%)` : '';
  return d === 0 ? '±0' : `${sign}${abs}${rel}`;
}
