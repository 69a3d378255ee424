// A whole cluster in one process: its own nats-server, a head and N workers (each with its own
// NATS connection, like separate machines). Used by integration tests, the demo and benchmarks.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlotillaClient, type ClientOptions } from '@flotilla/client';
import { Head, type HeadOptions } from '@flotilla/head';
import { Worker, type WorkerOptions } from '@flotilla/worker';
import { silentLogger, type Logger } from '@flotilla/bus';
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
  ) {}

  get url(): string {
    return this.nats.url;
  }

  static async start(opts: LocalClusterOptions = {}): Promise<LocalCluster> {
    const cluster = opts.cluster ?? `t${Math.random().toString(36).slice(2, 10)}`;
    const logger = opts.logger ?? silentLogger();
    const nats = await NatsServer.start(opts.nats);
    const cacheRoot = mkdtempSync(join(tmpdir(), 'flotilla-cache-'));
    const heads: Head[] = [];
    const workers: Worker[] = [];
    try {
      const bus = { servers: nats.url, token: opts.nats?.token };
      const head = await Head.start({ ...opts.head, cluster, bus, logger });
      heads.push(head);
      await head.leading(); // a fresh NATS has no lease holder: at once
      for (let i = 0; i < (opts.workers ?? 1); i++) {
        const w = typeof opts.worker === 'function' ? opts.worker(i) : (opts.worker ?? {});
        workers.push(
          await Worker.start({ id: `w${i}`, cacheDir: join(cacheRoot, `w${i}`), heartbeatMs: 250, ...w, cluster, bus, logger }),
        );
      }
    } catch (err) {
      await Promise.allSettled([...workers.map((w) => w.stop()), ...heads.map((h) => h.stop())]);
      await nats.stop();
      rmSync(cacheRoot, { recursive: true, force: true });
      throw err;
    }
    return new LocalCluster(nats, heads[0]!, workers, cluster, cacheRoot, [], opts.nats?.token);
  }

  /** A client of this cluster (closed with the cluster). */
  client(opts: Omit<ClientOptions, 'cluster' | 'servers'> = {}): FlotillaClient {
    const c = new FlotillaClient({ token: this.token, ...opts, cluster: this.cluster, servers: this.nats.url });
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
