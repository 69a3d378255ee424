import { ReplicaRouter } from './router.js';

function seq(...xs: number[]): () => number {
  let i = 0;
  return () => xs[i++ % xs.length]!;
}

describe('ReplicaRouter (power of two choices)', () => {
  it('knows nothing until updated, then picks among the listed replicas', () => {
    const r = new ReplicaRouter(1000);
    expect(r.pick('m')).toBeUndefined();
    expect(r.stale('m', 0)).toBe(true);
    r.update('m', ['a'], 0);
    expect(r.pick('m')).toBe('a');
    expect(r.stale('m', 999)).toBe(false);
    expect(r.stale('m', 1000)).toBe(true);
  });

  it('of the two sampled replicas, picks the less loaded one', () => {
    const r = new ReplicaRouter();
    r.update('m', ['a', 'b', 'c'], 0);
    r.started('m', 'a');
    r.started('m', 'a');
    // random 0 → i=0 ('a'); random 0.1 → j=0, skips i → 1 → 'b'
    expect(r.pick('m', seq(0, 0.1))).toBe('b');
    r.finished('m', 'a', 0);
    r.finished('m', 'a', 0);
    r.finished('m', 'b', 5); // b reports a queue of 5
    expect(r.pick('m', seq(0, 0.1))).toBe('a');
  });

  it('sends a slow replica a small share of requests under a closed loop', () => {
    const r = new ReplicaRouter();
    r.update('m', ['fast', 'slow'], 0);
    const served = { fast: 0, slow: 0 };
    const inflight: Array<{ id: 'fast' | 'slow'; doneAt: number }> = [];
    let rnd = 1;
    const random = () => (rnd = (rnd * 16807) % 2147483647) / 2147483647;
    // 8 callers; fast takes 1 tick, slow 10 ticks.
    for (let t = 0; t < 2000; t++) {
      for (let k = inflight.length - 1; k >= 0; k--) {
        if (inflight[k]!.doneAt <= t) {
          r.finished('m', inflight[k]!.id);
          inflight.splice(k, 1);
        }
      }
      while (inflight.length < 8) {
        const id = r.pick('m', random) as 'fast' | 'slow';
        r.started('m', id);
        served[id]++;
        inflight.push({ id, doneAt: t + (id === 'fast' ? 1 : 10) });
      }
    }
    const share = served.slow / (served.fast + served.slow);
    expect(share).toBeLessThan(0.15); // random choice would give the slow replica ~50 % of the requests
  });

  it('keeps load across refreshes and forgets replicas that stopped answering', () => {
    const r = new ReplicaRouter();
    r.update('m', ['a', 'b'], 0);
    r.started('m', 'a');
    r.update('m', ['a', 'c'], 10);
    expect(r.load('m', 'a')).toEqual({ inFlight: 1, reportedQueue: 0 });
    expect(r.load('m', 'b')).toBeUndefined();
    r.forget('m', 'a');
    expect(r.pick('m')).toBe('c');
  });
});
