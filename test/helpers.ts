import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const SHARED = resolve(process.cwd(), '../shared');
export const sharedPath = (...parts: string[]): string => join(SHARED, ...parts);

export const SHARED_MODELS = {
  stories: sharedPath('models/stories260K/model.onnx'),
  shakespeare: sharedPath('models/shakespeare-char/model.onnx'),
  mnist: sharedPath('models/mnist-8/model.onnx'),
  squeezenet: sharedPath('models/squeezenet-cifar10/model.onnx'),
} as const;

export function tempDir(prefix = 'pare-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** |a − r| ≤ atol + rtol·|r| elementwise; returns the worst violation for the failure message. */
export function allClose(a: ArrayLike<number>, r: ArrayLike<number>, rtol: number, atol: number): { ok: boolean; worst: string; relFro: number } {
  if (a.length !== r.length) return { ok: false, worst: `length ${a.length} vs ${r.length}`, relFro: Infinity };
  let ok = true;
  let worstExcess = -Infinity;
  let worst = '';
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - r[i]);
    const excess = d - (atol + rtol * Math.abs(r[i]));
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = `index ${i}: got ${a[i]}, expected ${r[i]}`;
    }
    if (!(excess <= 0)) ok = false;
    num += d * d;
    den += r[i] * r[i];
  }
  return { ok, worst, relFro: Math.sqrt(num / Math.max(den, 1e-300)) };
}
