// The payload pool (payload-pool.ts): what it hands out, what it takes back, what it keeps.
import { DEFAULT_POOL_BYTES, MAX_POOLED_PAYLOAD, PAYLOAD_GRANULE, PayloadPool } from './payload-pool.js';

describe('PayloadPool', () => {
  it('hands out buffers rounded up to the granule, and a recycled one to the next payload of its size class', () => {
    const pool = new PayloadPool();
    const a = pool.take(49_212);
    expect(a.byteLength).toBe(Math.ceil(49_212 / PAYLOAD_GRANULE) * PAYLOAD_GRANULE);
    const view = new Uint8Array(a, 0, 49_212); // what the parser dispatches: a view of the payload's length
    expect(pool.recycle(view)).toBe(true);
    // A request whose headers add a few bytes lands in the same class.
    expect(pool.take(49_300)).toBe(a);
    // Another class: a buffer of its own.
    const b = pool.take(100);
    expect(b).not.toBe(a);
    expect(b.byteLength).toBe(PAYLOAD_GRANULE);
    expect(pool.stats()).toEqual({ reused: 1, allocated: 2, recycled: 1, freeBytes: 0 });
  });

  it.each([
    ['a view of memory it did not hand out (a payload read in one piece)', (_p: PayloadPool) => new Uint8Array(8192)],
    ['nothing', () => undefined],
    [
      'a buffer already back',
      (p: PayloadPool) => {
        const v = new Uint8Array(p.take(8192));
        p.recycle(v);
        return v;
      },
    ],
  ])('takes back nothing for %s', (_label, make) => {
    const pool = new PayloadPool();
    const data = make(pool);
    const before = pool.stats();
    expect(pool.recycle(data)).toBe(false);
    expect(pool.stats()).toEqual(before);
  });

  it('a buffer recycled twice is handed out once', () => {
    const pool = new PayloadPool();
    const a = pool.take(10_000);
    pool.recycle(new Uint8Array(a));
    pool.recycle(new Uint8Array(a));
    expect(pool.take(10_000)).toBe(a);
    expect(pool.take(10_000)).not.toBe(a);
  });

  it('keeps at most its free bytes; what is recycled past them is left to the collector, for good', () => {
    const pool = new PayloadPool(3 * PAYLOAD_GRANULE);
    const bufs = [0, 1, 2, 3].map(() => pool.take(PAYLOAD_GRANULE));
    expect(bufs.map((b) => pool.recycle(new Uint8Array(b)))).toEqual([true, true, true, false]);
    expect(pool.stats().freeBytes).toBe(3 * PAYLOAD_GRANULE);
    // The fourth is no longer the pool's: handed back again, it is still refused.
    pool.take(PAYLOAD_GRANULE);
    expect(pool.recycle(new Uint8Array(bufs[3]!))).toBe(false);
    expect(DEFAULT_POOL_BYTES).toBeGreaterThanOrEqual(MAX_POOLED_PAYLOAD);
  });

  it('does not pool payloads over MAX_POOLED_PAYLOAD: they get a buffer of their own size, never taken back', () => {
    const pool = new PayloadPool();
    const big = pool.take(MAX_POOLED_PAYLOAD + 1);
    expect(big.byteLength).toBe(MAX_POOLED_PAYLOAD + 1);
    expect(pool.recycle(new Uint8Array(big))).toBe(false);
    expect(pool.stats().allocated).toBe(0);
  });
});
