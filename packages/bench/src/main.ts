// `pnpm bench`: the benchmark that shows what automatic batching buys. For each sample model it
// measures, in one run on one machine:
//   (1) in-process onnxruntime-node, batch 1, sequential loop                    items/s
//   (2) in-process onnxruntime-node at the best batch size of a full sweep      items/s (ceiling)
//   (3) raw NATS request/reply against an empty responder, at the concurrency of the best (4),
//       with a request as large as the SDK's request for the model                 msgs/s
//   (4) the Flotilla cluster (real nats-server, head, ONE worker process with --threads 1, one
//       replica, batching chosen by the replica's profile) under single-item requests from the SDK
//       (runLoad) at concurrency 1, 16, 128                        items/s, p50/p99, batch sizes
//   (5) peers on the same model, each on the worker's core with its load generator on the bench's,
//       at the best (4)'s concurrency (peers.ts; skipped with the reason when not available):
//       (5a) a plain Moleculer service over the same nats-server, one session.run per call;
//       (5b) Triton (nvidia-pytriton) with its dynamic batcher set to what the profile chose for
//       (4), HTTP binary tensors; (5c) Ray Serve, @serve.batch set likewise, DeploymentHandle
//       (`bash packages/bench/peers/setup` makes the Python venvs)    items/s, p50/p99, batch
// and the ratios ceiling_ratio = best(4)/(2), broker_ratio = best(4)/(3),
// batching_gain = best(4)/(1), inproc_gain = (2)/(1), vs_<peer> = best(4)/(5x) in items/s and
// p99_vs_<peer> = p99 of best(4) / p99 of (5x). The targets check the same ratios measured in
// turns (paired.ts, load-windows.ts): the best (4)'s concurrency again in short windows, between
// them the model timed in-process on the worker's core (the ceilings), raw NATS (the broker ratio
// of a model that is not compute-bound), or a peer's load (Moleculer, Triton): figures measured
// seconds apart, not minutes.
// Fair cores (with taskset and ≥ 2 cores): this process (head), the load generators of (3) and (4)
// (load-child.ts: a process each, as the peers' load generators are) and nats-server on core 0;
// the worker, the in-process baselines and the empty responder on core 1.
// Progress goes to stderr; stdout gets the tables and, as its last line, one JSON object.
// Env: BENCH_QUICK=1, BENCH_DURATION_MS, BENCH_WARMUP_MS, BENCH_MODELS, BENCH_CONCURRENCY,
// BENCH_MAX_BATCH, BENCH_PIN=0 (see stats.ts), BENCH_PEERS=0 (no peers) or a list: moleculer,triton,ray,
// BENCH_BODIES=8,64,256 (then large bodies, bodies.ts, unpinned in a cluster of their own; 0: none),
// BENCH_BATCHING (JSON batching options for every deployment, e.g. '{"maxBatchSize":16}': not the profile's choice).
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProfileStore, silentLogger, type NatsConnection } from '@flotilla/bus';
import {
  DEFAULT_INFER_TIMEOUT_MS,
  FlotillaClient,
  fromTypedArray,
  type LoadedReplicaState,
  type ModelProfile,
  type WireTensors,
} from '@flotilla/client';
import { Head } from '@flotilla/head';
import { NatsServer, findNatsServer } from '@flotilla/local';
import { PROTOCOL_VERSION, encode } from '@flotilla/protocol';
import { SAMPLE_MODELS, sampleModelPath } from '@flotilla/sample-models';
import { benchBodies, bodiesText, bodyTargets, type BodiesResult } from './bodies.js';
import { bounds, checkTargets, chosenLoss, chosenLossText, pairedVsBounds, targetsLine, type Bounds } from './bounds.js';
import { repoPath } from './deps.js';
import { driftBetween, hostDrift, hostDriftLine, type PhaseProbes } from './host-drift.js';
import { loadUntil } from './load-until.js';
import type { InprocResult, SweepRow } from './inproc.js';
import type { LoadChildArgs, LoadChildResult } from './load-child.js';
import {
  peerBatching,
  peerRatio,
  peerRatioFields,
  peerRatioLine,
  peerSelection,
  PEER_NAMES,
  PEER_TITLES,
  ratioText,
  type PeerName,
  type PeerRatio,
  type PeerRunBase,
} from './peer-report.js';
import {
  affinityOf,
  cpuProfArgs,
  exitJson,
  keepTail,
  processCpuS,
  readyLine,
  spawnPeer,
  stopPeer as stopChild,
  untilLine,
  workerArgv,
} from './peer-process.js';
import { measurePeers, peerTableRows } from './peers.js';
import { SpeedProbe } from './speed-probe.js';
import { pauseLines, takeTurns, turnTaker } from './load-windows.js';
import {
  PAIRED_MIN_WINDOW_MS,
  PAIRED_ROUNDS,
  PAIRED_WARM_MS,
  pairWindows,
  paired,
  pairedBrokerLine,
  pairedLine,
  pairedRounds,
  type Paired,
  type PairedRounds,
} from './paired.js';
import {
  benchDim,
  benchSettings,
  fmt,
  histogramDiff,
  histogramText,
  histogramTotals,
  modelUsPerItem,
  rateWithin,
  ratios,
  round,
  rowWithin,
  table,
  type Histogram,
  type Ratios,
} from './stats.js';

const settings = benchSettings(process.env);
/** How long each host-speed probe times the model (host-drift.ts). */
const PROBE_MS = 500;
const log = (s: string) => process.stderr.write(`${s}\n`);
const out = (s = '') => process.stdout.write(`${s}\n`);

// ---------- processes, pinning and teardown ----------

const children = new Set<ChildProcess>();
const cleanups: Array<{ what: string; run: () => Promise<unknown> | unknown }> = [];
let natsPid: number | undefined;
let tornDown: Promise<void> | undefined;

function onCleanup(what: string, run: () => Promise<unknown> | unknown): void {
  cleanups.push({ what, run });
}

/** Runs every cleanup, newest first; each one runs even when an earlier one failed. Idempotent. */
function teardown(): Promise<void> {
  tornDown ??= (async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c.run();
      } catch (err) {
        log(`teardown: ${c.what} failed: ${(err as Error).message}`);
      }
    }
  })();
  return tornDown;
}

// Last resort (an exit without teardown): nothing we started may outlive us.
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (natsPid !== undefined && !tornDown) {
    try {
      process.kill(natsPid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`bench: ${sig}, tearing down`);
    void teardown().finally(() => process.exit(130));
  });
}

interface Pinning {
  enabled: boolean;
  /** Why pinning is off, when it is. */
  reason?: string;
  cores: { bench: string; natsServer: string; worker: string; inproc: string; responder: string } | null;
  /** Affinity lists read back with `taskset -cp` (all threads of this process were set with -a). */
  observed?: { bench: string; natsServer?: string; worker?: string };
  /** This process's affinity before pinning (restored for the large bodies). */
  original?: string;
}

function taskset(args: string[]): string {
  return execFileSync('taskset', args, { encoding: 'utf8' }).trim();
}

