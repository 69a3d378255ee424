// Commands that run cluster processes: `head`, `worker`, and `up` (a local cluster: its own
// nats-server, a head in this process and N worker processes). Each command imports the packages
// it runs when it runs (main.ts says why): a worker process does not load the head's code, nor a
// head onnxruntime.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import type { Head } from '@flotilla/head';
import type { InventoryOverride } from '@flotilla/worker';
import type { NatsCluster, NatsServer } from '@flotilla/local';
import { BadRequestError, authConfigCluster, type SessionHostChoice } from '@flotilla/protocol';
import type { HealthServer } from '@flotilla/bus';
import { busOptions, withConnectionOptions } from './connection-options.js';
import { parseFraction, parseSessionHost, parseSize, reportError } from './format.js';
import { optionParser } from './option-parser.js';
import { untilSignal } from './signals.js';

function readInventory(path?: string): InventoryOverride | undefined {
  if (!path) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as InventoryOverride;
  } catch (err) {
    throw new BadRequestError(`cannot read inventory override ${path}: ${(err as Error).message}`);
  }
}

/** `up --auth DIR`: the server config and the head's and workers' seeds from `flotilla auth init`. */
function readAuthDir(dir: string, cluster: string): { dir: string; config: string } {
  const abs = resolve(dir);
  const files = ['nats.conf', 'head.nk', 'worker.nk'].map((f) => join(abs, f));
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length)
    throw new BadRequestError(`--auth ${dir}: ${missing.join(', ')} missing (run flotilla auth init --out ${dir} --cluster ${cluster})`);
  const config = readFileSync(files[0]!, 'utf8');
  const made = authConfigCluster(config);
  if (made !== undefined && made !== cluster) {
    throw new BadRequestError(
      `--auth ${dir}: its permissions are for cluster '${made}', not '${cluster}' (pass --cluster ${made}, or run flotilla auth init --cluster ${cluster})`,
    );
  }
  return { dir: abs, config };
}

function healthFlag(cmd: Command): Command {
  return cmd.option(
    '--health-port <port>',
    'serve GET /livez, /readyz and /metrics (Prometheus) on this port (env FLOTILLA_HEALTH_PORT)',
    (v) => Number(v),
  );
}

async function maybeHealth(
  o: { healthPort?: number },
  notReady: () => string | null,
  metrics: () => Promise<string>,
): Promise<HealthServer | undefined> {
  const port = o.healthPort ?? (process.env.FLOTILLA_HEALTH_PORT ? Number(process.env.FLOTILLA_HEALTH_PORT) : undefined);
  if (port === undefined) return undefined;
  const { startHealthServer } = await import('@flotilla/bus');
  return startHealthServer({ port, notReady, metrics });
}

function workerFlags(cmd: Command): Command {
  return cmd
    .option('--memory-budget <size>', 'memory budget of each device, e.g. 512MiB, 2GiB (default: capacity minus headroom)')
    .option('--headroom <fraction>', 'fraction of each device kept free', (v) => Number(v))
    .option(
      '--gpu-share <fraction>',
      "share of each GPU's VRAM this worker uses, where several workers share a host's GPUs: 0.25, 1/4 or 25% (default 1)",
      optionParser((v) => parseFraction(v)),
    )
    .option('--threads <n>', 'onnxruntime intra-op threads per session (0: onnxruntime decides)', (v) => Number(v))
    .option('--cache-dir <dir>', 'local model cache (env FLOTILLA_CACHE_DIR)')
    .option('--inventory <file>', 'JSON overriding parts of the measured inventory, e.g. {"gpus":[...]}')
    .option('--gpu-providers <list>', 'execution providers tried on GPUs, comma separated (default cuda)')
    .option('--ort-spinning', "let onnxruntime's CPU thread pools spin between parallel sections (off: they share the cores with NATS)")
    .option(
      '--session-host <host>',
      'where sessions run: thread, event-loop or auto (default: a thread for runs of 1 ms or more on a GPU or with 4+ usable cores)',
      optionParser((v) => parseSessionHost(v)),
    )
    .option('--heartbeat-ms <ms>', 'heartbeat period', (v) => Number(v))
    .option('--max-replicas <n>', 'most replicas this worker hosts (default 64)', (v) => Number(v))
    .option(
      '--max-queued-bytes <size>',
      'most bytes of accepted, unanswered requests held across its replicas, e.g. 256MiB; past it a request is answered OVERLOADED (default: 1/16 of memory, at most 1GiB)',
    )
    .option('--store-replicas <n>', 'JetStream replicas of the blob and profile buckets (env FLOTILLA_STORE_REPLICAS, default 1)', (v) =>
      Number(v),
    )
    .option('--eviction <policy>', 'eviction policy when a model does not fit: cost, fifo, lru or lfu (default cost)');
}

