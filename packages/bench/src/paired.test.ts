import { PAIRED_ROUNDS, pairWindows, paired, pairedBrokerLine, pairedLine, pairedRounds } from './paired.js';

describe('pairWindows', () => {
  test('n windows share n + 1 probes: each window gets the probe before it and the one after', () => {
    expect(pairWindows([100, 110, 120], [200, 210, 220, 230])).toEqual([
      { itemsPerSec: 100, before: 200, after: 210 },
      { itemsPerSec: 110, before: 210, after: 220 },
      { itemsPerSec: 120, before: 220, after: 230 },
    ]);
  });
  test('a probe that failed (undefined, 0, NaN) or is missing leaves its neighbours with the other one', () => {
    expect(pairWindows([100, 110, 120], [200, undefined, 0])).toEqual([
      { itemsPerSec: 100, before: 200 },
      { itemsPerSec: 110 },
      { itemsPerSec: 120 },
    ]);
    expect(pairWindows([100], [Number.NaN, 250])).toEqual([{ itemsPerSec: 100, after: 250 }]);
  });
});

describe('paired', () => {
  // pnpm bench, 2026-12-01 (Intel Xeon): wide-mlp at batch 128, five windows of 600 ms; the probe moved 5,644–7,565 items/s.
  const windows = pairWindows([4800, 5200, 4300, 5100, 4700], [6000, 6400, 5600, 7565, 5644, 6100]);
  const p = paired(128, 600, windows, { atChosen: 7796, best: 7796 });

  test("each round: the window over the mean of its two probes; the median round; the ceiling through the sweep's own ratio", () => {
    expect(p.rounds.map((r) => [r.reference, r.ratio])).toEqual([
      [6200, 0.774],
      [6000, 0.867],
      [6582.5, 0.653],
      [6604.5, 0.772],
      [5872, 0.8],
    ]);
    expect(p.atChosen).toBe(0.774);
    expect(p.ceiling).toBe(0.774); // chosen = best
    expect([p.min, p.max]).toEqual([0.653, 0.867]);
    expect(p.rounds).toHaveLength(PAIRED_ROUNDS);
  });

  test('a chosen batch below the best scales the ceiling by the sweep: 0.8 × 7,025 / 7,796', () => {
    const q = paired(16, 600, [{ itemsPerSec: 5620, before: 7025, after: 7025 }], { atChosen: 7025, best: 7796 });
    expect(q.atChosen).toBe(0.8);
    expect(q.ceiling).toBe(0.721);
  });

  test('an even count of rounds takes the lower middle one (nearest rank)', () => {
    const q = paired(8, 300, pairWindows([70, 80, 90, 60], [100, 100, 100, 100, 100]), {});
    expect(q.atChosen).toBe(0.7);
    expect(q.ceiling).toBeNull(); // no sweep rates
  });

  test('rounds without a probe, or with no items, are left out; none left is null', () => {
    const q = paired(8, 300, [{ itemsPerSec: 90 }, { itemsPerSec: 0, before: 100 }, { itemsPerSec: 50, after: 100 }], {
      atChosen: 100,
      best: 100,
    });
    expect(q.rounds.map((r) => r.ratio)).toEqual([undefined, undefined, 0.5]);
    expect(q.atChosen).toBe(0.5);
    const none = paired(8, 300, [{ itemsPerSec: 90 }], { atChosen: 100, best: 100 });
    expect([none.atChosen, none.ceiling, none.min, none.max]).toEqual([null, null, null, null]);
  });

  test('text', () => {
    expect(pairedLine(p)).toBe(
      'paired with the in-process model at batch 128 (5 windows of 600 ms, timed in-process before and after each): @chosen 0.774 (rounds 0.774 0.867 0.653 0.772 0.8), ceiling 0.774',
    );
    expect(pairedLine(paired(8, 300, [{ itemsPerSec: 90 }], {}))).toBe(
      'paired with the in-process model at batch 8 (1 window of 300 ms, timed in-process before and after each): no round had a probe',
    );
  });
});

describe('pairedRounds: the broker ratio, cluster windows between raw NATS windows', () => {
  // mlp at c=128: the cluster's windows against raw NATS's before and after each (msgs/s).
  const r = pairedRounds(600, pairWindows([40_000, 42_000, 30_000], [50_000, 48_000, 52_000, 46_000]));
  test('each cluster window over the mean of the raw windows around it; the median', () => {
    expect(r.rounds.map((x) => [x.reference, x.ratio])).toEqual([
      [49_000, 0.816],
      [50_000, 0.84],
      [49_000, 0.612],
    ]);
    expect([r.median, r.min, r.max]).toEqual([0.816, 0.612, 0.84]);
  });
  test('text', () => {
    expect(pairedBrokerLine(r)).toBe(
      'paired with raw NATS (3 windows of 600 ms, raw NATS before and after each): broker 0.816 (rounds 0.816 0.84 0.612)',
    );
    expect(pairedBrokerLine(pairedRounds(600, [{ itemsPerSec: 1 }]))).toBe(
      'paired with raw NATS (1 window of 600 ms, raw NATS before and after each): no round had a raw window',
    );
  });
});