function setUpPinning(): Pinning {
  const cores = os.availableParallelism();
  if (!settings.pin) return { enabled: false, reason: 'BENCH_PIN=0', cores: null };
  if (spawnSync('taskset', ['--version']).error)
    return { enabled: false, reason: 'taskset not found (util-linux): running unpinned', cores: null };
  if (cores < 2) return { enabled: false, reason: `only ${cores} core available: running unpinned`, cores: null };
  // Every thread of this process (main, libuv pool, V8) to core 0; nats-server, spawned later,
  // inherits it (so Go also sees one CPU); the replica's side gets core 1.
  const original = affinityOf(process.pid);
  taskset(['-a', '-cp', '0', String(process.pid)]);
  return {
    enabled: true,
    original,
    cores: { bench: '0', natsServer: '0', worker: '1', inproc: '1', responder: '1' },
    observed: { bench: affinityOf(process.pid) },
  };
}

/** Spawns `node <args>` on `core` (when pinning), output piped; tracked for teardown. */
function spawnNode(pinning: Pinning, core: string | undefined, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child = spawnPeer(process.execPath, args, pinning.enabled ? core : undefined, env);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

// ---------- (1) and (2): in-process baselines in a pinned child ----------

async function runInproc(pinning: Pinning, modelPath: string): Promise<InprocResult> {
  const args = JSON.stringify({
    modelPath,
    durationMs: settings.durationMs,
    warmupMs: settings.warmupMs,
    maxBatch: settings.maxBatch,
    device: settings.device,
  });
  return exitJson<InprocResult>(
    spawnNode(pinning, pinning.cores?.inproc, [repoPath('packages/bench/dist/inproc.js'), args]),
    'in-process baseline',
  );
}

/** The host-speed probe (host-drift.ts): the model open at `batch` on the replica's core, idle until asked; undefined if it fails to start. */
async function startProbe(pinning: Pinning, modelPath: string, batch: number): Promise<SpeedProbe | undefined> {
  const args = JSON.stringify({ modelPath, device: settings.device, probe: { batch, durationMs: PROBE_MS } });
  try {
    return await SpeedProbe.start(spawnNode(pinning, pinning.cores?.inproc, [repoPath('packages/bench/dist/inproc.js'), args]));
  } catch (err) {
    log(`    speed probe did not start: ${(err as Error).message}`);
    return undefined;
  }
}

// ---------- the load generators: a child process each, pinned beside nats-server ----------

/** Where a load child waits for SIGUSR2: after its warm-up (`warm <ok>`), or after measured window `window` of several. */
type LoadPause = { warmOk: number } | { window: number };

/**
 * Runs load-child.js where the load generators run (as the peers' load generators run) and returns
 * its warm-up and measured summaries; with `onPause`, the child waits after its warm-up, and
 * between measured windows (`args.windows`), until `onPause` has resolved.
 */
async function childLoad(pinning: Pinning, args: LoadChildArgs, onPause?: (p: LoadPause) => Promise<void>): Promise<LoadChildResult> {
  // BENCH_LOAD_CPU_PROF=DIR: each load generator writes a V8 CPU profile there when it ends.
  // BENCH_LOAD_NODE_FLAGS="--flag …": its Node flags (default none: Node's defaults, as a user's process).
  const child = spawnNode(pinning, pinning.cores?.bench, [
    ...(process.env.BENCH_LOAD_NODE_FLAGS ?? '').split(' ').filter(Boolean),
    ...cpuProfArgs(process.env.BENCH_LOAD_CPU_PROF),
    repoPath('packages/bench/dist/load-child.js'),
    JSON.stringify({ ...args, waitForGo: onPause !== undefined }),
  ]);
  const result = exitJson<LoadChildResult>(child, `load generator (${args.kind})`);
  if (onPause)
    pauseLines(child, (line) => {
      const [kind, n] = line.split(' ');
      // A failed pause still lets the child go on (the caller finds what it did not record).
      return onPause(kind === 'warm' ? { warmOk: Number(n) } : { window: Number(n) });
    });
  return result;
}

/** Each paired window's length, ms: the run's duration over PAIRED_ROUNDS, at least PAIRED_MIN_WINDOW_MS. */
function pairedWindowMs(): number {
  return Math.max(PAIRED_MIN_WINDOW_MS, Math.round(settings.durationMs / PAIRED_ROUNDS));
}

/** Each input's name and dims, as a load child builds its requests from them. */
function inputShapes(inputs: WireTensors): Array<{ name: string; dims: number[] }> {
  return Object.entries(inputs).map(([name, t]) => ({ name, dims: t.dims }));
}

/** Flotilla's load through the SDK: `inputs` closed-loop at `concurrency`, measured for `durationMs` after the warm-up. */
function flotillaLoad(
  url: string,
  c: FlotillaClient,
  model: string,
  inputs: WireTensors,
  concurrency: number,
  durationMs: number,
): LoadChildArgs {
  return {
    kind: 'flotilla',
    natsUrl: url,
    cluster: c.subjects.cluster,
    model,
    inputs: inputShapes(inputs),
    concurrency,
    durationMs,
    warmupMs: settings.warmupMs,
  };
}

/** Flotilla's load in PAIRED_ROUNDS windows for a load child (paired.ts): a warm-up, then a pause before each window. */
function pairedFlotillaLoad(url: string, c: FlotillaClient, model: string, inputs: WireTensors, concurrency: number): LoadChildArgs {
  return { ...flotillaLoad(url, c, model, inputs, concurrency, pairedWindowMs()), windows: PAIRED_ROUNDS, windowWarmMs: PAIRED_WARM_MS };
}

// ---------- (3): raw NATS request/reply ----------

/** The raw baseline's reply size, bytes. */
const RAW_REPLY_BYTES = 64;

/** The empty responder (responder.js) on the replica's core, answering RAW_REPLY_BYTES on a subject of its own once ready. */
async function startResponder(pinning: Pinning, url: string): Promise<{ child: ChildProcess; subject: string }> {
  const subject = `bench.raw.${Math.random().toString(36).slice(2, 10)}`;
  const child = spawnNode(pinning, pinning.cores?.responder, [
    repoPath('packages/bench/dist/responder.js'),
    url,
    subject,
    String(RAW_REPLY_BYTES),
  ]);
  try {
    await untilLine(child, 'the raw NATS responder', readyLine);
  } catch (err) {
    await stopChild(child, 3000);
    throw err;
  }
  return { child, subject };
}

/** Raw NATS load on the responder's subject: `body` closed-loop at `concurrency`, measured for `durationMs` after the warm-up. */
function rawLoad(url: string, subject: string, body: Uint8Array, concurrency: number, durationMs: number): LoadChildArgs {
  return {
    kind: 'raw',
    natsUrl: url,
    subject,
    bodyBase64: Buffer.from(body).toString('base64'),
    concurrency,
    durationMs,
    warmupMs: settings.warmupMs,
  };
}

async function measureRawNats(pinning: Pinning, url: string, nc: NatsConnection, body: Uint8Array, concurrency: number) {
  const replyBytes = RAW_REPLY_BYTES;
  const { child, subject } = await startResponder(pinning, url);
  try {
    // The responder's CPU over the measured run (after the warm-up), per request it answered: what
    // nats.js costs a server per request, the floor under every server's (bounds.ts).
    let cpuBefore: number | undefined;
    const { run: s } = await childLoad(pinning, rawLoad(url, subject, body, concurrency, settings.durationMs), () => {
      cpuBefore = cpuOf(child.pid);
      return Promise.resolve();
    });
    const cpuAfter = cpuOf(child.pid);
    const responderUsPerMsg =
      cpuBefore !== undefined && cpuAfter !== undefined && s.ok > 0 ? round(((cpuAfter - cpuBefore) * 1e6) / s.ok, 1) : undefined;
    return {
      concurrency,
      requestBytes: body.byteLength,
      replyBytes,
      ...(responderUsPerMsg !== undefined ? { responderUsPerMsg } : {}),
      msgsPerSec: s.requestsPerSec,
      p50Ms: s.latencyMs.p50,
      p99Ms: s.latencyMs.p99,
      meanMs: s.latencyMs.mean,
      sent: s.sent,
      ok: s.ok,
      errored: s.errored,
    };
  } finally {
    await stopChild(child, 3000);
  }
}

// ---------- (4): the cluster ----------

async function readyReplicas(c: FlotillaClient, model: string): Promise<LoadedReplicaState[]> {
  const st = await c.status();
  return st.workers.flatMap((w) => w.replicas.filter((r): r is LoadedReplicaState => r.model === model && r.state === 'ready'));
}

/** The model's ready replicas (BENCH_WORKERS > 1: one per worker) as one: requests answered and batch histograms summed. */
function asOne(rs: LoadedReplicaState[]): LoadedReplicaState | undefined {
  if (rs.length <= 1) return rs[0];
  const batchHistogram: Record<string, number> = {};
  for (const r of rs) for (const [k, v] of Object.entries(r.batchHistogram ?? {})) batchHistogram[k] = (batchHistogram[k] ?? 0) + v;
  return { ...rs[0]!, processed: rs.reduce((n, r) => n + r.processed, 0), batchHistogram };
}

/** Longest the bench sends a dynamic-shape model its shape before the runs, waiting for the shape's profile. */
const SHAPE_SETTLE_MS = 30_000;

/**
 * A dynamic-shape model's replica profiles each input shape in the background as traffic brings
 * it (one request at a time on a GPU until then). Before the timed runs the bench sends its shape
 * from 4 callers until that profile is in (at most SHAPE_SETTLE_MS), so the runs measure what a
 * replica serves once it has seen its traffic, as the peers are measured after their warm-up.
 * Returns the ms it took and the shapes' states.
 */
async function settleShapes(c: FlotillaClient, model: string, inputs: WireTensors): Promise<{ ms: number; states: string[] }> {
  let states: string[] = [];
  const { ms } = await loadUntil(c, model, inputs, {
    concurrency: 4,
    maxMs: SHAPE_SETTLE_MS,
    done: async () => {
      // Every replica's (traffic spreads over them): each has seen the shape and none is still profiling.
      const rs = await readyReplicas(c, model);
      states = rs.flatMap((r) => r.profile?.shapes ?? []).map((s) => s.state);
      const seen = rs.length >= settings.workers && rs.every((r) => (r.profile?.shapes?.length ?? 0) > 0);
      return seen && states.every((s) => s !== 'queued' && s !== 'profiling');
    },
  });
  return { ms, states };
}

/**
 * The replica's state once its heartbeat reflects at least `processed` answered requests (status
 * comes from heartbeats, so right after a run it can lag). Gives up after `timeoutMs`.
 */
async function replicaAfter(
  c: FlotillaClient,
  model: string,
  processed: number,
  timeoutMs = 5000,
): Promise<{ replica: LoadedReplicaState; fresh: boolean }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = asOne(await readyReplicas(c, model));
    if (r && r.processed >= processed) return { replica: r, fresh: true };
    if (Date.now() > deadline) {
      if (!r) throw new Error(`no ready replica of ${model} in the cluster status`);
      return { replica: r, fresh: false };
    }
    await sleep(50);
  }
}

