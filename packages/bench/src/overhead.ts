// `pnpm bench:overhead`: what one request costs in CPU time, on each side, measured as CPU seconds
// per request (process.cpuUsage here, /proc/PID/stat for the child processes) rather than as a
// rate, so the figures hold even on a machine shared with other work. Four closed loops of single
// requests at the same concurrency, same nats-server:
//   raw        bare nc.request → an empty responder (what the broker and nats.js cost)
//   sdk-fake   the SDK's inferWire → a responder answering a canned InferReply (the SDK's own cost)
//   cluster    the SDK → a real worker process with one replica of the model (the whole path)
// and the worker's CPU per request beside the responder's, with the model's in-process cost per
// item at the replica's batch size (session.run alone) to split the worker's share into
// onnxruntime and everything else. Progress to stderr; stdout: a table and one JSON line.
// Env: OVERHEAD_MODEL (mlp), OVERHEAD_CONCURRENCY (64), OVERHEAD_DURATION_MS (4000), OVERHEAD_CPU_PROF=DIR,
// OVERHEAD_BATCHING (JSON batching options for the deployment; default: the profile's choice),
// OVERHEAD_SESSION_HOST (the worker's --session-host), FLOTILLA_SAMPLE_DIR (where the sample models are read or
// written; default .cache/sample-models: another dir may hold a stand-in of the same name).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as ort from 'onnxruntime-node';
import { silentLogger, connectBus, type NatsConnection } from '@flotilla/bus';
import { FlotillaClient, fromTypedArray, type DeployOptions, type WireTensors } from '@flotilla/client';
import { Head } from '@flotilla/head';
import { closedLoop, runLoad } from '@flotilla/loadgen';
import { NatsServer, findNatsServer } from '@flotilla/local';
import { PROTOCOL_VERSION, encode, subjects } from '@flotilla/protocol';
import { SAMPLE_MODELS, sampleModelPath } from '@flotilla/sample-models';
import { repoPath } from './deps.js';
import { processCpuS, readyLine, spawnPeer, stopPeer, untilLine, workerArgv, workerNodeArgs } from './peer-process.js';

const log = (s: string) => process.stderr.write(`${s}\n`);
const model = process.env.OVERHEAD_MODEL ?? 'mlp';
const concurrency = Number(process.env.OVERHEAD_CONCURRENCY ?? 64);
const durationMs = Number(process.env.OVERHEAD_DURATION_MS ?? 4000);
function selfCpuS(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

interface Side {
  requests: number;
  itemsPerSec: number;
  p50Ms: number;
  clientUsPerReq: number;
  serverUsPerReq: number;
}

/** Runs `load`, measuring this process's and `server`'s CPU per answered request. */
async function measure(serverPid: number, load: () => Promise<{ ok: number; itemsPerSec: number; p50Ms: number }>): Promise<Side> {
  const c0 = selfCpuS();
  const s0 = processCpuS(serverPid);
  const r = await load();
  const c1 = selfCpuS();
  const s1 = processCpuS(serverPid);
  const per = (s: number) => Math.round(((s * 1e6) / Math.max(1, r.ok)) * 10) / 10;
  return { requests: r.ok, itemsPerSec: r.itemsPerSec, p50Ms: r.p50Ms, clientUsPerReq: per(c1 - c0), serverUsPerReq: per(s1 - s0) };
}

const spawnNode = (args: string[]): ChildProcess =>
  spawnPeer(process.execPath, args, undefined, { ...process.env, FLOTILLA_LOG_LEVEL: 'warn' });

async function rawLoop(nc: NatsConnection, subject: string, body: Uint8Array) {
  const s = await closedLoop({ concurrency, durationMs }, async () => {
    await nc.request(subject, body, { timeout: 10_000 });
    return 1;
  });
  return { ok: s.ok, itemsPerSec: s.itemsPerSec, p50Ms: s.latencyMs.p50 };
}

/**
 * session.run alone, in this process, at `batch` items: CPU µs per item back to back, and CPU µs
 * per run when each run follows a 1 ms idle pause (as a replica's run at concurrency 1 does: on
 * this VM the caches have gone cold by then, and the same run costs several times more).
 */
async function inprocUsPerItem(path: string, inputs: WireTensors, batch: number): Promise<{ hot: number; afterPause: number }> {
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(inputs)) {
    const one = new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
    const data = new Float32Array(one.length * batch);
    for (let b = 0; b < batch; b++) data.set(one, b * one.length);
    feeds[name] = new ort.Tensor('float32', data, [batch, ...t.dims.slice(1)]);
  }
  for (let i = 0; i < 20; i++) await session.run(feeds);
  const c0 = selfCpuS();
  const end = performance.now() + Math.min(2000, durationMs);
  let runs = 0;
  while (performance.now() < end) {
    await session.run(feeds);
    runs++;
  }
  const us = ((selfCpuS() - c0) * 1e6) / (runs * batch);
  let pausedS = 0;
  let paused = 0;
  const pausedEnd = performance.now() + Math.min(1000, durationMs);
  while (performance.now() < pausedEnd) {
    await sleep(1);
    const p0 = selfCpuS();
    await session.run(feeds);
    pausedS += selfCpuS() - p0;
    paused++;
  }
  await session.release();
  return { hot: Math.round(us * 100) / 100, afterPause: Math.round(((pausedS * 1e6) / Math.max(1, paused)) * 10) / 10 };
}

