// `pnpm bench:scale`: the head's policies and bookkeeping at cluster scale, simulated in-process:
// 1,000 workers and 10,000 replicas. Prints the time per placement decision, per autoscale tick
// (all deployments) and the cost of handling heartbeats (schema parse + plausibility + registry),
// plus heartbeat traffic per second; then a real Head on a real nats-server reconciling that
// cluster (its round time, from lastTickMs); then a real Head hearing 10,000 workers / 100,000
// replicas (SCALE_STATUS_WORKERS × SCALE_STATUS_REPLICAS_PER_WORKER): the size and time of the
// `status`, `list` and `events` replies, staged through the blob bucket when over max_payload.
// Heartbeats go worker → head only (one message per worker per period): traffic grows linearly
// with the number of workers, never all-to-all. Last stdout line: one JSON object.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { closeBus, connectBus, silentLogger } from '@flotilla/bus';
import { FlotillaClient } from '@flotilla/client';
import { Head } from '@flotilla/head';
import { Autoscaler, WorkerRegistry, observe, place } from '@flotilla/head/internal';
import { NatsServer } from '@flotilla/local';
import { PROTOCOL_VERSION, decode, encode, parseHeartbeat, type Heartbeat } from '@flotilla/protocol';
import { sampleModelPath } from '@flotilla/sample-models';