interface ClusterRun {
  concurrency: number;
  itemsPerSec: number;
  requestsPerSec: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  meanMs: number;
  sent: number;
  ok: number;
  retried: number;
  errored: Record<string, number>;
  lost: number;
  batchHistogram: Histogram;
  batches: number;
  meanBatch: number;
  histogramFresh: boolean;
  /** Where the worker's time went in the run (undefined where /proc cannot be read). */
  worker?: WorkerCpu;
}

interface WorkerCpu {
  /** CPU time of the worker processes over the run, all together, per item answered (µs). */
  cpuUsPerItem: number;
  /** That CPU time ÷ the run's duration: cores kept busy (1 worker on its one core: 1 = never idle). */
  busy: number;
  /** What the run's batches cost in-process, per item (µs of CPU): the model alone at these batch sizes. */
  modelUsPerItem?: number;
  /** cpuUsPerItem − modelUsPerItem: everything besides the model (NATS, (de)coding, copies, GC, a slower model run). */
  otherUsPerItem?: number;
}

/** The worker processes (their pids), for their CPU time. */
const workerPids: number[] = [];

/** One process's CPU seconds so far; undefined where /proc cannot be read. */
function cpuOf(pid: number | undefined): number | undefined {
  try {
    return pid === undefined ? undefined : processCpuS(pid);
  } catch {
    return undefined;
  }
}

/** The worker processes' CPU seconds so far, together; undefined when one cannot be read (not Linux, or a worker gone). */
function workersCpuS(): number | undefined {
  let sum = 0;
  for (const pid of workerPids) {
    const s = cpuOf(pid);
    if (s === undefined) return undefined;
    sum += s;
  }
  return sum;
}

/**
 * The worker's CPU over a measured run: `cpuS` from the run's start until its load generator
 * exited, over `items` answered in `wallMs` (the run's own wall time: its duration plus the
 * answers still in flight when it ended, which the load generator waits for and counts).
 */
function workerCpu(
  cpuS: number | undefined,
  items: number,
  wallMs: number,
  hist: Histogram,
  sweep: readonly SweepRow[],
): WorkerCpu | undefined {
  if (cpuS === undefined || items <= 0) return undefined;
  const cpuUsPerItem = (cpuS * 1e6) / items;
  // CPU against CPU: the in-process runs' own CPU time where measured (a wall-clock rate would
  // count the time the in-process baseline waited for its core on a shared machine).
  const model = modelUsPerItem(
    hist,
    sweep.map((r) => (r.cpuUsPerItem ? { batch: r.batch, itemsPerSec: 1e6 / r.cpuUsPerItem } : r)),
  );
  return {
    cpuUsPerItem: round(cpuUsPerItem, 1),
    // Over the run's wall time, not its nominal duration: the tail's answers are in cpuS (a short
    // QUICK run read 102 % busy over its 500 ms).
    busy: round(cpuS / (Math.max(wallMs, settings.durationMs) / 1000), 3),
    ...(model !== undefined ? { modelUsPerItem: round(model, 1), otherUsPerItem: round(cpuUsPerItem - model, 1) } : {}),
  };
}

