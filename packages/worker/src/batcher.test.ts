import { Batcher, COMPANY_SHARE_WEIGHT, MIN_COMPANY_SHARE, defaultMaxBatchSize, paddedRows, type Queued } from './batcher.js';

const opts = { maxBatchSize: 4, maxQueueDelayMs: 5, maxQueueLength: 10 };
let seq = 0;
function req(at: number, items = 1, key = 'a', deadline = Infinity): Queued<number> {
  return { key, items, enqueuedAt: at, deadline, payload: seq++ };
}
const ids = (d: ReturnType<Batcher<number>['next']>) => (d.kind === 'run' ? d.batch.map((q) => q.payload) : []);

describe('Batcher (fake clock)', () => {
  beforeEach(() => (seq = 0));

  it('is idle when empty', () => {
    expect(new Batcher<number>(opts).next(0)).toEqual({ kind: 'idle', expired: [] });
  });

  it('waits for company until the queue delay, then runs what it has', () => {
    const b = new Batcher<number>(opts);
    b.push(req(0));
    b.push(req(1));
    expect(b.next(2)).toMatchObject({ kind: 'wait', waitMs: 3 });
    const d = b.next(5);
    expect(d).toMatchObject({ kind: 'run', items: 2, reason: 'delay' });
    expect(ids(d)).toEqual([0, 1]);
    expect(b.length).toBe(0);
  });

  it('runs at once when the batch is full and leaves the rest queued in order', () => {
    const b = new Batcher<number>(opts);
    for (let i = 0; i < 6; i++) b.push(req(0));
    const d = b.next(0);
    expect(d).toMatchObject({ kind: 'run', items: 4, reason: 'full' });
    expect(ids(d)).toEqual([0, 1, 2, 3]);
    expect(b.length).toBe(2);
    expect(b.next(0)).toMatchObject({ kind: 'wait', waitMs: 5 });
  });

  it('never mixes keys, and later compatible requests may overtake an incompatible one', () => {
    const b = new Batcher<number>(opts);
    b.push(req(0, 1, 'a'));
    b.push(req(0, 1, 'b'));
    b.push(req(0, 1, 'a'));
    const d = b.next(5);
    expect(ids(d)).toEqual([0, 2]);
    expect(ids(b.next(5))).toEqual([1]);
  });

  it('counts items along the batch axis and stops before overflowing', () => {
    const b = new Batcher<number>(opts);
    b.push(req(0, 3));
    b.push(req(0, 2));
    b.push(req(0, 1));
    const d = b.next(0);
    expect(d).toMatchObject({ kind: 'run', items: 3, reason: 'full' });
    expect(ids(d)).toEqual([0]);
    expect(ids(b.next(5))).toEqual([1, 2]);
  });

  it('runs a request larger than the max batch alone', () => {
    const b = new Batcher<number>(opts);
    b.push(req(0, 9));
    expect(b.next(0)).toMatchObject({ kind: 'run', items: 9 });
  });

  it('drops expired requests from the queue and reports them, never running them', () => {
    const b = new Batcher<number>(opts);
    b.push(req(0, 1, 'a', 3));
    b.push(req(0, 1, 'a', 100));
    const d = b.next(4);
    expect(d.expired.map((q) => q.payload)).toEqual([0]);
    expect(d).toMatchObject({ kind: 'wait', waitMs: 1 });
    expect(ids(b.next(5))).toEqual([1]);
  });

  it('does not wait past the oldest request deadline', () => {
    const b = new Batcher<number>(opts);
    b.push(req(0, 1, 'a', 2));
    expect(b.next(0)).toMatchObject({ kind: 'wait', waitMs: 2 });
  });

  it.each([
    // delay, waited → decision: a remaining wait under 1 ms (a timer's resolution) runs at once
    [0.1, 0, 'run'],
    [0.9, 0, 'run'],
    [1, 0, 'wait'],
    [5, 3.5, 'wait'],
    [5, 4.2, 'run'],
  ])('with a delay of %p ms, %p ms after the request arrived: %s', (delay, waited, kind) => {
    const b = new Batcher<number>({ ...opts, maxQueueDelayMs: delay });
    b.push(req(0));
    expect(b.next(waited).kind).toBe(kind);
  });

  it('with zero delay runs whatever is queued immediately', () => {
    const b = new Batcher<number>({ ...opts, maxQueueDelayMs: 0 });
    b.push(req(0));
    expect(b.next(0)).toMatchObject({ kind: 'run', items: 1 });
  });

  it('refuses pushes past maxQueueLength', () => {
    const b = new Batcher<number>({ ...opts, maxQueueLength: 2 });
    expect(b.push(req(0))).toBe(true);
    expect(b.push(req(0))).toBe(true);
    expect(b.push(req(0))).toBe(false);
    expect(b.length).toBe(2);
  });
});

