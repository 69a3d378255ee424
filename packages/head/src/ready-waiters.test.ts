import { ReadyWaiters } from './ready-waiters.js';

describe('ReadyWaiters', () => {
  it('resolves a waiter at the wake-up where its condition holds, not before', async () => {
    const w = new ReadyWaiters();
    let ready = false;
    let resolved = false;
    const p = w.wait('m', 10_000, () => ready).then(() => (resolved = true));
    w.wake('m');
    await Promise.resolve();
    expect(resolved).toBe(false);
    ready = true;
    w.wake('other'); // another model's wake-up does not concern it
    await Promise.resolve();
    expect(resolved).toBe(false);
    w.wake('m');
    await p;
    expect(w.size).toBe(0);
  });

  it('resolves after its wait even when never woken', async () => {
    const w = new ReadyWaiters();
    const t0 = Date.now();
    await w.wait('m', 30, () => false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
    expect(w.size).toBe(0);
  });

  it('wakeAll re-checks every model', async () => {
    const w = new ReadyWaiters();
    const ps = [w.wait('a', 10_000, () => true), w.wait('b', 10_000, () => true)];
    expect(w.size).toBe(2);
    w.wakeAll();
    await Promise.all(ps);
    expect(w.size).toBe(0);
  });
});