function workerCpuText(w: WorkerCpu): string {
  const split =
    w.modelUsPerItem !== undefined
      ? ` = the model ${fmt(w.modelUsPerItem)} µs (in-process CPU, same batch sizes) + ${fmt(w.otherUsPerItem)} µs besides`
      : '';
  return `worker CPU ${fmt(w.cpuUsPerItem)} µs per item${split}, busy ${fmt(w.busy * 100)} % of a core`;
}

async function measureCluster(
  pinning: Pinning,
  url: string,
  c: FlotillaClient,
  model: string,
  inputs: WireTensors,
  sweep: readonly SweepRow[],
): Promise<ClusterRun[]> {
  const runs: ClusterRun[] = [];
  let okSoFar = 0;
  for (const concurrency of settings.concurrencies) {
    // The child warms up, waits while the replica's state before the run is read, then runs.
    let before: Awaited<ReturnType<typeof replicaAfter>> | undefined;
    let cpuBefore: number | undefined;
    const { warmup, run: s } = await childLoad(
      pinning,
      flotillaLoad(url, c, model, inputs, concurrency, settings.durationMs),
      async (p) => {
        if (!('warmOk' in p)) return;
        before = await replicaAfter(c, model, okSoFar + p.warmOk);
        cpuBefore = workersCpuS(); // the run starts as this resolves
      },
    );
    const cpuAfter = workersCpuS();
    okSoFar += (warmup?.ok ?? 0) + s.ok;
    const after = await replicaAfter(c, model, okSoFar);
    if (!before) throw new Error('the load generator ran without waiting for the state before the run');
    const hist = histogramDiff(after.replica.batchHistogram, before.replica.batchHistogram);
    const cpuS = cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined;
    const worker = workerCpu(cpuS, s.ok, s.elapsedMs, hist, sweep);
    const totals = histogramTotals(hist);
    runs.push({
      concurrency,
      itemsPerSec: s.itemsPerSec,
      requestsPerSec: s.requestsPerSec,
      p50Ms: s.latencyMs.p50,
      p90Ms: s.latencyMs.p90,
      p99Ms: s.latencyMs.p99,
      meanMs: s.latencyMs.mean,
      sent: s.sent,
      ok: s.ok,
      retried: s.retried,
      errored: s.errored,
      lost: s.lost,
      batchHistogram: hist,
      batches: totals.batches,
      meanBatch: totals.meanBatch,
      histogramFresh: before.fresh && after.fresh,
      ...(worker ? { worker } : {}),
    });
    log(
      `    cluster c=${concurrency}: ${s.itemsPerSec} items/s, p50 ${s.latencyMs.p50} ms, p99 ${s.latencyMs.p99} ms, mean batch ${totals.meanBatch}` +
        (worker ? `; ${workerCpuText(worker)}` : ''),
    );
  }
  return runs;
}

/**
 * The cluster's best concurrency again, in PAIRED_ROUNDS windows with the model timed in-process
 * (the probe, on the replica's core while the load pauses) before the first and after each
 * (paired.ts): each window's items/s, and the PAIRED_ROUNDS + 1 probes.
 */
async function measurePaired(
  pinning: Pinning,
  url: string,
  c: FlotillaClient,
  model: string,
  inputs: WireTensors,
  concurrency: number,
  probe: SpeedProbe,
): Promise<{ windows: number[]; probes: (number | undefined)[] }> {
  const probes: (number | undefined)[] = [];
  const r = await childLoad(pinning, pairedFlotillaLoad(url, c, model, inputs, concurrency), async () => {
    probes.push(await probe.probe());
  });
  probes.push(await probe.probe());
  return { windows: (r.windows ?? [r.run]).map((w) => w.itemsPerSec), probes };
}

/**
 * The broker ratio in turns (a model that is not compute-bound, paired.ts): raw NATS against the
 * empty responder and the cluster take turns at the best concurrency, a raw window before the
 * first cluster window and after each (PAIRED_ROUNDS cluster windows, one more raw).
 */
async function measurePairedBroker(
  pinning: Pinning,
  url: string,
  c: FlotillaClient,
  model: string,
  inputs: WireTensors,
  body: Uint8Array,
  concurrency: number,
): Promise<{ windows: number[]; raw: number[] }> {
  const { child: responder, subject } = await startResponder(pinning, url);
  try {
    const rawTurns = turnTaker();
    const clusterTurns = turnTaker();
    const raw = childLoad(
      pinning,
      { ...rawLoad(url, subject, body, concurrency, pairedWindowMs()), windows: PAIRED_ROUNDS + 1, windowWarmMs: PAIRED_WARM_MS },
      rawTurns.onPause,
    );
    const cluster = childLoad(pinning, pairedFlotillaLoad(url, c, model, inputs, concurrency), clusterTurns.onPause);
    await takeTurns({ turns: rawTurns, done: raw }, { turns: clusterTurns, done: cluster }, PAIRED_ROUNDS);
    const [r, cl] = await Promise.all([raw, cluster]);
    const rates = (x: LoadChildResult) => (x.windows ?? [x.run]).map((w) => w.requestsPerSec);
    return { windows: rates(cl), raw: rates(r) };
  } finally {
    await stopChild(responder, 3000);
  }
}

// ---------- one model ----------

function randomInputs(inproc: InprocResult): { inputs: WireTensors; dims: number[]; inputBytes: number } {
  const inputs: WireTensors = {};
  let dims: number[] = [];
  let inputBytes = 0;
  for (const m of inproc.inputs) {
    const d = m.shape.map((x, i) => benchDim(x, i, 1));
    const n = d.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.random() * 2 - 1;
    inputs[m.name] = fromTypedArray('float32', d, data);
    inputBytes += n * 4;
    if (dims.length === 0) dims = d;
  }
  return { inputs, dims, inputBytes };
}

