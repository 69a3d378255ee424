import {
  Batcher,
  COMPANY_SHARE_WEIGHT,
  MAX_COMPANY_KEYS,
  MIN_COMPANY_SHARE,
  defaultMaxBatchSize,
  paddedRows,
  type Queued,
} from './batcher.js';

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
  const patient = { maxBatchSize: 8, maxQueueDelayMs: 5, maxQueueLength: 100 };

  interface Load {
    /** Callers that each send their next request `thinkMs` after their answer (closed loop)… */
    callers?: number;
    thinkMs?: number;
    /** …or requests at fixed times, whatever the answers (an open stream). */
    every?: number;
    /** How long one batch runs, ms, whatever its size. */
    runMs: number;
  }

  /** A replica on a fake clock: 200 requests through the batcher; the waits and batches of the last 100. */
  function simulate(b: Batcher<number>, load: Load) {
    const total = 200;
    const arrivals: number[] = [];
    if (load.every) for (let i = 0; i < total; i++) arrivals.push(i * load.every);
    else for (let i = 0; i < load.callers!; i++) arrivals.push(i * 0.01);
    let sent = 0;
    let running: Queued<number>[] | undefined;
    let endsAt = Infinity;
    let timerAt = Infinity;
    const waits: number[] = [];
    const batches: number[] = [];
    const reasons = new Set<string>();
    const decide = (now: number) => {
      if (running) return;
      const d = b.next(now);
      timerAt = d.kind === 'wait' ? now + d.waitMs : Infinity;
      if (d.kind !== 'run') return;
      running = d.batch;
      endsAt = now + load.runMs;
      if (d.batch[0]!.payload >= total / 2) {
        batches.push(d.items);
        reasons.add(d.reason);
        for (const q of d.batch) waits.push(now - q.enqueuedAt);
      }
    };
    while (running || (sent < total && arrivals.length) || timerAt < Infinity) {
      arrivals.sort((x, y) => x - y);
      const next = sent < total ? (arrivals[0] ?? Infinity) : Infinity;
      const now = Math.min(next, endsAt, timerAt);
      if (now === endsAt) {
        b.answered(running!);
        if (!load.every) for (const _ of running!) arrivals.push(now + load.thinkMs!);
        running = undefined;
        endsAt = Infinity;
      } else if (now === next) {
        arrivals.shift();
        b.push(req(now));
        sent++;
      }
      decide(now);
    }
    const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
    return { meanWaitMs: mean(waits), meanBatch: mean(batches), reasons: [...reasons].sort() };
  }

  it.each<[string, Load, { waits: boolean; meanBatch: number }]>([
    // One caller: its next request follows the answer, so waiting never finds company.
    [
      'one caller, quick runs (1 ms, answer to next request 0.2 ms)',
      { callers: 1, thinkMs: 0.2, runMs: 1 },
      { waits: false, meanBatch: 1 },
    ],
    ['one caller, slow runs (7 ms)', { callers: 1, thinkMs: 0.2, runMs: 7 }, { waits: false, meanBatch: 1 }],
    // Callers answered together come back together: waiting gathers them.
    ['two callers', { callers: 2, thinkMs: 0.2, runMs: 1 }, { waits: true, meanBatch: 2 }],
    ['four callers', { callers: 4, thinkMs: 0.2, runMs: 1 }, { waits: true, meanBatch: 4 }],
    // An open stream: company within the delay for every request at 2 ms apart, for none at 20.
    ['a request every 2 ms', { every: 2, runMs: 1 }, { waits: true, meanBatch: 3 }],
    ['a request every 20 ms', { every: 20, runMs: 1 }, { waits: false, meanBatch: 1 }],
  ])('%s', (_what, load, want) => {
    const r = simulate(new Batcher<number>(patient), load);
    if (want.waits) expect(r.meanWaitMs).toBeGreaterThan(0.5);
    else {
      expect(r.meanWaitMs).toBe(0);
      expect(r.reasons).toEqual(['alone']);
    }
    expect(r.meanBatch).toBeCloseTo(want.meanBatch, 0);
  });

  it('before any evidence it waits as configured; the share falls and comes back', () => {
    const b = new Batcher<number>(opts);
    b.push(req(0));
    expect(b.next(0)).toMatchObject({ kind: 'wait', waitMs: 5 });
    const first = b.next(5);
    expect(first).toMatchObject({ kind: 'run', reason: 'delay' });
    // Answered with no company: one caller, 30 times.
    let t = 5;
    b.answered(first.kind === 'run' ? first.batch : []);
    for (let i = 0; i < 30; i++) {
      b.push(req((t += 0.5)));
      let d = b.next(t);
      if (d.kind === 'wait') d = b.next((t += d.waitMs));
      if (d.kind === 'run') b.answered(d.batch);
    }
    expect(b.companyShare('a')).toBeLessThan(MIN_COMPANY_SHARE);
    // A burst: the share climbs by (1 − share) / 16 per arrival with company.
    let waitedAfter = 0;
    for (let i = 1; i <= 10 && !waitedAfter; i++) {
      b.push(req((t += 0.1)));
      if (b.next(t).kind === 'wait') waitedAfter = i;
    }
    expect(waitedAfter).toBeGreaterThan(0);
    expect(waitedAfter).toBeLessThanOrEqual(Math.ceil(Math.log(1 - MIN_COMPANY_SHARE) / Math.log(1 - COMPANY_SHARE_WEIGHT)) + 1);
  });

  it('a key that never waits says nothing about company', () => {
    const b = new Batcher<number>(opts, (key) => (key === 'now' ? { maxBatchSize: 4, maxQueueDelayMs: 0 } : undefined));
    for (let i = 0; i < 40; i++) {
      b.push(req(8 * i, 1, 'now'));
      const d = b.next(8 * i);
      expect(d).toMatchObject({ kind: 'run', reason: 'delay' });
      if (d.kind === 'run') b.answered(d.batch);
    }
    expect(b.companyShare('now')).toBe(1);
    b.push(req(400));
    expect(b.next(400)).toMatchObject({ kind: 'wait' });
  });

  it('only requests of the same key are company (they alone can share a batch)', () => {
    const b = new Batcher<number>(opts);
    // One caller of shape 'a', each request 8 ms after the last answer; a request of shape 'b' 1 ms after each.
    let t = 0;
    for (let i = 0; i < 40; i++) {
      b.push(req((t += 8), 1, 'a'));
      b.push(req(t + 1, 1, 'b'));
      for (let d = b.next(t + 1); d.kind !== 'idle'; d = b.next((t += 5))) if (d.kind === 'run') b.answered(d.batch);
    }
    expect(b.companyShare('a')).toBeLessThan(MIN_COMPANY_SHARE);
    b.push(req((t += 8), 1, 'a'));
    expect(b.next(t)).toMatchObject({ kind: 'run', reason: 'alone' });
  });

  it(`follows at most ${MAX_COMPANY_KEYS} keys: a new one forgets the oldest`, () => {
    const b = new Batcher<number>({ ...opts, maxQueueLength: 1000 });
    for (let i = 0; i < 40; i++) {
      b.push(req(10 * i, 1, 'first'));
      const d = b.next(10 * i + 5);
      if (d.kind === 'run') b.answered(d.batch);
    }
    expect(b.companyShare('first')).toBeLessThan(1);
    for (let k = 0; k < MAX_COMPANY_KEYS; k++) b.push(req(1000, 1, `k${k}`));
    expect(b.companyShare('first')).toBe(1);
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