/** The worker flags as commander parsed them (the numeric ones converted by their option parsers). */
interface WorkerFlags {
  memoryBudget?: string;
  headroom?: number;
  gpuShare?: number;
  threads?: number;
  cacheDir?: string;
  inventory?: string;
  gpuProviders?: string;
  ortSpinning?: boolean;
  sessionHost?: SessionHostChoice;
  heartbeatMs?: number;
  eviction?: string;
  maxReplicas?: number;
  maxQueuedBytes?: string;
  storeReplicas?: number;
}

function workerOptions(o: WorkerFlags) {
  return {
    memoryBudgetBytes: o.memoryBudget ? parseSize(o.memoryBudget) : undefined,
    headroom: o.headroom,
    gpuShare: o.gpuShare,
    threads: o.threads,
    cacheDir: o.cacheDir,
    inventory: readInventory(o.inventory),
    gpuProviders: o.gpuProviders ? String(o.gpuProviders).split(',') : undefined,
    ortSpinning: o.ortSpinning,
    sessionHost: o.sessionHost,
    heartbeatMs: o.heartbeatMs,
    eviction: o.eviction,
    maxReplicas: o.maxReplicas,
    maxQueuedBytes: o.maxQueuedBytes ? parseSize(o.maxQueuedBytes) : undefined,
    storeReplicas: o.storeReplicas,
  };
}

const PLACEMENT_HELP =
  'where the head places a replica: cost-aware (a worker with room first, else the cheapest eviction; default) or first-fit (the first worker where it fits, evicting there even when another has room)';