async function benchModel(pinning: Pinning, url: string, c: FlotillaClient, name: string) {
  // The repository's model cache wherever the bench is started from (FLOTILLA_SAMPLE_DIR still wins).
  const path = sampleModelPath(
    name as keyof typeof SAMPLE_MODELS,
    process.env.FLOTILLA_SAMPLE_DIR ? undefined : repoPath('.cache/sample-models'),
  );
  log(`== ${name} (${path})`);

  log('  (1)+(2) in-process onnxruntime-node');
  const inproc = await runInproc(pinning, path);
  const { inputs, dims, inputBytes } = randomInputs(inproc);
  // What the SDK sends for one request (the raw NATS baseline sends these very bytes).
  const request = encode({ v: PROTOCOL_VERSION, inputs, timeoutMs: DEFAULT_INFER_TIMEOUT_MS });
  const requestBytes = request.byteLength;

  log('  (4) cluster: deploy (the replica profiles the model and chooses its batching)');
  const t0 = performance.now();
  // On a GPU the deployment may not fall back: a CPU replica would make the ratios meaningless.
  const deployed = await c.deploy(path, name, {
    ...(settings.device === 'gpu' ? { device: 'gpu', allowFallback: false } : { device: 'cpu' }),
    ...(settings.workers > 1 ? { replicas: settings.workers } : {}),
    ...(settings.padBatches !== undefined || settings.batching
      ? { batching: { ...settings.batching, ...(settings.padBatches !== undefined ? { padBatches: settings.padBatches } : {}) } }
      : {}),
  });
  const deployMs = round(performance.now() - t0, 1);
  let probe: SpeedProbe | undefined;
  try {
    const digest = deployed.spec.digest;
    const { replica } = await replicaAfter(c, name, 0);
    const profiles: ModelProfile[] = await new ProfileStore(await c.connection(), c.subjects.profileBucket).forDigest(digest);
    const profile = profiles.find((p) => p.deviceClass === replica?.profile?.deviceClass) ?? profiles[0];
    log(
      `    replica batching: ${JSON.stringify(replica?.batching)}; profile: ${replica?.profile?.source ?? '-'} ${profile ? `(${profile.chosen.reason})` : ''}`,
    );
    let settled: { ms: number; states: string[] } | undefined;
    if (replica?.profile?.source === 'per-shape') {
      settled = await settleShapes(c, name, inputs);
      log(`    shape profile before the runs: ${settled.states.join(', ') || 'none'} after ${settled.ms} ms of traffic`);
    }
    // The host's speed around each phase: the model at the batch size the replica chose (the sweep's
    // row within it). Not on a GPU: a second CUDA context there would show in the worker's VRAM readings.
    const probeRow =
      settings.device === 'cpu'
        ? rowWithin(inproc.sweep, peerBatching((await readyReplicas(c, name))[0] ?? replica, settings.batching).maxBatchSize)
        : undefined;
    probe = probeRow ? await startProbe(pinning, path, probeRow.batch) : undefined;
    const probes: Record<string, PhaseProbes> = {};
    const around = async <T>(phase: string, run: () => Promise<T>): Promise<T> => {
      const before = await probe?.probe();
      const out = await run();
      probes[phase] = { before, after: await probe?.probe() };
      return out;
    };
    const runs = await around('cluster', () => measureCluster(pinning, url, c, name, inputs, inproc.sweep));
    const best = runs.reduce((a, b) => (b.itemsPerSec > a.itemsPerSec ? b : a));

    log(`  (3) raw NATS request/reply, concurrency ${best.concurrency}, ${requestBytes} B requests`);
    const raw = await around('raw', async () => measureRawNats(pinning, url, await c.connection(), request, best.concurrency));
    log(`    raw NATS: ${raw.msgsPerSec} msgs/s, p50 ${raw.p50Ms} ms, responder ${raw.responderUsPerMsg ?? '-'} µs of CPU per request`);
    // At concurrency 1 too, where (4) ran there: the least a lone request's round trip takes (bounds.ts).
    const c1 = runs.find((x) => x.concurrency === 1);
    const rawC1 =
      c1 && best.concurrency !== 1 ? await measureRawNats(pinning, url, await c.connection(), request, 1) : c1 ? raw : undefined;
    if (rawC1 && rawC1 !== raw) log(`    raw NATS at concurrency 1: p50 ${rawC1.p50Ms} ms`);
    const computeBound = inproc.best.itemsPerSec < raw.msgsPerSec;

    // The ceilings (compute-bound) or the broker ratio (not) again, measured in turns (paired.ts).
    let pairedRun: Paired | null = null;
    let pairedBroker: PairedRounds | null = null;
    try {
      if (computeBound && probe && probeRow) {
        const m = await measurePaired(pinning, url, c, name, inputs, best.concurrency, probe);
        pairedRun = paired(probeRow.batch, pairedWindowMs(), pairWindows(m.windows, m.probes), {
          atChosen: probeRow.itemsPerSec,
          best: inproc.best.itemsPerSec,
        });
        log(`    ${pairedLine(pairedRun)}`);
      } else if (!computeBound) {
        const m = await measurePairedBroker(pinning, url, c, name, inputs, request, best.concurrency);
        pairedBroker = pairedRounds(pairedWindowMs(), pairWindows(m.windows, m.raw));
        log(`    ${pairedBrokerLine(pairedBroker)}`);
      }
    } catch (err) {
      log(`    paired windows failed: ${(err as Error).message}`);
    }

    // The replica's batching after the runs: a dynamic-shape model's background profile of the
    // shape it served has chosen by now (the peers get the same settings).
    const after = (await readyReplicas(c, name))[0] ?? replica;
    const batching = peerBatching(after, settings.batching);
    for (const s of after?.profile?.shapes ?? []) log(`    shape ${s.shape} (${s.requests} requests): ${s.state}, ${s.reason}`);
    const r: Ratios = ratios({
      inprocBatch1: inproc.batch1.itemsPerSec,
      inprocBest: inproc.best.itemsPerSec,
      rawNats: raw.msgsPerSec,
      clusterBest: best.itemsPerSec,
      inprocAtChosen: rateWithin(inproc.sweep, batching.maxBatchSize),
      inprocBatch1P50Ms: inproc.batch1.p50Ms,
      clusterC1P50Ms: runs.find((x) => x.concurrency === 1)?.p50Ms,
    });
    log(`  (5) peers, c=${best.concurrency}, batching from the ${batching.from}: max ${batching.maxBatchSize}, ${batching.batchWaitMs} ms`);
    const peers = await measurePeers({
      natsUrl: url,
      model: path,
      inputs: inputShapes(inputs),
      maxBatchSize: batching.maxBatchSize,
      batchWaitMs: batching.batchWaitMs,
      concurrency: best.concurrency,
      durationMs: settings.durationMs,
      warmupMs: settings.warmupMs,
      cores: pinning.enabled ? { bench: pinning.cores!.bench, replica: pinning.cores!.worker } : undefined,
      env: process.env,
      log,
      around,
      turnsWith: {
        rounds: PAIRED_ROUNDS,
        windowMs: pairedWindowMs(),
        warmMs: PAIRED_WARM_MS,
        start: async (onPause) => {
          const r = await childLoad(pinning, pairedFlotillaLoad(url, c, name, inputs, best.concurrency), () => onPause());
          return (r.windows ?? [r.run]).map((w) => w.itemsPerSec);
        },
      },
    });
    const peerRatios = Object.fromEntries(PEER_NAMES.map((p) => [p, peerRatio(best, peers[p])])) as Record<PeerName, PeerRatio>;
    // Each peer that ran: its own run's items/s, and Flotilla ÷ it measured in turns.
    const ran = (p: PeerName) => ('itemsPerSec' in peers[p] ? (peers[p] as PeerRunBase & { paired?: PairedRounds }) : undefined);
    const pairedVs = Object.fromEntries(PEER_NAMES.map((p) => [p, ran(p)?.paired?.median ?? null])) as Record<PeerName, number | null>;
    const oneRunBounds = bounds({
      sweep: inproc.sweep,
      inprocBest: inproc.best.itemsPerSec,
      chosenBatch: batching.maxBatchSize,
      responderUsPerMsg: raw.responderUsPerMsg,
      rawC1P50Ms: rawC1?.p50Ms,
      peers: Object.fromEntries(PEER_NAMES.map((p) => [p, ran(p)?.itemsPerSec])),
    });
    // Flotilla ÷ each peer's bound again from the turns, where they measured the ratios it needs.
    const boundsInTurns =
      oneRunBounds && pairedRun && probeRow
        ? pairedVsBounds({ bounds: oneRunBounds, sweepAtProbe: probeRow.itemsPerSec, atChosen: pairedRun.atChosen, vs: pairedVs })
        : null;
    const b = oneRunBounds && boundsInTurns ? { ...oneRunBounds, pairedVs: boundsInTurns } : oneRunBounds;
    const drift = probeRow ? hostDrift(probeRow.batch, probeRow.itemsPerSec, probes) : null;
    if (drift) log(`    ${hostDriftLine(drift)}`);
    const targets = checkTargets({
      ratios: r,
      peers: peerRatios,
      bounds: b,
      computeBound,
      paired: {
        ceiling: pairedRun?.ceiling ?? null,
        atChosen: pairedRun?.atChosen ?? null,
        broker: pairedBroker?.median ?? null,
        vs: pairedVs,
      },
      ...(drift
        ? {
            drift: {
              ceiling: driftBetween(drift, 'cluster', 'sweep'),
              broker: driftBetween(drift, 'cluster', 'raw'),
              vs: Object.fromEntries(PEER_NAMES.map((p) => [p, driftBetween(drift, 'cluster', p)])),
            },
          }
        : {}),
    });
    // Where @chosen went (a compute-bound model's): idle, smaller batches than chosen, per-request work.
    const loss = computeBound
      ? chosenLoss({
          sweep: inproc.sweep,
          chosenBatch: batching.maxBatchSize,
          worker: best.worker,
          responderUsPerMsg: raw.responderUsPerMsg,
        })
      : null;
    return {
      path,
      digest,
      input: { names: inproc.inputs.map((i) => i.name), dims, dtype: 'float32', bytes: inputBytes },
      requestBytes,
      inproc: {
        ortVersion: inproc.ortVersion,
        sessionOptions: inproc.sessionOptions,
        batch1: inproc.batch1,
        best: inproc.best,
        sweep: inproc.sweep,
        sweepStopped: inproc.sweepStopped,
      },
      cluster: {
        deployMs,
        ...(settled ? { shapesSettled: settled } : {}),
        replica: replica
          ? {
              id: replica.id,
              device: replica.device,
              executionProvider: replica.executionProvider,
              batching: replica.batching,
              profile: replica.profile ?? null,
            }
          : null,
        profile: profile
          ? {
              deviceClass: profile.deviceClass,
              tookMs: profile.tookMs,
              budgetMs: profile.budgetMs,
              latencySloMs: profile.latencySloMs,
              stoppedBecause: profile.stoppedBecause,
              chosen: profile.chosen,
              rows: profile.rows,
              skipped: profile.skipped,
            }
          : null,
        runs,
        tunedBatches: after?.tunedBatches ?? [],
        best: {
          concurrency: best.concurrency,
          itemsPerSec: best.itemsPerSec,
          p50Ms: best.p50Ms,
          p99Ms: best.p99Ms,
          meanBatch: best.meanBatch,
          ...(best.worker ? { worker: best.worker } : {}),
        },
      },
      rawNats: raw,
      ...(rawC1 ? { rawNatsC1: { p50Ms: rawC1.p50Ms, p99Ms: rawC1.p99Ms, msgsPerSec: rawC1.msgsPerSec } } : {}),
      peers,
      peerRatios,
      ratios: { ...r, ...peerRatioFields(peerRatios) },
      bounds: b,
      chosenLoss: loss,
      hostDrift: drift,
      paired: pairedRun,
      pairedBroker,
      targets,
    };
  } finally {
    await probe?.stop();
    await c.undeploy(name).catch((e: unknown) => log(`  undeploy ${name}: ${(e as Error).message}`));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && (await c.status()).workers.some((w) => w.replicas.some((r) => r.model === name))) await sleep(100);
  }
}

