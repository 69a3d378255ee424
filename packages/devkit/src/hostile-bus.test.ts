// Integration: a hostile bus. A real nats-server, the head and a worker as real OS processes (the
// built CLI), a model serving — then a storm of malformed, oversized, replayed and out-of-range
// messages on every subject the cluster listens on, in groups. After each group: both processes
// still run, a good request is answered within 2 s, the worker's heartbeats never paused more
// than 2 s, the head still counts the replica ready; at the end RSS growth is bounded and the
// events history still holds the model's `loaded` event. Figures go to the test log.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { connect } from '@nats-io/transport-node';
import { FlotillaClient, type Tensor } from '@flotilla/client';
import { PROTOCOL_VERSION, decode, encode, subjects as makeSubjects, type Heartbeat } from '@flotilla/protocol';
import { closeBus, type NatsConnection } from '@flotilla/bus';
import { NatsServer } from '@flotilla/local';
import { WorkerProcess, findCli } from './worker-process.js';
import { sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

const say = (line: string) => process.stdout.write(`[hostile-bus] ${line}\n`);
const x: Tensor = { dtype: 'float32', dims: [1, 16], data: new Float32Array(16).fill(0.5) };
const KiB = 1024;
const WORKER_TIMEOUT_MS = 1500;

/** msgpackr with every extension on: what a careless JS client (or an attacker) sends. */
const exotic = new Packr({ useRecords: false, moreTypes: true, structuredClone: true });

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

/** Deep nesting as raw msgpack bytes (no JS recursion to build or encode it). */
function deepBytes(depth: number): Uint8Array {
  const b = new Uint8Array(depth + 8);
  b.set([0x82, 0xa1, 0x76, 0x01, 0xa1, 0x78], 0); // { v: 1, x: ...
  b.fill(0x91, 6, 6 + depth); // fixarray(1) × depth
  b[6 + depth] = 0x01;
  return b.subarray(0, 7 + depth);
}

/** Bodies no receiver may choke on, whatever subject they arrive on. */
function junk(): Uint8Array[] {
  const cyclic: Record<string, unknown> = { v: PROTOCOL_VERSION };
  cyclic.id = cyclic;
  return [
    new Uint8Array([0xc1]),
    new Uint8Array(0),
    new Uint8Array([0xde, 0xff, 0xff]), // map16 of 65,535 entries, truncated
    new Uint8Array([0xdd, 0x7f, 0xff, 0xff, 0xff]), // array32 claiming 2^31 items
    Uint8Array.from({ length: 512 }, (_, i) => (i * 131 + 7) & 0xff),
    encode({ v: 2 }),
    encode({ v: '1' }),
    encode({ nothing: true }),
    encode([1, 2, 3]),
    encode('just a string'),
    encode(null),
    exotic.pack({ v: PROTOCOL_VERSION, inputs: { x: new Float32Array(16) } }),
    exotic.pack({ v: PROTOCOL_VERSION, name: new Date(), spec: new Set([1]) }),
    exotic.pack({ v: PROTOCOL_VERSION, id: undefined, name: undefined }),
    exotic.pack(cyclic),
    encode({ v: PROTOCOL_VERSION, x: nested(200) }),
    deepBytes(100_000),
    encode({ v: PROTOCOL_VERSION, name: 'n'.repeat(600_000) }),
    encode({ v: PROTOCOL_VERSION, [`k${'x'.repeat(300 * KiB)}`]: 1 }),
    encode({ v: PROTOCOL_VERSION, name: NaN, replicas: Infinity, waitMs: -1e308, limit: 2 ** 64 }),
    encode({ v: PROTOCOL_VERSION, __proto__: { polluted: true }, constructor: { prototype: { polluted: true } } }),
  ];
}

describe('a hostile bus', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-hostile-'));
  const cluster = `hostile${Math.random().toString(36).slice(2, 8)}`;
  const s = makeSubjects(cluster);
  let nats: NatsServer;
  let head: ChildProcess;
  let headLog = '';
  let worker: WorkerProcess;
  let client: FlotillaClient;
  let evil: NatsConnection;
  let watcher: NatsConnection;

  beforeAll(async () => {
    nats = await NatsServer.start();
    // A short worker timeout, so a heartbeat trick that hides the real worker shows within a group's settle time.
    head = spawn(
      process.execPath,
      [findCli(), 'head', '--nats', nats.url, '--cluster', cluster, '--worker-timeout-ms', String(WORKER_TIMEOUT_MS)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, FLOTILLA_LOG_LEVEL: 'warn' },
      },
    );
    const keep = (d: Buffer) => (headLog = (headLog + d.toString()).slice(-32 * KiB));
    head.stdout!.on('data', keep);
    head.stderr!.on('data', keep);
    client = new FlotillaClient({ servers: nats.url, cluster });
    await until(
      () =>
        client.list().then(
          () => true,
          () => false,
        ),
      { timeoutMs: 30_000, what: 'head answering' },
    );
    worker = await WorkerProcess.start({
      servers: nats.url,
      cluster,
      id: 'w0',
      args: ['--threads', '1'],
      cacheDir: join(dir, 'cache'),
      ready: () =>
        client.status().then(
          (st) => st.workers.some((w) => w.id === 'w0' && w.alive),
          () => false,
        ),
    });
    await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', profile: { enabled: false } });
    await client.waitReady('mlp', 60_000);
    evil = await connect({ servers: nats.url });
    watcher = await connect({ servers: nats.url });
  }, 120_000);

  afterAll(async () => {
    await closeBus(evil).catch(() => undefined);
    await closeBus(watcher).catch(() => undefined);
    await client?.close();
    await worker?.stop();
    if (head && head.exitCode === null) {
      const exited = new Promise((r) => head.once('exit', r));
      head.kill('SIGTERM');
      await exited;
    }
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('survives ≥ 10,000 malformed, oversized, replayed and out-of-range messages on every subject', async () => {
    const status = await client.status();
    const replicaId = status.deployments.find((d) => d.spec.name === 'mlp')!.replicas[0]!.id;
    const realHb: Heartbeat[] = [];
    // The worker's own heartbeats (its pid, sent just now): their largest gap during the storm.
    let lastReal = Date.now();
    let maxGap = 0;
    const hbSub = watcher.subscribe(s.heartbeat('w0'), {
      callback: (_e, m) => {
        try {
          const hb = decode<Heartbeat>(m.data);
          if (hb.pid !== worker.pid || Math.abs(Date.now() - hb.sentAt) > 1000) return;
          const now = Date.now();
          maxGap = Math.max(maxGap, now - lastReal);
          lastReal = now;
          if (realHb.length < 50) realHb.push(hb);
        } catch {
          // a forged one of ours
        }
      },
    });
    await until(() => realHb.length > 2, { timeoutMs: 5000, what: 'heartbeats' });
    const rss0 = { head: rssBytes(head.pid!), worker: rssBytes(worker.pid) };

    const model = 'mlp';
    const base = junk();
    const hb = realHb[0]!;
    const spec = status.deployments.find((d) => d.spec.name === model)!.spec;
    const plausibleGhost = (i: number) => ({ ...hb, workerId: `ghost${i}`, pid: 4242, startedAt: Date.now(), seq: 1 });
    // `settleMs`: heartbeat tricks act through the head's worker timeout; wait past it before checking.
    const groups: Array<{
      name: string;
      subjects: string[];
      bodies: Uint8Array[];
      repeat: number;
      settleMs?: number;
      pairs?: Array<[string, Uint8Array]>;
    }> = [
      { name: 'junk on worker load/unload', subjects: [s.worker('w0', 'load'), s.worker('w0', 'unload')], bodies: base, repeat: 30 },
      {
        name: 'bad load/unload commands',
        subjects: [s.worker('w0', 'load')],
        bodies: [
          encode({ v: 1, replicaId: 'x', device: 'gpu:9', spec }),
          encode({ v: 1, replicaId: '../../etc', device: 'cpu', spec }),
          encode({ v: 1, replicaId: 'r1', device: 'cpu', spec: { ...spec, [`junk${'x'.repeat(600 * KiB)}`]: 1 } }),
          encode({ v: 1, replicaId: 'r2', device: 'cpu', spec: { ...spec, threads: { intraOp: 1024 } } }),
          encode({ v: 1, replicaId: 'r3', device: 'cpu', spec: { ...spec, digest: 'f'.repeat(64) }, bytes: -1 }),
        ],
        repeat: 100,
      },
      {
        name: 'junk on control',
        subjects: ['deploy', 'undeploy', 'scale', 'list', 'status', 'describe', 'ensure', 'events'].map(
          (op) => `${s.control('list').slice(0, -4)}${op}`,
        ),
        bodies: base,
        repeat: 8,
      },
      {
        name: 'bad control requests',
        subjects: [s.control('describe'), s.control('ensure'), s.control('scale'), s.control('events'), s.control('deploy')],
        bodies: [
          encode({ v: 1, name: 'n'.repeat(600_000) }),
          encode({ v: 1, name: 'nope', replicas: 1e9 }),
          encode({ v: 1, name: model, replicas: -1 }),
          encode({ v: 1, name: model, waitMs: 1e12 }),
          encode({ v: 1, limit: 1e12, model: 'm'.repeat(1000) }),
          encode({ v: 1, spec: { ...spec, name: 'evil', [`k${'x'.repeat(600 * KiB)}`]: 1 } }),
        ],
        repeat: 60,
      },
      { name: 'junk on heartbeats', subjects: [s.heartbeat('w0'), s.heartbeat('ghost')], bodies: base, repeat: 30 },
      {
        name: 'forged and replayed heartbeats',
        subjects: [s.heartbeat('w0')],
        bodies: [
          encode({ ...hb, seq: 1e15 }),
          encode({ ...hb, seq: Number.MAX_SAFE_INTEGER }),
          encode({ ...hb, seq: -5 }),
          encode(hb), // a replay
          encode({ ...hb, state: 'stopped' }),
          encode({ ...hb, replicas: [], seq: hb.seq + 1e9 }),
          encode({
            ...hb,
            inventory: {
              ...hb.inventory,
              gpus: [{ index: 0, vendor: 'x', model: 'fake', vramTotalBytes: 2 ** 50, vramFreeBytes: 2 ** 50 }],
            },
            seq: 1e15,
          }),
        ],
        repeat: 100,
        settleMs: WORKER_TIMEOUT_MS + 500,
      },
      {
        name: 'fake workers',
        subjects: Array.from({ length: 50 }, (_, i) => s.heartbeat(`ghost${i}`)),
        bodies: [
          encode({
            ...hb,
            workerId: 'ghost',
            seq: 1,
            inventory: {
              ...hb.inventory,
              gpus: [{ index: 0, vendor: 'x', model: 'fake', vramTotalBytes: 2 ** 50, vramFreeBytes: 2 ** 50 }],
            },
          }),
          encode({ ...hb, workerId: 'ghost', seq: 1, pad: 'x'.repeat(900 * KiB) }),
        ],
        repeat: 4,
      },
      {
        // Plausible heartbeats of workers that do not exist, claiming the real replica: it is w0's, and stays counted once.
        name: 'ghost workers claiming the real replica',
        subjects: [],
        bodies: [],
        pairs: Array.from({ length: 20 }, (_, i) => [s.heartbeat(`ghost${i}`), encode(plausibleGhost(i))] as [string, Uint8Array]),
        repeat: 5,
        settleMs: 200,
      },
      { name: 'junk on events', subjects: [s.event('loaded'), s.event('evicted'), s.event('x')], bodies: base, repeat: 20 },
      {
        name: 'oversized and lying events',
        subjects: [s.event('evicted'), s.event('refused')],
        bodies: [
          encode({ v: 1, type: 'evicted', model, at: Date.now(), reason: 'r'.repeat(500 * KiB) }),
          encode({ v: 1, type: 'evicted', model: 'nope', at: Date.now(), data: { big: 'x'.repeat(200 * KiB) } }),
          encode({ v: 1, type: 'refused', model, at: 'yesterday' }),
        ],
        repeat: 20,
      },
      // Replicas are NATS micro services: discovery requests with junk bodies (answered by the library).
      {
        name: 'junk on micro-service discovery',
        subjects: ['$SRV.PING', '$SRV.INFO.flotilla-replica', '$SRV.STATS.flotilla-replica'],
        bodies: base,
        repeat: 5,
      },
      { name: 'junk on inference', subjects: [s.infer(model), s.inferReplica(model, replicaId)], bodies: base, repeat: 30 },
      {
        name: 'bad inference requests',
        subjects: [s.infer(model), s.inferReplica(model, replicaId)],
        bodies: [
          encode({ v: 1, inputs: { x: { dtype: 'float32', dims: [1, 16], data: new Uint8Array(64) } }, id: 'i'.repeat(100_000) }),
          encode({ v: 1, inputs: { x: { dtype: 'float32', dims: [2 ** 40, 2 ** 40], data: new Uint8Array(4) } } }),
          encode({ v: 1, inputs: { x: { dtype: 'float32', dims: [1, 16], data: new Uint8Array(64), extra: 1 } } }),
          encode({ v: 1, inputs: { x: { dtype: 'complex', dims: [1], data: new Uint8Array(8) } } }),
          encode({ v: 1, inputs: {}, outputs: ['o'.repeat(10_000)] }),
          encode({ v: 1, inputs: { x: { dtype: 'float32', dims: [1, 16], data: new Uint8Array(64) } }, timeoutMs: -1 }),
          encode({ v: 1, blob: { name: '../../x', size: 10 } }),
          encode({ v: 1, blob: { name: 'x', size: -1 } }),
          encode({ v: 1, blob: { name: 'x', size: 'big' } }),
          encode({ v: 1, blob: { name: 'nosuchblob', size: 64 * 1024 * 1024 } }),
          encode({ v: 1, blob: { name: 'nosuchblob', size: 2 ** 52 } }),
          // Direct references (bodies whose chunks never come, for other replicas, malformed): each answered with a code.
          encode({ v: 1, blob: { name: 'd', size: 10, direct: replicaId } }),
          encode({ v: 1, blob: { name: 'd', size: 64 * 1024 * 1024, direct: replicaId } }),
          encode({ v: 1, blob: { name: 'd', size: 10, direct: 'someone-else' } }),
          encode({ v: 1, blob: { name: 'd', size: 10, direct: 'a.b' } }),
          encode({ v: 1, blob: { name: 'd', size: 10, direct: replicaId, nuid: 'x' } }),
        ],
        repeat: 60,
      },
      // The replica's body channel (direct bodies) with no operation header: each answered BAD_REQUEST.
      { name: 'junk on the body channel', subjects: [s.inferBody(model, replicaId)], bodies: base, repeat: 30 },
    ];

    const inbox = `_INBOX.hostile.${Date.now()}`;
    let replies = 0;
    const replySub = evil.subscribe(`${inbox}.>`, { callback: () => replies++ });
    let sent = 0;
    /** Messages that get no reply: heartbeats are one-way (events get the events stream's ack). */
    let oneWay = 0;
    let worstGoodMs = 0;
    const t0 = Date.now();
    for (const g of groups) {
      const before = sent;
      for (let r = 0; r < g.repeat; r++) {
        const pairs = g.pairs ?? g.subjects.flatMap((subject) => g.bodies.map((body) => [subject, body] as const));
        for (const [subject, body] of pairs) {
          try {
            evil.publish(subject, body, { reply: `${inbox}.${sent}` });
          } catch {
            // over our own client's max_payload: the server would refuse it anyway
          }
          sent++;
          if (subject.startsWith(`flotilla.${cluster}.hb.`)) oneWay++;
        }
        if (r % 10 === 9) await evil.flush();
      }
      await evil.flush();
      if (g.settleMs) await new Promise((r) => setTimeout(r, g.settleMs));
      // After each group: both alive, a good request answered within 2 s, the head still sees it ready.
      expect({ group: g.name, head: head.exitCode, worker: worker.running }).toEqual({ group: g.name, head: null, worker: true });
      const t = Date.now();
      const out = await client.infer(model, { x }, { timeoutMs: 2000 });
      worstGoodMs = Math.max(worstGoodMs, Date.now() - t);
      expect(out.y ?? Object.values(out)[0]).toBeDefined();
      const d = await client.describe(model);
      expect({ group: g.name, ready: d.ready }).toEqual({ group: g.name, ready: 1 });
      say(`${g.name}: ${sent - before} messages; good request ${Date.now() - t} ms; max heartbeat gap so far ${maxGap} ms`);
    }
    await evil.flush();
    await until(() => worker.running && head.exitCode === null, { timeoutMs: 1000, what: 'alive' });
    // Every request was answered (a coded error, an event's stream ack): none was dropped or hung.
    await until(() => replies >= sent - oneWay, { timeoutMs: 10_000, what: `replies to all ${sent - oneWay} requests (have ${replies})` });
    const tookMs = Date.now() - t0;
    const rss1 = { head: rssBytes(head.pid!), worker: rssBytes(worker.pid) };
    hbSub.unsubscribe();
    replySub.unsubscribe();
    const events = await client.events({ model, limit: 1000 });
    const st = await client.status();
    say(
      `sent ${sent} messages in ${tookMs} ms; ${replies} replies to ${sent - oneWay} requests; worst good request ${worstGoodMs} ms; max heartbeat gap ${maxGap} ms; ` +
        `RSS growth head ${((rss1.head - rss0.head) / 2 ** 20).toFixed(1)} MiB, worker ${((rss1.worker - rss0.worker) / 2 ** 20).toFixed(1)} MiB; ` +
        `workers known ${st.workers.length}`,
    );
    expect(sent).toBeGreaterThanOrEqual(10_000);
    expect(maxGap).toBeLessThan(2000);
    expect(worstGoodMs).toBeLessThan(2000);
    expect(rss1.head - rss0.head).toBeLessThan(150 * 2 ** 20);
    expect(rss1.worker - rss0.worker).toBeLessThan(150 * 2 ** 20);
    expect(events.some((e) => e.type === 'loaded' && e.model === model)).toBe(true);
    // Nothing the storm said became a replica or a deployment; the plausible ghosts (without roles
    // anyone may publish a heartbeat) were heard once and expire with the worker timeout.
    await until(
      async () =>
        (await client.status()).workers
          .filter((w) => w.alive)
          .map((w) => w.id)
          .join() === 'w0',
      {
        timeoutMs: 3 * WORKER_TIMEOUT_MS,
        what: 'ghost workers expired',
      },
    );
    expect(st.deployments.map((d) => d.spec.name)).toEqual([model]);
    expect(st.workers[0]!.inventory.gpus).toEqual([]);
  }, 180_000);
});
