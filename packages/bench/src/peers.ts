// Peers measured in the same `pnpm bench` run, on the same model, cores and batching: Ray Serve
// (packages/bench/peers/ray_serve_bench.py) when its venv exists (`bash packages/bench/peers/setup`).
// Triton and NOS need Docker images and GPU-era stacks no machine here can pull; they are not run.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { repoPath } from './deps.js';

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
}

/** The peers venv's python, or why Ray Serve is not measured. */
export function rayServePython(env: NodeJS.ProcessEnv): { python: string } | { skipped: string } {
  if (env.BENCH_PEERS === '0' || env.BENCH_PEERS === 'false') return { skipped: 'BENCH_PEERS=0' };
  const python = repoPath('.cache/peers/bin/python');
  return existsSync(python) ? { python } : { skipped: 'no .cache/peers venv (run `bash packages/bench/peers/setup` to measure Ray Serve)' };
}

export interface RayServeOptions {
  python: string;
  model: string;
  /** One request's input dims, batch axis first (1). */
  dims: number[];
  maxBatchSize: number;
  batchWaitMs: number;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  /** With pinning: the driver and Ray's processes run on `benchCore`, the replica on `replicaCore`. */
  cores?: { bench: string; replica: string };
}

export function runRayServe(o: RayServeOptions): Promise<RayServeRun> {
  const args = [
    repoPath('packages/bench/peers/ray_serve_bench.py'),
    '--model',
    o.model,
    '--dims',
    o.dims.join(','),
    '--max-batch',
    String(o.maxBatchSize),
    '--wait-ms',
    String(o.batchWaitMs),
    '--concurrency',
    String(o.concurrency),
    '--duration-s',
    String(o.durationMs / 1000),
    '--warmup-s',
    String(o.warmupMs / 1000),
    ...(o.cores ? ['--replica-core', o.cores.replica] : []),
  ];
  const [cmd, argv] = o.cores ? ['taskset', ['-c', o.cores.bench, o.python, ...args]] : [o.python, args];
  return runPython<RayServeRun>(cmd, argv, 'ray serve bench');
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
  return runPython<RayMultiplexRun>(o.python, args, 'ray serve multiplex bench');
}

/** Runs a peer script; its last stdout line is its JSON result. */
function runPython<T>(cmd: string, argv: string[], what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      argv,
      { timeout: 300_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, RAY_USAGE_STATS_ENABLED: '0' } },
      (err, stdout, stderr) => {
        const last = stdout.trim().split('\n').pop() ?? '';
        if (err || !last.startsWith('{')) {
          reject(new Error(`${what} failed (${err?.message ?? 'no result'}): ${stderr.slice(-2000)}`));
          return;
        }
        resolve(JSON.parse(last) as T);
      },
    );
  });
}