type ModelResult = Awaited<ReturnType<typeof benchModel>>;

// ---------- output ----------

function modelText(name: string, m: ModelResult): string {
  const rep = m.cluster.replica;
  const lines: string[] = [];
  lines.push(
    `== ${name}: input [${m.input.dims.join(',')}] float32 (${m.input.bytes} B; SDK request ${m.requestBytes} B), deploy ${fmt(m.cluster.deployMs)} ms`,
  );
  lines.push(
    `   replica ${rep?.id ?? '-'}: maxBatchSize ${rep?.batching.maxBatchSize ?? '-'}, maxQueueDelayMs ${rep?.batching.maxQueueDelayMs ?? '-'} ` +
      `(profile ${rep?.profile?.source ?? '-'}${rep?.profile ? `, ${rep.profile.deviceClass}, ${fmt(rep.profile.tookMs)} ms` : ''})`,
  );
  if (m.cluster.profile) lines.push(`   profile chose ${m.cluster.profile.chosen.reason}; sweep ${m.cluster.profile.stoppedBecause}`);
  // What the replica's batch-size tuner made of the runs (heartbeat tunedBatches).
  for (const t of m.cluster.tunedBatches)
    lines.push(
      `   batch size on the replica's traffic, ${t.shape}: ${t.from}${t.maxBatchSize < t.from ? ` → ${t.maxBatchSize}` : ''} (${t.state})`,
    );
  lines.push('');
  const rows: string[][] = [
    [
      '(1) in-process, batch 1, sequential',
      fmt(m.inproc.batch1.itemsPerSec),
      fmt(m.inproc.batch1.p50Ms),
      fmt(m.inproc.batch1.p99Ms),
      '1',
      '',
    ],
    [
      `(2) in-process, best batch ${m.inproc.best.batch} (ceiling)`,
      fmt(m.inproc.best.itemsPerSec),
      fmt(m.inproc.best.p50Ms),
      fmt(m.inproc.best.p99Ms),
      String(m.inproc.best.batch),
      '',
    ],
    [
      `(3) raw NATS req/reply, c=${m.rawNats.concurrency} (msgs/s)`,
      fmt(m.rawNats.msgsPerSec),
      fmt(m.rawNats.p50Ms),
      fmt(m.rawNats.p99Ms),
      '',
      '',
    ],
    ...m.cluster.runs.map((r) => [
      `(4) cluster, c=${r.concurrency}${r.concurrency === m.cluster.best.concurrency ? ' (best)' : ''}`,
      fmt(r.itemsPerSec),
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      fmt(r.meanBatch),
      histogramText(r.batchHistogram) +
        (r.histogramFresh ? '' : ' (stale?)') +
        (Object.keys(r.errored).length ? ` errors ${JSON.stringify(r.errored)}` : ''),
    ]),
  ];
  rows.push(...peerTableRows(m.peers));
  lines.push(
    table(['measurement', 'items/s', 'p50 ms', 'p99 ms', 'batch', 'batch sizes (size×batches)'], rows, ['l', 'r', 'r', 'r', 'r', 'l']),
  );
  lines.push('   (p50/p99: per session.run for (1)/(2), per request for (3)/(4); batch: mean items per session.run)');
  lines.push('');
  lines.push(`   in-process sweep (${m.inproc.sweepStopped}):`);
  lines.push(
    table(
      ['   batch', 'items/s', 'p50 ms', 'p99 ms', 'runs'],
      m.inproc.sweep.map((r) => [`   ${r.batch}`, fmt(r.itemsPerSec), fmt(r.p50Ms), fmt(r.p99Ms), String(r.runs)]),
    ),
  );
  if (m.cluster.profile) {
    lines.push('');
    lines.push(
      `   replica profile rows (${m.cluster.profile.deviceClass}, ${fmt(m.cluster.profile.tookMs)} ms of a ${m.cluster.profile.budgetMs} ms budget, p99 objective ${m.cluster.profile.latencySloMs} ms):`,
    );
    lines.push(
      table(
        ['   batch', 'items/s', 'p50 ms', 'p99 ms', 'runs', 'peak MiB'],
        m.cluster.profile.rows.map((r) => [
          `   ${r.batch}${r.batch === m.cluster.profile!.chosen.maxBatchSize ? ' *' : ''}`,
          fmt(r.itemsPerSec),
          fmt(r.p50Ms),
          fmt(r.p99Ms),
          String(r.runs),
          fmt(r.peakBytes / 2 ** 20),
        ]),
      ),
    );
  }
  lines.push('');
  const rt = m.ratios;
  lines.push(
    `   ceiling_ratio ${fmt(rt.ceiling_ratio)} = best(4)/(2)   ceiling_at_chosen ${fmt(rt.ceiling_at_chosen)} = best(4)/(2) at the chosen batch   ` +
      `c1_added_ms ${fmt(rt.c1_added_ms)} = p50 (4) c=1 − p50 (1)   broker_ratio ${fmt(rt.broker_ratio)} = best(4)/(3)   ` +
      `batching_gain ${fmt(rt.batching_gain)} = best(4)/(1)   inproc_gain ${fmt(rt.inproc_gain)} = (2)/(1)`,
  );
  lines.push(peerRatioLine(m.peerRatios, m.peers));
  const w = m.cluster.best.worker;
  if (w) lines.push(`   worker at the best point (4): ${workerCpuText(w)}`);
  if (m.bounds) lines.push(`   ${boundsText(m.bounds)}`);
  if (m.chosenLoss) lines.push(`   ${chosenLossText(m.chosenLoss, rt.ceiling_at_chosen)}`);
  if (m.hostDrift) lines.push(`   ${hostDriftLine(m.hostDrift)}`);
  if (m.paired) lines.push(`   ${pairedLine(m.paired)}`);
  if (m.pairedBroker) lines.push(`   ${pairedBrokerLine(m.pairedBroker)}`);
  lines.push(`   targets: ${targetsLine(m.targets)}`);
  return lines.join('\n');
}

