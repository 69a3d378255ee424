// `pnpm bench:hosts`: what hosting sessions on threads buys a worker that serves several models.
// One worker process (`--threads 1`, unpinned: every core of the machine), two replicas on it
// (convnet, where batching pays, and conv-classifier, where it does not), both under load at once
// from a load-generator process each (closed loop, BENCH_HOSTS_CONCURRENCY callers, default 64).
// Rounds alternate the worker's `--session-host` (event-loop, thread, event-loop, thread, ...;
// BENCH_HOSTS_ROUNDS pairs, default 2) on the same nats-server, head and stored profiles, so the
// hour's speed falls on both alike. Reports items/s and p99 per model and per round, and the
// medians per host. BENCH_DURATION_MS per round (default 5000).
// Last stdout line: one JSON object.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '@flotilla/bus';
import { FlotillaClient } from '@flotilla/client';
import { Head } from '@flotilla/head';
import { NatsServer } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { repoPath } from './deps.js';
import type { LoadChildArgs, LoadChildResult } from './load-child.js';
import { exitJson, keepTail, stopPeer, workerArgv } from './peer-process.js';
import { histogramTotals, round } from './stats.js';

const HOSTS = ['event-loop', 'thread'] as const;
type Host = (typeof HOSTS)[number];
const MODELS = [
  { name: 'convnet', dims: [1, 3, 64, 64] },
  { name: 'conv-classifier', dims: [1, 3, 64, 64] },
] as const;
const ROUNDS = Number(process.env.BENCH_HOSTS_ROUNDS ?? 2);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5000);
const WARMUP_MS = 1000;
const CONCURRENCY = Number(process.env.BENCH_HOSTS_CONCURRENCY ?? 64);
const log = (s: string) => process.stderr.write(`${s}\n`);
const out = (s = '') => process.stdout.write(`${s}\n`);

