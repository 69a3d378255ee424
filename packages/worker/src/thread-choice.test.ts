import {
  assertThreadsFit,
  chooseThreads,
  threadCandidates,
  threadCost,
  threadsProblem,
  type ThreadRow,
  type ThreadSettings,
} from './thread-choice.js';

const seq = (intraOp: number): ThreadSettings => ({ intraOp, interOp: 1, mode: 'sequential' });
const row = (t: ThreadSettings, itemsPerSec: number, p99Ms = 10): ThreadRow => ({
  ...t,
  batch: 8,
  runs: 10,
  p50Ms: p99Ms * 0.8,
  p99Ms,
  itemsPerSec,
});
const par = (intraOp: number, interOp: number): ThreadSettings => ({ intraOp, interOp, mode: 'parallel' });

describe('threadCandidates', () => {
  it.each([
    [1, [seq(1)]],
    [2, [seq(2), seq(1), par(1, 2)]],
    [6, [seq(6), seq(3), seq(1), par(3, 2)]],
    [16, [seq(16), seq(8), seq(4), seq(2), seq(1), par(8, 2)]],
  ])('%i cores → widest first, halving, then parallel', (cores, expected) => {
    expect(threadCandidates(cores)).toEqual(expected);
  });

  it('treats nonsense core counts as one core', () => {
    expect(threadCandidates(0)).toEqual([seq(1)]);
    expect(threadCandidates(1.7)).toEqual([seq(1)]);
  });
});

describe('chooseThreads', () => {
  it('keeps the widest setting when it is clearly fastest (compute-bound conv)', () => {
    const c = chooseThreads([row(seq(4), 400), row(seq(2), 230), row(seq(1), 120), row(par(2, 2), 380)], 50)!;
    expect(c).toMatchObject({ intraOp: 4, interOp: 1, mode: 'sequential' });
    expect(c.reason).toMatch(/^4 intra-op: fastest at batch 8, 400 items\/s/);
  });

  it('prefers fewer threads within 5% of the best (they leave cores to other replicas)', () => {
    const c = chooseThreads([row(seq(4), 1000), row(seq(2), 970), row(seq(1), 700)], 50)!;
    expect(c).toMatchObject({ intraOp: 2, mode: 'sequential' });
    expect(c.reason).toMatch(/within 5% of 4 intra-op \(1000\) with 2 fewer thread\(s\)/);
  });

  it('one thread wins when threads do not help (memory-bound MLP)', () => {
    expect(chooseThreads([row(seq(2), 800), row(seq(1), 805), row(par(1, 2), 790)], 50)).toMatchObject({ intraOp: 1, mode: 'sequential' });
  });

  it('chooses parallel mode when branches run faster side by side', () => {
    const c = chooseThreads([row(seq(4), 500), row(seq(2), 300), row(seq(1), 160), row(par(2, 2), 700)], 50)!;
    expect(c).toMatchObject({ intraOp: 2, interOp: 2, mode: 'parallel' });
  });

  it('skips settings whose p99 breaks the objective', () => {
    const c = chooseThreads([row(seq(2), 500, 20), row(seq(1), 520, 80)], 50)!;
    expect(c.intraOp).toBe(2);
  });

  it('when none meets the objective, still chooses (and says so)', () => {
    const c = chooseThreads([row(seq(2), 500, 90), row(seq(1), 300, 160)], 50)!;
    expect(c.intraOp).toBe(2);
    expect(c.reason).toMatch(/no setting meets the p99 objective of 50 ms/);
  });

  it('a custom minimum gain changes the trade-off', () => {
    const rows = [row(seq(2), 1000), row(seq(1), 850)];
    expect(chooseThreads(rows, 50)!.intraOp).toBe(2);
    expect(chooseThreads(rows, 50, 0.2)!.intraOp).toBe(1);
  });

  it('nothing measured → no choice', () => {
    expect(chooseThreads([], 50)).toBeUndefined();
  });

  it('cost counts the inter-op pool only in parallel mode', () => {
    expect(threadCost(seq(4))).toBe(4);
    expect(threadCost({ intraOp: 4, interOp: 3, mode: 'sequential' })).toBe(4);
    expect(threadCost(par(2, 2))).toBe(4);
  });
});

describe('threads against usable cores', () => {
  it.each([
    [{ intraOp: 2 }, 2, undefined],
    [{ intraOp: 1, interOp: 2 }, 2, undefined],
    [{ intraOp: 3 }, 2, "threads.intraOp 3 exceeds this worker's 2 usable cores"],
    [{ intraOp: 1024, interOp: 1 }, 2, "threads.intraOp 1024 exceeds this worker's 2 usable cores"],
    [{ intraOp: 1, interOp: 4 }, 2, "threads.interOp 4 exceeds this worker's 2 usable cores"],
    [{ intraOp: 2 }, 1, "threads.intraOp 2 exceeds this worker's 1 usable core"],
  ])('%j on %i cores → %s', (t, cores, problem) => {
    expect(threadsProblem(t, cores)).toBe(problem);
  });

  it('refuses with a coded BAD_REQUEST that says what fits', () => {
    expect(() => assertThreadsFit({ intraOp: 1024, interOp: 1 }, 2)).toThrow(
      expect.objectContaining({
        code: 'BAD_REQUEST',
        message: "threads.intraOp 1024 exceeds this worker's 2 usable cores",
        data: { usableCores: 2, intraOp: 1024, interOp: 1 },
      }),
    );
    expect(() => assertThreadsFit({ intraOp: 2 }, 2)).not.toThrow();
  });
});
