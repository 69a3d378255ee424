// Starts and stops a real nats-server (with JetStream) in its own temp dir: used by tests, the
// benchmarks and `flotilla up`. Port -1 lets the server pick a free port; we read it back from
// its ports file, racing the process's early exit so a bad config fails fast with the server's log.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface NatsServerOptions {
  /** Port to listen on; -1 (default) picks a free one. */
  port?: number;
  /** Interface to bind. Default 127.0.0.1. */
  host?: string;
  /** Server's max_payload in bytes. Default: the server's own (1 MiB). */
  maxPayload?: number;
  /** Enable JetStream (default true). */
  jetstream?: boolean;
  /** Token auth (clients must present it). */
  token?: string;
  /** Extra config text appended to the generated config. */
  extraConfig?: string;
  /** Readiness timeout in ms. Default 10 000. */
  startTimeoutMs?: number;
  /** Directory for config, store and log; a new temp dir (removed on stop) when absent. */
  dir?: string;
}

export function findNatsServer(): string {
  const fromEnv = process.env.FLOTILLA_NATS_SERVER;
  if (fromEnv) return fromEnv;
  for (const p of (process.env.PATH ?? '').split(':')) {
    if (p && existsSync(join(p, 'nats-server'))) return join(p, 'nats-server');
  }
  for (const p of ['/usr/sbin/nats-server', '/usr/local/bin/nats-server', '/usr/bin/nats-server']) {
    if (existsSync(p)) return p;
  }
  throw new Error("nats-server not found: run scripts/setup (installs Debian's nats-server) or set FLOTILLA_NATS_SERVER");
}

/**
 * Child processes (nats-servers, `flotilla up`'s workers) still running when this process exits:
 * SIGKILLed then, however it exits short of a signal that ends it at once (an uncaught exception,
 * a write to a closed pipe, process.exit), so none outlives the test, bench or `flotilla up` that
 * started it, holding its port or retrying a server that is gone.
 */
const running = new Set<ChildProcess>();
let exitHook = false;
export function killOnExit(proc: ChildProcess): void {
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const p of running) p.kill('SIGKILL');
  });
}

export class NatsServer {
  private stopped?: Promise<void>;
  private constructor(
    readonly url: string,
    readonly port: number,
    readonly dir: string,
    private readonly proc: ChildProcess,
    private readonly ownDir: boolean,
  ) {}

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  /** The server's log so far (for failure messages). */
  log(): string {
    try {
      return readFileSync(join(this.dir, 'server.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /**
   * A server started again on the port and store of one that was killed (a broker restart in a
   * test): the old process may hold the port for a moment, so "already in use" is retried every
   * 100 ms, 20 times.
   */
  static async restart(opts: NatsServerOptions & { port: number; dir: string }): Promise<NatsServer> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await NatsServer.start(opts);
      } catch (err) {
        if (attempt >= 20 || !/already in use/.test((err as Error).message)) throw err;
        await sleep(100);
      }
    }
  }

  static async start(opts: NatsServerOptions = {}): Promise<NatsServer> {
    const ownDir = opts.dir === undefined;
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'flotilla-nats-'));
    const host = opts.host ?? '127.0.0.1';
    const port = opts.port ?? -1;
    const lines = [`listen: "${host}:${port}"`, `ports_file_dir: "${dir}"`, `log_file: "${join(dir, 'server.log')}"`];
    if (opts.maxPayload !== undefined) lines.push(`max_payload: ${opts.maxPayload}`);
    if (opts.jetstream !== false) lines.push(`jetstream { store_dir: "${join(dir, 'js')}" }`);
    if (opts.token) lines.push(`authorization { token: "${opts.token}" }`);
    if (opts.extraConfig) lines.push(opts.extraConfig);
    const conf = join(dir, 'server.conf');
    writeFileSync(conf, lines.join('\n') + '\n');

    const proc = spawn(findNatsServer(), ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    killOnExit(proc);
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    let exited: number | null | undefined;
    proc.once('exit', (code) => (exited = code));

    const deadline = Date.now() + (opts.startTimeoutMs ?? 10_000);
    const portsFile = `nats-server_${proc.pid}.ports`;
    for (;;) {
      if (exited !== undefined) {
        const log = (() => {
          try {
            return readFileSync(join(dir, 'server.log'), 'utf8');
          } catch {
            return '';
          }
        })();
        if (ownDir) rmSync(dir, { recursive: true, force: true });
        const inUse = /address already in use/i.test(log + stderr);
        throw new Error(
          inUse
            ? `nats-server could not listen on ${host}:${port}: the port is already in use (choose another with --port, or use --nats URL to join that server)`
            : `nats-server exited with code ${exited} before it was ready:\n${(log + stderr).slice(-2000)}`,
        );
      }
      if (readdirSync(dir).includes(portsFile)) {
        try {
          const info = JSON.parse(readFileSync(join(dir, portsFile), 'utf8')) as { nats: string[] };
          const url = info.nats[0]!.replace('0.0.0.0', '127.0.0.1');
          const actualPort = Number(new URL(url).port);
          return new NatsServer(url, actualPort, dir, proc, ownDir);
        } catch {
          // file half-written: try again
        }
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`nats-server not ready after ${opts.startTimeoutMs ?? 10_000} ms`);
      }
      await sleep(20);
    }
  }

  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its temp dir. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      if (this.proc.exitCode === null && this.proc.signalCode === null) {
        const exited = new Promise<void>((r) => this.proc.once('exit', () => r()));
        this.proc.kill('SIGTERM');
        const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      if (this.ownDir) rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.stopped;
  }

  /** Kills the server at once (simulating a crash); the dir is kept so it can be restarted. */
  kill(): void {
    this.proc.kill('SIGKILL');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
