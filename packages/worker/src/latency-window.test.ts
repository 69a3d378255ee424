import { LatencyWindow, nearestRank } from './latency-window.js';

/** A window holding `latencies`, all answered at time 0. */
function windowOf(latencies: number[], capacity = 1024): LatencyWindow {
  const w = new LatencyWindow(capacity, 10_000);
  for (const ms of latencies) w.record(ms, 0);
  return w;
}

describe('LatencyWindow', () => {
  it.each([
    { name: 'one latency', input: [7], want: { p50: 7, p99: 7, count: 1 } },
    { name: 'two latencies', input: [9, 1], want: { p50: 1, p99: 9, count: 2 } },
    { name: '1..100 shuffled', input: [...Array(100).keys()].map((i) => ((i * 37) % 100) + 1), want: { p50: 50, p99: 99, count: 100 } },
    { name: '1..1000', input: [...Array(1000).keys()].map((i) => i + 1), want: { p50: 500, p99: 990, count: 1000 } },
    { name: 'one slow request in 200', input: [...Array(199).fill(2), 500], want: { p50: 2, p99: 2, count: 200 } },
    { name: 'three slow in 200', input: [...Array(197).fill(2), 300, 400, 500], want: { p50: 2, p99: 300, count: 200 } }, // rank 198 of 200
    { name: 'fractional ms', input: [0.25, 0.5, 0.75, 1.5], want: { p50: 0.5, p99: 1.5, count: 4 } },
  ])('percentiles are exact (nearest rank): $name', ({ input, want }) => {
    expect(windowOf(input).summary(0)).toEqual(want);
  });

  it('is empty before any request, and says so with undefined', () => {
    expect(new LatencyWindow().summary(123)).toBeUndefined();
  });

  it('keeps only the last `capacity` latencies: memory is fixed', () => {
    const w = windowOf([...Array(10).fill(1000), 1, 2, 3, 4], 4);
    expect(w.summary(0)).toEqual({ p50: 2, p99: 4, count: 4 });
    // A million more requests: still 4 counted.
    for (let i = 0; i < 1_000_000; i++) w.record(5, 0);
    expect(w.summary(0)).toEqual({ p50: 5, p99: 5, count: 4 });
  });

  it('counts only answers within maxAgeMs of now: an idle replica reports nothing stale', () => {
    const w = new LatencyWindow(8, 1000);
    w.record(100, 0);
    w.record(200, 500);
    w.record(300, 1500);
    expect(w.summary(1500)).toEqual({ p50: 200, p99: 300, count: 2 }); // 0 is older than 1500 - 1000
    expect(w.summary(2400)).toEqual({ p50: 300, p99: 300, count: 1 });
    expect(w.summary(2600)).toBeUndefined();
  });

  it('a summary does not consume the window (several readers per heartbeat see the same)', () => {
    const w = windowOf([3, 1, 2]);
    expect(w.summary(0)).toEqual(w.summary(0));
    w.record(10, 0);
    expect(w.summary(0)).toEqual({ p50: 2, p99: 10, count: 4 });
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new LatencyWindow(0)).toThrow(RangeError);
    expect(() => new LatencyWindow(1.5)).toThrow(RangeError);
  });
});

describe('nearestRank', () => {
  it.each([
    { sorted: [1, 2, 3, 4], q: 0.5, want: 2 },
    { sorted: [1, 2, 3, 4], q: 0.99, want: 4 },
    { sorted: [1, 2, 3, 4], q: 0, want: 1 },
    { sorted: [5], q: 0.99, want: 5 },
  ])('q=$q of $sorted is $want', ({ sorted, q, want }) => {
    expect(nearestRank(sorted, q)).toBe(want);
  });
});
