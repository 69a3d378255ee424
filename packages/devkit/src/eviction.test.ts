// Integration: a worker whose memory budget fits 2 of 3 models evicts by policy, a request for an
// evicted model brings it back transparently, and the accounted usage never exceeds the budget.
import { connect } from '@nats-io/transport-node';
import { decode, encode, type Heartbeat } from '@flotilla/protocol';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';

const MiB = 1024 * 1024;
const x = { dtype: 'float32' as const, dims: [1, 16], data: randomFloats(16, 1) };

async function scenario(policy: string, useAFirst: boolean) {
  const cluster = await LocalCluster.start({ workers: 1, worker: { memoryBudgetBytes: 100 * MiB, eviction: policy } });
  const client = cluster.client();
  // Watch every heartbeat: the device's accounted usage must never exceed its budget.
  const nc = await connect({ servers: cluster.url });
  let maxOver = -Infinity;
  let beats = 0;
  nc.subscribe(`flotilla.${cluster.cluster}.hb.*`, {
    callback: (_e, m) => {
      const hb = decode<Heartbeat>(m.data);
      for (const d of hb.devices) maxOver = Math.max(maxOver, d.usedBytes - d.budgetBytes);
      beats++;
    },
  });
  const opts = { device: 'cpu' as const, memoryBytes: 40 * MiB, profile: { enabled: false } };
  try {
    await client.deploy(sampleModelPath('mlp'), 'a', opts);
    await client.deploy(sampleModelPath('mlp'), 'b', opts);
    const expected = (await client.infer('a', { x })).y!.data;
    if (useAFirst) {
      await new Promise((r) => setTimeout(r, 20));
      await client.infer('b', { x });
      await new Promise((r) => setTimeout(r, 20));
      await client.infer('a', { x }); // a is the most recently used
    }
    await client.deploy(sampleModelPath('mlp'), 'c', opts);
    const afterC = await client.list();
    const ready = Object.fromEntries(afterC.map((d) => [d.spec.name, d.ready]));
    const evictedFirst = (await client.events({ limit: 50 })).filter((e) => e.type === 'evicted').map((e) => e.model);

    // Transparent reload: the evicted model answers, correctly, within the deadline.
    const victim = evictedFirst[0]!;
    const t0 = performance.now();
    const again = await client.inferWithMeta(victim, { x }, { timeoutMs: 20_000 });
    const reloadMs = performance.now() - t0;
    expect(Array.from(again.outputs.y!.data as Float32Array)).toEqual(Array.from(expected as Float32Array));

    const events = await client.events({ limit: 50 });
    const status = await client.status();
    return { ready, evictedFirst, events, status, reloadMs, maxOver: () => maxOver, beats: () => beats };
  } finally {
    await nc.close();
    await cluster.stop();
  }
}

