// Integration: failures under steady load, with real processes — worker OS processes started
// through the built CLI and killed with real signals, a nats-server killed and restarted on the
// same port and store, and one server of a three-node NATS cluster killed. Every scenario runs
// a closed loop of callers and checks that no request is lost (each one is answered with outputs
// or a coded error within its deadline); the figures are printed to the test log.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FlotillaClient, type DeploymentStatus, type Tensor } from '@flotilla/client';
import { Head, type HeadOptions } from '@flotilla/head';
import { closeBus, silentLogger, type NatsConnection } from '@flotilla/bus';
import { connect } from '@nats-io/transport-node';
import { NatsCluster, NatsServer, freePort, type NatsServerOptions } from '@flotilla/local';
import { WorkerProcess, findCli } from './worker-process.js';
import { sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

const x: Tensor = { dtype: 'float32', dims: [1, 16], data: new Float32Array(16).map((_, i) => i / 16) };
const DEPLOY = { device: 'cpu' as const, profile: { enabled: false } };
// One intra-op thread per session: onnxruntime's spinning thread pools would otherwise fight
// over this machine's few cores (three workers, a broker or three, and the callers).
const WORKER_ARGS = ['--threads', '1'];

function say(line: string): void {
  process.stdout.write(`[failures] ${line}\n`);
}

/** `p`'s value, or undefined when it takes longer than `ms` (the timer does not outlive the race). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------- closed-loop load that counts attempts and never waits forever ----------

interface LoadOptions {
  concurrency: number;
  durationMs: number;
  timeoutMs: number;
  attemptTimeoutMs: number;
}

interface Completion {
  endAt: number;
  latencyMs: number;
  ok: boolean;
}

interface LoadFigures {
  sent: number;
  ok: number;
  /** Extra attempts the SDK made (sum of attempts - 1 over answered requests). */
  retried: number;
  /** Requests that failed, by error code (`UNCODED: message` for errors without a code). */
  errored: Record<string, number>;
  /** Sent but neither answered nor failed within timeoutMs + 5 s after the run. */
  lost: number;
  maxLatencyMs: number;
  p99LatencyMs: number;
  elapsedMs: number;
  completions: Completion[];
}

function fmt(f: LoadFigures): string {
  const errs = Object.entries(f.errored)
    .map(([k, v]) => `${k}:${v}`)
    .join(',');
  return (
    `sent=${f.sent} ok=${f.ok} retried=${f.retried} errored=${Object.values(f.errored).reduce((a, b) => a + b, 0)}${errs ? ` {${errs}}` : ''} lost=${f.lost} ` +
    `(${((f.ok * 1000) / f.elapsedMs).toFixed(0)} req/s, p99 ${f.p99LatencyMs.toFixed(1)} ms, max ${f.maxLatencyMs.toFixed(0)} ms)`
  );
}

/** Loops still running: a failed test stops them (afterEach) instead of leaving them to call closed clients. */
const running = new Set<() => void>();
afterEach(() => {
  for (const stop of running) stop();
});

/** `concurrency` callers, spread over `clients`, each sending its next request as soon as the last one is answered. */
function closedLoop(clients: FlotillaClient[], model: string, o: LoadOptions): { started: number; done: Promise<LoadFigures> } {
  const started = Date.now();
  let end = started + o.durationMs;
  const stop = () => (end = 0);
  running.add(stop);
  let sent = 0;
  let ok = 0;
  let retried = 0;
  const errored: Record<string, number> = {};
  const completions: Completion[] = [];
  const caller = async (client: FlotillaClient): Promise<void> => {
    while (Date.now() < end) {
      sent++;
      const t0 = performance.now();
      try {
        const r = await client.inferWithMeta(model, { x }, { timeoutMs: o.timeoutMs, attemptTimeoutMs: o.attemptTimeoutMs });
        ok++;
        retried += r.attempts - 1;
        completions.push({ endAt: Date.now(), latencyMs: performance.now() - t0, ok: true });
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        const key = typeof code === 'string' && code ? code : `UNCODED: ${(err as Error).message}`;
        errored[key] = (errored[key] ?? 0) + 1;
        completions.push({ endAt: Date.now(), latencyMs: performance.now() - t0, ok: false });
        await sleep(20); // a caller that fails fast must not spin
      }
    }
  };
  const done = (async () => {
    const callers = Promise.all(Array.from({ length: o.concurrency }, (_, i) => caller(clients[i % clients.length]!)));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((r) => (timer = setTimeout(r, o.durationMs + o.timeoutMs + 5000)));
    await Promise.race([callers, grace]);
    clearTimeout(timer);
    running.delete(stop);
    const lat = completions.map((c) => c.latencyMs).sort((a, b) => a - b);
    return {
      sent,
      ok,
      retried,
      errored,
      lost: sent - completions.length,
      maxLatencyMs: lat.at(-1) ?? 0,
      p99LatencyMs: lat[Math.max(0, Math.ceil(lat.length * 0.99) - 1)] ?? 0,
      elapsedMs: Date.now() - started,
      completions,
    };
  })();
  return { started, done };
}

