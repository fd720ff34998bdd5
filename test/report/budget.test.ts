import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { checkBudgets, describeFailure, formatBudget, parseBudget } from '../../src/report/budget.js';
import { classifierMeasure, lmMeasure } from './reports.js';

const rel = (fraction: number) => ({ kind: 'relative' as const, fraction });
const abs = (value: number) => ({ kind: 'absolute' as const, value });

describe('budgets', () => {
  it('parses the recipe forms: "2%" relative, 0.5 absolute', () => {
    expect(parseBudget('--max-ppl-increase', '2%')).toEqual(rel(0.02));
    expect(parseBudget('--max-ppl-increase', ' 2.5 % ')).toEqual(rel(0.025));
    expect(parseBudget('--max-accuracy-drop', '0.5')).toEqual(abs(0.5));
    expect(parseBudget('--max-size-increase', '0')).toEqual(abs(0));
    expect(() => parseBudget('--max-ppl-increase', '-1')).toThrow(/--max-ppl-increase: expected a percentage like "2%" or a number >= 0, got '-1'/);
    expect(() => parseBudget('--max-ppl-increase', 'two')).toThrow(UserError);
  });

  it('writes the limit back as written', () => {
    expect(formatBudget(rel(0.07))).toBe('7%');
    expect(formatBudget(rel(0.02))).toBe('2%');
    expect(formatBudget(abs(0.5))).toBe('0.5');
  });

  it('relative ppl budget: cand ≤ base·1.02 passes at the bound and fails just above', () => {
    const base = lmMeasure('a.onnx', Math.log(10));
    const at = lmMeasure('b.onnx', Math.log(10.2));
    const above = lmMeasure('c.onnx', Math.log(10.21));
    const [ok] = checkBudgets(base, at, { max_ppl_increase: rel(0.02) });
    expect(ok).toMatchObject({ name: 'max_ppl_increase', limit: '2%', metric: 'perplexity', ok: true, allowed: 0.02 });
    expect(ok.change).toBeCloseTo(0.02, 12);
    const [bad] = checkBudgets(base, above, { max_ppl_increase: rel(0.02) });
    expect(bad.ok).toBe(false);
    expect(bad.change).toBeCloseTo(0.021, 12);
    expect(describeFailure(bad)).toBe('max_ppl_increase 2%: perplexity 10 -> 10.21 (increase +2.10%)');
  });

  it('absolute ppl budget: cand ≤ base + 0.5', () => {
    const base = lmMeasure('a.onnx', Math.log(3.397));
    expect(checkBudgets(base, lmMeasure('b.onnx', Math.log(3.897)), { max_ppl_increase: abs(0.5) })[0].ok).toBe(true);
    expect(checkBudgets(base, lmMeasure('b.onnx', Math.log(3.9)), { max_ppl_increase: abs(0.5) })[0].ok).toBe(false);
  });

  it('accuracy drop is in percentage points of top-1, or relative with %', () => {
    const base = classifierMeasure('mnist.onnx', 0.9891);
    const [points] = checkBudgets(base, classifierMeasure('q.onnx', 0.9841), { max_accuracy_drop: abs(0.5) });
    expect(points).toMatchObject({ metric: 'top1_percent', ok: true });
    expect(points.base).toBeCloseTo(98.91, 10);
    expect(points.change).toBeCloseTo(0.5, 10);
    expect(checkBudgets(base, classifierMeasure('q.onnx', 0.984), { max_accuracy_drop: abs(0.5) })[0].ok).toBe(false);
    // 1% of 98.91 is 0.9891 points
    expect(checkBudgets(base, classifierMeasure('q.onnx', 0.9793), { max_accuracy_drop: rel(0.01) })[0].ok).toBe(true);
    expect(checkBudgets(base, classifierMeasure('q.onnx', 0.9791), { max_accuracy_drop: rel(0.01) })[0].ok).toBe(false);
    // a gain is never a failure
    expect(checkBudgets(base, classifierMeasure('q.onnx', 0.995), { max_accuracy_drop: abs(0) })[0].ok).toBe(true);
  });

  it('size increase is on file bytes', () => {
    const base = lmMeasure('a.onnx', 1.2, { fileBytes: 1_000_000 });
    expect(checkBudgets(base, lmMeasure('b.onnx', 1.2, { fileBytes: 1_000_000 }), { max_size_increase: rel(0) })[0].ok).toBe(true);
    expect(checkBudgets(base, lmMeasure('b.onnx', 1.2, { fileBytes: 1_000_001 }), { max_size_increase: rel(0) })[0].ok).toBe(false);
    expect(checkBudgets(base, lmMeasure('b.onnx', 1.2, { fileBytes: 1_004_096 }), { max_size_increase: abs(4096) })[0]).toMatchObject({ ok: true, change: 4096 });
    // the float tolerance never forgives a whole byte, even on multi-GB files
    const big = lmMeasure('a.onnx', 1.2, { fileBytes: 7_000_000_000 });
    expect(checkBudgets(big, lmMeasure('b.onnx', 1.2, { fileBytes: 7_000_000_001 }), { max_size_increase: rel(0) })[0].ok).toBe(false);
  });

  it('checks only the budgets that are set, in a fixed order', () => {
    const base = lmMeasure('a.onnx', 1.2);
    expect(checkBudgets(base, base, {})).toEqual([]);
    expect(checkBudgets(base, base, undefined)).toEqual([]);
    const names = checkBudgets(base, base, { max_size_increase: rel(0), max_ppl_increase: rel(0.02) }).map((c) => c.name);
    expect(names).toEqual(['max_ppl_increase', 'max_size_increase']);
  });

  it('a budget whose metric is missing is a user error saying which side lacks it', () => {
    const lm = lmMeasure('lm.onnx', 1.2);
    const cls = classifierMeasure('cls.onnx', 0.98);
    expect(() => checkBudgets(lm, lm, { max_accuracy_drop: abs(1) })).toThrow(/max_accuracy_drop: lm\.onnx has perplexity \(a language model\), not top-1 accuracy; use max_ppl_increase/);
    expect(() => checkBudgets(cls, cls, { max_ppl_increase: rel(0.02) })).toThrow(/max_ppl_increase: cls\.onnx has top-1 accuracy/);
    const unevaluated = { ...lm, path: 'new.onnx', quality: undefined };
    expect(() => checkBudgets(lm, unevaluated, { max_ppl_increase: rel(0.02) }, { base: 'reference', candidate: 'compressed model' })).toThrow(
      new UserError('max_ppl_increase: compressed model has no perplexity (it was not evaluated on text data)'),
    );
  });
});
