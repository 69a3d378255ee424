// `pnpm bench:models`: many models on too little memory. 32 models generated here (weights 1 to
// 100 MiB, compute from tens of µs to tens of ms per item), deployed on a local cluster of 2
// workers whose budgets together hold about a third of the bytes; traffic from 64 callers, each on
// a seeded Poisson schedule (open loop, 12 requests/s together), models drawn by Zipf popularity
// (s = 1.1, ranks reshuffled halfway; model-trace.ts), plus a periodic sequential scan over the
// cold half. The same trace for each eviction policy, twice (ABBA order); per policy: hit ratio
// (requests answered by a replica that was already loaded when they were sent: the reply's
// replica id against the `loaded` events), also after the shift; reloads/min and bytes loaded
// (`loaded` events), evictions (`evicted` events), p50/p99 for hot (top quarter of the ranks) and
// cold models, items/s, errors and lost requests. Then the default policy (cost) once more under the
// head's `first-fit` placement (the first worker where the model fits, evicting there even when the
// other has room), two rounds in the middle of the ABBA order, against cost under the default
// placement: "evictions avoided by placement" (BENCH_FIRST_FIT=0 skips it). BENCH_QUICK=1: 12
// smaller models, 8 s rounds.
// Last stdout line: one JSON object.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { silentLogger } from '@flotilla/bus';
import type { FlotillaClient } from '@flotilla/client';
import type { PlacementRule } from '@flotilla/head';
import { LocalCluster } from '@flotilla/local';
import { decode, fromTypedArray, type EventMessage, type WireTensors } from '@flotilla/protocol';
import { GraphBuilder, randomFloats } from '@flotilla/sample-models';
import { Worker } from '@flotilla/worker';
import { modelTrace, scanModels } from './model-trace.js';

const quick = process.env.BENCH_QUICK === '1';
const POLICIES = (process.env.BENCH_POLICIES ?? 'fifo,lru,lfu,cost').split(',');
/** The workers' default eviction policy: also run under `first-fit` placement, for comparison. */
const DEFAULT_POLICY = 'cost';
const FIRST_FIT = process.env.BENCH_FIRST_FIT !== '0' && POLICIES.includes(DEFAULT_POLICY);
const MODELS = Number(process.env.BENCH_MODELS_N ?? (quick ? 12 : 32));
const MAX_MIB = quick ? 24 : 100;
/** One round of the trace; each policy runs two. */
const DURATION_MS = Number(process.env.BENCH_DURATION_S ?? (quick ? 8 : 36)) * 1000;
const CALLERS = 64;
/** Requests per second from all callers together (open loop). */
const RATE = Number(process.env.BENCH_RATE ?? 12);
const ZIPF_S = 1.1;
const SEED = 20261129;
/** Scans over the cold half of the models per round (evenly spaced). */
const SCANS = 2;
const WORKERS = 2;
/** The workers' budgets together hold this share of the models' bytes. */
const BUDGET_SHARE = 1 / 3;
const DIM = 256;
const MiB = 1 << 20;
const out = (s = '') => process.stdout.write(`${s}\n`);
const log = (s: string) => process.stderr.write(`${s}\n`);

interface ModelDef {
  name: string;
  weightMiB: number;
  reps: number;
  file: string;
  bytes: number;
}

/**
 * x [N, 256] → `reps` × (Tanh(Gemm(Relu(Gemm(x, W1)), W2))) with the same W1 [256, H], W2 [H, 256]
 * each time (compute grows with reps, weights do not) → Gemm to 8 → y [N, 8].
 */
