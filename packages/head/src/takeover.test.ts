import { heardDuringHold, takeoverHold } from './takeover.js';

describe('takeoverHold', () => {
  it.each([
    ['a fresh head: the settle period', [], 1_000 + 2_500],
    ['leading again, workers known before: up to the worker timeout', ['w1', 'w2'], 1_000 + 5_000],
  ] as const)('%s', (_what, known, until) => {
    const h = takeoverHold(1_000, 2_500, 5_000, known);
    expect(h).toEqual({ base: 3_500, until, awaiting: new Set(known) });
  });

  it('never ends before the settle period, even with a shorter worker timeout', () => {
    expect(takeoverHold(0, 2_500, 1_000, ['w']).until).toBe(2_500);
  });
});

describe('heardDuringHold', () => {
  it('ends the hold at the settle period once every awaited worker was heard', () => {
    const h = takeoverHold(0, 2_500, 5_000, ['w1', 'w2']);
    expect(heardDuringHold(h, 'w1', 500)).toBeUndefined();
    expect(h.until).toBe(5_000);
    expect(heardDuringHold(h, 'stranger', 600)).toBeUndefined();
    expect(heardDuringHold(h, 'w2', 700)).toBe(2_500);
    expect(h.until).toBe(2_500);
    expect(heardDuringHold(h, 'w2', 800)).toBeUndefined(); // heard already
  });

  it('after the settle period the last one heard ends it now; after the hold, nothing changes', () => {
    const h = takeoverHold(0, 2_500, 5_000, ['w1']);
    expect(heardDuringHold(h, 'w1', 3_000)).toBe(3_000);
    const late = takeoverHold(0, 2_500, 5_000, ['w1']);
    expect(heardDuringHold(late, 'w1', 6_000)).toBeUndefined();
    expect(late.until).toBe(5_000);
  });
});