export function clusterCommands(program: Command): void {
  withConnectionOptions(
    healthFlag(
      program
        .command('head')
        .description('run the head (control plane)')
        .option(
          '--store-replicas <n>',
          "JetStream replicas of Flotilla's state and model buckets (3 on a 3-node NATS; env FLOTILLA_STORE_REPLICAS)",
          (v) => Number(v),
        )
        .option('--worker-timeout-ms <ms>', 'a worker silent this long is dead (default 5000)', (v) => Number(v))
        .option('--id <id>', 'head id, shown in status and the leadership lease (default <hostname>-<pid>)')
        .option(
          '--lease-ttl-ms <ms>',
          'several heads: one leads, the others take over within about this long after it is lost (default 10000)',
          (v) => Number(v),
        )
        .option('--placement <rule>', PLACEMENT_HELP),
    ),
  ).action(async (o) => {
    try {
      const { cluster, ...bus } = busOptions(o);
      const storeReplicas =
        o.storeReplicas ?? (process.env.FLOTILLA_STORE_REPLICAS ? Number(process.env.FLOTILLA_STORE_REPLICAS) : undefined);
      const { Head, headMetrics } = await import('@flotilla/head');
      const head = await Head.start({
        cluster,
        bus,
        storeReplicas,
        workerTimeoutMs: o.workerTimeoutMs,
        id: o.id,
        leaseTtlMs: o.leaseTtlMs,
        placement: o.placement,
      });
      const hm = headMetrics(
        () => head.status(),
        () => head.lastTickMs,
      );
      const health = await maybeHealth(
        o,
        () => head.notReady(),
        () => hm.text(),
      );
      const sig = await untilSignal();
      head.logger.info({ signal: sig }, 'stopping');
      await head.stop();
      await health?.close();
    } catch (err) {
      process.exitCode = reportError(err, false);
    }
  });

  withConnectionOptions(
    healthFlag(
      workerFlags(
        program.command('worker').description('run a worker on this host').option('--id <id>', 'worker id (default <hostname>-<pid>)'),
      ),
    ),
  ).action(async (o) => {
    try {
      const { cluster, ...bus } = busOptions(o);
      const { Worker } = await import('@flotilla/worker');
      const worker = await Worker.start({ ...workerOptions(o), id: o.id, cluster, bus });
      const health = await maybeHealth(
        o,
        () => worker.notReady(),
        () => worker.metrics.text(),
      );
      const sig = await untilSignal();
      worker.logger.info({ signal: sig }, 'draining');
      await worker.stop();
      await health?.close();
    } catch (err) {
      process.exitCode = reportError(err, false);
    }
  });

  workerFlags(
    program
      .command('up')
      .description('start a local cluster: its own nats-server, a head and worker processes')
      .option('--port <port>', 'port of the embedded nats-server', (v) => Number(v), 4222)
      .option('--host <host>', 'interface of the embedded nats-server', '127.0.0.1')
      .option('--nats <url>', 'use this NATS instead of starting one')
      .option(
        '--nats-cluster <n>',
        'start an N-node NATS cluster (routes on loopback, JetStream replicated N ways) instead of one server',
        (v) => Number(v),
      )
      .option('--cluster <name>', 'cluster name (env FLOTILLA_CLUSTER, default default)')
      .option('--workers <n>', 'worker processes', (v) => Number(v), 1)
      .option('--placement <rule>', PLACEMENT_HELP)
      .option('--max-payload <size>', "embedded nats-server's max_payload (default 1MiB)")
      .option('--store-dir <dir>', "embedded nats-server's JetStream directory (default: a temp dir)")
      .option(
        '--auth <dir>',
        'role permissions from `flotilla auth init --out DIR`: the embedded nats-server enforces DIR/nats.conf, the head and workers connect with DIR/head.nk and DIR/worker.nk',
      ),
  ).action(async (o) => {
    process.env.FLOTILLA_LOG_LEVEL ??= 'warn';
    const children: ChildProcess[] = [];
    let nats: NatsServer | undefined;
    let natsCluster: NatsCluster | undefined;
    let head: Head | undefined;
    try {
      const { cluster } = busOptions({ cluster: o.cluster });
      const [{ Head }, { WORKER_NODE_FLAGS }, { NatsCluster, NatsServer, killOnExit }] = await Promise.all([
        import('@flotilla/head'),
        import('@flotilla/worker'),
        import('@flotilla/local'),
      ]);
      const auth = o.auth ? readAuthDir(String(o.auth), cluster) : undefined;
      if (o.natsCluster && o.natsCluster > 1) {
        natsCluster = await NatsCluster.start({ size: o.natsCluster, extraConfig: auth?.config });
      } else if (!o.nats) {
        nats = await NatsServer.start({
          port: o.port,
          host: o.host,
          maxPayload: o.maxPayload ? parseSize(o.maxPayload) : undefined,
          dir: o.storeDir,
          extraConfig: auth?.config,
        });
      }
      const url: string = natsCluster ? natsCluster.urls.join(',') : (o.nats ?? nats!.url);
      if (natsCluster) o.storeReplicas ??= Math.min(3, o.natsCluster);
      const seed = (role: string) => (auth ? join(auth.dir, `${role}.nk`) : undefined);
      head = await Head.start({
        cluster,
        bus: { servers: url.split(','), nkeySeedFile: seed('head') },
        storeReplicas: o.storeReplicas,
        placement: o.placement,
      });
      const passthrough = [
        'memoryBudget',
        'headroom',
        'gpuShare',
        'threads',
        'cacheDir',
        'inventory',
        'gpuProviders',
        'ortSpinning',
        'sessionHost',
        'heartbeatMs',
        'eviction',
        'maxReplicas',
        'maxQueuedBytes',
        'storeReplicas',
      ]
        .filter((k) => o[k] !== undefined && o[k] !== false)
        .flatMap((k) => {
          const flag = `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
          return o[k] === true ? [flag] : [flag, String(o[k])];
        });
      for (let i = 0; i < o.workers; i++) {
        const nkey = auth ? ['--nkey', seed('worker')!] : [];
        const child = spawn(
          process.execPath,
          [
            ...WORKER_NODE_FLAGS,
            process.argv[1]!,
            'worker',
            '--nats',
            url,
            '--cluster',
            cluster,
            '--id',
            `worker-${i}`,
            ...nkey,
            ...passthrough,
          ],
          {
            stdio: ['ignore', 'inherit', 'inherit'],
            env: process.env,
          },
        );
        killOnExit(child); // an `up` that dies leaves no worker behind
        children.push(child);
      }
      const deadline = Date.now() + 60_000;
      while (head.registry.running().length < o.workers) {
        const dead = children.find((c) => c.exitCode !== null);
        if (dead) throw new Error(`a worker process exited with code ${dead.exitCode} during start`);
        if (Date.now() > deadline) throw new Error('workers did not register within 60 s');
        await new Promise((r) => setTimeout(r, 50));
      }
      const pids = children.map((c) => c.pid).join(',');
      if (auth) {
        process.stdout.write(
          `flotilla up: role permissions from ${auth.dir}/nats.conf; connect with --nkey ${seed('operator')} (deploy, scale, jobs) or --nkey ${seed('caller')} (infer, read), e.g. flotilla status --nats ${url} --cluster ${cluster} --nkey ${seed('caller')}\n`,
        );
      }
      process.stdout.write(`flotilla up: ready nats=${url} cluster=${cluster} workers=${o.workers} pids=${pids}\n`);
      await untilSignal();
      process.stdout.write('flotilla up: stopping\n');
    } catch (err) {
      process.exitCode = reportError(err, false);
    } finally {
      await Promise.allSettled(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              c.once('exit', () => resolve());
              c.kill('SIGTERM');
              setTimeout(() => c.kill('SIGKILL'), 15_000).unref();
            }),
        ),
      );
      await head?.stop();
      await nats?.stop();
      await natsCluster?.stop();
    }
  });
}