function buildModel(name: string, weightMiB: number, reps: number, seed: number): Uint8Array {
  const hidden = Math.max(8, Math.round((weightMiB * MiB) / (2 * DIM * 4)));
  const g = new GraphBuilder(name);
  let t = g.input('x', ['N', DIM]);
  const w1 = g.weight([DIM, hidden], randomFloats(DIM * hidden, seed, Math.sqrt(3 / DIM)));
  const b1 = g.weight([hidden], randomFloats(hidden, seed + 1, 0.1));
  const w2 = g.weight([hidden, DIM], randomFloats(hidden * DIM, seed + 2, Math.sqrt(3 / hidden)));
  const b2 = g.weight([DIM], randomFloats(DIM, seed + 3, 0.1));
  for (let r = 0; r < reps; r++) t = g.node('Tanh', [g.node('Gemm', [g.node('Relu', [g.node('Gemm', [t, w1, b1])]), w2, b2])]);
  const w3 = g.weight([DIM, 8], randomFloats(DIM * 8, seed + 4, Math.sqrt(3 / DIM)));
  g.node('Identity', [g.node('Gemm', [t, w3])], {}, 'y');
  g.output('y', ['N', 8]);
  return g.toBytes();
}

/** The model set: weights geometric from 1 to MAX_MIB, compute repeats 1–8 (large models repeat less); cached on disk. */
function modelSet(): ModelDef[] {
  const dir = resolve(process.env.FLOTILLA_BENCH_MODELS_DIR ?? join(process.cwd(), '.cache', 'bench-models', 'v1'));
  mkdirSync(dir, { recursive: true });
  const defs: ModelDef[] = [];
  for (let i = 0; i < MODELS; i++) {
    const weightMiB = +(MAX_MIB ** (i / (MODELS - 1))).toFixed(2);
    const reps = Math.max(1, Math.min([1, 8, 2, 4][i % 4]!, Math.floor(120 / weightMiB)));
    const name = `m${String(i).padStart(2, '0')}-${Math.round(weightMiB)}mib-x${reps}`;
    const file = join(dir, `${name}.onnx`);
    if (!existsSync(file)) {
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, buildModel(name, weightMiB, reps, 1000 + i * 10));
      renameSync(tmp, file);
    }
    defs.push({ name, weightMiB, reps, file, bytes: readFileSync(file).byteLength });
  }
  return defs;
}

/** A request's outcome: when it was sent (epoch ms), how long it took, who answered, and its class. */
interface Sample {
  t0: number;
  ms: number;
  replica?: string;
  error?: string;
  hot: boolean;
  scan: boolean;
}

/** An eviction policy under a placement rule (the head's). */
interface Pass {
  key: string;
  policy: string;
  placement: PlacementRule;
}

