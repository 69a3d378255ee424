// Integration: the head on a hostile bus (real nats-server, real head). Forged heartbeats (seq
// 1e15, another incarnation, a 1 PB GPU) neither hide the real worker nor get believed; a fake
// worker that answers load commands is not credited replicas; a cluster that cannot fit what is
// asked is not flooded with load commands and the failure is logged once; a 600,000-character
// name is a short BAD_REQUEST; `status` over 1 MiB comes back staged; the events history keeps
// each type's own history (2,000 `refused` leave the `loaded` event) and refuses 500 KB events,
// also after a head restart that reads them back from the stream.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '@flotilla/bus';
import { closeBus, connectBus, silentLogger, type NatsConnection } from '@flotilla/bus';
import { FlotillaClient } from '@flotilla/client';
import { Head } from '@flotilla/head';
import { PROTOCOL_VERSION, decode, encode, subjects as makeSubjects, type Heartbeat, type ReplicaState } from '@flotilla/protocol';
import { Worker } from '@flotilla/worker';
import { LocalCluster, NatsServer } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

const GiB = 1024 ** 3;
const v = PROTOCOL_VERSION;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (line: string) => process.stdout.write(`[head-hostile] ${line}\n`);

/** A valid heartbeat of a synthetic worker with `replicas` ready replicas of `model`. */
function synthetic(id: string, seq: number, opts: { replicas?: number; model?: string; digest?: string; budget?: number } = {}): Heartbeat {
  const replicas: ReplicaState[] = Array.from({ length: opts.replicas ?? 0 }, (_, i) => ({
    id: `${opts.model ?? 'm'}-${id}-${i}`,
    model: opts.model ?? 'm',
    digest: opts.digest ?? 'd',
    device: 'cpu',
    state: 'ready',
    bytes: GiB,
    queueDepth: 0,
    inFlight: 0,
    processed: 0,
    failed: 0,
    executionProvider: 'cpu',
    batching: { maxBatchSize: 8, maxQueueDelayMs: 1, maxQueueLength: 1024, batchAxis: true },
    batchHistogram: {},
    pinned: false,
    loadedAt: 1,
    lastUsedAt: 1,
  }));
  return {
    v,
    workerId: id,
    pid: 4242,
    state: 'running',
    seq,
    startedAt: 1_700_000_000_000,
    sentAt: Date.now(),
    inventory: {
      cpu: { cores: 32, model: 'sim' },
      memory: { totalBytes: 256 * GiB, availableBytes: 200 * GiB },
      gpus: [],
      source: 'override',
      hostname: `h-${id}`,
    },
    devices: [
      {
        id: 'cpu',
        kind: 'cpu',
        capacityBytes: 1024 * GiB,
        budgetBytes: opts.budget ?? 1000 * GiB,
        usedBytes: replicas.length * GiB,
        executionProvider: 'cpu',
        policy: 'fifo',
      },
    ],
    replicas,
  };
}

/** A logger that records warnings' messages (everything else is dropped). */
function recordingLogger(warnings: string[]): Logger {
  const log = {
    level: 'info',
    info: () => undefined,
    debug: () => undefined,
    trace: () => undefined,
    error: () => undefined,
    fatal: () => undefined,
    warn: (_obj: unknown, msg?: string) => void warnings.push(String(msg ?? _obj)),
    child: () => log,
  };
  return log as unknown as Logger;
}

/**
 * A fake worker: heartbeats claiming a large CPU device and no replicas, and an answer to every
 * load command (`answer` builds the reply from the command). Returns the loads it received.
 */
async function fakeWorker(
  nc: NatsConnection,
  cluster: string,
  id: string,
  answer: (cmd: { replicaId: string; device: string }) => object,
): Promise<{ loads: () => number; stop: () => void }> {
  const s = makeSubjects(cluster);
  let loads = 0;
  const sub = nc.subscribe(s.worker(id, 'load'), {
    callback: (_e, msg) => {
      loads++;
      const cmd = decode<{ replicaId: string; device: string }>(msg.data);
      msg.respond(encode({ v, ...answer(cmd) }));
    },
  });
  let seq = 0;
  const beat = () => nc.publish(s.heartbeat(id), encode(synthetic(id, seq++)));
  beat();
  const timer = setInterval(beat, 250);
  await nc.flush();
  return {
    loads: () => loads,
    stop: () => {
      clearInterval(timer);
      sub.unsubscribe();
    },
  };
}