describe('waiting only while company keeps coming (the delay is a most)', () => {
  beforeEach(() => (seq = 0));

  /** Feeds arrivals at the given times (each runs before the next arrives); returns the decision for the last. */
  function afterArrivals(b: Batcher<number>, times: number[]) {
    let d: ReturnType<Batcher<number>['next']> = { kind: 'idle', expired: [] };
    for (const t of times) {
      b.push(req(t));
      d = b.next(t);
      if (d.kind === 'wait') d = b.next(t + opts.maxQueueDelayMs); // the timer fires: the batch runs
    }
    b.push(req(times.at(-1)! + 100));
    return b.next(times.at(-1)! + 100);
  }

  it('one caller at a time (each request 8 ms after the last, past the 5 ms delay): soon runs at once', () => {
    const b = new Batcher<number>(opts);
    // Before any evidence it waits as configured.
    b.push(req(0));
    expect(b.next(0)).toMatchObject({ kind: 'wait', waitMs: 5 });
    expect(b.next(5)).toMatchObject({ kind: 'run', reason: 'delay' });
    const d = afterArrivals(
      b,
      Array.from({ length: 30 }, (_, i) => 8 * (i + 1)),
    );
    expect(b.companyShare).toBeLessThan(MIN_COMPANY_SHARE);
    expect(d).toMatchObject({ kind: 'run', items: 1, reason: 'alone' });
  });

  it.each([
    // [what, gap pattern (ms, repeated), waits]
    ['two callers answered together (pairs 0.1 ms apart, 8 ms between pairs)', [0.1, 8], true],
    ['a burst of four callers', [0.1, 0.1, 0.1, 8], true],
    ['an open stream every 2 ms', [2], true],
    ['an open stream every 6 ms (past the delay)', [6], false],
    ['one in five arrivals with company', [1, 8, 8, 8, 8], false],
  ] as const)('%s: waits %p', (_what, gaps, waits) => {
    const b = new Batcher<number>(opts);
    const times: number[] = [];
    let t = 0;
    for (let i = 0; i < 64; i++) times.push((t += gaps[i % gaps.length]!));
    // The share of arrivals followed by another within the delay, settled.
    const hits = gaps.filter((g) => g <= opts.maxQueueDelayMs).length / gaps.length;
    const d = afterArrivals(b, times);
    expect(Math.abs(b.companyShare - hits)).toBeLessThan(0.15);
    expect(d.kind === 'wait').toBe(waits);
  });

  it('company returning brings waiting back within a few arrivals', () => {
    const b = new Batcher<number>(opts);
    afterArrivals(
      b,
      Array.from({ length: 40 }, (_, i) => 10 * i),
    );
    expect(b.companyShare).toBeLessThan(MIN_COMPANY_SHARE);
    // A burst: the share climbs by (1 − share) / 16 per arrival with company.
    let t = 1000;
    let waitedAfter = 0;
    for (let i = 1; i <= 10 && !waitedAfter; i++) {
      b.push(req((t += 0.1)));
      if (b.next(t).kind === 'wait') waitedAfter = i;
    }
    expect(waitedAfter).toBeGreaterThan(0);
    expect(waitedAfter).toBeLessThanOrEqual(Math.ceil(Math.log(1 - MIN_COMPANY_SHARE) / Math.log(1 - COMPANY_SHARE_WEIGHT)) + 1);
  });

  it('a full batch and a delay already spent are unchanged; a key that never waits says nothing about company', () => {
    const b = new Batcher<number>(opts, (key) => (key === 'now' ? { maxBatchSize: 4, maxQueueDelayMs: 0 } : undefined));
    // Arrivals of a key without a delay, 8 ms apart, do not count as lonely ones.
    for (let i = 0; i < 40; i++) {
      b.push(req(8 * i, 1, 'now'));
      expect(b.next(8 * i)).toMatchObject({ kind: 'run', reason: 'delay' });
    }
    expect(b.companyShare).toBe(1);
    b.push(req(400));
    expect(b.next(400)).toMatchObject({ kind: 'wait' });
  });
});