interface PolicyResult {
  policy: string;
  placement: PlacementRule;
  requests: number;
  ok: number;
  hitRatio: number;
  /** Over the requests sent after the popularity shift (how fast the policy adapts). */
  hitRatioAfterShift: number;
  reloads: number;
  reloadsPerMin: number;
  mibLoaded: number;
  evictions: number;
  hot: { n: number; p50: number; p99: number };
  cold: { n: number; p50: number; p99: number };
  itemsPerSec: number;
  errored: number;
  lost: number;
  elapsedS: number;
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** What one round (one policy, the whole trace once) observed. */
interface Round {
  samples: Sample[];
  hits: number;
  /** Answered and hit among the requests sent after the popularity shift. */
  afterShift: { ok: number; hits: number };
  loads: EventMessage[];
  evictions: number;
  sent: number;
  elapsedS: number;
}

async function runPolicy(cluster: LocalCluster, pass: Pass, models: ModelDef[], budgetBytes: number): Promise<Round> {
  const { key, policy } = pass;
  const workers: Worker[] = [];
  for (let i = 0; i < WORKERS; i++) {
    workers.push(
      await Worker.start({
        id: `${key}-w${i}`,
        cluster: cluster.cluster,
        bus: { servers: cluster.url },
        cacheDir: join(process.cwd(), '.cache', 'bench-models', 'artifacts'),
        heartbeatMs: 250,
        memoryBudgetBytes: budgetBytes,
        eviction: policy,
        logger: silentLogger(),
      }),
    );
  }
  const client = cluster.client();
  const nc = await client.connection();
  const loadedAt = new Map<string, number>();
  const loads: EventMessage[] = [];
  const evictions: EventMessage[] = [];
  const sub = nc.subscribe(client.subjects.event('*'), {
    callback: (_err, msg) => {
      const e = decode<EventMessage>(msg.data);
      if (e.type === 'loaded' && e.replica) {
        loadedAt.set(e.replica, e.at);
        loads.push(e);
      } else if (e.type === 'evicted') evictions.push(e);
    },
  });
  try {
    // Deploy in a fixed order: the last ones deployed are resident at the start (the policy decides which).
    const t0 = performance.now();
    for (const m of models) {
      await client.deploy(m.file, m.name, {
        device: 'cpu',
        memoryBytes: m.bytes + 2 * MiB,
        batching: { maxBatchSize: 16, maxQueueDelayMs: 1 },
        profile: { enabled: false },
        compile: false,
        threads: { intraOp: 1, interOp: 1, mode: 'sequential' },
        waitTimeoutMs: 120_000,
      });
    }
    log(
      `${key}: ${models.length} models deployed in ${((performance.now() - t0) / 1000).toFixed(1)} s; traffic for ${DURATION_MS / 1000} s`,
    );
    const inputs = new Map<string, WireTensors>(
      models.map((m, i) => [m.name, { x: fromTypedArray('float32', [1, DIM], randomFloats(DIM, 7 + i)) }]),
    );
    return await traffic(client, key, models, inputs, loadedAt, loads, evictions);
  } finally {
    sub.unsubscribe();
    for (const m of models) await client.undeploy(m.name).catch(() => undefined);
    await Promise.allSettled(workers.map((w) => w.stop()));
  }
}

async function traffic(
  client: FlotillaClient,
  policy: string,
  models: ModelDef[],
  inputs: Map<string, WireTensors>,
  loadedAt: Map<string, number>,
  loads: EventMessage[],
  evictions: EventMessage[],
): Promise<Round> {
  const n = models.length;
  const hotRanks = Math.max(1, Math.round(n / 4));
  const trace = modelTrace({ models: n, rate: RATE, callers: CALLERS, durationMs: DURATION_MS, zipf: ZIPF_S, seed: SEED });
  const shiftAt = DURATION_MS / 2;
  const samples: Sample[] = [];
  const loadsBefore = loads.length;
  const evictionsBefore = evictions.length;
  let sent = 0;
  const start = Date.now();

  const send = async (model: number, hot: boolean, scan: boolean): Promise<void> => {
    const name = models[model]!.name;
    const t0 = Date.now();
    const p0 = performance.now();
    sent++;
    try {
      const r = await client.inferWire(name, inputs.get(name)!, { timeoutMs: 60_000 });
      samples.push({ t0, ms: performance.now() - p0, replica: r.meta.replica, hot, scan });
    } catch (err) {
      samples.push({ t0, ms: performance.now() - p0, error: String((err as { code?: string }).code ?? err), hot, scan });
    }
  };
  const until = (offset: number) => new Promise((r) => setTimeout(r, Math.max(0, start + offset - Date.now())));
  // Open loop: each request leaves at its offset in the trace, whatever the answers to earlier ones.
  const replay = async (): Promise<void> => {
    const pending: Promise<void>[] = [];
    for (const req of trace) {
      if (start + req.at > Date.now()) await until(req.at);
      pending.push(send(req.model, req.rank < hotRanks, false));
    }
    await Promise.all(pending);
  };
  // A scan walks the cold half one request after another (a batch job touching every model).
  const scanner = async (): Promise<void> => {
    for (let s = 1; s <= SCANS; s++) {
      const at = (s * DURATION_MS) / (SCANS + 1);
      await until(at);
      for (const model of scanModels(n, SEED, at, shiftAt)) await send(model, false, true);
    }
  };
  await Promise.all([replay(), scanner()]);
  const elapsedS = (Date.now() - start) / 1000;
  // A hit: the replica that answered was loaded before the request was sent.
  const isHit = (s: Sample) => s.replica !== undefined && (loadedAt.get(s.replica) ?? 0) <= s.t0;
  const hits = samples.filter(isHit).length;
  const after = samples.filter((s) => s.replica !== undefined && s.t0 >= start + shiftAt);
  const afterShift = { ok: after.length, hits: after.filter(isHit).length };
  const windowLoads = loads.slice(loadsBefore);
  const errored = samples.filter((s) => s.error !== undefined);
  if (errored.length) log(`${policy}: errors ${JSON.stringify(errored.slice(0, 3))}`);
  const perModel = new Map<string, number>();
  for (const e of windowLoads) perModel.set(e.model ?? '?', (perModel.get(e.model ?? '?') ?? 0) + 1);
  const top = [...perModel].sort((x, y) => y[1] - x[1]).slice(0, 8);
  log(
    `${policy}: hit ratio ${(hits / Math.max(1, samples.length)).toFixed(3)}, ${windowLoads.length} reloads in ${elapsedS.toFixed(1)} s; ` +
      `most reloaded ${top.map(([m, c]) => `${m} ${c}`).join(', ')}`,
  );
  return { samples, hits, afterShift, loads: windowLoads, evictions: evictions.length - evictionsBefore, sent, elapsedS };
}

/** One policy's figures over its rounds. */
function summarise({ policy, placement }: Pass, rounds: readonly Round[]): PolicyResult {
  const samples = rounds.flatMap((r) => r.samples);
  const loads = rounds.flatMap((r) => r.loads);
  const elapsedS = rounds.reduce((t, r) => t + r.elapsedS, 0);
  const ok = samples.filter((s) => s.replica !== undefined);
  const lat = (xs: Sample[]) => ({
    n: xs.length,
    p50: r1(
      pct(
        xs.map((s) => s.ms),
        50,
      ),
    ),
    p99: r1(
      pct(
        xs.map((s) => s.ms),
        99,
      ),
    ),
  });
  return {
    policy,
    placement,
    requests: samples.length,
    ok: ok.length,
    hitRatio: r3(rounds.reduce((n, r) => n + r.hits, 0) / Math.max(1, ok.length)),
    hitRatioAfterShift: r3(
      rounds.reduce((n, r) => n + r.afterShift.hits, 0) /
        Math.max(
          1,
          rounds.reduce((n, r) => n + r.afterShift.ok, 0),
        ),
    ),
    reloads: loads.length,
    reloadsPerMin: r1(loads.length / (elapsedS / 60)),
    mibLoaded: r1(loads.reduce((b, e) => b + (e.bytes ?? 0), 0) / MiB),
    evictions: rounds.reduce((n, r) => n + r.evictions, 0),
    hot: lat(ok.filter((s) => s.hot)),
    cold: lat(ok.filter((s) => !s.hot)),
    itemsPerSec: r1(ok.length / elapsedS),
    errored: samples.length - ok.length,
    // Sent but neither answered nor failed (every request is awaited, within its 60 s deadline).
    lost: rounds.reduce((n, r) => n + r.sent - r.samples.length, 0),
    elapsedS: r1(elapsedS),
  };
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const models = modelSet();
  const charged = models.reduce((b, m) => b + m.bytes + 2 * MiB, 0);
  const largest = Math.max(...models.map((m) => m.bytes + 2 * MiB));
  const budgetBytes = Math.max(largest, Math.ceil((charged * BUDGET_SHARE) / WORKERS));
  log(
    `${models.length} models, ${(charged / MiB).toFixed(0)} MiB charged in all (${models[0]!.name} … ${models[models.length - 1]!.name}); ` +
      `${WORKERS} workers × ${(budgetBytes / MiB).toFixed(0)} MiB budget (${(((WORKERS * budgetBytes) / charged) * 100).toFixed(0)} % of the bytes)`,
  );
  const passes: Pass[] = POLICIES.map((policy) => ({ key: policy, policy, placement: 'cost-aware' }));
  if (FIRST_FIT) passes.push({ key: `${DEFAULT_POLICY}-first-fit`, policy: DEFAULT_POLICY, placement: 'first-fit' });
  const cluster = await LocalCluster.start({ workers: 0 });
  // The first-fit pass needs a head of its own (the placement rule is a head option).
  let firstFitCluster: LocalCluster | undefined;
  const rounds = new Map<string, Round[]>(passes.map((p) => [p.key, []]));
  try {
    // ABBA: each pass runs the trace twice, in forward then reverse order, so a machine that
    // slows down or speeds up during the run (other work on it) weighs on every pass alike.
    for (const pass of [...passes, ...[...passes].reverse()]) {
      let on = cluster;
      if (pass.placement !== 'cost-aware')
        on = firstFitCluster ??= await LocalCluster.start({ workers: 0, head: { placement: pass.placement } });
      rounds.get(pass.key)!.push(await runPolicy(on, pass, models, budgetBytes));
    }
  } finally {
    await firstFitCluster?.stop();
    await cluster.stop();
  }
  const results = passes.map((p) => summarise(p, rounds.get(p.key)!));
  const costAware = results.find((r) => r.policy === DEFAULT_POLICY && r.placement === 'cost-aware');
  const firstFit = results.find((r) => r.placement === 'first-fit');
  // Evictions the default placement avoided: those of first-fit (same policy, same trace) it did not need.
  const placement =
    costAware && firstFit
      ? {
          policy: DEFAULT_POLICY,
          evictionsFirstFit: firstFit.evictions,
          evictionsCostAware: costAware.evictions,
          evictionsAvoided: firstFit.evictions - costAware.evictions,
          evictionsAvoidedPct: r1(((firstFit.evictions - costAware.evictions) / Math.max(1, firstFit.evictions)) * 100),
          hitRatioFirstFit: firstFit.hitRatio,
          hitRatioCostAware: costAware.hitRatio,
        }
      : undefined;
  out(
    `\nmany models: ${models.length} models (${(charged / MiB).toFixed(0)} MiB), ${WORKERS} workers × ${(budgetBytes / MiB).toFixed(0)} MiB, ` +
      `${CALLERS} callers, ${RATE} req/s open loop, Zipf s=${ZIPF_S} (reshuffled at ${DURATION_MS / 2000} s), ${SCANS} scans of the cold half, ` +
      `${DURATION_MS / 1000} s per round, 2 rounds per pass (ABBA order)\n`,
  );
  out(
    '| policy | requests | hit ratio | after shift | reloads/min | MiB loaded | evictions | hot p50 / p99 ms | cold p50 / p99 ms | items/s | errored | lost |',
  );
  out('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    out(
      `| ${r.policy}${r.placement === 'cost-aware' ? '' : ` (${r.placement} placement)`} | ${r.requests} | ${r.hitRatio.toFixed(3)} | ${r.hitRatioAfterShift.toFixed(3)} | ${r.reloadsPerMin} | ${r.mibLoaded} | ${r.evictions} | ` +
        `${r.hot.p50} / ${r.hot.p99} | ${r.cold.p50} / ${r.cold.p99} | ${r.itemsPerSec} | ${r.errored} | ${r.lost} |`,
    );
  }
  out();
  if (placement) {
    out(
      `evictions avoided by placement: ${placement.evictionsAvoided} (${placement.evictionsAvoidedPct} %) — ` +
        `${DEFAULT_POLICY} under first-fit placement ${placement.evictionsFirstFit} evictions, hit ratio ${placement.hitRatioFirstFit.toFixed(3)}; ` +
        `under the default (cost-aware) ${placement.evictionsCostAware}, hit ratio ${placement.hitRatioCostAware.toFixed(3)}`,
    );
    out();
  }
  out(
    JSON.stringify({
      bench: 'models',
      models: models.length,
      chargedMiB: Math.round(charged / MiB),
      workers: WORKERS,
      budgetMiB: Math.round(budgetBytes / MiB),
      callers: CALLERS,
      rate: RATE,
      zipf: ZIPF_S,
      durationS: DURATION_MS / 1000,
      totalS: r1((performance.now() - t0) / 1000),
      results,
      placement,
    }),
  );
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench:models failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
