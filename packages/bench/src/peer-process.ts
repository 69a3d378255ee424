// The bench's child processes (the worker, responders, the peers): spawned under taskset where the
// bench pins them, tracked so that none outlives the bench, stopped with SIGTERM then SIGKILL, and a
// script's last stdout line read as its JSON result.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { WORKER_NODE_FLAGS } from '@flotilla/worker';
import { repoPath } from './deps.js';
import { pauseLines, type PeerTurns } from './load-windows.js';

/** Every peer process still running; whatever the bench's exit path, none may outlive it. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  // SIGTERM first: the Triton driver stops its server half (and tritonserver) on it.
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
});

/** `cmd argv`, under `taskset -c core` when a core is given; stdout and stderr piped; tracked. */
export function spawnPeer(cmd: string, argv: string[], core?: string, env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child =
    core === undefined
      ? spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env })
      : spawn('taskset', ['-c', core, cmd, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

/** Keeps the last `max` characters a stream wrote (and forwards what it writes to stderr, each line prefixed, given a prefix). */
export function keepTail(stream: NodeJS.ReadableStream | null, max = 4000, prefix?: string): () => string {
  let text = '';
  stream?.on('data', (d: Buffer) => {
    const s = d.toString();
    text = (text + s).slice(-max);
    if (prefix) process.stderr.write(s.replace(/^(?=.)/gm, prefix));
  });
  return () => text;
}

/**
 * Waits for the first stdout line of `child` that `pick` turns into a value (a 'ready' marker, a
 * JSON line); rejects, with the tail of its stderr, when it exits first or after `timeoutMs`.
 */
export function untilLine<T>(child: ChildProcess, what: string, pick: (line: string) => T | undefined, timeoutMs = 60_000): Promise<T> {
  const stderr = keepTail(child.stderr);
  return new Promise<T>((resolve, reject) => {
    let partial = '';
    const done = (f: () => void) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      f();
    };
    const onData = (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        const v = pick(line);
        if (v !== undefined) return done(() => resolve(v));
      }
    };
    const onExit = (code: number | null) =>
      done(() => reject(new Error(`${what} exited with code ${code} before it was ready: ${stderr()}`)));
    const timer = setTimeout(
      () => done(() => reject(new Error(`${what} was not ready within ${timeoutMs / 1000} s: ${stderr()}`))),
      timeoutMs,
    );
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** A 'ready' line, for untilLine. */
export const readyLine = (line: string): true | undefined => (line.trim() === 'ready' ? true : undefined);

/**
 * The JSON result of `child`: its last stdout line once it exits with 0; rejects otherwise, with
 * the tail of its stderr (stopped with SIGTERM past `timeoutMs` when given).
 */
export function exitJson<T>(child: ChildProcess, what: string, timeoutMs?: number): Promise<T> {
  const stdout = keepTail(child.stdout, 1_000_000);
  const stderr = keepTail(child.stderr);
  return new Promise((resolve, reject) => {
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => void stopPeer(child), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const last = stdout().trim().split('\n').pop() ?? '';
      if (code !== 0 || !last.startsWith('{')) {
        const late = signal === 'SIGTERM' && timeoutMs !== undefined ? ` after ${timeoutMs / 1000} s?` : '';
        const why = signal ? `killed by ${signal}${late}` : `exit code ${code}`;
        reject(new Error(`${what} failed (${why}): ${stderr().slice(-2000)}`));
        return;
      }
      resolve(JSON.parse(last) as T);
    });
  });
}

/** SIGTERM, SIGKILL after `graceMs`; resolves when the process is gone. */
export function stopPeer(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** How long one peer measurement may take, start-up included (tritonserver with its stub: 5-7 s here). */
export const PEER_TIMEOUT_MS = 300_000;

/** Runs a peer's script to its end; its last stdout line is its JSON result. With `onPause`, each of its pause lines (load-windows.ts) waits for that. */
export function runJsonChild<T>(
  cmd: string,
  argv: string[],
  what: string,
  timeoutMs = PEER_TIMEOUT_MS,
  onPause?: (line: string) => Promise<void>,
): Promise<T> {
  const child = spawnPeer(cmd, argv, undefined, { ...process.env, RAY_USAGE_STATS_ENABLED: '0' });
  const result = exitJson<T>(child, what, timeoutMs);
  if (onPause) pauseLines(child, onPause);
  return result;
}

/** Node arguments that make a process write a V8 CPU profile into `dir` when it ends (none without a dir). */
export function cpuProfArgs(dir: string | undefined): string[] {
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
}

/**
 * Node arguments a bench starts a worker process with: WORKER_NODE_FLAGS, as every launcher does
 * (BENCH_WORKER_NODE_FLAGS="--flag …" replaces them; "" gives Node's defaults, e.g. V8's concurrent
 * collector), and with BENCH_CPU_PROF=DIR a V8 CPU profile there when it stops
 * (scripts/cpuprof-summary.mjs reads it).
 */
export function workerNodeArgs(env: NodeJS.ProcessEnv = process.env): string[] {
  const flags = (env.BENCH_WORKER_NODE_FLAGS ?? WORKER_NODE_FLAGS.join(' ')).split(' ').filter(Boolean);
  return [...flags, ...cpuProfArgs(env.BENCH_CPU_PROF)];
}

/**
 * The command line (after `node`) of a worker process a bench starts: `nodeArgs` (default
 * workerNodeArgs()), the built CLI's `worker` on `nats` and `cluster` as `id`, its model cache in
 * `cacheDir`, then `extra` flags.
 */
export function workerArgv(o: {
  nats: string;
  cluster: string;
  id: string;
  cacheDir: string;
  nodeArgs?: string[];
  extra?: string[];
}): string[] {
  return [
    ...(o.nodeArgs ?? workerNodeArgs()),
    repoPath('packages/cli/dist/main.js'),
    'worker',
    '--nats',
    o.nats,
    '--cluster',
    o.cluster,
    '--id',
    o.id,
    '--cache-dir',
    o.cacheDir,
    ...(o.extra ?? []),
  ];
}

/** /proc/PID/stat counts in clock ticks (USER_HZ = 100 on Linux). */
const TICK_S = 1 / 100;

/** CPU seconds (user + system) a process has used so far (Linux: /proc/PID/stat). */
export function processCpuS(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_S; // utime, stime (fields 14, 15)
}

/** A process's CPU list as `taskset -cp` reads it back; '?' when it cannot. */
export function affinityOf(pid: number | undefined): string {
  try {
    return execFileSync('taskset', ['-cp', String(pid)], { encoding: 'utf8' })
      .split(':')
      .pop()!
      .trim();
  } catch {
    return '?';
  }
}

/** How every peer is measured: its batcher (the batching Flotilla's profile chose), the load, the pinning. */
export interface PeerLoadOptions {
  /** The peer's batcher: largest batch and queue delay. */
  maxBatchSize: number;
  batchWaitMs: number;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  /** With pinning: the driver (load generator) on `bench`, the serving side on `replica`. */
  cores?: { bench: string; replica: string };
}

/** What a Python peer's bench script (ray_serve_bench.py, triton_bench.py) takes on its command line. */
export interface PythonPeerOptions extends PeerLoadOptions {
  python: string;
  model: string;
  /** One request's input dims, batch axis first (1). */
  dims: number[];
  /** Windows after the run, in turns with Flotilla's load (the script's --turns; load-windows.ts). */
  turns?: PeerTurns;
}

/** `packages/bench/peers/<script>` with the model and batcher arguments every peer script takes. */
export function peerScriptArgs(script: string, o: Pick<PythonPeerOptions, 'model' | 'dims' | 'maxBatchSize' | 'batchWaitMs'>): string[] {
  return [
    repoPath(`packages/bench/peers/${script}`),
    '--model',
    o.model,
    '--dims',
    o.dims.join(','),
    '--max-batch',
    String(o.maxBatchSize),
    '--wait-ms',
    String(o.batchWaitMs),
  ];
}

/** Runs `packages/bench/peers/<script>` end to end with the options every peer script takes; its last stdout line is the result. */
export function runPythonPeer<T>(script: string, o: PythonPeerOptions, what: string): Promise<T> {
  const args = [
    ...peerScriptArgs(script, o),
    '--concurrency',
    String(o.concurrency),
    '--duration-s',
    String(o.durationMs / 1000),
    '--warmup-s',
    String(o.warmupMs / 1000),
    ...(o.cores ? ['--replica-core', o.cores.replica] : []),
    ...(o.turns
      ? ['--turns', String(o.turns.turns ?? 0), '--turn-ms', String(o.turns.turnMs ?? 0), '--turn-warm-ms', String(o.turns.turnWarmMs ?? 0)]
      : []),
  ];
  const [cmd, argv] = o.cores ? ['taskset', ['-c', o.cores.bench, o.python, ...args]] : [o.python, args];
  return runJsonChild<T>(cmd, argv, what, PEER_TIMEOUT_MS, o.turns?.onPause);
}