interface ModelRun {
  itemsPerSec: number;
  p99Ms: number;
  meanBatch: number | null;
  errors: number;
}
interface Round {
  host: Host;
  models: Record<string, ModelRun>;
  totalItemsPerSec: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const r1 = (x: number) => round(x, 1);

async function runRound(host: Host, nats: NatsServer, cluster: string, cacheDir: string, c: FlotillaClient, head: Head): Promise<Round> {
  const worker = spawn(
    process.execPath,
    workerArgv({
      nats: nats.url,
      cluster,
      id: 'hosts-w',
      cacheDir,
      extra: ['--threads', '1', '--heartbeat-ms', '250', '--session-host', host],
    }),
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FLOTILLA_LOG_LEVEL: process.env.FLOTILLA_LOG_LEVEL ?? 'warn' } },
  );
  const tail = keepTail(worker.stderr, 4000, '[worker] ');
  try {
    const deadline = Date.now() + 60_000;
    while (!head.registry.running().some((w) => w.hb.workerId === 'hosts-w')) {
      if (worker.exitCode !== null) throw new Error(`worker exited (${worker.exitCode}):\n${tail()}`);
      if (Date.now() > deadline) throw new Error('the worker did not register within 60 s');
      await sleep(50);
    }
    for (const m of MODELS) await c.deploy(sampleModelPath(m.name), m.name, { device: 'cpu', wait: true, waitTimeoutMs: 120_000 });
    const status = await c.status();
    const replicas = status.workers.find((w) => w.id === 'hosts-w')?.replicas ?? [];
    const hosts = replicas.map((r) => ('sessionHost' in r ? r.sessionHost : undefined));
    if (hosts.some((h) => h !== host)) throw new Error(`replicas run on ${hosts.join(', ')}, not ${host}`);
    const children: ChildProcess[] = MODELS.map((m) => {
      const args: LoadChildArgs = {
        kind: 'flotilla',
        natsUrl: nats.url,
        cluster,
        model: m.name,
        inputs: [{ name: 'x', dims: [...m.dims] }],
        concurrency: CONCURRENCY,
        durationMs: DURATION_MS,
        warmupMs: WARMUP_MS,
      };
      return spawn(process.execPath, [repoPath('packages/bench/dist/load-child.js'), JSON.stringify(args)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    });
    const results = await Promise.all(
      children.map((ch, i) => exitJson<LoadChildResult>(ch, `load on ${MODELS[i]!.name}`, DURATION_MS + 120_000)),
    );
    const after = await c.status();
    const models: Record<string, ModelRun> = {};
    results.forEach((r, i) => {
      const name = MODELS[i]!.name;
      const rep = after.workers.find((w) => w.id === 'hosts-w')?.replicas.find((x) => x.model === name);
      // Both models batch at most 32 items here, under the histogram's open-ended bucket.
      const { batches, items } = histogramTotals(rep && 'batchHistogram' in rep ? (rep.batchHistogram ?? {}) : {});
      models[name] = {
        itemsPerSec: r1(r.run.itemsPerSec),
        p99Ms: r1(r.run.latencyMs.p99),
        meanBatch: batches ? r1(items / batches) : null,
        errors: Object.values(r.run.errored).reduce((a, b) => a + b, 0) + r.run.lost,
      };
    });
    for (const m of MODELS) await c.undeploy(m.name).catch(() => undefined);
    return { host, models, totalItemsPerSec: r1(Object.values(models).reduce((a, m) => a + m.itemsPerSec, 0)) };
  } finally {
    await stopPeer(worker);
    const deadline = Date.now() + 15_000;
    while (head.registry.running().some((w) => w.hb.workerId === 'hosts-w') && Date.now() < deadline) await sleep(100);
  }
}

async function main(): Promise<void> {
  const nats = await NatsServer.start();
  const cluster = `hosts${Math.random().toString(36).slice(2, 8)}`;
  const head = await Head.start({ cluster, bus: { servers: nats.url }, logger: silentLogger() });
  const cacheDir = mkdtempSync(join(os.tmpdir(), 'flotilla-hosts-'));
  const c = new FlotillaClient({ servers: nats.url, cluster });
  const rounds: Round[] = [];
  try {
    // A first round, not counted, profiles both models (stored: every counted round loads them measured alike).
    log(`bench:hosts: ${os.cpus().length} cores, ${CONCURRENCY} callers per model, ${DURATION_MS} ms per round, ${ROUNDS} pair(s)`);
    await runRound('event-loop', nats, cluster, cacheDir, c, head);
    for (let i = 0; i < ROUNDS; i++) {
      for (const host of HOSTS) {
        const r = await runRound(host, nats, cluster, cacheDir, c, head);
        log(
          `  ${host.padEnd(10)} ${MODELS.map((m) => `${m.name} ${r.models[m.name]!.itemsPerSec} items/s (p99 ${r.models[m.name]!.p99Ms} ms, batch ${r.models[m.name]!.meanBatch})`).join(', ')}; together ${r.totalItemsPerSec}`,
        );
        rounds.push(r);
      }
    }
  } finally {
    await c.close();
    await head.stop();
    await nats.stop();
    rmSync(cacheDir, { recursive: true, force: true });
  }
  const summary = Object.fromEntries(
    HOSTS.map((h) => {
      const rs = rounds.filter((r) => r.host === h);
      return [
        h,
        {
          totalItemsPerSec: r1(median(rs.map((r) => r.totalItemsPerSec))),
          ...Object.fromEntries(
            MODELS.map((m) => [
              m.name,
              {
                itemsPerSec: r1(median(rs.map((r) => r.models[m.name]!.itemsPerSec))),
                p99Ms: r1(median(rs.map((r) => r.models[m.name]!.p99Ms))),
              },
            ]),
          ),
        },
      ];
    }),
  ) as Record<Host, { totalItemsPerSec: number } & Record<string, { itemsPerSec: number; p99Ms: number }>>;
  out('== two models on one worker, both under load (medians of the rounds)');
  for (const h of HOSTS) {
    const s = summary[h];
    out(
      `${h.padEnd(10)} together ${s.totalItemsPerSec} items/s; ${MODELS.map((m) => {
        const x = s[m.name] as { itemsPerSec: number; p99Ms: number };
        return `${m.name} ${x.itemsPerSec} (p99 ${x.p99Ms} ms)`;
      }).join(', ')}`,
    );
  }
  const gain = summary.thread.totalItemsPerSec / summary['event-loop'].totalItemsPerSec;
  out(`thread ÷ event-loop, together: ${gain.toFixed(2)}×`);
  out(
    JSON.stringify({
      date: new Date().toISOString(),
      cores: os.cpus().length,
      concurrency: CONCURRENCY,
      durationMs: DURATION_MS,
      rounds,
      summary,
      gain: +gain.toFixed(3),
    }),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log(`bench:hosts: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
