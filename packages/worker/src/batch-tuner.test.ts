import { MAX_SHAPE_KEY_CHARS, TunedBatch } from '@flotilla/protocol';
import { BatchTuner, TUNE_MAX_DROPS, TUNE_MAX_KEYS, TUNE_MAX_UNFILLED, TUNE_SAMPLES, type TuneStep } from './batch-tuner.js';

/**
 * A replica under load: every batch is as full as the tuner's cap allows (or `fill` items where
 * fewer are waiting), and takes `perItemMs(size)` per item. Runs `batches` batches; returns the steps.
 */
function serve(t: BatchTuner, base: number, perItemMs: (size: number) => number, batches: number, fill = Infinity, key = 'k'): TuneStep[] {
  const steps: TuneStep[] = [];
  for (let i = 0; i < batches; i++) {
    const cap = t.cap(key, base);
    expect(cap).toBeLessThanOrEqual(base);
    const items = Math.min(cap, fill);
    const step = t.record(key, base, items, items * perItemMs(items));
    if (step) steps.push(step);
  }
  return steps;
}

describe('BatchTuner', () => {
  test.each([
    {
      // conv-classifier through a replica at 128 callers (AMD EPYC, 2026-12-01): 32 cost 18 % more per item than 16.
      name: 'the half is quicker per item: down to it, then stays where the next half is not',
      base: 32,
      cost: { 32: 0.2, 16: 0.17, 8: 0.168, 4: 0.2 } as Record<number, number>,
      want: 16,
      steps: [
        [32, 16],
        [16, 16],
      ],
    },
    {
      name: 'larger batches are cheaper per item (a GPU, a memory-bound MLP): the profile choice stays',
      base: 64,
      cost: { 64: 0.05, 32: 0.08 },
      want: 64,
      steps: [[64, 64]],
    },
    {
      name: 'the half only 2 % quicker, within the noise: the cap stays',
      base: 16,
      cost: { 16: 0.1, 8: 0.098 },
      want: 16,
      steps: [[16, 16]],
    },
    {
      name: 'every smaller size quicker: down to one request a batch',
      base: 8,
      cost: { 8: 0.4, 4: 0.3, 2: 0.2, 1: 0.1 },
      want: 1,
      steps: [
        [8, 4],
        [4, 2],
        [2, 1],
      ],
    },
  ])('$name', ({ base, cost, want, steps }) => {
    const t = new BatchTuner();
    const got = serve(t, base, (s) => cost[s]!, 20 * TUNE_SAMPLES);
    expect(got.map((s) => [s.from, s.to])).toEqual(steps);
    expect(t.cap('k', base)).toBe(want);
    expect(t.state('k')).toMatchObject({ base, cap: want, settled: true });
    // Settled: more batches change nothing.
    expect(serve(t, base, (s) => cost[s]!, 4 * TUNE_SAMPLES)).toEqual([]);
  });

  test('a comparison takes TUNE_SAMPLES batches of each size, in turn', () => {
    const t = new BatchTuner();
    const caps: number[] = [];
    for (let i = 0; i < 2 * TUNE_SAMPLES + 1; i++) {
      const cap = t.cap('k', 32);
      caps.push(cap);
      t.record('k', 32, cap, cap * (cap === 32 ? 0.2 : 0.1));
    }
    // The first full batch at 32 starts it; then 16 and 32 alternate; the last batch ends it.
    expect(caps.slice(0, 5)).toEqual([32, 16, 32, 16, 32]);
    expect(t.state('k')).toMatchObject({ cap: 16, settled: false, trial: undefined });
    // The next full batch at the new cap starts the next comparison, with its half.
    t.record('k', 32, 16, 1.6);
    expect(t.state('k')!.trial?.sizes).toEqual([16, 8]);
    expect(t.cap('k', 32)).toBe(8);
  });

  test('light load: batches of neither size drop the comparison, which starts again once batches fill', () => {
    const t = new BatchTuner();
    const cost = (s: number) => (s >= 32 ? 0.2 : 0.1);
    // 32 once (starts it), then batches of 12 only: neither 32 nor 16.
    t.record('k', 32, 32, 6.4);
    expect(serve(t, 32, cost, TUNE_MAX_UNFILLED + 1, 12)).toEqual([]);
    expect(t.state('k')).toMatchObject({ cap: 32, settled: false, trial: undefined });
    // Load comes back: it tunes.
    const steps = serve(t, 32, cost, 20 * TUNE_SAMPLES);
    expect(steps[0]).toMatchObject({ from: 32, to: 16 });
  });

  test(`a load that fills the cap only now and then: after ${TUNE_MAX_DROPS} dropped comparisons the key settles where it is`, () => {
    const t = new BatchTuner();
    for (let d = 0; d < TUNE_MAX_DROPS; d++) {
      expect(t.state('k')?.settled ?? false).toBe(false);
      t.record('k', 32, 32, 6.4); // a full batch starts a comparison
      serve(t, 32, () => 0.1, TUNE_MAX_UNFILLED + 1, 12); // then batches of neither size
    }
    expect(t.state('k')).toMatchObject({ cap: 32, drops: TUNE_MAX_DROPS, settled: true, trial: undefined });
    expect(serve(t, 32, (s) => (s >= 32 ? 0.2 : 0.1), 4 * TUNE_SAMPLES)).toEqual([]);
    expect(t.cap('k', 32)).toBe(32);
  });

  test('closed-loop callers in two groups of the half: batches that fill only the half do not keep the comparison going', () => {
    // 32 callers against a cap of 32 that split into two groups of 16 taking turns (pnpm bench,
    // wide-mlp at 128 callers: 64×133 batches, the tuner still comparing 128 with 64 at the end).
    // Every batch holds 16 whatever its cap, so the cap's are never full and the comparison can
    // never finish: it must drop, not cap every other batch at the half for good.
    const t = new BatchTuner();
    t.record('k', 32, 32, 6.4); // one full batch started it
    const caps: number[] = [];
    for (let i = 0; i < 4 * (TUNE_MAX_UNFILLED + 1); i++) {
      caps.push(t.cap('k', 32));
      t.record('k', 32, 16, 1.6);
    }
    expect(t.state('k')).toMatchObject({ cap: 32, trial: undefined, drops: 1 });
    // Once dropped, every batch runs under the full cap again.
    expect(caps.slice(-TUNE_MAX_UNFILLED)).toEqual(Array(TUNE_MAX_UNFILLED).fill(32));
  });

  test('a new base (the key profiled again) starts over from it; a base of 1 is never tuned', () => {
    const t = new BatchTuner();
    const cost = (s: number) => (s >= 32 ? 0.2 : 0.1);
    serve(t, 32, cost, 20 * TUNE_SAMPLES);
    expect(t.cap('k', 32)).toBeLessThan(32);
    expect(t.cap('k', 64)).toBe(64);
    expect(t.state('k')).toMatchObject({ base: 64, cap: 64, settled: false });
    expect(serve(t, 1, () => 1, 100)).toEqual([]);
    expect(t.cap('k', 1)).toBe(1);
  });

  test('no sample from a batch that took no time or a negative one, or held no item', () => {
    const t = new BatchTuner();
    t.record('k', 8, 8, 1);
    for (let i = 0; i < 4 * TUNE_SAMPLES; i++) {
      expect(t.record('k', 8, 4, Number.NaN)).toBeUndefined();
      expect(t.record('k', 8, 0, 1)).toBeUndefined();
    }
    expect(t.state('k')!.trial?.perItemMs).toEqual([[], []]);
  });

  test('limits: the base with its cap tuned; a padded base as it is, never tuned', () => {
    const t = new BatchTuner();
    const base = { maxBatchSize: 32, maxQueueDelayMs: 0.1 };
    expect(t.limits('k', base)).toBe(base);
    serve(t, 32, (s) => (s >= 32 ? 0.2 : 0.1), 20 * TUNE_SAMPLES);
    expect(t.limits('k', base)).toEqual({ maxBatchSize: t.cap('k', 32), maxQueueDelayMs: 0.1 });
    expect(t.cap('k', 32)).toBeLessThan(32);
    const padded = { maxBatchSize: 32, maxQueueDelayMs: 0.1, padTo: 32 };
    expect(t.recordBatch('p', padded, 32, 6.4)).toBeUndefined();
    expect(t.state('p')).toBeUndefined();
    expect(t.limits('p', padded)).toBe(padded);
  });

  test('keys are bounded: a new one past TUNE_MAX_KEYS forgets the oldest', () => {
    const t = new BatchTuner();
    for (let i = 0; i <= TUNE_MAX_KEYS; i++) t.cap(`k${i}`, 8);
    expect(t.state('k0')).toBeUndefined();
    expect(t.state(`k${TUNE_MAX_KEYS}`)).toBeDefined();
  });

  test('a shape in use survives a flood of one-off shapes: the key forgotten is the one that ran longest ago', () => {
    const t = new BatchTuner();
    const cost = (s: number) => (s >= 32 ? 0.2 : 0.1);
    serve(t, 32, cost, 20 * TUNE_SAMPLES, Infinity, 'in-use'); // tuned: 32 → 16 → settled
    expect(t.state('in-use')).toMatchObject({ cap: 16, settled: true });
    for (let i = 0; i < 4 * TUNE_MAX_KEYS; i++) {
      t.record(`one-off-${i}`, 32, 1, 0.5); // a caller's new shape each time
      if (i % 8 === 0) t.record('in-use', 32, 16, 1.6); // the real traffic keeps running
    }
    expect(t.state('in-use')).toMatchObject({ cap: 16, settled: true });
    expect(t.report()).toHaveLength(TUNE_MAX_KEYS);
  });

  test('report: each key waiting, comparing or settled, with the size it started from and the one it runs at', () => {
    const t = new BatchTuner();
    expect(t.report()).toEqual([]);
    const cost = (s: number) => (s >= 32 ? 0.2 : 0.1);
    t.cap('a', 32);
    t.cap('b', 16);
    expect(t.report()).toEqual([
      { shape: 'a', from: 32, maxBatchSize: 32, state: 'waiting' },
      { shape: 'b', from: 16, maxBatchSize: 16, state: 'waiting' },
    ]);
    t.record('a', 32, 32, 6.4); // a full batch starts a comparison
    // The key that ran last comes last.
    expect(t.report()).toEqual([
      { shape: 'b', from: 16, maxBatchSize: 16, state: 'waiting' },
      { shape: 'a', from: 32, maxBatchSize: 32, state: 'comparing' },
    ]);
    serve(t, 32, cost, 20 * TUNE_SAMPLES, Infinity, 'a');
    serve(t, 16, () => 0.1, 20 * TUNE_SAMPLES, Infinity, 'b');
    const report = t.report();
    expect(report).toEqual([
      { shape: 'a', from: 32, maxBatchSize: 16, state: 'settled' },
      { shape: 'b', from: 16, maxBatchSize: 16, state: 'settled' },
    ]);
    for (const r of report) expect(TunedBatch.safeParse(r).success).toBe(true);
  });

  test('report: a key longer than the protocol allows is cut; every row of a full tuner passes the schema', () => {
    const t = new BatchTuner();
    const long = `x:${'9x'.repeat(MAX_SHAPE_KEY_CHARS)}`;
    t.cap(long, 8);
    for (let i = 1; i < TUNE_MAX_KEYS; i++) t.cap(`k${i}`, 8);
    const report = t.report();
    expect(report).toHaveLength(TUNE_MAX_KEYS);
    expect(report[0]!.shape).toHaveLength(MAX_SHAPE_KEY_CHARS);
    expect(report[0]!.shape.endsWith('…')).toBe(true);
    for (const r of report) expect(TunedBatch.safeParse(r).success).toBe(true);
    // One more key forgets the oldest: the report stays within the protocol's bound.
    t.cap('one-more', 8);
    expect(t.report()).toHaveLength(TUNE_MAX_KEYS);
  });
});
