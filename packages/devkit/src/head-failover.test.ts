// Several heads: one leads (JetStream KV lease), the others stand by. A leader that vanishes
// without a word is replaced once its lease expires; one that stops cleanly hands over at once.
// The new leader recovers deployments from KV, answers control requests and reconciles; the old
// one, if it comes back, has stepped down. Inference never goes through a head and keeps working.
import { headers } from '@nats-io/nats-core';
import { Head } from '@flotilla/head';
import { closeBus, connectBus, silentLogger } from '@flotilla/bus';
import { PROTOCOL_VERSION, encode, subjects as makeSubjects, type HeadPresence } from '@flotilla/protocol';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

const x = { x: { dtype: 'float32' as const, dims: [1, 16], data: randomFloats(16, 1) } };

describe('head leadership', () => {
  it('a standby takes over when the leader vanishes (lease expiry), recovers the deployments and reconciles', async () => {
    const TTL = 1000;
    const cluster = await LocalCluster.start({ workers: 1, head: { id: 'head-a', leaseTtlMs: TTL } });
    const standby = await Head.start({
      cluster: cluster.cluster,
      bus: { servers: cluster.url },
      id: 'head-b',
      leaseTtlMs: TTL,
      logger: silentLogger(),
    });
    try {
      expect(cluster.head.state).toBe('running');
      expect(standby.state).toBe('standby');
      expect(standby.notReady()).toBeNull(); // a standby is healthy: it is there to take over
      expect((await standby.lease.holder())?.id).toBe('head-a');
      const client = cluster.client();
      await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', profile: { enabled: false } });
      expect((await client.status()).head.id).toBe('head-a');
      const expected = (await client.infer('mlp', x)).y!.data;

      // The leader vanishes: its connection drops, the lease is not released.
      const t0 = performance.now();
      await cluster.head.nc.close();
      // Inference does not need a head.
      expect(Array.from((await client.infer('mlp', x)).y!.data as Float32Array)).toEqual(Array.from(expected as Float32Array));
      await standby.leading();
      const takeoverMs = performance.now() - t0;
      expect(takeoverMs).toBeGreaterThanOrEqual(TTL * 0.5); // it waited for the lease to expire...
      expect(takeoverMs).toBeLessThan(TTL * 3); // ...and not much longer
      process.stdout.write(`[head-failover] leader lost: standby leads after ${takeoverMs.toFixed(0)} ms (lease TTL ${TTL} ms)\n`);

      // The new leader knows the deployment (from KV) and its replica (from heartbeats), and acts.
      const st = await until(async () => {
        const s = await client.describe('mlp').catch(() => undefined);
        return s && s.ready === 1 ? s : undefined;
      });
      expect(st.spec.name).toBe('mlp');
      expect((await client.status()).head.id).toBe('head-b');
      const scaled = await client.scale('mlp', 2, { wait: true, waitTimeoutMs: 15_000 });
      expect(scaled.ready).toBe(2);
      // The old leader could not renew: it has stepped down and would not act if it came back.
      await until(() => cluster.head.state === 'standby' || cluster.head.state === 'stopped', {
        timeoutMs: TTL * 3,
        what: 'old leader stepped down',
      });
    } finally {
      await standby.stop();
      await cluster.stop();
    }
  }, 60_000);

  it('a leader that stops cleanly hands over at once', async () => {
    const cluster = await LocalCluster.start({ workers: 1, head: { id: 'head-a', leaseTtlMs: 3000 } });
    // Asks for another TTL: the bucket's (the first head's) applies to every head.
    const standby = await Head.start({
      cluster: cluster.cluster,
      bus: { servers: cluster.url },
      id: 'head-b',
      leaseTtlMs: 500,
      logger: silentLogger(),
    });
    try {
      expect(standby.lease.ttlMs).toBe(3000);
      const client = cluster.client();
      await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', profile: { enabled: false } });
      const t0 = performance.now();
      await cluster.head.stop();
      await standby.leading();
      const handoverMs = performance.now() - t0;
      expect(handoverMs).toBeLessThan(500); // the standby watches the lease: no waiting for the TTL or the next poll
      process.stdout.write(`[head-failover] clean stop: standby leads after ${handoverMs.toFixed(0)} ms (lease TTL 3000 ms)\n`);
      expect(await until(async () => ((await client.describe('mlp')).ready === 1 ? true : undefined))).toBe(true);
      expect((await client.status()).head.id).toBe('head-b');
    } finally {
      await standby.stop();
      await cluster.stop();
    }
  }, 30_000);

  it('the new leader has the event history and keeps evicted models dormant (no thrash), until requested', async () => {
    const MiB = 1024 * 1024;
    const cluster = await LocalCluster.start({
      workers: 1,
      worker: { memoryBudgetBytes: 100 * MiB },
      head: { id: 'head-a', leaseTtlMs: 1000 },
    });
    const standby = await Head.start({
      cluster: cluster.cluster,
      bus: { servers: cluster.url },
      id: 'head-b',
      leaseTtlMs: 1000,
      logger: silentLogger(),
    });
    try {
      const client = cluster.client();
      const opts = { device: 'cpu' as const, memoryBytes: 60 * MiB, profile: { enabled: false } };
      await client.deploy(sampleModelPath('mlp'), 'a', opts);
      await client.deploy(sampleModelPath('mlp'), 'b', opts); // evicts a
      await cluster.head.stop();
      await standby.leading();
      const events = await client.events({ limit: 50 });
      expect(events.filter((e) => e.model === 'a').map((e) => e.type)).toEqual(['loaded', 'evicted']);
      // Several reconcile rounds later, a is still not re-placed (that would evict b: thrash)...
      await new Promise((r) => setTimeout(r, 1500));
      expect((await client.describe('a')).ready).toBe(0);
      expect((await client.describe('a')).dormant).toBe(true);
      expect((await client.describe('b')).ready).toBe(1);
      // ...until a request asks for it.
      expect((await client.infer('a', x, { timeoutMs: 15_000 })).y!.dims).toEqual([1, 4]);
    } finally {
      await standby.stop();
      await cluster.stop();
    }
  }, 30_000);

  it('a new leader does not place recovered deployments before it has heard the workers (no duplicate replicas)', async () => {
    // The replica is on w1 (more free memory), which beats only every 2 s; w0 beats every 250 ms.
    // A head placing at its first rounds would know w0 but not w1's replica, and place a second.
    const cluster = await LocalCluster.start({
      workers: 2,
      worker: (i) => (i === 0 ? { memoryBudgetBytes: 500 * 1024 * 1024 } : { memoryBudgetBytes: 1024 * 1024 * 1024, heartbeatMs: 2000 }),
      head: { id: 'head-a' },
    });
    const standby = await Head.start({
      cluster: cluster.cluster,
      bus: { servers: cluster.url },
      id: 'head-b',
      settleMs: 3000,
      reconcileMs: 100,
      logger: silentLogger(),
    });
    try {
      const client = cluster.client();
      const deployed = await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', profile: { enabled: false } });
      expect(deployed.replicas.map((r) => r.workerId)).toEqual(['w1']);
      await cluster.head.stop();
      await standby.leading();
      const since = Date.now();
      await new Promise((r) => setTimeout(r, 3500)); // 35 rounds; a heartbeat arrived meanwhile
      const st = await client.describe('mlp');
      expect(st.replicas.map((r) => r.state)).toEqual(['ready']);
      expect((await client.events({ model: 'mlp' })).filter((e) => e.type === 'loaded' && e.at >= since)).toEqual([]);
    } finally {
      await standby.stop();
      await cluster.stop();
    }
  }, 30_000);

  it('a head that lost its lease and takes it back waits for the workers it knew before placing (no duplicate replicas)', async () => {
    // The replica is on w1, which beats only every 2 s. The head loses its lease for a moment (another
    // head's record written over it), steps down and forgets its workers, then leads again. Placing
    // after its 300 ms settle period it would know w0 but not w1's replica, and place a second.
    const cluster = await LocalCluster.start({
      workers: 2,
      worker: (i) => (i === 0 ? { memoryBudgetBytes: 500 * 1024 * 1024 } : { memoryBudgetBytes: 1024 * 1024 * 1024, heartbeatMs: 2000 }),
      head: { id: 'head-a', settleMs: 300, reconcileMs: 100, leaseTtlMs: 1500 },
    });
    const nc = await connectBus({ servers: cluster.url });
    try {
      const client = cluster.client();
      const deployed = await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', profile: { enabled: false } });
      expect(deployed.replicas.map((r) => r.workerId)).toEqual(['w1']);
      await until(async () => (await client.status()).workers.filter((w) => w.alive).length === 2, { timeoutMs: 10_000 });
      const lease = `$KV.${makeSubjects(cluster.cluster).leaseBucket}.leader`;
      await nc.request(lease, encode({ v: PROTOCOL_VERSION, id: 'head-x', pid: 1, since: Date.now() }));
      await until(() => cluster.head.state === 'standby', { timeoutMs: 5_000, what: 'head-a stepped down' });
      const since = Date.now();
      const del = headers();
      del.set('KV-Operation', 'DEL');
      await nc.request(lease, new Uint8Array(0), { headers: del });
      await cluster.head.leading();
      // Status says the head is holding placement back (300 ms at least), awaiting workers it knew.
      const held = (await client.status()).head;
      expect(held.settlingUntil).toBeGreaterThan(Date.now());
      for (const w of held.awaitingWorkers ?? []) expect(['w0', 'w1']).toContain(w);
      await new Promise((r) => setTimeout(r, 3000)); // a w1 heartbeat arrived meanwhile
      expect((await client.status()).head.settlingUntil).toBeUndefined();
      const st = await client.describe('mlp');
      expect(st.replicas.map((r) => [r.workerId, r.state])).toEqual([['w1', 'ready']]);
      expect((await client.events({ model: 'mlp' })).filter((e) => e.type === 'loaded' && e.at >= since)).toEqual([]);
    } finally {
      await closeBus(nc);
      await cluster.stop();
    }
  }, 30_000);

  it('status lists the leader and the standby; after the leader stops, the new leader lists itself and the old one expires', async () => {
    const PRESENCE = 200; // expiry: three missed periods, 600 ms
    const cluster = await LocalCluster.start({ workers: 0, head: { id: 'head-a', leaseTtlMs: 1000, presenceMs: PRESENCE } });
    const standby = await Head.start({
      cluster: cluster.cluster,
      bus: { servers: cluster.url },
      id: 'head-b',
      leaseTtlMs: 1000,
      presenceMs: PRESENCE,
      logger: silentLogger(),
    });
    const nc = await connectBus({ servers: cluster.url });
    const s = makeSubjects(cluster.cluster);
    try {
      const client = cluster.client();
      const roles = async () => ((await client.status()).heads ?? []).map((h) => `${h.id}:${h.role}`);
      await until(async () => (await roles()).join() === 'head-a:leader,head-b:standby', { what: 'both heads listed' });
      const [a, b] = (await client.status()).heads!;
      expect(a).toMatchObject({ id: 'head-a', pid: process.pid, startedAt: expect.any(Number) as number });
      expect(b!.host.length).toBeGreaterThan(0);
      expect(Date.now() - b!.lastSeenAt).toBeLessThan(3 * PRESENCE + 500);

      // Junk and forgeries on the presence subjects: no crash, nothing believed, both heads still right.
      const forged = (id: string, over: Partial<HeadPresence> = {}): Uint8Array =>
        encode({ v: PROTOCOL_VERSION, id, pid: 1, host: 'evil', startedAt: 1, role: 'leader', since: 1, seq: 0, ...over });
      nc.publish(s.headPresence('head-b'), new Uint8Array([0xc1, 0xff, 0x00])); // not msgpack
      nc.publish(s.headPresence('head-b'), encode({ v: PROTOCOL_VERSION, id: 'head-b', role: 'leader' })); // incomplete
      nc.publish(s.headPresence('head-b'), forged('head-b', { host: 'h'.repeat(300_000) })); // over the host bound
      nc.publish(s.headPresence('head-b'), forged('head-x')); // on another head's subject
      nc.publish(s.headPresence('head-b'), forged('head-b')); // another incarnation while head-b is live
      nc.publish(s.headPresence('head-a'), forged('head-a')); // the leader's own id
      nc.publish(s.headPresence('head-b'), forged('head-b', { pid: process.pid, startedAt: b!.startedAt, seq: 1e15 })); // a seq jump
      await nc.flush();
      await new Promise((r) => setTimeout(r, 2 * PRESENCE));
      expect(await roles()).toEqual(['head-a:leader', 'head-b:standby']);
      expect((await client.status()).heads!.map((h) => h.host)).not.toContain('evil');
      expect(cluster.head.state).toBe('running');

      await cluster.head.stop();
      const stopped = Date.now();
      await standby.leading();
      // The new leader lists itself at once; the old one drops out once three periods passed without it.
      expect((await roles())[0]).toBe('head-b:leader');
      await until(async () => (await roles()).join() === 'head-b:leader', { what: 'old leader expired', everyMs: 20 });
      const goneMs = Date.now() - stopped;
      expect(goneMs).toBeLessThan(3 * PRESENCE + 1000);
      process.stdout.write(`[head-failover] presence: the stopped leader left status after ${goneMs} ms (period ${PRESENCE} ms)\n`);
    } finally {
      await closeBus(nc);
      await standby.stop();
      await cluster.stop();
    }
  }, 30_000);
});
