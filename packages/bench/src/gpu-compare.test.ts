import { compareOutputs, evictionBudget, OUTPUT_TOLERANCE, verdict, worstDiff } from './gpu-compare.js';

describe('compareOutputs: GPU vs CPU within 1e-3 (relative above magnitude 1)', () => {
  test.each([
    ['identical', [0.5, -0.25, 1], [0.5, -0.25, 1], true, 0],
    ['1e-4 off on small outputs', [0.5, -0.25], [0.5001, -0.25], true, 1e-4],
    ['2e-3 off on small outputs', [0.5, -0.25], [0.502, -0.25], false, 2e-3],
    ['0.05 off on logits of 100 (5e-4 relative)', [100, -3], [100.05, -3], true, 0.05],
    ['0.2 off on logits of 100 (2e-3 relative)', [100, -3], [100.2, -3], false, 0.2],
    ['int64 ids equal', [1n, 2n, 63n], [1n, 2n, 63n], true, 0],
  ] as const)('%s', (_what, ref, got, ok, maxAbs) => {
    const d = compareOutputs(ref as never, got as never);
    expect(d.ok).toBe(ok);
    expect(d.maxAbs).toBeCloseTo(maxAbs, 9);
    expect(d.count).toBe(ref.length);
    if (!ok) expect(d.why).toMatch(/max \|gpu − cpu\|/);
  });

  test('different lengths and one-sided NaN fail with the reason', () => {
    expect(compareOutputs([1, 2], [1])).toMatchObject({ ok: false, why: '1 elements, expected 2' });
    expect(compareOutputs([1, NaN], [1, NaN]).ok).toBe(true);
    expect(compareOutputs([1, 2], [1, NaN])).toMatchObject({ ok: false, nonFinite: 1 });
  });

  test('the tolerance is the issue’s 1e-3 unless given', () => {
    expect(OUTPUT_TOLERANCE).toBe(1e-3);
    expect(compareOutputs([0.5], [0.502], 1e-2).ok).toBe(true);
  });
});

describe('worstDiff', () => {
  test('a failing output wins over a larger passing one; otherwise the largest relative error', () => {
    const bad = compareOutputs([0.1], [0.2]);
    const big = compareOutputs([1000], [1000.5]);
    const small = compareOutputs([0.1], [0.1008]);
    expect(worstDiff({ a: big, b: bad }).output).toBe('b');
    expect(worstDiff({ a: small, b: big }).output).toBe('a'); // 8e-4 absolute vs 5e-4 relative
    expect(worstDiff({ a: compareOutputs([1], [1]), b: small }).output).toBe('b');
    expect(worstDiff({})).toMatchObject({ ok: false, why: 'no outputs' });
  });
});

describe('evictionBudget', () => {
  test('fits two replicas of the charge, not three', () => {
    const c = 192 * 2 ** 20;
    const b = evictionBudget(c);
    expect(2 * c).toBeLessThanOrEqual(b);
    expect(3 * c).toBeGreaterThan(b);
    expect(() => evictionBudget(0)).toThrow(/cannot size/);
    expect(() => evictionBudget(NaN)).toThrow(/cannot size/);
  });
});

describe('verdict', () => {
  test('every step must pass', () => {
    expect(verdict([{ step: 'a', ok: true, ms: 1 }])).toEqual({ code: 0, line: 'gpu-check: all 1 steps passed' });
    expect(
      verdict([
        { step: 'a', ok: true, ms: 1 },
        { step: 'b', ok: false, ms: 1, error: 'x' },
      ]),
    ).toEqual({ code: 1, line: 'gpu-check: 1 of 2 steps failed: b' });
  });
});