const WORKERS = Number(process.env.SCALE_WORKERS ?? 1000);
const REPLICAS = Number(process.env.SCALE_REPLICAS ?? 10_000);
const MODELS = Number(process.env.SCALE_MODELS ?? 500);
const GiB = 1024 ** 3;
const out = (s = '') => process.stdout.write(`${s}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
let seed = 7;
const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;

type Hb = Heartbeat;
function heartbeat(i: number, replicas: Hb['replicas'], seq = 0): Hb {
  const gpu = i % 4 === 0;
  return {
    v: PROTOCOL_VERSION,
    workerId: `w${i}`,
    pid: 1000 + i,
    state: 'running',
    seq,
    startedAt: 1,
    sentAt: Date.now(),
    inventory: {
      cpu: { cores: 32, model: 'sim' },
      memory: { totalBytes: 256 * GiB, availableBytes: 200 * GiB },
      gpus: gpu ? [{ index: 0, vendor: 'NVIDIA', model: 'sim', vramTotalBytes: 80 * GiB, vramFreeBytes: 80 * GiB }] : [],
      source: 'override',
      hostname: `h${i}`,
    },
    devices: [
      {
        id: 'cpu',
        kind: 'cpu',
        capacityBytes: 256 * GiB,
        budgetBytes: 230 * GiB,
        usedBytes: replicas.filter((r) => r.device === 'cpu').reduce((n, r) => n + r.bytes, 0),
        executionProvider: 'cpu',
        policy: 'fifo',
      },
      ...(gpu
        ? [
            {
              id: 'gpu:0',
              kind: 'gpu' as const,
              capacityBytes: 80 * GiB,
              budgetBytes: 72 * GiB,
              usedBytes: replicas.filter((r) => r.device === 'gpu:0').reduce((n, r) => n + r.bytes, 0),
              executionProvider: 'cuda',
              policy: 'fifo',
            },
          ]
        : []),
    ],
    replicas,
  };
}
function replica(id: string, model: string, device: string): Hb['replicas'][number] {
  return {
    id,
    model,
    digest: 'd',
    device,
    state: 'ready',
    bytes: 2 * GiB,
    queueDepth: Math.floor(rnd() * 8),
    inFlight: Math.floor(rnd() * 4),
    processed: 0,
    failed: 0,
    executionProvider: 'cpu',
    batching: { maxBatchSize: 8, maxQueueDelayMs: 1, maxQueueLength: 1024, batchAxis: true },
    batchHistogram: {},
    pinned: false,
    loadedAt: 0,
    lastUsedAt: 0,
  };
}

// Build the cluster: 10,000 replicas spread over 1,000 workers by the placement policy itself.
const registry = new WorkerRegistry(5000);
const perWorker: Array<Hb['replicas']> = Array.from({ length: WORKERS }, () => []);
const view = () =>
  perWorker.map((reps, i) => {
    const hb = heartbeat(i, reps);
    const replicasByModel: Record<string, number> = {};
    for (const r of reps) replicasByModel[r.model] = (replicasByModel[r.model] ?? 0) + 1;
    return {
      id: hb.workerId,
      schedulable: true,
      replicasByModel,
      devices: hb.devices.map((d) => ({ id: d.id, kind: d.kind, budgetBytes: d.budgetBytes, usedBytes: d.usedBytes })),
    };
  });

const placeTimes: number[] = [];
const viewTimes: number[] = [];
let placed = 0;
let v = view();
for (let n = 0; placed < REPLICAS; n++) {
  const model = `m${n % MODELS}`;
  if (n % 100 === 0) {
    const tv = performance.now();
    v = view(); // the head rebuilds its view from heartbeats once per reconcile round
    viewTimes.push(performance.now() - tv);
  }
  const t = performance.now();
  const r = place({ model, bytes: 2 * GiB, device: n % 3 === 0 ? 'gpu' : 'cpu', allowFallback: true, count: 1, allowEviction: true }, v);
  placeTimes.push(performance.now() - t);
  for (const p of r.placements) {
    const idx = Number(p.workerId.slice(1));
    perWorker[idx]!.push(replica(`r${placed}`, model, p.device));
    const dev = v[idx]!.devices.find((d) => d.id === p.device)!;
    dev.usedBytes += 2 * GiB;
    v[idx]!.replicasByModel[model] = (v[idx]!.replicasByModel[model] ?? 0) + 1;
    placed++;
  }
  if (r.placements.length === 0) break;
}

// Heartbeat handling: decode + schema parse + plausibility + registry upsert, as the head does per message.
const ROUNDS = 5;
const rounds = Array.from({ length: ROUNDS }, (_, k) => perWorker.map((reps, i) => encode(heartbeat(i, reps, k))));
const bytesPerRound = rounds[0]!.reduce((n, b) => n + b.byteLength, 0);
const t0 = performance.now();
let believed = 0;
for (const beats of rounds) for (const b of beats) if (registry.upsert(parseHeartbeat(decode(b)), Date.now()).accepted) believed++;
const hbMsPerRound = (performance.now() - t0) / ROUNDS;
if (believed !== ROUNDS * WORKERS) process.stderr.write(`warning: ${ROUNDS * WORKERS - believed} heartbeats not believed\n`);

// Autoscale tick: one decide() per deployment over its replicas' queue depths.
const scalers = new Map<string, Autoscaler>();
for (let m = 0; m < MODELS; m++) scalers.set(`m${m}`, new Autoscaler({ minReplicas: 1, maxReplicas: 100 }));
const byModel = new Map<string, Array<{ queueDepth: number; inFlight: number }>>();
const tickTimes: number[] = [];
for (let k = 0; k < 10; k++) {
  const t = performance.now();
  byModel.clear();
  for (const w of registry.running())
    for (const r of w.hb.replicas) (byModel.get(r.model) ?? byModel.set(r.model, []).get(r.model)!).push(r);
  for (const [m, reps] of byModel) scalers.get(m)!.decide({ now: k * 500, current: reps.length, outstanding: observe(reps) });
  tickTimes.push(performance.now() - t);
}

// The real head's reconcile round at this scale: a Head on a real nats-server hears the simulated
// workers' heartbeats (their replicas carry the deployed digest, so nothing needs placing) and
// reconciles every deployment each round (500 ms); its own `lastTickMs` is sampled over rounds.
const nats = await NatsServer.start();
const realHead = await Head.start({ bus: { servers: nats.url }, cluster: 'scale', workerTimeoutMs: 60_000, logger: silentLogger() });
const client = new FlotillaClient({ servers: nats.url, cluster: 'scale' });
const headTicks: number[] = [];
let deployMsMedian: number;
try {
  const file = readFileSync(sampleModelPath('mlp'));
  const digest = createHash('sha256').update(file).digest('hex');
  const hbc = await connectBus({ servers: nats.url });
  let round = 0;
  const publishBeats = () => {
    const seq = round++;
    perWorker.forEach((reps, i) =>
      hbc.publish(
        `flotilla.scale.hb.w${i}`,
        encode(
          heartbeat(
            i,
            reps.map((r) => ({ ...r, digest })),
            seq,
          ),
        ),
      ),
    );
    return hbc.flush();
  };
  await publishBeats();
  const want = new Map<string, number>();
  for (const reps of perWorker) for (const r of reps) want.set(r.model, (want.get(r.model) ?? 0) + 1);
  const deployTimes: number[] = [];
  for (const [model, replicas] of want) {
    const t = performance.now();
    await client.deploy(file, model, { replicas, device: 'any', profile: { enabled: false }, wait: false });
    deployTimes.push(performance.now() - t);
  }
  deployMsMedian = median(deployTimes);
  // Heartbeats keep arriving (as they would, once per worker per second) while rounds run.
  for (let k = 0; k < 8; k++) {
    await publishBeats();
    await new Promise((r) => setTimeout(r, 500));
    headTicks.push(realHead.lastTickMs);
  }
  const unplaced = (await client.list()).filter((d) => d.ready !== d.spec.replicas).length;
  if (unplaced > 0) process.stderr.write(`warning: ${unplaced} deployments not matched by the simulated replicas\n`);
  await closeBus(hbc);
} finally {
  await client.close();
  await realHead.stop();
  await nats.stop();
}

// Control replies at 10,000 workers / 100,000 replicas through a real head: the synthetic workers'
// heartbeats are published once (the head's worker timeout is long), every replica belongs to a
// deployed model, and `status`, `list` and `events` are asked for by the SDK (staged replies).
const S_WORKERS = Number(process.env.SCALE_STATUS_WORKERS ?? 10_000);
const S_PER_WORKER = Number(process.env.SCALE_STATUS_REPLICAS_PER_WORKER ?? 10);
const statusRes = {
  workers: S_WORKERS,
  replicas: S_WORKERS * S_PER_WORKER,
  statusBytes: 0,
  statusMs: 0,
  listBytes: 0,
  listMs: 0,
  eventsBytes: 0,
  eventsMs: 0,
  heartbeatsMs: 0,
};
{
  const nats2 = await NatsServer.start();
  const head2 = await Head.start({ bus: { servers: nats2.url }, cluster: 'status', workerTimeoutMs: 600_000, logger: silentLogger() });
  const client2 = new FlotillaClient({ servers: nats2.url, cluster: 'status' });
  try {
    await head2.leading();
    const file = readFileSync(sampleModelPath('mlp'));
    const digest = createHash('sha256').update(file).digest('hex');
    const per = new Map<string, number>();
    const reps = (i: number) =>
      Array.from({ length: S_PER_WORKER }, (_, k) => {
        const model = `m${(i * S_PER_WORKER + k) % MODELS}`;
        per.set(model, (per.get(model) ?? 0) + 1);
        return { ...replica(`r${i}-${k}`, model, 'cpu'), digest, bytes: 64 * 1024 * 1024 };
      });
    const hbc = await connectBus({ servers: nats2.url });
    const th = performance.now();
    for (let i = 0; i < S_WORKERS; i++) {
      hbc.publish(`flotilla.status.hb.w${i}`, encode(heartbeat(i, reps(i))));
      if (i % 500 === 499) await hbc.flush();
    }
    await hbc.flush();
    while (head2.registry.size < S_WORKERS) await new Promise((r) => setTimeout(r, 50));
    statusRes.heartbeatsMs = +(performance.now() - th).toFixed(0);
    for (const [model, replicas] of per)
      await client2.deploy(file, model, { replicas: Math.min(1000, replicas), device: 'any', profile: { enabled: false }, wait: false });
    const timed = async <T>(f: () => Promise<T>): Promise<[T, number, number]> => {
      const t = performance.now();
      const r = await f();
      return [r, performance.now() - t, encode({ v: 1, ok: true, result: r }).byteLength];
    };
    await client2.status(); // warm-up: the blob bucket is created on first use
    const [st, stMs, stBytes] = await timed(() => client2.status());
    const [ls, lsMs, lsBytes] = await timed(() => client2.list());
    const ev = connectBus({ servers: nats2.url });
    const evc = await ev;
    for (let i = 0; i < 1000; i++)
      evc.publish(
        `flotilla.status.events.loaded`,
        encode({
          v: 1,
          type: 'loaded',
          model: `m${i % MODELS}`,
          worker: `w${i}`,
          device: 'cpu',
          replica: `r${i}`,
          bytes: 1,
          at: Date.now(),
          data: { loadMs: 1, reason: 'x'.repeat(600) },
        }),
      );
    await evc.flush();
    await new Promise((r) => setTimeout(r, 500));
    const [evs, evMs, evBytes] = await timed(() => client2.events({ limit: 100_000 }));
    await closeBus(evc);
    const replicasSeen = st.workers.reduce((n, w) => n + w.replicas.length, 0);
    if (st.workers.length !== S_WORKERS || replicasSeen !== S_WORKERS * S_PER_WORKER || ls.length !== per.size || evs.length !== 1000) {
      process.stderr.write(
        `warning: status ${st.workers.length} workers / ${replicasSeen} replicas, list ${ls.length}, events ${evs.length}\n`,
      );
    }
    Object.assign(statusRes, {
      statusBytes: stBytes,
      statusMs: +stMs.toFixed(0),
      listBytes: lsBytes,
      listMs: +lsMs.toFixed(0),
      eventsBytes: evBytes,
      eventsMs: +evMs.toFixed(0),
    });
    await closeBus(hbc);
  } finally {
    await client2.close();
    await head2.stop();
    await nats2.stop();
  }
}

const res = {
  workers: WORKERS,
  replicas: placed,
  models: MODELS,
  placementMsMedian: +median(placeTimes).toFixed(3),
  placementMsMax: +Math.max(...placeTimes).toFixed(3),
  viewRebuildMsMedian: +median(viewTimes).toFixed(3),
  autoscaleTickMsMedian: +median(tickTimes).toFixed(3),
  heartbeatHandlingMsPerSecond: +hbMsPerRound.toFixed(2),
  heartbeatBytesPerSecond: bytesPerRound,
  heartbeatMessagesPerSecond: WORKERS,
  headTickMsMedian: +median(headTicks).toFixed(2),
  headTickMsMax: +Math.max(...headTicks).toFixed(2),
  deployMsMedian: +deployMsMedian.toFixed(2),
  status: statusRes,
};
out(
  `placement of one replica among ${WORKERS} workers: median ${res.placementMsMedian} ms (max ${res.placementMsMax} ms); head view rebuild ${res.viewRebuildMsMedian} ms`,
);
out(`autoscale tick over ${MODELS} deployments / ${placed} replicas: median ${res.autoscaleTickMsMedian} ms (target < 50 ms)`);
out(
  `heartbeats: ${WORKERS} msgs/s (1 per worker per second, worker → head only), ${(bytesPerRound / 1048576).toFixed(2)} MiB/s; decode + bookkeeping ${res.heartbeatHandlingMsPerSecond} ms per second of heartbeats`,
);
out(
  `real head on nats-server: reconcile round over ${MODELS} deployments / ${placed} replicas / ${WORKERS} workers: median ${res.headTickMsMedian} ms (max ${res.headTickMsMax} ms) every 500 ms; deploy (control round trip + KV write) ${res.deployMsMedian} ms`,
);
const MiB = (b: number) => (b / 1048576).toFixed(1);
out(
  `control replies at ${S_WORKERS} workers / ${statusRes.replicas} replicas (real head, staged over max_payload): status ${MiB(statusRes.statusBytes)} MiB in ${statusRes.statusMs} ms, list ${MiB(statusRes.listBytes)} MiB in ${statusRes.listMs} ms, events (1,000) ${MiB(statusRes.eventsBytes)} MiB in ${statusRes.eventsMs} ms; ${S_WORKERS} first heartbeats handled in ${statusRes.heartbeatsMs} ms`,
);
out(JSON.stringify({ bench: 'scale', ...res }));
