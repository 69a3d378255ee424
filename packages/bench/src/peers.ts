// Peers measured in the same `pnpm bench` run, on the same ONNX file, cores and batching, each
// when it is available: (5a) Moleculer (npm devDependency; peer-moleculer.ts), (5b) NVIDIA Triton
// through nvidia-pytriton (peers/triton_bench.py, .cache/triton-venv), (5c) Ray Serve
// (peers/ray_serve_bench.py, .cache/peers). `bash packages/bench/peers/setup` makes both venvs.
// measurePeers runs the ones BENCH_PEERS selects; peer-report.ts turns them into ratios and rows.
// Triton's load comes from Node (peer-triton-load.ts), or tritonclient with BENCH_TRITON_CLIENT=python.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { repoPath } from './deps.js';
import type { MoleculerLoadArgs, MoleculerRun } from './peer-moleculer-wire.js';
import {
  affinityOf,
  readyLine,
  runJsonChild,
  runPythonPeer,
  spawnPeer,
  stopPeer,
  untilLine,
  type PeerLoadOptions,
  type PythonPeerOptions,
} from './peer-process.js';
import { runTriton, tritonPython, type TritonRun } from './peer-triton.js';
import { takeTurns, turnArgs, turnTaker, type PeerTurns } from './load-windows.js';
import { pairWindows, pairedPeerLine, pairedRounds, type PairedRounds } from './paired.js';
import { PEER_NAMES, peerRow, peerSelection, type PeerName, type PeerOutcome } from './peer-report.js';

export interface RayServeRun {
  itemsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  sent: number;
  ok: number;
  errored: number;
  concurrency: number;
  maxBatchSize: number;
  batchWaitMs: number;
  meanBatch: number;
  startupS: number;
  rayVersion: string;
  ortVersion: string;
  replicaAffinity: string;
  driverAffinity: string;
  /** Items/s of each window taken in turns with Flotilla's load, when it took turns. */
  turns?: number[];
}

/** The peers venv's python, or why Ray Serve is not measured. */
export function rayServePython(env: NodeJS.ProcessEnv): { python: string } | { skipped: string } {
  const sel = peerSelection(env).rayServe;
  if ('skipped' in sel) return sel;
  const python = repoPath('.cache/peers/bin/python');
  return existsSync(python)
    ? { python }
    : { skipped: 'no .cache/peers venv (run `bash packages/bench/peers/setup ray` to measure Ray Serve)' };
}

export type RayServeOptions = PythonPeerOptions;

export function runRayServe(o: RayServeOptions): Promise<RayServeRun> {
  return runPythonPeer<RayServeRun>('ray_serve_bench.py', o, 'ray serve bench');
}

export interface RayMultiplexRun {
  reloadMs: number;
  plainCreateMs: number;
  reload_ratio: number;
  overheadMs: number;
  loads: number;
  n: number;
  rayVersion: string;
  ortVersion: string;
}

/**
 * Ray Serve's model multiplexing (one model per replica, LRU) on bench:memory's scenario: the
 * request for evicted model `a` (dims `aDims`) after a request for `b`, `n` times.
 */
export function runRayMultiplex(o: {
  python: string;
  a: string;
  aDims: number[];
  b: string;
  bDims: number[];
  n: number;
}): Promise<RayMultiplexRun> {
  const args = [
    repoPath('packages/bench/peers/ray_multiplex_bench.py'),
    '--a',
    o.a,
    '--a-dims',
    o.aDims.join(','),
    '--b',
    o.b,
    '--b-dims',
    o.bDims.join(','),
    '--n',
    String(o.n),
  ];
  return runJsonChild<RayMultiplexRun>(o.python, args, 'ray serve multiplex bench');
}

// ---------- (5a) Moleculer ----------

export interface MoleculerOptions {
  natsUrl: string;
  model: string;
  inputs: Array<{ name: string; dims: number[] }>;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  /** With pinning: the service on `replica` (the worker's core), the load generator on `bench`. */
  cores?: { bench: string; replica: string };
  /** Windows after the run, in turns with Flotilla's load (load-windows.ts). */
  turns?: PeerTurns;
}

/** Why Moleculer cannot run here, or undefined. */
function moleculerMissing(): string | undefined {
  try {
    const req = createRequire(import.meta.url);
    for (const m of ['moleculer', 'nats', 'msgpack5']) req.resolve(m);
    return undefined;
  } catch (e) {
    return `moleculer, nats or msgpack5 not installed (devDependencies of packages/bench: pnpm install): ${(e as Error).message.split('\n')[0]}`;
  }
}

