import { Batcher, type Queued } from './batcher.js';

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