describe('Batcher with per-key limits (a dynamic-shape model profiled per shape)', () => {
  beforeEach(() => (seq = 0));
  // Shape 'small' profiled: batches of 2 after 3 ms; 'big' profiled: alone, at once; 'new': not yet (defaults: 4 / 5 ms).
  const limits = (key: string) =>
    ({ small: { maxBatchSize: 2, maxQueueDelayMs: 3 }, big: { maxBatchSize: 1, maxQueueDelayMs: 0 } })[key as 'small' | 'big'];

  it.each<[string, string, number, number, ReturnType<Batcher<number>['next']>['kind'], number]>([
    // [what, key, requests queued at 0, now, decision, items run]
    ['a profiled shape is full at its own max', 'small', 3, 0, 'run', 2],
    ['a profiled shape waits its own delay', 'small', 1, 1.5, 'wait', 0],
    ['...and runs once it has passed', 'small', 1, 3, 'run', 1],
    ['a shape profiled to run alone never waits', 'big', 3, 0, 'run', 1],
    ['a shape not profiled yet runs on the defaults', 'new', 3, 0, 'wait', 0],
    ['...up to the default max', 'new', 6, 0, 'run', 4],
  ])('%s', (_what, key, n, now, kind, items) => {
    const b = new Batcher<number>(opts, limits);
    for (let i = 0; i < n; i++) b.push(req(0, 1, key));
    const d = b.next(now);
    expect(d.kind).toBe(kind);
    if (d.kind === 'run') expect(d.items).toBe(items);
  });

  it("the oldest request's key decides, whatever is queued behind it", () => {
    const b = new Batcher<number>(opts, limits);
    b.push(req(0, 1, 'big'));
    b.push(req(0, 1, 'small'));
    b.push(req(0, 1, 'small'));
    expect(ids(b.next(0))).toEqual([0]); // 'big' runs alone, at once
    expect(ids(b.next(0))).toEqual([1, 2]); // then 'small' is full at 2
  });
});

describe('padding (a device that pays for every change of input shape)', () => {
  beforeEach(() => (seq = 0));

  it('a batch smaller than padTo runs as padTo rows; a full one and a larger lone request as they are', () => {
    const b = new Batcher<number>({ ...opts, padTo: 4 });
    b.push(req(0));
    b.push(req(0, 2));
    expect(b.next(5)).toMatchObject({ kind: 'run', items: 3, rows: 4 });
    for (let i = 0; i < 4; i++) b.push(req(6));
    expect(b.next(6)).toMatchObject({ kind: 'run', items: 4, rows: 4, reason: 'full' });
    b.push(req(7, 9));
    expect(b.next(7)).toMatchObject({ kind: 'run', items: 9, rows: 9 });
    expect(new Batcher<number>(opts).next(0)).toEqual({ kind: 'idle', expired: [] });
  });

  it('without padTo rows are the items; a key’s own padTo applies to its batches', () => {
    const plain = new Batcher<number>(opts);
    plain.push(req(0));
    expect(plain.next(5)).toMatchObject({ kind: 'run', items: 1, rows: 1 });
    const keyed = new Batcher<number>(opts, (key) => (key === 'big' ? { maxBatchSize: 8, maxQueueDelayMs: 0, padTo: 8 } : undefined));
    keyed.push(req(0, 3, 'big'));
    keyed.push(req(0, 1, 'small'));
    expect(keyed.next(0)).toMatchObject({ kind: 'run', items: 3, rows: 8 });
    expect(keyed.next(5)).toMatchObject({ kind: 'run', items: 1, rows: 1 });
  });

  it.each([
    [1, undefined, 1],
    [1, 8, 8],
    [8, 8, 8],
    [9, 8, 9],
  ])('paddedRows(%i, %s) = %i', (items, padTo, rows) => expect(paddedRows(items, padTo)).toBe(rows));
});

describe('defaultMaxBatchSize (no profile chose)', () => {
  it.each([
    ['CPU: the default', false, {}, 8],
    ['CPU, the deployment’s size', false, { maxBatchSize: 4 }, 4],
    ['GPU: one request at a time', true, {}, 1],
    ['GPU, the deployment’s size', true, { maxBatchSize: 16 }, 16],
    ['GPU, padded batches asked for: the default, padded', true, { padBatches: true }, 8],
    ['GPU, padding turned off: one at a time', true, { padBatches: false }, 1],
  ] as const)('%s', (_what, gpu, deployment, size) => expect(defaultMaxBatchSize(gpu, deployment, 8)).toBe(size));
});
