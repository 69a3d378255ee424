// A whole cluster in one process: its own nats-server, a head and N workers (each with its own
// NATS connection, like separate machines). Used by integration tests, the demo and benchmarks.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlotillaClient, type ClientOptions } from '@flotilla/client';
import { Head, type HeadOptions } from '@flotilla/head';
import { Worker, type WorkerOptions } from '@flotilla/worker';
import { silentLogger, type BusOptions, type Logger } from '@flotilla/bus';
import { NatsServer, type NatsServerOptions } from './nats-server.js';

export interface LocalClusterOptions {
  /** Cluster name (unique per test keeps tests apart). Default a random one. */
  cluster?: string;
  workers?: number;
  nats?: NatsServerOptions;
  head?: Omit<HeadOptions, 'cluster' | 'bus' | 'connection'>;
  /** Options for every worker; a function gets the worker's index. */
  worker?: Omit<WorkerOptions, 'cluster' | 'bus' | 'connection'> | ((i: number) => Omit<WorkerOptions, 'cluster' | 'bus' | 'connection'>);
  logger?: Logger;
  /**
   * A directory written by `flotilla auth init` for this cluster's name: the nats-server runs with
   * its `nats.conf` (role permissions), the head and workers connect with `head.nk` / `worker.nk`,
   * and `client()` with `operator.nk` unless given other credentials.
   */
  authDir?: string;
}

export class LocalCluster {
  private stopped?: Promise<void>;

  private constructor(
    readonly nats: NatsServer,
    readonly head: Head,
    readonly workers: Worker[],
    readonly cluster: string,
    private readonly cacheRoot: string,
    private readonly clients: FlotillaClient[] = [],
    private readonly token?: string,
    private readonly authDir?: string,
  ) {}

  get url(): string {
    return this.nats.url;
  }

  static async start(opts: LocalClusterOptions = {}): Promise<LocalCluster> {
    const cluster = opts.cluster ?? `t${Math.random().toString(36).slice(2, 10)}`;
    const logger = opts.logger ?? silentLogger();
    const authConfig = opts.authDir ? readFileSync(join(opts.authDir, 'nats.conf'), 'utf8') : undefined;
    const nats = await NatsServer.start(
      authConfig ? { ...opts.nats, extraConfig: [opts.nats?.extraConfig, authConfig].filter(Boolean).join('\n') } : opts.nats,
    );
    const cacheRoot = mkdtempSync(join(tmpdir(), 'flotilla-cache-'));
    const heads: Head[] = [];
    const workers: Worker[] = [];
    try {
      const bus: BusOptions = { servers: nats.url, token: opts.nats?.token };
      const seed = (role: string): BusOptions => (opts.authDir ? { nkeySeedFile: join(opts.authDir, `${role}.nk`) } : {});
      const head = await Head.start({ ...opts.head, cluster, bus: { ...bus, ...seed('head') }, logger });
      heads.push(head);
      await head.leading(); // a fresh NATS has no lease holder: at once
      for (let i = 0; i < (opts.workers ?? 1); i++) {
        const w = typeof opts.worker === 'function' ? opts.worker(i) : (opts.worker ?? {});
        workers.push(
          await Worker.start({
            id: `w${i}`,
            cacheDir: join(cacheRoot, `w${i}`),
            heartbeatMs: 250,
            ...w,
            cluster,
            bus: { ...bus, ...seed('worker') },
            logger,
          }),
        );
      }
    } catch (err) {
      await Promise.allSettled([...workers.map((w) => w.stop()), ...heads.map((h) => h.stop())]);
      await nats.stop();
      rmSync(cacheRoot, { recursive: true, force: true });
      throw err;
    }
    return new LocalCluster(nats, heads[0]!, workers, cluster, cacheRoot, [], opts.nats?.token, opts.authDir);
  }

  /** A client of this cluster (closed with the cluster); with `authDir`, an operator unless `opts` say otherwise. */
  client(opts: Omit<ClientOptions, 'cluster' | 'servers'> = {}): FlotillaClient {
    const seed =
      this.authDir && !opts.nkeySeedFile && !opts.credsFile && !opts.connection ? { nkeySeedFile: join(this.authDir, 'operator.nk') } : {};
    const c = new FlotillaClient({ token: this.token, ...seed, ...opts, cluster: this.cluster, servers: this.nats.url });
    this.clients.push(c);
    return c;
  }

  /** Stops clients, workers, head and nats-server, in that order; every step runs. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await Promise.allSettled(this.clients.map((c) => c.close()));
      await Promise.allSettled(this.workers.map((w) => w.stop()));
      await this.head.stop().catch(() => undefined);
      await this.nats.stop();
      rmSync(this.cacheRoot, { recursive: true, force: true });
    })();
    return this.stopped;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