describe('forged heartbeats and unbounded names, against a real worker', () => {
  let cluster: LocalCluster;
  let nc: NatsConnection;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ workers: 1, head: { workerTimeoutMs: 1000 } });
    nc = await connectBus({ servers: cluster.url });
    await cluster.client().deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', profile: { enabled: false } });
  });
  afterAll(async () => {
    await closeBus(nc);
    await cluster.stop();
  });

  it('a copy of the worker’s heartbeat with seq 1e15, and a forged new incarnation, leave the deployment ready', async () => {
    const s = makeSubjects(cluster.cluster);
    const sub = nc.subscribe(s.heartbeat('w0'), { max: 1 });
    let real: Heartbeat | undefined;
    for await (const m of sub) real = decode<Heartbeat>(m.data);
    const believed = async () => {
      const w0 = cluster.head.registry.get('w0')!;
      expect(w0.alive).toBe(true);
      expect(w0.hb.pid).toBe(process.pid);
      expect(w0.hb.seq).toBeLessThan(1e6);
      expect((await cluster.client().describe('mlp')).ready).toBe(1);
    };
    nc.publish(s.heartbeat('w0'), encode({ ...real!, seq: 1e15, replicas: [] }));
    await nc.flush();
    await sleep(2500); // over twice the worker timeout: the real heartbeats must keep being believed
    await believed();
    nc.publish(s.heartbeat('w0'), encode({ ...real!, startedAt: Date.now() + 1e9, pid: 1, seq: 0, replicas: [] }));
    await nc.flush();
    await sleep(1500);
    await believed();
  });

  it('a worker claiming a 1 PB GPU is refused; a plausible one is registered', async () => {
    const s = makeSubjects(cluster.cluster);
    const pb = synthetic('fake-pb', 0);
    pb.devices.push({
      id: 'gpu:0',
      kind: 'gpu',
      capacityBytes: 1e15,
      budgetBytes: 1e15,
      usedBytes: 0,
      executionProvider: 'cuda',
      policy: 'fifo',
    });
    pb.inventory.gpus.push({ index: 0, vendor: 'NVIDIA', model: 'fake', vramTotalBytes: 1e15, vramFreeBytes: 1e15 });
    nc.publish(s.heartbeat('fake-pb'), encode(pb));
    nc.publish(s.heartbeat('fake-ok'), encode(synthetic('fake-ok', 0)));
    await until(() => cluster.head.registry.get('fake-ok'), { what: 'the plausible fake registered' });
    expect(cluster.head.registry.get('fake-pb')).toBeUndefined();
    expect((await cluster.client().status()).workers.map((w) => w.id)).not.toContain('fake-pb');
  });

  it('describe with a 600,000-character name: a short BAD_REQUEST, and the head still answers', async () => {
    const err = await cluster
      .client()
      .describe('x'.repeat(600_000))
      .catch((e: Error & { code?: string }) => e);
    expect(err).toMatchObject({ code: 'BAD_REQUEST' });
    expect((err as Error).message.length).toBeLessThan(300);
    // The same straight on the wire (no SDK checks in between).
    const raw = decode<{ ok: boolean; error: { code: string; message: string } }>(
      (await nc.request(makeSubjects(cluster.cluster).control('describe'), encode({ v, name: 'y'.repeat(600_000) }), { timeout: 5000 }))
        .data,
    );
    expect(raw.error.code).toBe('BAD_REQUEST');
    expect(raw.error.message.length).toBeLessThan(300);
    expect((await cluster.client().list()).map((d) => d.spec.name)).toEqual(['mlp']);
  });
});