// ---------- a cluster of worker processes around an in-process head ----------

interface Rig {
  cluster: string;
  head: Head;
  workers: WorkerProcess[];
  clients: FlotillaClient[];
  worker(id: string): WorkerProcess;
  stop(): Promise<void>;
}

async function startRig(o: {
  servers: (i: number) => string | string[];
  workers: number;
  head?: Omit<HeadOptions, 'cluster' | 'bus' | 'connection'>;
  clients?: number;
  /** Connect the head (name 'head') and the callers ('client-i') on connections of our own. */
  connect?: (name: string, i: number) => Promise<NatsConnection>;
}): Promise<Rig> {
  const cluster = `f${Math.random().toString(36).slice(2, 10)}`;
  const own: NatsConnection[] = [];
  const connection = async (name: string, i: number) => {
    if (!o.connect) return undefined;
    const nc = await o.connect(name, i);
    own.push(nc);
    return nc;
  };
  const headConn = await connection('head', 0);
  const head = await Head.start({ cluster, bus: { servers: o.servers(0) }, connection: headConn, logger: silentLogger(), ...o.head });
  const workers: WorkerProcess[] = [];
  const clients: FlotillaClient[] = [];
  const stop = async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(workers.map((w) => w.stop(10_000)));
    await head.stop();
    await Promise.allSettled(own.map((nc) => closeBus(nc)));
  };
  try {
    const started = await Promise.allSettled(
      Array.from({ length: o.workers }, (_, i) =>
        WorkerProcess.start({ servers: o.servers(i), cluster, id: `p${i}`, head, args: WORKER_ARGS }),
      ),
    );
    for (const s of started) if (s.status === 'fulfilled') workers.push(s.value);
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    for (let i = 0; i < (o.clients ?? 1); i++) {
      clients.push(new FlotillaClient({ servers: o.servers(i), cluster, connection: await connection(`client-${i}`, i) }));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { cluster, head, workers, clients, worker: (id) => workers.find((w) => w.id === id)!, stop };
}

const workersOf = (d: DeploymentStatus) => d.replicas.map((r) => r.workerId).sort();

beforeAll(() => {
  findCli(); // fails early with "run pnpm build" when the CLI is not built
  sampleModelPath('mlp');
});

// ---------- 1. crash ----------

describe('a worker process killed with SIGKILL under load', () => {
  it('loses no request; the head marks it dead within workerTimeoutMs + 1 s and re-places its replica', async () => {
    const WORKER_TIMEOUT_MS = 1500;
    const nats = await NatsServer.start();
    let rig: Rig | undefined;
    try {
      rig = await startRig({ servers: () => nats.url, workers: 3, head: { workerTimeoutMs: WORKER_TIMEOUT_MS } });
      const client = rig.clients[0]!;
      const st = await client.deploy(sampleModelPath('mlp'), 'mlp', { ...DEPLOY, replicas: 3 });
      expect(workersOf(st)).toEqual(['p0', 'p1', 'p2']);

      // 7 s of load after the kill: the victim's dead-marking (≤ 2.5 s) and re-placement (≈ 1.6 s here) happen under it.
      const load = closedLoop(rig.clients, 'mlp', { concurrency: 8, durationMs: 12_000, timeoutMs: 10_000, attemptTimeoutMs: 1500 });
      await sleep(5000);
      const victim = rig.worker(st.replicas[0]!.workerId);
      const killedAt = Date.now();
      victim.kill('SIGKILL');
      const head = rig.head;
      await until(() => head.registry.get(victim.id)?.alive === false, { timeoutMs: 10_000, what: 'victim marked dead', everyMs: 10 });
      const detectMs = Date.now() - killedAt;
      const replaced = await until(
        async () => {
          const d = await client.describe('mlp');
          return d.ready === 3 && d.replicas.every((r) => r.workerId !== victim.id) ? d : undefined;
        },
        { timeoutMs: 15_000, what: 'three ready replicas without the victim', everyMs: 50 },
      );
      const replaceMs = Date.now() - killedAt;
      const f = await load.done;
      const okAfterKill = f.completions.filter((c) => c.ok && c.endAt > killedAt).length;
      say(`SIGKILL ${victim.id} at +${killedAt - load.started} ms: ${fmt(f)}`);
      say(
        `SIGKILL: marked dead after ${detectMs} ms (workerTimeoutMs ${WORKER_TIMEOUT_MS}), 3/3 ready again after ${replaceMs} ms on ${workersOf(replaced).join(',')}; ${okAfterKill} ok after the kill`,
      );

      expect(await victim.exited).toEqual({ code: null, signal: 'SIGKILL' });
      expect(f.lost).toBe(0);
      expect(f.errored).toEqual({});
      expect(f.ok).toBe(f.sent);
      expect(okAfterKill).toBeGreaterThan(0);
      expect(f.maxLatencyMs).toBeLessThan(10_000 + 1000);
      expect(detectMs).toBeLessThanOrEqual(WORKER_TIMEOUT_MS + 1000);
      expect(replaceMs).toBeLessThanOrEqual(10_000);
      expect(rig.workers.filter((w) => w !== victim).every((w) => w.running)).toBe(true);
    } finally {
      await rig?.stop();
      await nats.stop();
    }
  }, 90_000);
});

// ---------- 2. graceful stop ----------

describe('a worker process stopped with SIGTERM under load', () => {
  it('answers what it accepted, exits 0, and callers see no error', async () => {
    const ATTEMPT_MS = 1500;
    const nats = await NatsServer.start();
    let rig: Rig | undefined;
    try {
      rig = await startRig({ servers: () => nats.url, workers: 2 });
      const client = rig.clients[0]!;
      const st = await client.deploy(sampleModelPath('mlp'), 'mlp', { ...DEPLOY, replicas: 2 });
      expect(workersOf(st)).toEqual(['p0', 'p1']);

      const load = closedLoop(rig.clients, 'mlp', { concurrency: 8, durationMs: 8000, timeoutMs: 10_000, attemptTimeoutMs: ATTEMPT_MS });
      await sleep(3000);
      const victim = rig.worker('p0');
      const termAt = Date.now();
      victim.kill('SIGTERM');
      const exit = await within(victim.exited, 15_000);
      const exitMs = Date.now() - termAt;
      if (!exit) {
        victim.kill('SIGKILL');
        throw new Error(
          `p0 did not exit within 15 s of SIGTERM: Worker.stop() never finished (a replica's drain() waits for an idle signal that never comes)`,
        );
      }
      const replaced = await until(
        async () => {
          const d = await client.describe('mlp');
          return d.ready === 2 && d.replicas.every((r) => r.workerId === 'p1') ? d : undefined;
        },
        { timeoutMs: 15_000, what: 'two ready replicas on p1' },
      );
      const replaceMs = Date.now() - termAt;
      const f = await load.done;
      say(`SIGTERM p0 at +${termAt - load.started} ms: ${fmt(f)}`);
      say(
        `SIGTERM: p0 exited ${JSON.stringify(exit)} after ${exitMs} ms; 2/2 ready again (on ${workersOf(replaced).join(',')}) after ${replaceMs} ms`,
      );

      expect(exit).toEqual({ code: 0, signal: null });
      expect(f.lost).toBe(0);
      expect(f.errored).toEqual({});
      expect(f.ok).toBe(f.sent);
      // No request waited for an attempt to time out: nothing the stopping worker accepted was dropped.
      expect(f.maxLatencyMs).toBeLessThan(ATTEMPT_MS);
      expect(rig.worker('p1').running).toBe(true);
      expect(rig.head.registry.get('p0')).toMatchObject({ alive: false, hb: { state: 'stopped' } });
    } finally {
      await rig?.stop();
      await nats.stop();
    }
  }, 90_000);
});

// ---------- 3. broker restart ----------

describe('nats-server killed and restarted (same port and store) under load', () => {
  it('head, worker processes and callers reconnect by themselves; no request hangs; inference works again', async () => {
    const SHORT_MS = 3000; // shorter than the outage: these fail with a coded error, on time
    const LONG_MS = 8000; // longer than the outage: these are retried across it and answered
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-restart-'));
    const natsOpts: NatsServerOptions = { port, dir };
    let nats = await NatsServer.start(natsOpts);
    let rig: Rig | undefined;
    try {
      rig = await startRig({ servers: () => nats.url, workers: 2, clients: 2 });
      const client = rig.clients[0]!;
      await client.deploy(sampleModelPath('mlp'), 'mlp', { ...DEPLOY, replicas: 2 });

      const short = closedLoop([rig.clients[0]!], 'mlp', {
        concurrency: 4,
        durationMs: 10_000,
        timeoutMs: SHORT_MS,
        attemptTimeoutMs: 1000,
      });
      const long = closedLoop([rig.clients[1]!], 'mlp', { concurrency: 4, durationMs: 10_000, timeoutMs: LONG_MS, attemptTimeoutMs: 1000 });
      await sleep(2500);
      const killedAt = Date.now();
      nats.kill();
      await sleep(2000);
      nats = await NatsServer.restart({ port, dir });
      const restartedAt = Date.now();
      const [fs, fl] = await Promise.all([short.done, long.done]);
      const firstOk = [...fs.completions, ...fl.completions]
        .filter((c) => c.ok && c.endAt > restartedAt)
        .map((c) => c.endAt)
        .sort((a, b) => a - b)[0];
      say(
        `nats restart: down ${restartedAt - killedAt} ms from +${killedAt - short.started} ms; first answer ${firstOk === undefined ? 'never' : `${firstOk - restartedAt} ms`} after the new server was up`,
      );
      say(`nats restart, timeout ${SHORT_MS} ms callers: ${fmt(fs)}`);
      say(`nats restart, timeout ${LONG_MS} ms callers: ${fmt(fl)}`);

      // Every request ended within its deadline (plus scheduling slack), with outputs or a coded error.
      for (const [f, timeoutMs] of [
        [fs, SHORT_MS],
        [fl, LONG_MS],
      ] as const) {
        expect(f.lost).toBe(0);
        expect(Object.keys(f.errored).filter((k) => !['DEADLINE_EXCEEDED', 'UNAVAILABLE'].includes(k))).toEqual([]);
        expect(f.maxLatencyMs).toBeLessThan(timeoutMs + 1500);
      }
      expect(fl.errored).toEqual({}); // the long-deadline callers were retried across the outage
      expect(fl.retried).toBeGreaterThan(0);
      expect(firstOk).toBeDefined();
      // Nobody exited, everybody is back.
      expect(rig.workers.every((w) => w.running)).toBe(true);
      expect(rig.head.state).toBe('running');
      await until(() => rig!.head.registry.running().length === 2, { timeoutMs: 10_000, what: 'both workers alive at the head' });
      expect((await client.list()).map((d) => d.spec.name)).toEqual(['mlp']); // desired state kept in the store dir
      const d = await client.waitReady('mlp', 10_000);
      expect(d.ready).toBe(2);
      for (const c of rig.clients) expect((await c.infer('mlp', { x }, { timeoutMs: 5000 })).y!.dims).toEqual([1, 4]);
    } finally {
      await rig?.stop();
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

// ---------- 4. one server of a NATS cluster ----------

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A JetStream API call, retried while the cluster re-elects leaders. */
async function jsApi(nc: NatsConnection, subject: string, body: unknown, timeoutMs: number): Promise<any> {
  return until(
    async () => {
      try {
        const m = await nc.request(subject, enc.encode(JSON.stringify(body ?? {})), { timeout: 2000 });
        const r = JSON.parse(dec.decode(m.data));
        return r.error ? undefined : r;
      } catch {
        return undefined;
      }
    },
    { timeoutMs: timeoutMs, what: subject, everyMs: 200 },
  );
}

describe('one server of a three-node NATS cluster killed under load', () => {
  it('inference and control keep working; deployments and the model artifact survive (R3 buckets)', async () => {
    const nats = await NatsCluster.start({ size: 3 });
    let rig: Rig | undefined;
    try {
      rig = await startRig({
        servers: (i) => nats.urlsFrom(i),
        workers: 3,
        clients: 3,
        head: { storeReplicas: 3 },
        // The worker processes connect as the CLI does (the NATS client shuffles its server list);
        // the head and the callers keep their list's order, so caller i starts on node i.
        connect: (name, i) =>
          connect({
            servers: nats.urlsFrom(i),
            noRandomize: true,
            name: `flotilla-${name}`,
            maxReconnectAttempts: -1,
            reconnectTimeWait: 500,
            pingInterval: 10_000,
          }),
      });
      const client = rig.clients[0]!;
      const st = await client.deploy(sampleModelPath('mlp'), 'mlp', { ...DEPLOY, replicas: 2 });
      const spare = ['p0', 'p1', 'p2'].find((id) => !workersOf(st).includes(id))!;

      // Who is connected where, from each node's /connz.
      for (let i = 0; i < 3; i++) {
        const connz = await nats.monitor<{ connections?: Array<{ name?: string }> }>(i, 'connz?limit=1000');
        const names = (connz.connections ?? []).map((c) => c.name ?? '').filter((n) => n.startsWith('flotilla-'));
        say(`cluster: n${i} serves ${names.sort().join(', ') || 'nothing'}`);
      }
      const nc = await rig.clients[1]!.connection();
      const stateStream = `KV_flotilla_${rig.cluster}_state`;
      const modelStream = `OBJ_flotilla_${rig.cluster}_models`;
      const before = await jsApi(nc, `$JS.API.STREAM.INFO.${stateStream}`, {}, 10_000);
      const modelBefore = await jsApi(nc, `$JS.API.STREAM.INFO.${modelStream}`, {}, 10_000);
      expect(before.config.num_replicas).toBe(3);
      expect(modelBefore.config.num_replicas).toBe(3);
      // The victim: the node leading the desired-state bucket, so writing it after the kill needs
      // a JetStream leader election.
      const victim = nats.names.indexOf(before.cluster.leader);
      expect(victim).toBeGreaterThanOrEqual(0);
      const jsz = await nats.monitor<{ meta_cluster?: { leader?: string } }>(victim, 'jsz');

      const load = closedLoop(rig.clients, 'mlp', { concurrency: 8, durationMs: 12_000, timeoutMs: 10_000, attemptTimeoutMs: 1500 });
      await sleep(4000);
      const killedAt = Date.now();
      nats.kill(victim);
      say(
        `cluster: killed n${victim} at +${killedAt - load.started} ms (meta leader ${jsz.meta_cluster?.leader ?? '?'}, ` +
          `state bucket leader ${before.cluster?.leader}, model bucket leader ${modelBefore.cluster?.leader})`,
      );

      // Parties that were on the victim reconnect to another node by themselves. (What they publish
      // while disconnected is dropped by the NATS client — nats.js v3 resets its outbound buffer on
      // every dial — so a control call issued in that gap waits its whole 10 s timeout.)
      const conns = [rig.head.nc, ...(await Promise.all(rig.clients.map((c) => c.connection())))];
      await until(() => conns.every((c) => c.info?.server_name !== undefined && c.info.server_name !== `n${victim}`), {
        timeoutMs: 10_000,
        what: 'head and callers reconnected',
        everyMs: 10,
      });
      const reconnectMs = Date.now() - killedAt;

      // Control answers while the cluster heals. The SDK's control calls are one attempt: while
      // the head's subscription is being re-made on another node they fail at once with
      // UNAVAILABLE (no responders), so each call is retried here for up to 5 s and the failures
      // are counted (all must be coded UNAVAILABLE, none may hang).
      const control: number[] = [];
      const controlFailures = new Map<string, number>();
      const retried = async <T>(fn: () => Promise<T>): Promise<T> =>
        until(
          async () => {
            try {
              return { v: await fn() };
            } catch (err) {
              const code = String((err as { code?: unknown }).code);
              controlFailures.set(code, (controlFailures.get(code) ?? 0) + 1);
              return undefined;
            }
          },
          { timeoutMs: 5000, what: 'control call', everyMs: 50 },
        ).then((r) => r.v);
      for (let i = 0; i < 4; i++) {
        const t0 = Date.now();
        const [d, s] = await Promise.all([
          retried(() => rig!.clients[i % 3]!.describe('mlp')),
          retried(() => rig!.clients[(i + 1) % 3]!.status()),
        ]);
        control.push(Date.now() - t0);
        expect(d.spec.name).toBe('mlp');
        expect(s.workers.filter((w) => w.alive)).toHaveLength(3);
        await sleep(250);
      }
      expect([...controlFailures.keys()].filter((k) => k !== 'UNAVAILABLE')).toEqual([]);
      expect((await client.list()).map((d) => d.spec.name)).toEqual(['mlp']);

      // Scale to 3: the desired state is written to the R3 KV bucket and the spare worker fetches
      // the artifact from the R3 object store (it has never loaded it), both with a node gone.
      const scaleAt = Date.now();
      let scaleTries = 0;
      const scaleErrors = new Map<string, number>();
      const scaled = await until(
        async () => {
          // A head that lost the state bucket steps down and, leading again, knows the workers only
          // from the heartbeats since: scale once it lists all three alive (as an operator would),
          // so where the replica goes is placement's choice, not an accident of that moment.
          const s = await client.status().catch(() => undefined);
          if (!s || s.workers.filter((w) => w.alive).length < 3) return undefined;
          scaleTries++;
          try {
            return await client.scale('mlp', 3, { wait: true, waitTimeoutMs: 20_000 });
          } catch (err) {
            const why = `${(err as { code?: string }).code}: ${(err as Error).message}`;
            scaleErrors.set(why, (scaleErrors.get(why) ?? 0) + 1);
            return undefined;
          }
        },
        { timeoutMs: 40_000, what: 'scale to 3', everyMs: 250 },
      );
      const scaleMs = Date.now() - scaleAt;
      const f = await load.done;
      const stateAfter = await jsApi(nc, `$JS.API.STREAM.INFO.${stateStream}`, {}, 20_000);
      const rec = await jsApi(
        nc,
        `$JS.API.STREAM.MSG.GET.${stateStream}`,
        { last_by_subj: `$KV.flotilla_${rig.cluster}_state.deployments.mlp` },
        20_000,
      );
      say(`cluster: ${fmt(f)}`);
      say(
        `cluster: head and callers reconnected after ${reconnectMs} ms; describe+status during the heal took ${control.join('/')} ms (transient failures: ${JSON.stringify(Object.fromEntries(controlFailures))}); scale to 3 ready in ${scaleMs} ms (${scaleTries} tries), ` +
          `new replica on ${spare}; state bucket leader now ${stateAfter.cluster?.leader}`,
      );
      for (const [why, n] of scaleErrors) say(`cluster: scale failed ${n}x while the state bucket had no leader: ${why}`);

      expect(f.lost).toBe(0);
      expect(f.errored).toEqual({});
      expect(f.ok).toBe(f.sent);
      expect(scaled.ready).toBe(3);
      expect(workersOf(scaled)).toEqual(['p0', 'p1', 'p2']);
      expect(rec.message.subject).toBe(`$KV.flotilla_${rig.cluster}_state.deployments.mlp`);
      expect(stateAfter.cluster.leader).not.toBe(`n${victim}`);
      expect(rig.workers.every((w) => w.running)).toBe(true);
      for (const c of rig.clients) expect((await c.infer('mlp', { x }, { timeoutMs: 5000 })).y!.dims).toEqual([1, 4]);
    } finally {
      await rig?.stop();
      await nats.stop();
    }
  }, 120_000);
});
