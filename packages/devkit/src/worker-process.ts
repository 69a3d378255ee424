// A worker as a real OS process (the built CLI's `flotilla worker`), for failure tests that kill
// workers with real signals: SIGKILL is a crash (no goodbye, sockets reset by the kernel), SIGTERM
// is the graceful drain. `start` waits until the head lists the worker as running.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Head } from '@flotilla/head';
import { WORKER_NODE_FLAGS } from '@flotilla/worker';
import { killOnExit } from '@flotilla/local';

export interface WorkerProcessOptions {
  /** NATS URL(s); several are passed comma separated (`--nats a,b,c`). */
  servers: string | string[];
  cluster: string;
  id: string;
  /** Heartbeat period, ms. Default 250. */
  heartbeatMs?: number;
  /** Model cache; default a temp dir removed when the process has exited and `stop`/`dispose` ran. */
  cacheDir?: string;
  /** Extra CLI flags, e.g. ['--threads', '1']. */
  args?: string[];
  /** Extra environment; FLOTILLA_LOG_LEVEL defaults to `warn`. */
  env?: Record<string, string>;
  /** Path of the CLI's main.js. Default `findCli()`. */
  cli?: string;
  /** Wait until this head lists the worker as running. */
  head?: Pick<Head, 'registry'>;
  /** Or wait until this says so (called every 25 ms). */
  ready?: () => boolean | Promise<boolean>;
  /** How long `start` waits, ms. Default 30 000. */
  startTimeoutMs?: number;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The built CLI: env FLOTILLA_CLI, else packages/cli/dist/main.js above the working directory. */
export function findCli(): string {
  if (process.env.FLOTILLA_CLI) return process.env.FLOTILLA_CLI;
  for (let dir = process.cwd(); ; dir = dirname(dir)) {
    const p = join(dir, 'packages', 'cli', 'dist', 'main.js');
    if (existsSync(p)) return p;
    if (dirname(dir) === dir) break;
  }
  throw new Error('packages/cli/dist/main.js not found: run `pnpm build` first (or set FLOTILLA_CLI)');
}

const LOG_KEEP = 64 * 1024;

export class WorkerProcess {
  /** Resolves when the process has exited, with its exit code or the signal that ended it. */
  readonly exited: Promise<ProcessExit>;
  private exit?: ProcessExit;
  private output = '';

  private constructor(
    readonly id: string,
    private readonly child: ChildProcess,
    private readonly ownCache?: string,
  ) {
    this.exited = new Promise((r) =>
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        r(this.exit);
      }),
    );
    const keep = (d: Buffer) => {
      this.output += d.toString();
      if (this.output.length > LOG_KEEP) this.output = this.output.slice(-LOG_KEEP);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.exit === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** How it exited; undefined while running. */
  get exitStatus(): ProcessExit | undefined {
    return this.exit;
  }

  /** The process's stdout and stderr (its JSON log lines), last 64 KiB. */
  log(): string {
    return this.output;
  }

  static async start(opts: WorkerProcessOptions): Promise<WorkerProcess> {
    const cli = opts.cli ?? findCli();
    const ownCache = opts.cacheDir === undefined ? mkdtempSync(join(tmpdir(), `flotilla-wp-${opts.id}-`)) : undefined;
    const servers = Array.isArray(opts.servers) ? opts.servers.join(',') : opts.servers;
    const args = [
      ...WORKER_NODE_FLAGS,
      cli,
      'worker',
      '--nats',
      servers,
      '--cluster',
      opts.cluster,
      '--id',
      opts.id,
      '--heartbeat-ms',
      String(opts.heartbeatMs ?? 250),
      '--cache-dir',
      resolve(opts.cacheDir ?? ownCache!),
      ...(opts.args ?? []),
    ];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FLOTILLA_LOG_LEVEL: 'warn', ...opts.env },
    });
    killOnExit(child);
    const wp = new WorkerProcess(opts.id, child, ownCache);
    const ready = opts.ready ?? (opts.head ? () => opts.head!.registry.running().some((w) => w.hb.workerId === opts.id) : undefined);
    if (!ready) return wp;
    const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
    for (;;) {
      if (!wp.running) {
        await wp.exited;
        wp.dispose();
        throw new Error(`worker process ${opts.id} exited during start (${JSON.stringify(wp.exit)}):\n${wp.log().slice(-2000)}`);
      }
      if (await ready()) return wp;
      if (Date.now() > deadline) {
        wp.kill('SIGKILL');
        await wp.exited;
        wp.dispose();
        throw new Error(`worker process ${opts.id} not running after ${opts.startTimeoutMs ?? 30_000} ms:\n${wp.log().slice(-2000)}`);
      }
      await sleep(25);
    }
  }

  /** Sends a signal (default SIGKILL: a crash). Does nothing once the process has exited. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM (graceful drain), SIGKILL after `timeoutMs`; resolves with how it exited. Idempotent. */
  async stop(timeoutMs = 15_000): Promise<ProcessExit> {
    if (this.running) {
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.kill('SIGKILL'), timeoutMs);
      await this.exited;
      clearTimeout(t);
    }
    const exit = await this.exited;
    this.dispose();
    return exit;
  }

  /** Removes the temp cache dir (once the process has exited). */
  private dispose(): void {
    if (this.ownCache && !this.running) rmSync(this.ownCache, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
