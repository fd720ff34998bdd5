import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { it, type TestFunction } from 'vitest';

const ROOT = resolve(__dirname, '..');

/** A file under fixtures/: the small real models and data every checkout carries (licences beside them). */
export const fixturePath = (...parts: string[]): string => join(ROOT, 'fixtures', ...parts);

export const FIXTURES = {
  stories: fixturePath('stories260K/model.onnx'),
  storiesSafetensors: fixturePath('stories260K/model.safetensors'),
  tok512: fixturePath('stories260K/tok512.bin'),
  validHead: fixturePath('tinystories/valid-head.txt'),
  mnist: fixturePath('mnist-8/model.onnx'),
  /** the first 1,000 MNIST test digits, with their labels beside them */
  mnistImages: fixturePath('mnist/t10k-head1000-images-idx3-ubyte.gz'),
  mnistLabels: fixturePath('mnist/t10k-head1000-labels-idx1-ubyte.gz'),
} as const;

/**
 * ../shared beside the checkout: real models and data too big to carry, or with no licence to
 * redistribute. A fresh clone has none; tests that read it run only when it is there.
 */
export const SHARED = resolve(ROOT, '../shared');
export const HAS_SHARED = existsSync(SHARED);
export const sharedPath = (...parts: string[]): string => join(SHARED, ...parts);

export const SHARED_MODELS = {
  shakespeare: sharedPath('models/shakespeare-char/model.onnx'),
  squeezenet: sharedPath('models/squeezenet-cifar10/model.onnx'),
} as const;

const NO_SHARED = 'skipped: no ../shared beside the checkout';

/** `it` for a test that reads ../shared: without the folder it is skipped, the reason in its name. */
export function itWithShared(name: string, fn: TestFunction, timeout?: number): void {
  if (HAS_SHARED) it(name, fn, timeout);
  else it.skip(`${name} (${NO_SHARED})`, fn);
}

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