async function main(): Promise<void> {
  if (!(model in SAMPLE_MODELS)) throw new Error(`OVERHEAD_MODEL: unknown sample model '${model}'`);
  const path = sampleModelPath(model as keyof typeof SAMPLE_MODELS, process.env.FLOTILLA_SAMPLE_DIR ?? repoPath('.cache/sample-models'));
  void findNatsServer(); // fails early, with its message, when nats-server is missing
  const nats = await NatsServer.start();
  const cluster = `ovh${Math.random().toString(36).slice(2, 8)}`;
  const head = await Head.start({ cluster, bus: { servers: nats.url }, logger: silentLogger() });
  const cacheDir = mkdtempSync(join(os.tmpdir(), 'flotilla-overhead-'));
  const children: ChildProcess[] = [];
  const client = new FlotillaClient({ servers: nats.url, cluster });
  try {
    const session = await ort.InferenceSession.create(path);
    const meta = session.inputMetadata as unknown as Array<{ name: string; shape: Array<number | string> }>;
    await session.release();
    const inputs: WireTensors = {};
    for (const m of meta) {
      // Dynamic dims as pnpm bench feeds them: 64 for a dim named H or W, else 1.
      const dims = m.shape.map((d, i) => (i === 0 ? 1 : typeof d === 'number' && d > 0 ? d : /^[hw]$/i.test(String(d)) ? 64 : 1));
      const data = new Float32Array(dims.reduce((a, b) => a * b, 1)).map(() => Math.random() * 2 - 1);
      inputs[m.name] = fromTypedArray('float32', dims, data);
    }
    const body = encode({ v: PROTOCOL_VERSION, inputs, timeoutMs: 30_000 });
    const nc = await connectBus({ servers: nats.url, name: 'overhead-raw' });

    log(`overhead: ${model}, concurrency ${concurrency}, ${durationMs} ms per loop, request ${body.byteLength} B`);
    // (1) raw: bare request → empty responder.
    const rawSubject = `ovh.raw.${cluster}`;
    const echo = spawnNode([repoPath('packages/bench/dist/responder.js'), nats.url, rawSubject, '64']);
    children.push(echo);
    await untilLine(echo, 'responder', readyLine);
    await rawLoop(nc, rawSubject, body); // warm-up
    const raw = await measure(echo.pid!, () => rawLoop(nc, rawSubject, body));
    await stopPeer(echo);
    log(`  raw: ${JSON.stringify(raw)}`);

    // (2) sdk-fake: the SDK against a responder answering a canned reply on the model's subject.
    const fakeModel = `${model}-fake`;
    const fake = spawnNode([repoPath('packages/bench/dist/responder.js'), nats.url, subjects(cluster).infer(fakeModel), 'infer-reply']);
    children.push(fake);
    await untilLine(fake, 'fake replica', readyLine);
    const sdkLoop = (m: string) => async () => {
      const s = await runLoad(client, m, inputs, { concurrency, durationMs });
      return { ok: s.ok, itemsPerSec: s.itemsPerSec, p50Ms: s.latencyMs.p50 };
    };
    await sdkLoop(fakeModel)();
    const sdkFake = await measure(fake.pid!, sdkLoop(fakeModel));
    await stopPeer(fake);
    log(`  sdk-fake: ${JSON.stringify(sdkFake)}`);

    // (3) the whole path: a worker process with one replica.
    // OVERHEAD_CPU_PROF=DIR: the worker writes a V8 CPU profile there (scripts/cpuprof-summary.mjs reads it).
    const worker = spawnNode(
      workerArgv({
        // As pnpm bench starts its worker (BENCH_WORKER_NODE_FLAGS replaces the flags), profiled by OVERHEAD_CPU_PROF.
        nodeArgs: workerNodeArgs({ ...process.env, BENCH_CPU_PROF: process.env.OVERHEAD_CPU_PROF }),
        nats: nats.url,
        cluster,
        id: 'ovh-w',
        cacheDir,
        // OVERHEAD_SESSION_HOST=thread|event-loop: where the replica's session runs (default: the worker's auto).
        extra: ['--threads', '1', ...(process.env.OVERHEAD_SESSION_HOST ? ['--session-host', process.env.OVERHEAD_SESSION_HOST] : [])],
      }),
    );
    children.push(worker);
    while (head.registry.running().length < 1) {
      if (worker.exitCode !== null) throw new Error(`worker exited with ${worker.exitCode}`);
      await sleep(50);
    }
    // OVERHEAD_BATCHING: batching options as JSON (e.g. '{"maxBatchSize":1}') instead of the profile's choice.
    const batchingOverride = process.env.OVERHEAD_BATCHING
      ? (JSON.parse(process.env.OVERHEAD_BATCHING) as DeployOptions['batching'])
      : undefined;
    const deployed = await client.deploy(path, model, { device: 'cpu', ...(batchingOverride ? { batching: batchingOverride } : {}) });
    await client.waitReady(model, 60_000);
    log(`  deployed ${model} (${deployed.spec.digest.slice(0, 12)})`);
    await sdkLoop(model)();
    const clusterSide = await measure(worker.pid!, sdkLoop(model));
    const st = await client.status();
    const replica = st.workers.flatMap((w) => w.replicas).find((r) => r.model === model);
    const batching = replica && 'batching' in replica ? replica.batching : undefined;
    const hist = replica && 'batchHistogram' in replica ? replica.batchHistogram : {};
    let batches = 0;
    let items = 0;
    for (const [k, n] of Object.entries(hist ?? {})) {
      const b = Number(k.replace('>', ''));
      batches += n;
      items += n * b;
    }
    const meanBatch = batches ? Math.max(1, Math.round(items / batches)) : 1;
    log(`  cluster: ${JSON.stringify(clusterSide)} (mean batch ≈ ${meanBatch}, batching ${JSON.stringify(batching)})`);
    const ortCost = await inprocUsPerItem(path, inputs, meanBatch);
    const ortUs = ortCost.hot;

    const rows: Array<[string, string, string, string, string]> = [
      ['loop', 'items/s', 'p50 ms', 'client µs/req', 'server µs/req'],
      ['raw (nc.request → echo)', String(raw.itemsPerSec), String(raw.p50Ms), String(raw.clientUsPerReq), String(raw.serverUsPerReq)],
      [
        'SDK → canned reply',
        String(sdkFake.itemsPerSec),
        String(sdkFake.p50Ms),
        String(sdkFake.clientUsPerReq),
        String(sdkFake.serverUsPerReq),
      ],
      [
        `SDK → replica (${model})`,
        String(clusterSide.itemsPerSec),
        String(clusterSide.p50Ms),
        String(clusterSide.clientUsPerReq),
        String(clusterSide.serverUsPerReq),
      ],
    ];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}\n`);
    const workerOther = Math.round((clusterSide.serverUsPerReq - ortUs) * 10) / 10;
    process.stdout.write(
      `worker per request: ${clusterSide.serverUsPerReq} µs = onnxruntime ${ortUs} µs/item at batch ${meanBatch} (in-process) + ${workerOther} µs of everything else (responder: ${raw.serverUsPerReq} µs)\n` +
        `onnxruntime at batch ${meanBatch} after a 1 ms idle pause: ${ortCost.afterPause} µs per run (back to back: ${Math.round(ortUs * meanBatch * 100) / 100}); at low concurrency the worker's runs are the paused kind\n` +
        `SDK per request: ${sdkFake.clientUsPerReq} µs (bare nc.request: ${raw.clientUsPerReq} µs)\n`,
    );
    process.stdout.write(
      `${JSON.stringify({ date: new Date().toISOString(), model, concurrency, durationMs, raw, sdkFake, cluster: clusterSide, meanBatch, ortUsPerItem: ortUs, ortUsPerRunAfterPause: ortCost.afterPause, workerOtherUs: workerOther })}\n`,
    );
    await client.undeploy(model).catch(() => undefined);
  } finally {
    await client.close().catch(() => undefined);
    for (const c of children) await stopPeer(c);
    await head.stop();
    await nats.stop();
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:overhead: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