/** "211 = 188 + 23.5 (100 %)": the worker's CPU per item at the best point, for the summary. */
function workerColumn(w: WorkerCpu | undefined): string {
  if (!w) return '-';
  const split = w.modelUsPerItem !== undefined ? ` = ${fmt(w.modelUsPerItem)} + ${fmt(w.otherUsPerItem)}` : '';
  return `${fmt(w.cpuUsPerItem)}${split} (${fmt(w.busy * 100)} %)`;
}

/** What no server on this core could beat, as bounds.ts derives it. */
function boundsText(b: Bounds): string {
  const vs = PEER_NAMES.filter((p) => b.vs[p] !== null).map((p) => `÷ ${PEER_TITLES[p]} ≤ ${fmt(b.vs[p])}`);
  const inTurns = PEER_NAMES.filter((p) => (b.pairedVs?.[p] ?? null) !== null).map((p) => `÷ ${PEER_TITLES[p]} ≤ ${fmt(b.pairedVs![p])}`);
  return (
    `bounds on this core: the model's least ${fmt(b.modelUsPerItem)} µs of CPU per item + the empty responder's ${fmt(b.responderUsPerMsg)} µs per request ` +
    `= at most ${fmt(b.itemsPerSec)} items/s for any nats.js server: ceiling ≤ ${fmt(b.ceiling)}${b.atChosen !== null ? `, @chosen ≤ ${fmt(b.atChosen)}` : ''}${vs.length ? `, ${vs.join(', ')}` : ''}` +
    (b.c1AddedMs !== null ? `; c=1 +ms ≥ ${fmt(b.c1AddedMs)} (raw NATS's p50 at concurrency 1)` : '') +
    (inTurns.length ? `; from the turns (what the paired ratios are checked against): ${inTurns.join(', ')}` : '')
  );
}

/** Each model's targets (issue 13) under the summary: met, missed, out of reach on this core. */
function targetsText(models: Record<string, ModelResult | { error: string }>): string {
  const named = Object.entries(models).filter((e): e is [string, ModelResult] => !('error' in e[1]));
  const width = Math.max(0, ...named.map(([n]) => n.length));
  return named.map(([name, m]) => `${name.padEnd(width)}  ${targetsLine(m.targets)}`).join('\n');
}

function summaryText(models: Record<string, ModelResult | { error: string }>): string {
  const rows = Object.entries(models).map(([name, m]) =>
    'error' in m
      ? [name, 'error', '', '', '', '', '', '', '', '', '', '', '', '', ...PEER_NAMES.map(() => '')]
      : [
          name,
          fmt(m.inproc.batch1.itemsPerSec),
          `${fmt(m.inproc.best.itemsPerSec)} @${m.inproc.best.batch}`,
          fmt(m.rawNats.msgsPerSec),
          `${fmt(m.cluster.best.itemsPerSec)} @c${m.cluster.best.concurrency}`,
          fmt(m.ratios.ceiling_ratio),
          fmt(m.ratios.ceiling_at_chosen),
          fmt(m.paired?.ceiling ?? null),
          fmt(m.paired?.atChosen ?? null),
          fmt(m.ratios.c1_added_ms),
          fmt(m.ratios.broker_ratio),
          fmt(m.pairedBroker?.median ?? null),
          fmt(m.ratios.batching_gain),
          fmt(m.ratios.inproc_gain),
          workerColumn(m.cluster.best.worker),
          ...PEER_NAMES.map((p) => ratioText(m.peerRatios[p])),
        ],
  );
  return table(
    [
      'model',
      '(1) b1',
      '(2) best',
      '(3) raw NATS',
      '(4) cluster best',
      'ceiling',
      '@chosen',
      'paired ceiling',
      'paired @chosen',
      'c=1 +ms',
      'broker',
      'paired broker',
      'batching_gain',
      'inproc_gain',
      'worker µs/item = model + besides (busy)',
      ...PEER_NAMES.map((p) => `vs ${PEER_TITLES[p]}`),
    ],
    rows,
  );
}