describe('eviction and transparent reload', () => {
  it('FIFO: A is evicted for C; a request for A brings it back (evicting B, the next oldest)', async () => {
    const r = await scenario('fifo', true);
    expect(r.ready).toEqual({ a: 0, b: 1, c: 1 });
    expect(r.evictedFirst).toEqual(['a']);
    const evictions = r.events.filter((e) => e.type === 'evicted');
    expect(evictions.map((e) => e.model)).toEqual(['a', 'b']);
    expect(evictions[0]).toMatchObject({ type: 'evicted', model: 'a', worker: 'w0', device: 'cpu', bytes: 40 * MiB });
    expect(evictions[0]!.reason).toMatch(/^fifo: make room for 'c'/);
    const dev = r.status.workers[0]!.devices[0]!;
    expect(dev).toMatchObject({ budgetBytes: 100 * MiB, usedBytes: 80 * MiB, policy: 'fifo' });
    expect(dev.models.map((m) => m.name).sort()).toEqual(['a', 'c']);
    expect(r.beats()).toBeGreaterThan(3);
    expect(r.maxOver()).toBeLessThanOrEqual(0);
  }, 60_000);

  it('LRU: B is evicted for C when A was used last', async () => {
    const r = await scenario('lru', true);
    expect(r.evictedFirst).toEqual(['b']);
    expect(r.ready).toEqual({ a: 1, b: 0, c: 1 });
    expect(r.maxOver()).toBeLessThanOrEqual(0);
  }, 60_000);

  it('ensure with waitMs replies once the evicted model has a ready replica; without it, at once', async () => {
    const cluster = await LocalCluster.start({ workers: 1, worker: { memoryBudgetBytes: 100 * MiB } });
    const nc = await connect({ servers: cluster.url });
    try {
      const client = cluster.client();
      const opts = { device: 'cpu' as const, memoryBytes: 60 * MiB, profile: { enabled: false } };
      await client.deploy(sampleModelPath('mlp'), 'a', opts);
      await client.deploy(sampleModelPath('mlp'), 'b', opts); // evicts a
      const ensure = async (name: string, waitMs?: number) =>
        decode<{ ok: boolean; result: { ready: number; dormant?: boolean }; error?: { code: string } }>(
          (
            await nc.request(
              `flotilla.${cluster.cluster}.ctl.ensure`,
              encode({ v: 1, name, ...(waitMs === undefined ? {} : { waitMs }) }),
              { timeout: 10_000 },
            )
          ).data,
        );
      const now = await ensure('a');
      expect(now).toMatchObject({ ok: true, result: { ready: 0 } }); // placing, not ready yet
      await client.waitReady('a', 10_000); // a is back (b evicted)
      const t0 = performance.now();
      const waited = await ensure('b', 8000);
      expect(waited).toMatchObject({ ok: true, result: { ready: 1 } });
      expect(performance.now() - t0).toBeLessThan(8000); // woken by the ready replica, not the timer
      expect(await ensure('nope', 1000)).toMatchObject({ ok: false, error: { code: 'UNKNOWN_MODEL' } });
    } finally {
      await nc.close();
      await cluster.stop();
    }
  }, 30_000);

  it('a model that cannot fit even after evicting everything is refused with NO_CAPACITY', async () => {
    const cluster = await LocalCluster.start({ workers: 1, worker: { memoryBudgetBytes: 100 * MiB } });
    try {
      const client = cluster.client();
      await client.deploy(sampleModelPath('mlp'), 'pinned', {
        device: 'cpu',
        memoryBytes: 60 * MiB,
        pin: true,
        profile: { enabled: false },
      });
      const err = await client
        .deploy(sampleModelPath('mlp'), 'big', { device: 'cpu', memoryBytes: 50 * MiB, waitTimeoutMs: 3000, profile: { enabled: false } })
        .catch((e: { code: string }) => e);
      expect(err).toMatchObject({ code: 'NO_CAPACITY' });
      expect((await client.describe('pinned')).ready).toBe(1);
    } finally {
      await cluster.stop();
    }
  }, 30_000);

  it('a worker that refuses a replica (NO_CAPACITY) is skipped: the head places it on another worker at once', async () => {
    // w0 has the most free memory, so placement picks it, but it hosts at most one replica: a
    // limit the head cannot see. Its refusal must send the replica to w1, not back to w0.
    const cluster = await LocalCluster.start({
      workers: 2,
      worker: (i) => (i === 0 ? { maxReplicas: 1, memoryBudgetBytes: 1024 * MiB } : { memoryBudgetBytes: 500 * MiB }),
    });
    try {
      const client = cluster.client();
      const opts = { device: 'cpu' as const, memoryBytes: 40 * MiB, profile: { enabled: false } };
      const one = await client.deploy(sampleModelPath('mlp'), 'one', opts);
      expect(one.replicas[0]!.workerId).toBe('w0');
      const t0 = performance.now();
      const two = await client.deploy(sampleModelPath('mlp'), 'two', { ...opts, waitTimeoutMs: 10_000 });
      expect(two.ready).toBe(1);
      expect(two.replicas.find((r) => r.state === 'ready')!.workerId).toBe('w1');
      expect(performance.now() - t0).toBeLessThan(2000); // no back-off round on the refusing worker
      const refused = (await client.events({ model: 'two' })).filter((e) => e.type === 'refused');
      expect(refused.map((e) => e.worker)).toEqual(['w0']);
      expect(refused[0]!.reason).toMatch(/limit 1/);
    } finally {
      await cluster.stop();
    }
  }, 30_000);

  it('a worker refuses replicas beyond its max-replicas limit with NO_CAPACITY', async () => {
    const cluster = await LocalCluster.start({ workers: 1, worker: { maxReplicas: 1 } });
    try {
      const client = cluster.client();
      const opts = { device: 'cpu' as const, profile: { enabled: false } };
      await client.deploy(sampleModelPath('mlp'), 'one', opts);
      const err = await client
        .deploy(sampleModelPath('mlp'), 'two', { ...opts, waitTimeoutMs: 2000 })
        .catch((e: { code: string; message: string }) => e);
      expect(err).toMatchObject({ code: 'NO_CAPACITY' });
      expect((err as { message: string }).message).toMatch(/limit 1/);
    } finally {
      await cluster.stop();
    }
  }, 30_000);
});
