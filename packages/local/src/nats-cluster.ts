// Several nats-server processes routed into one NATS cluster with clustered JetStream, on
// loopback: for tests of what Flotilla does when one broker of a highly available NATS goes away.
// Each node has its own dir (config, JetStream store, log), `server_name` (nats-server 2.9 needs
// one per node for clustered JetStream) and route port; every node lists every route. `start`
// returns once JetStream can place a stream on all nodes (the meta leader is elected and every
// peer has joined), which takes a few seconds after the processes are up.
import { createServer } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { closeBus, connectBus, type NatsConnection } from '@flotilla/bus';
import { NatsServer } from './nats-server.js';

export interface NatsClusterOptions {
  /** Number of servers. Default 3. */
  size?: number;
  /** NATS cluster name. Default `flotilla`. */
  name?: string;
  /** Each server's max_payload, bytes. Default the server's own (1 MiB). */
  maxPayload?: number;
  /** Extra config text for every node. */
  extraConfig?: string;
  /** How long `start` waits for the processes and for clustered JetStream, ms. Default 30 000. */
  startTimeoutMs?: number;
}

/** Free TCP ports on 127.0.0.1 (bound together so they differ, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<import('node:net').Server>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

interface NodeConfig {
  name: string;
  port: number;
  routePort: number;
  monitorPort: number;
  dir: string;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

async function jsApi<T = Record<string, unknown>>(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  timeoutMs = 2000,
): Promise<T & { error?: { code: number; description: string } }> {
  const msg = await nc.request(subject, encoder.encode(body === undefined ? '' : JSON.stringify(body)), { timeout: timeoutMs });
  return JSON.parse(decoder.decode(msg.data)) as T & { error?: { code: number; description: string } };
}

export class NatsCluster {
  private stopped?: Promise<void>;
  /** Killed servers, awaited by `stop`. */
  private readonly killed: NatsServer[] = [];

  private constructor(
    private readonly configs: NodeConfig[],
    private readonly servers: Array<NatsServer | undefined>,
    readonly root: string,
    private readonly opts: NatsClusterOptions,
    private readonly baseConfig: (c: NodeConfig) => string,
  ) {}

  get size(): number {
    return this.configs.length;
  }

  /** Every node's client URL, in node order (also of nodes that are down). */
  get urls(): string[] {
    return this.configs.map((c) => `nats://127.0.0.1:${c.port}`);
  }

  /** Every node's monitoring URL (http: /varz, /connz, /jsz, /routez). */
  get monitorUrls(): string[] {
    return this.configs.map((c) => `http://127.0.0.1:${c.monitorPort}`);
  }

  /** Every node's `server_name`. */
  get names(): string[] {
    return this.configs.map((c) => c.name);
  }

  /** The URLs with node `i`'s first: a client that should prefer node i but can fail over to all. */
  urlsFrom(i: number): string[] {
    const u = this.urls;
    return [...u.slice(i % u.length), ...u.slice(0, i % u.length)];
  }

  /** Node i's server while it runs. */
  node(i: number): NatsServer | undefined {
    return this.servers[i];
  }

  /** Whether node i is running (not killed or stopped). */
  up(i: number): boolean {
    return this.servers[i] !== undefined;
  }

  static async start(opts: NatsClusterOptions = {}): Promise<NatsCluster> {
    const size = opts.size ?? 3;
    if (!Number.isInteger(size) || size < 1) throw new Error(`NatsCluster size must be a positive integer, got ${size}`);
    const name = opts.name ?? 'flotilla';
    const root = mkdtempSync(join(tmpdir(), 'flotilla-natscluster-'));
    const ports = await freePorts(size * 3);
    const configs: NodeConfig[] = Array.from({ length: size }, (_, i) => ({
      name: `n${i}`,
      port: ports[3 * i]!,
      routePort: ports[3 * i + 1]!,
      monitorPort: ports[3 * i + 2]!,
      dir: join(root, `n${i}`),
    }));
    const routes = configs.map((c) => `"nats-route://127.0.0.1:${c.routePort}"`).join(', ');
    const baseConfig = (c: NodeConfig) =>
      [
        `server_name: "${c.name}"`,
        `http: "127.0.0.1:${c.monitorPort}"`,
        `cluster {`,
        `  name: "${name}"`,
        `  listen: "127.0.0.1:${c.routePort}"`,
        `  routes: [${routes}]`,
        `}`,
        ...(opts.extraConfig ? [opts.extraConfig] : []),
      ].join('\n');
    for (const c of configs) mkdirSync(c.dir, { recursive: true });
    const cluster = new NatsCluster(
      configs,
      configs.map(() => undefined),
      root,
      opts,
      baseConfig,
    );
    try {
      await Promise.all(configs.map((_, i) => cluster.startNode(i)));
      await cluster.waitReady(opts.startTimeoutMs ?? 30_000);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  private async startNode(i: number): Promise<void> {
    const c = this.configs[i]!;
    // A killed node's port may linger for a moment: retry "address in use" briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        this.servers[i] = await NatsServer.start({
          port: c.port,
          dir: c.dir,
          maxPayload: this.opts.maxPayload,
          extraConfig: this.baseConfig(c),
          startTimeoutMs: this.opts.startTimeoutMs ?? 30_000,
        });
        return;
      } catch (err) {
        if (attempt >= 20 || !/already in use/.test((err as Error).message)) throw err;
        await sleep(250);
      }
    }
  }

  /**
   * Waits until clustered JetStream works on every running node: a probe stream replicated on
   * all running nodes can be created (needs a meta leader and every peer), then is deleted.
   */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    const running = this.configs.filter((_, i) => this.up(i));
    const nc = await connectBus({
      servers: this.urls.filter((_, i) => this.up(i)),
      name: 'flotilla-natscluster-probe',
      reconnectForever: false,
    });
    const probe = `FLOTILLA_PROBE_${Math.random().toString(36).slice(2, 10)}`;
    const deadline = Date.now() + timeoutMs;
    let last: string;
    try {
      for (;;) {
        try {
          const r = await jsApi(nc, `$JS.API.STREAM.CREATE.${probe}`, {
            name: probe,
            subjects: [`flotilla.probe.${probe}`],
            storage: 'memory',
            num_replicas: running.length,
          });
          if (!r.error) break;
          last = r.error.description;
        } catch (err) {
          last = (err as Error).message;
        }
        if (Date.now() > deadline) {
          throw new Error(`NATS cluster JetStream not ready after ${timeoutMs} ms (${last}):\n${this.logs().slice(-3000)}`);
        }
        await sleep(200);
      }
      await jsApi(nc, `$JS.API.STREAM.DELETE.${probe}`, undefined).catch(() => undefined);
    } finally {
      await closeBus(nc);
    }
  }

  /** Kills node i at once (a crash); its dir is kept so `restart(i)` brings it back. */
  kill(i: number): void {
    const s = this.servers[i];
    if (!s) return;
    s.kill();
    this.killed.push(s);
    this.servers[i] = undefined;
  }

  /** Starts node i again with the same port, name and store (after `kill(i)`). */
  async restart(i: number): Promise<void> {
    if (this.servers[i]) return;
    await this.startNode(i);
  }

  /** The tail of every node's log (for failure messages). */
  logs(): string {
    return this.configs
      .map((c, i) => {
        const s = this.servers[i];
        return `--- ${c.name}${s ? '' : ' (down)'} ---\n${(s?.log() ?? '').slice(-1500)}`;
      })
      .join('\n');
  }

  /** GETs a monitoring endpoint of node i, e.g. `connz`, `jsz`, `routez`. */
  async monitor<T = Record<string, unknown>>(i: number, endpoint: string): Promise<T> {
    const res = await fetch(`${this.monitorUrls[i]}/${endpoint.replace(/^\//, '')}`);
    if (!res.ok) throw new Error(`GET ${endpoint} on ${this.configs[i]!.name}: HTTP ${res.status}`);
    return (await res.json()) as T;
  }

  /** Stops every running node and removes the cluster's dirs. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await Promise.allSettled([...this.servers, ...this.killed].map((s) => s?.stop()));
      this.servers.fill(undefined);
      rmSync(this.root, { recursive: true, force: true });
    })();
    return this.stopped;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