/** The Moleculer service on the replica's core, its load generator on the bench's core, on the bench's nats-server. */
export async function runMoleculer(o: MoleculerOptions): Promise<MoleculerRun> {
  const namespace = `bench${Math.random().toString(36).slice(2, 8)}`;
  const service = spawnPeer(
    process.execPath,
    [
      // BENCH_MOLECULER_NODE_FLAGS: Node flags for the service (default none: Node's defaults, as a
      // user would run it; "--single-threaded-gc" gives it the collector Flotilla's worker runs with).
      ...(process.env.BENCH_MOLECULER_NODE_FLAGS ?? '').split(' ').filter(Boolean),
      repoPath('packages/bench/dist/peer-moleculer.js'),
      JSON.stringify({ natsUrl: o.natsUrl, namespace, modelPath: o.model }),
    ],
    o.cores?.replica,
  );
  try {
    await untilLine(service, 'the Moleculer service', readyLine, 60_000);
    const args: MoleculerLoadArgs = {
      natsUrl: o.natsUrl,
      namespace,
      inputs: o.inputs,
      concurrency: o.concurrency,
      durationMs: o.durationMs,
      warmupMs: o.warmupMs,
      ...turnArgs(o.turns),
    };
    const argv = [repoPath('packages/bench/dist/peer-moleculer-load.js'), JSON.stringify(args)];
    const run = await runJsonChild<MoleculerRun>(
      o.cores ? 'taskset' : process.execPath,
      o.cores ? ['-c', o.cores.bench, process.execPath, ...argv] : argv,
      'moleculer load generator',
      undefined,
      o.turns?.onPause,
    );
    return { ...run, serviceAffinity: affinityOf(service.pid) };
  } finally {
    await stopPeer(service, 5000);
  }
}

// ---------- all of them ----------

export interface PeerResults {
  moleculer: PeerOutcome<MoleculerRun>;
  triton: PeerOutcome<TritonRun>;
  rayServe: PeerOutcome<RayServeRun>;
}

/** Batching as Flotilla's profile chose (the batching peers, Triton and Ray Serve, get the same), at Flotilla's best concurrency. */
export interface MeasurePeersOptions extends PeerLoadOptions {
  natsUrl: string;
  model: string;
  /** Every input of one request (batch axis first, 1); the Python peers send the first only. */
  inputs: Array<{ name: string; dims: number[] }>;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
  /** Wraps each peer's run (start, warm-up, measure, stop): the bench times the host's speed around it (host-drift.ts). */
  around?: <T>(peer: PeerName, run: () => Promise<T>) => Promise<T>;
  /**
   * Flotilla's load in `rounds` windows, for the peers whose load generators take turns with it
   * (Moleculer, and Triton driven from Node): once such a peer has run, `start` launches Flotilla's
   * load (it warms up, then holds before each window at `onPause`) and resolves with each window's
   * items/s; the peer measures `rounds` + 1 windows in turns with it, its own first (paired.ts).
   */
  turnsWith?: { rounds: number; windowMs: number; warmMs: number; start: (onPause: () => Promise<void>) => Promise<number[]> };
}

/**
 * A peer's run followed by windows in turns with Flotilla's load: the peer's `rounds` + 1 windows
 * with Flotilla's `rounds` between them; `paired` is Flotilla ÷ the peer, round by round.
 */
async function inTurns<R extends PeerRunLike & { turns?: number[] }>(
  run: (turns: PeerTurns) => Promise<R>,
  w: NonNullable<MeasurePeersOptions['turnsWith']>,
  log: (line: string) => void,
): Promise<R & { paired?: PairedRounds }> {
  const peer = turnTaker();
  const peerRun = run({ turns: w.rounds + 1, turnMs: w.windowMs, turnWarmMs: w.warmMs, onPause: peer.onPause });
  // The peer runs its measured run first; Flotilla's load starts once it holds before its first window.
  const first = await Promise.race([peer.paused().then(() => 'held' as const), peerRun.then(() => 'ended' as const)]);
  if (first === 'ended') return peerRun;
  const flotilla = turnTaker();
  const windows = w.start(flotilla.onPause);
  try {
    await takeTurns({ turns: peer, done: peerRun }, { turns: flotilla, done: windows }, w.rounds);
  } catch (err) {
    // The peer's own run still counts; only the paired rounds are lost.
    log(`    windows in turns with Flotilla failed: ${(err as Error).message}`);
    return peerRun;
  }
  const [r, f] = await Promise.all([peerRun, windows]);
  return r.turns ? { ...r, paired: pairedRounds(w.windowMs, pairWindows(f, r.turns)) } : r;
}

/**
 * The least warm-up a peer gets: each starts fresh (cold JIT, caches, connections) where Flotilla's
 * best point comes after its lower concurrencies' runs; BENCH_QUICK's 100 ms left Moleculer at
 * 196 items/s against 3,491 after 300 ms more (mlp, c=128, shared machine).
 */
export const PEER_MIN_WARMUP_MS = 1000;

