import { LoadStats, percentile } from './load-stats.js';

describe('percentile (nearest rank)', () => {
  const ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  it.each([
    ['one sample, p50', [7], 50, 7],
    ['one sample, p0', [7], 0, 7],
    ['one sample, p100', [7], 100, 7],
    ['two samples, p50 is the lower', [1, 2], 50, 1],
    ['two samples, p51 is the upper', [1, 2], 51, 2],
    ['ten, p0 is the min', ten, 0, 1],
    ['ten, p50', ten, 50, 5],
    ['ten, p90', ten, 90, 9],
    ['ten, p99 is the max', ten, 99, 10],
    ['ten, p100 is the max', ten, 100, 10],
    ['hundred, p50', hundred, 50, 50],
    ['hundred, p90', hundred, 90, 90],
    ['hundred, p99', hundred, 99, 99],
    ['hundred, p99.5', hundred, 99.5, 100],
    ['ties', [1, 1, 1, 5], 75, 1],
    ['fractional samples', [0.25, 0.5, 0.75], 50, 0.5],
  ])('%s', (_name, sorted, p, want) => {
    expect(percentile(sorted, p)).toBe(want);
  });

  it('is NaN for no samples', () => {
    expect(percentile([], 50)).toBeNaN();
  });

  it.each([-1, 101, NaN])('rejects p = %p', (p) => {
    expect(() => percentile([1], p)).toThrow(RangeError);
  });
});

type Event = ['sent'] | ['ok', number, number] | ['error', string] | ['retry'];

function replay(events: Event[]): LoadStats {
  const s = new LoadStats();
  for (const e of events) {
    if (e[0] === 'sent') s.markSent();
    else if (e[0] === 'ok') s.recordOk(e[1], e[2]);
    else if (e[0] === 'error') s.recordError(e[1]);
    else s.recordRetry();
  }
  return s;
}

const sent = (n: number): Event[] => Array.from({ length: n }, () => ['sent'] as Event);

describe('LoadStats.summary', () => {
  it.each<[string, Event[], number, object]>([
    [
      'nothing happened',
      [],
      1000,
      {
        sent: 0,
        ok: 0,
        retried: 0,
        errored: {},
        lost: 0,
        items: 0,
        itemsPerSec: 0,
        requestsPerSec: 0,
        latencyMs: { p50: 0, p90: 0, p99: 0, mean: 0, max: 0 },
      },
    ],
    [
      'all answered',
      [...sent(4), ['ok', 1, 2], ['ok', 2, 2], ['ok', 3, 2], ['ok', 4, 2]],
      2000,
      { sent: 4, ok: 4, lost: 0, items: 8, itemsPerSec: 4, requestsPerSec: 2, latencyMs: { p50: 2, p90: 4, p99: 4, mean: 2.5, max: 4 } },
    ],
    [
      'errors by code, sorted, not in latency',
      [...sent(5), ['ok', 10, 1], ['error', 'UNKNOWN_MODEL'], ['error', 'OVERLOADED'], ['error', 'UNKNOWN_MODEL']],
      1000,
      {
        sent: 5,
        ok: 1,
        errored: { OVERLOADED: 1, UNKNOWN_MODEL: 2 },
        lost: 1,
        requestsPerSec: 1,
        latencyMs: { p50: 10, max: 10, mean: 10 },
      },
    ],
    [
      'retries counted apart from sent',
      [...sent(2), ['retry'], ['retry'], ['ok', 5, 1], ['retry'], ['error', 'OVERLOADED']],
      500,
      { sent: 2, ok: 1, retried: 3, errored: { OVERLOADED: 1 }, lost: 0, itemsPerSec: 2, requestsPerSec: 2 },
    ],
    ['sent but never answered is lost', [...sent(3)], 1000, { sent: 3, ok: 0, errored: {}, lost: 3, requestsPerSec: 0 }],
    ['zero elapsed gives zero rates', [...sent(1), ['ok', 1, 1]], 0, { ok: 1, itemsPerSec: 0, requestsPerSec: 0 }],
    [
      'latencies recorded out of order',
      [...sent(5), ['ok', 9, 1], ['ok', 1, 1], ['ok', 5, 1], ['ok', 3, 1], ['ok', 7, 1]],
      1000,
      { latencyMs: { p50: 5, p90: 9, p99: 9, mean: 5, max: 9 } },
    ],
    [
      'rounds latency to µs and rates to 0.01',
      [...sent(3), ['ok', 1.23456, 1], ['ok', 1.23456, 1], ['ok', 1.23456, 1]],
      3000.5,
      { latencyMs: { p50: 1.235, mean: 1.235 }, requestsPerSec: 1, elapsedMs: 3000.5 },
    ],
  ])('%s', (_name, events, elapsedMs, want) => {
    expect(replay(events).summary(elapsedMs)).toMatchObject(want);
  });

  it('lost = sent - ok - sum(errored) for every prefix of a run', () => {
    const s = new LoadStats();
    for (let i = 0; i < 20; i++) {
      s.markSent();
      if (i % 3 === 0) s.recordError(i % 2 ? 'A' : 'B');
      else if (i % 3 === 1) s.recordOk(i, 1);
      const sum = s.summary(1000);
      const failed = Object.values(sum.errored).reduce((a, b) => a + b, 0);
      expect(sum.lost).toBe(sum.sent - sum.ok - failed);
    }
  });

  it('does not change when summarised repeatedly (progress)', () => {
    const s = replay([...sent(3), ['ok', 3, 1], ['ok', 1, 1], ['ok', 2, 1]]);
    expect(s.summary(1000)).toEqual(s.summary(1000));
    s.markSent();
    s.recordOk(100, 1);
    expect(s.summary(1000).latencyMs.max).toBe(100);
  });
});