function natsServerVersion(): string {
  try {
    return execFileSync(findNatsServer(), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

// ---------- main ----------

async function main(): Promise<number> {
  const started = Date.now();
  const unknown = settings.models.filter((m) => !(m in SAMPLE_MODELS));
  if (unknown.length)
    throw new Error(
      `BENCH_MODELS: unknown sample model ${unknown.map((m) => `'${m}'`).join(', ')} (have ${Object.keys(SAMPLE_MODELS).join(', ')})`,
    );
  peerSelection(process.env); // an unknown name in BENCH_PEERS fails here, not once per model
  const cpus = os.cpus();
  const availableParallelism = os.availableParallelism(); // before pinning narrows it to one core
  const machine = {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    availableParallelism,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    loadavgAtStart: os.loadavg().map((x) => round(x, 2)),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    natsServer: natsServerVersion(),
    ortVersion: '',
  };
  const pinning = setUpPinning();
  log(
    `bench: ${settings.quick ? 'QUICK ' : ''}${settings.device === 'gpu' ? 'GPU (BENCH_DEVICE=gpu) ' : ''}${settings.durationMs} ms per point (+${settings.warmupMs} ms warm-up), models ${settings.models.join(', ')}, concurrency ${settings.concurrencies.join(', ')}`,
  );
  log(
    pinning.enabled
      ? `bench: pinning with taskset: head, load generators (one process each) and nats-server on core ${pinning.cores!.bench}, worker + in-process baselines + empty responder on core ${pinning.cores!.worker}`
      : `bench: NOT pinned: ${pinning.reason}`,
  );

  const nats: NatsServer = await NatsServer.start();
  natsPid = nats.pid;
  onCleanup('nats-server', () => nats.stop());
  if (pinning.enabled) pinning.observed!.natsServer = affinityOf(nats.pid);

  const cluster = `bench${Math.random().toString(36).slice(2, 8)}`;
  const head: Head = await Head.start({ cluster, bus: { servers: nats.url }, logger: silentLogger() });
  onCleanup('head', () => head.stop());

  const cacheDir = mkdtempSync(join(os.tmpdir(), 'flotilla-bench-cache-'));
  onCleanup('worker cache dir', () => rmSync(cacheDir, { recursive: true, force: true }));
  // BENCH_WORKERS=N: N worker processes (on a GPU each with 1/N of its memory), the model deployed with N replicas.
  const workerArgs = (i: number) =>
    workerArgv({
      nats: nats.url,
      cluster,
      id: settings.workers > 1 ? `bench-w${i}` : 'bench-w',
      cacheDir,
      extra: [
        '--threads',
        '1',
        '--heartbeat-ms',
        '250',
        ...(settings.sessionHost ? ['--session-host', settings.sessionHost] : []),
        ...(settings.workers > 1 ? ['--gpu-share', String(Math.floor(10_000 / settings.workers) / 10_000)] : []),
      ],
    });
  const workers: ChildProcess[] = [];
  const workerTails: (() => string)[] = [];
  for (let i = 0; i < settings.workers; i++) {
    const worker = spawnNode(pinning, pinning.cores?.worker, workerArgs(i), {
      ...process.env,
      FLOTILLA_LOG_LEVEL: process.env.FLOTILLA_LOG_LEVEL ?? 'warn',
    });
    onCleanup(`worker process ${i}`, () => stopChild(worker));
    const out = keepTail(worker.stdout, 8000, '[worker] ');
    const err = keepTail(worker.stderr, 8000, '[worker] ');
    workers.push(worker);
    workerPids.push(worker.pid!);
    workerTails.push(() => out() + err());
  }
  const deadline = Date.now() + 60_000;
  while (head.registry.running().length < settings.workers) {
    const gone = workers.findIndex((w) => w.exitCode !== null);
    if (gone >= 0) throw new Error(`worker ${gone} exited with code ${workers[gone]!.exitCode} during start:\n${workerTails[gone]!()}`);
    if (Date.now() > deadline)
      throw new Error(`${settings.workers - head.registry.running().length} worker(s) did not register within 60 s`);
    await sleep(50);
  }
  if (pinning.enabled) pinning.observed!.worker = affinityOf(workers[0]!.pid!);
  const workerCmd = `${pinning.enabled ? `taskset -c ${pinning.cores!.worker} ` : ''}node ${workerArgs(0)
    .map((a) => a.replace(repoPath(''), ''))
    .join(' ')}${settings.workers > 1 ? ` (×${settings.workers})` : ''}`;
  log(
    `bench: nats ${nats.url}, cluster ${cluster}, head in this process, worker pid ${workers.map((w) => w.pid).join(', ')}: ${workerCmd}`,
  );
  if (pinning.enabled)
    log(
      `bench: affinity read back: bench ${pinning.observed!.bench}, nats-server ${pinning.observed!.natsServer}, worker ${pinning.observed!.worker}`,
    );

  const c = new FlotillaClient({ servers: nats.url, cluster });
  onCleanup('client', () => c.close());

  const models: Record<string, ModelResult | { error: string }> = {};
  let failed = false;
  for (const name of settings.models) {
    try {
      const m = await benchModel(pinning, nats.url, c, name);
      machine.ortVersion ||= m.inproc.ortVersion;
      models[name] = m;
      out(modelText(name, m));
      out();
    } catch (err) {
      failed = true;
      models[name] = { error: (err as Error).message };
      log(`bench: ${name} failed: ${(err as Error).stack ?? String(err)}`);
      out(`== ${name}: FAILED: ${(err as Error).message}`);
      out();
      const gone = workers.find((w) => w.exitCode !== null);
      if (gone) {
        log(`bench: a worker process is gone (code ${gone.exitCode}); stopping`);
        break;
      }
    }
  }

  // Large bodies: caller, worker and nats-server each need a core's share, so this process takes
  // back the cores it had (the processes bodies.ts starts inherit them) and measures in a cluster of its own.
  let bodies: BodiesResult | { error: string } | undefined;
  if (settings.bodiesMiB.length > 0) {
    if (pinning.enabled && pinning.original && pinning.original !== '?') taskset(['-a', '-cp', pinning.original, String(process.pid)]);
    try {
      bodies = await benchBodies({ sizesMiB: settings.bodiesMiB, rounds: settings.bodyRounds, log });
    } catch (err) {
      failed = true;
      bodies = { error: (err as Error).message };
      log(`bench: large bodies failed: ${(err as Error).stack ?? String(err)}`);
    }
  }

  out('== summary (items/s; (3) msgs/s)');
  out(summaryText(models));
  out();
  out('== targets (issue 13; "out of reach on this core": beyond what any nats.js server could reach here, see each model\'s bounds line)');
  out(targetsText(models));
  if (bodies) {
    out();
    out('error' in bodies ? `== large bodies: FAILED: ${bodies.error}` : bodiesText(bodies));
  }
  out(
    pinning.enabled
      ? `pinning: bench (head), load generators (a process each) and nats-server on core 0; worker (--threads 1), in-process baselines and empty responder on core 1 (taskset; read back: bench ${pinning.observed!.bench}, nats-server ${pinning.observed!.natsServer}, worker ${pinning.observed!.worker})`
      : `pinning: none (${pinning.reason})`,
  );
  out(
    `${settings.quick ? 'QUICK run (BENCH_QUICK=1): numbers are noisy. ' : ''}${settings.durationMs} ms per point; total ${round((Date.now() - started) / 1000, 1)} s`,
  );
  const result = {
    machine: { ...machine, loadavgAtEnd: os.loadavg().map((x) => round(x, 2)) },
    pinning,
    settings: { ...settings, workerCommand: workerCmd },
    totalSeconds: round((Date.now() - started) / 1000, 1),
    models,
    ...(bodies ? { bodies: 'error' in bodies ? bodies : { ...bodies, targets: bodyTargets(bodies) } } : {}),
  };
  out(JSON.stringify(result));
  return failed ? 1 : 0;
}

let code: number;
try {
  code = await main();
} catch (err) {
  log(`bench: ${(err as Error).stack ?? String(err)}`);
  code = 1;
} finally {
  await teardown();
}
process.exit(code);