/** Runs the peers BENCH_PEERS selects, one after another; a failure is recorded, never thrown. */
export async function measurePeers(o: MeasurePeersOptions): Promise<PeerResults> {
  const sel = peerSelection(o.env);
  const dims = o.inputs[0]?.dims ?? [1];
  const batching = { maxBatchSize: Math.max(1, o.maxBatchSize), batchWaitMs: o.batchWaitMs };
  const warmupMs = Math.max(o.warmupMs, PEER_MIN_WARMUP_MS);
  const common = { model: o.model, dims, concurrency: o.concurrency, durationMs: o.durationMs, warmupMs, cores: o.cores };
  const plans: Record<
    PeerName,
    { available: () => { skipped: string } | undefined; title: string; run: (turns?: PeerTurns) => Promise<PeerRunLike>; turns: boolean }
  > = {
    moleculer: {
      title: `(5a) Moleculer, c=${o.concurrency}, one session.run per call`,
      available: () =>
        'skipped' in sel.moleculer ? sel.moleculer : o.inputs.length ? mapSkip(moleculerMissing()) : { skipped: 'model has no inputs' },
      run: (turns) => runMoleculer({ natsUrl: o.natsUrl, ...common, inputs: o.inputs, ...(turns ? { turns } : {}) }),
      turns: true,
    },
    triton: {
      title: `(5b) Triton (PyTriton), c=${o.concurrency}, dynamic batcher max ${batching.maxBatchSize}, delay ${batching.batchWaitMs} ms`,
      available: () => {
        const py = tritonPython(o.env);
        if ('skipped' in py) return py;
        return o.inputs.length === 1 ? undefined : { skipped: `triton_bench.py sends one input; the model has ${o.inputs.length}` };
      },
      run: (turns) =>
        runTriton({
          python: (tritonPython(o.env) as { python: string }).python,
          ...common,
          ...batching,
          inputs: o.inputs,
          client: o.env.BENCH_TRITON_CLIENT === 'python' ? 'python' : 'node',
          ...(turns ? { turns } : {}),
        }),
      turns: o.env.BENCH_TRITON_CLIENT !== 'python',
    },
    rayServe: {
      title: `(5c) Ray Serve, c=${o.concurrency}, @serve.batch(max_batch_size=${batching.maxBatchSize}, batch_wait_timeout_s=${batching.batchWaitMs / 1000})`,
      available: () => {
        const py = rayServePython(o.env);
        if ('skipped' in py) return py;
        return o.inputs.length === 1 ? undefined : { skipped: `ray_serve_bench.py sends one input; the model has ${o.inputs.length}` };
      },
      run: (turns) =>
        runRayServe({ python: (rayServePython(o.env) as { python: string }).python, ...common, ...batching, ...(turns ? { turns } : {}) }),
      turns: true,
    },
  };
  const out: Partial<Record<PeerName, PeerOutcome<PeerRunLike>>> = {};
  for (const name of PEER_NAMES) {
    const p = plans[name];
    const skipped = p.available();
    if (skipped) {
      o.log(`  ${p.title.split(',')[0]}: skipped: ${skipped.skipped}`);
      out[name] = skipped;
      continue;
    }
    o.log(`  ${p.title}`);
    try {
      const go = o.turnsWith && p.turns ? () => inTurns(p.run, o.turnsWith!, o.log) : () => p.run();
      const run: PeerRunLike = await (o.around ? o.around(name, go) : go());
      o.log(
        `    ${run.itemsPerSec} items/s, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms${run.meanBatch === undefined ? '' : `, mean batch ${run.meanBatch}`}`,
      );
      if (run.paired) o.log(`    ${pairedPeerLine(name, run.paired)}`);
      out[name] = run;
    } catch (e) {
      o.log(`    failed: ${(e as Error).message}`);
      out[name] = { error: (e as Error).message };
    }
  }
  return out as PeerResults;
}

type PeerRunLike = { itemsPerSec: number; p50Ms: number | null; p99Ms: number | null; meanBatch?: number; paired?: PairedRounds };

const mapSkip = (why: string | undefined): { skipped: string } | undefined => (why ? { skipped: why } : undefined);

/** The peers' rows in a model's table (main.ts's six columns), (5a) to (5c). */
export function peerTableRows(p: PeerResults): string[][] {
  return [
    peerRow(0, 'moleculer', p.moleculer, (r) => ({
      version: r.moleculerVersion,
      notes: `${r.serializer} over ${r.transporter}, one session.run per call, 1 thread${errorsText(r.errors)}`,
    })),
    peerRow(1, 'triton', p.triton, (r) => ({
      version: `${r.tritonVersion} (PyTriton ${r.pytritonVersion})`,
      notes: `dynamic batcher max ${r.maxBatchSize}, delay ${r.batchWaitMs} ms; HTTP from ${r.client}; onnxruntime ${r.ortVersion}${errorsText(r.errors)}`,
    })),
    peerRow(2, 'rayServe', p.rayServe, (r) => ({
      version: r.rayVersion,
      notes: `@serve.batch max ${r.maxBatchSize}, wait ${r.batchWaitMs} ms; DeploymentHandle; onnxruntime ${r.ortVersion}${r.errored ? ` errors ${r.errored}` : ''}`,
    })),
  ];
}

const errorsText = (e: Record<string, number> | undefined) => (e && Object.keys(e).length ? ` errors ${JSON.stringify(e)}` : '');