describe('fake workers and a cluster that fits far fewer replicas', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  const cacheDir = mkdtempSync(join(tmpdir(), 'flotilla-hostile-'));
  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await connectBus({ servers: nats.url });
  });
  afterAll(async () => {
    await closeBus(nc);
    await nats.stop();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it('a fake worker answering load commands is not credited; the real worker gets the replica', async () => {
    const cluster = 'fakeload';
    const head = await Head.start({ cluster, bus: { servers: nats.url }, logger: silentLogger(), workerTimeoutMs: 2000, confirmMs: 1000 });
    const client = new FlotillaClient({ servers: nats.url, cluster });
    const fake = await fakeWorker(nc, cluster, 'fake', (cmd) => ({
      ok: true,
      result: { replicaId: cmd.replicaId, device: cmd.device, bytes: 1, loadMs: 1, executionProvider: 'cpu' },
    }));
    let worker: Worker | undefined;
    try {
      await head.leading();
      await until(() => head.registry.get('fake'));
      await client.deploy(sampleModelPath('mlp'), 'mlp', { replicas: 1, device: 'cpu', profile: { enabled: false }, wait: false });
      await sleep(3000);
      const d = await client.describe('mlp');
      say(`fake worker answering loads: ${fake.loads()} load commands in 3 s, ready ${d.ready}`);
      expect(d.ready).toBe(0);
      expect(fake.loads()).toBeLessThanOrEqual(4);
      expect(d.pendingReason?.message).toMatch(/has not reported it in its heartbeats/);
      // A real worker joins: the fake's device is skipped, the replica goes to the real one.
      worker = await Worker.start({ id: 'real', cluster, bus: { servers: nats.url }, cacheDir, heartbeatMs: 250, logger: silentLogger() });
      const ready = await until(async () => {
        const s = await client.describe('mlp');
        return s.ready === 1 ? s : undefined;
      });
      expect(ready.replicas.filter((r) => r.state === 'ready').map((r) => r.workerId)).toEqual(['real']);
    } finally {
      fake.stop();
      await worker?.stop();
      await client.close();
      await head.stop();
    }
  });

  it('scale 1000 where nothing fits: a bounded number of load commands, the failure logged once', async () => {
    const cluster = 'nofit';
    const warnings: string[] = [];
    const head = await Head.start({ cluster, bus: { servers: nats.url }, logger: recordingLogger(warnings) });
    const client = new FlotillaClient({ servers: nats.url, cluster });
    const fake = await fakeWorker(nc, cluster, 'full', () => ({ ok: false, error: { code: 'NO_CAPACITY', message: 'no room here' } }));
    try {
      await head.leading();
      await until(() => head.registry.get('full'));
      await client.deploy(sampleModelPath('mlp'), 'mlp', { replicas: 0, device: 'cpu', profile: { enabled: false }, wait: false });
      await client.scale('mlp', 1000);
      await sleep(6000);
      const notPlaced = warnings.filter((w) => /not placed/.test(w)).length;
      say(`scale 1000 on a worker that refuses: ${fake.loads()} load commands in 6 s, ${notPlaced} failure log line(s)`);
      expect(fake.loads()).toBeGreaterThan(0);
      expect(fake.loads()).toBeLessThanOrEqual(100);
      expect(notPlaced).toBe(1);
      expect((await client.describe('mlp')).pendingReason).toMatchObject({ code: 'NO_CAPACITY' });
    } finally {
      fake.stop();
      await client.close();
      await head.stop();
    }
  });

  it('status of 2,000 workers (over 1 MiB) comes back staged and complete', async () => {
    const cluster = 'big';
    const head = await Head.start({ cluster, bus: { servers: nats.url }, logger: silentLogger(), workerTimeoutMs: 60_000 });
    const client = new FlotillaClient({ servers: nats.url, cluster });
    try {
      await head.leading();
      const s = makeSubjects(cluster);
      for (let i = 0; i < 2000; i++) nc.publish(s.heartbeat(`w${i}`), encode(synthetic(`w${i}`, 0, { replicas: 3 })));
      await nc.flush();
      await until(() => head.registry.size === 2000, { what: '2,000 workers registered' });
      const size = encode(head.status()).byteLength;
      expect(size).toBeGreaterThan(1024 * 1024);
      const t0 = performance.now();
      const st = await client.status();
      say(
        `status of 2,000 workers / 6,000 replicas: ${(size / 1048576).toFixed(2)} MiB, ${(performance.now() - t0).toFixed(0)} ms through the blob bucket`,
      );
      expect(st.workers).toHaveLength(2000);
      expect(st.workers.reduce((n, w) => n + w.replicas.length, 0)).toBe(6000);
    } finally {
      await client.close();
      await head.stop();
    }
  });

  it('events: 2,000 refused do not erase loaded, 500 KB events are refused, also after a restart (old stream config updated)', async () => {
    const cluster = 'events';
    const s = makeSubjects(cluster);
    // The stream as an older head made it: one limit over all types.
    const js = async (api: string, body?: object) =>
      JSON.parse(
        new TextDecoder().decode(
          (await nc.request(`$JS.API.${api}`, body ? new TextEncoder().encode(JSON.stringify(body)) : undefined, { timeout: 5000 })).data,
        ),
      );
    const created = await js(`STREAM.CREATE.${s.eventStream}`, {
      name: s.eventStream,
      subjects: [s.eventAll],
      max_msgs: 1000,
      storage: 'file',
      retention: 'limits',
      discard: 'old',
    });
    expect(created.error).toBeUndefined();
    let head = await Head.start({ cluster, bus: { servers: nats.url }, logger: silentLogger() });
    const client = new FlotillaClient({ servers: nats.url, cluster });
    try {
      await head.leading();
      expect((await js(`STREAM.INFO.${s.eventStream}`)).config.max_msgs_per_subject).toBe(1000);
      nc.publish(s.event('loaded'), encode({ v, type: 'loaded', model: 'm1', worker: 'w0', device: 'cpu', at: Date.now() }));
      for (let i = 0; i < 3; i++)
        nc.publish(s.event('loaded'), encode({ v, type: 'loaded', model: 'm1', reason: 'r'.repeat(500_000), at: Date.now() }));
      for (let i = 0; i < 2000; i++)
        nc.publish(s.event('refused'), encode({ v, type: 'refused', model: 'm1', worker: 'w0', reason: `no room ${i}`, at: Date.now() }));
      await nc.flush();
      const check = async (c: FlotillaClient) => {
        const all = await until(async () => {
          const e = await c.events({ limit: 5000 });
          return e.length >= 1001 ? e : undefined;
        });
        expect(all.filter((e) => e.type === 'loaded')).toHaveLength(1);
        expect(all.filter((e) => e.type === 'refused')).toHaveLength(1000);
        expect(all.every((e) => (e.reason ?? '').length < 1000)).toBe(true);
        expect((await c.events({ limit: 3 })).map((e) => e.reason)).toEqual(['no room 1997', 'no room 1998', 'no room 1999']);
      };
      await check(client);
      await head.stop();
      head = await Head.start({ cluster, bus: { servers: nats.url }, logger: silentLogger() });
      await head.leading();
      await check(client);
    } finally {
      await client.close();
      await head.stop();
    }
  });
});
