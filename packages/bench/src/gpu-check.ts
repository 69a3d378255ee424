// The checks of `scripts/gpu-check` that need Flotilla itself: the execution provider loads in
// onnxruntime-node, the worker measures the GPU, a `gpu` deployment runs on it with outputs within
// 1e-3 of the CPU's, and VRAM is accounted and evicted by budget. Every step is recorded (never
// thrown out of); one JSON document goes to --out and the verdict decides the exit code.
//   node packages/bench/dist/gpu-check.js [--provider cuda] [--fake-gpu] [--out FILE] [--cluster-log FILE] [--models a,b]
// --cluster-log: the cluster's own log (head and workers, info level: loads, profiles, evictions).
// --provider cpu --fake-gpu runs the same GPU code paths on a machine without one (a GPU of the
// inventory override served by the CPU provider): what CI runs.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs, promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { createLogger, silentLogger } from '@flotilla/bus';
import type { FlotillaClient, Tensor } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import type { GpuInfo, Heartbeat, LoadedReplicaState, SessionHost, WorkerStatus } from '@flotilla/protocol';
import { decode, fromTypedArray, shapeKey } from '@flotilla/protocol';
import { SAMPLE_MODELS, randomFloats, sampleModelPath, type SampleModel } from '@flotilla/sample-models';
import { Worker, ortLibraryDir, providerUnavailable, supportedBackends } from '@flotilla/worker';
import { runLoad, type LoadSummary } from '@flotilla/loadgen';
import { repoPath } from './deps.js';
import { loadUntil } from './load-until.js';
import { histogramDiff } from './stats.js';
import { compareOutputs, evictionBudget, verdict, worstDiff, type OutputDiff, type StepResult } from './gpu-compare.js';

const { values: args } = parseArgs({
  options: {
    provider: { type: 'string', default: 'cuda' },
    'fake-gpu': { type: 'boolean', default: false },
    out: { type: 'string' },
    'cluster-log': { type: 'string' },
    models: { type: 'string', default: 'mlp,wide-mlp,convnet,conv-classifier,tiny-encoder' },
  },
});
const provider = args.provider!;
const fakeGpu: GpuInfo[] | undefined = args['fake-gpu']
  ? [{ index: 0, vendor: 'NVIDIA', model: 'stand-in GPU (CPU provider)', vramTotalBytes: 8 * 2 ** 30, vramFreeBytes: 8 * 2 ** 30 }]
  : undefined;
const models = args.models!.split(',').filter(Boolean) as SampleModel[];
for (const m of models) if (!(m in SAMPLE_MODELS)) throw new Error(`--models: unknown sample model '${m}'`);
const log = (s: string) => process.stderr.write(`${s}\n`);
const clusterLogger = args['cluster-log'] ? createLogger('gpu-check', 'info', args['cluster-log']) : silentLogger();
const MiB = 2 ** 20;
const modelPath = (m: SampleModel) => sampleModelPath(m, process.env.FLOTILLA_SAMPLE_DIR ? undefined : repoPath('.cache/sample-models'));

const steps: StepResult[] = [];
const started = Date.now();
/** The document so far (written after every step: a run stopped by its timeout still leaves what it found). */
function document() {
  const v = verdict(steps);
  return {
    provider,
    fakeGpu: Boolean(fakeGpu),
    node: process.version,
    when: new Date().toISOString(),
    seconds: Math.round((Date.now() - started) / 100) / 10,
    steps,
    verdict: v.line,
    driver: (() => {
      try {
        return readFileSync('/proc/driver/nvidia/version', 'utf8').trim();
      } catch {
        return null;
      }
    })(),
  };
}
const save = () => {
  if (args.out) writeFileSync(args.out, JSON.stringify(document(), null, 2));
};

async function step<T>(name: string, f: () => Promise<T>): Promise<T | undefined> {
  const t0 = performance.now();
  log(`gpu-check: ${name} ...`);
  try {
    const detail = await f();
    const failed = (detail as { failed?: string } | undefined)?.failed;
    steps.push({ step: name, ok: !failed, ms: Math.round(performance.now() - t0), detail, ...(failed ? { error: failed } : {}) });
    log(`gpu-check: ${name}: ${failed ? `FAILED: ${failed}` : 'ok'} ${JSON.stringify(detail)}`);
    save();
    return detail;
  } catch (err) {
    const error = (err as Error).stack ?? String(err);
    steps.push({ step: name, ok: false, ms: Math.round(performance.now() - t0), error });
    log(`gpu-check: ${name}: FAILED: ${error}`);
    save();
    return undefined;
  }
}

// ---------- inputs shaped from a model's metadata ----------

/** Symbolic dims of the sample models that are not the batch axis. */
const DIM_SIZES: Record<string, number> = { H: 64, W: 64 };
type Feeds = Record<string, Tensor>;

/** Deterministic inputs for `session`-like metadata at `batch` (ids < 64 for integer inputs; masks of ones). */
function inputsFor(meta: ReadonlyArray<ort.InferenceSession.ValueMetadata>, batch: number, seed: number, sizes = DIM_SIZES): Feeds {
  const feeds: Feeds = {};
  for (const m of meta) {
    if (!m.isTensor) throw new Error(`input '${m.name}' is not a tensor`);
    const dims = m.shape.map((d, i) => (i === 0 ? batch : typeof d === 'number' && d >= 0 ? d : (sizes[String(d)] ?? 16)));
    const n = dims.reduce((a, b) => a * b, 1);
    if (m.type === 'float32') feeds[m.name] = { dtype: 'float32', dims, data: randomFloats(n, seed++) };
    else if (m.type === 'int64') {
      const r = randomFloats(n, seed++);
      const data = BigInt64Array.from(r, (x) => (/mask/i.test(m.name) ? 1n : BigInt(Math.floor(((x + 1) / 2) * 63.99))));
      feeds[m.name] = { dtype: 'int64', dims, data };
    } else throw new Error(`input '${m.name}' is ${m.type}: the check feeds float32 and int64`);
  }
  return feeds;
}

function ortFeeds(feeds: Feeds): Record<string, ort.Tensor> {
  return Object.fromEntries(
    Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims as number[])]),
  );
}

async function session(path: string, ep: 'cpu' | string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(path, { executionProviders: [ep === 'cpu' ? 'cpu' : ({ name: ep, deviceId: 0 } as never)] });
}

async function cpuOutputs(path: string, feeds: Feeds): Promise<Record<string, ArrayLike<number | bigint>>> {
  const s = await session(path, 'cpu');
  try {
    const out = await s.run(ortFeeds(feeds));
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as ArrayLike<number>]));
  } finally {
    await s.release();
  }
}

function diffAll(ref: Record<string, ArrayLike<number | bigint>>, got: Record<string, { data: unknown }>): Record<string, OutputDiff> {
  return Object.fromEntries(
    Object.entries(ref).map(([k, r]) => [k, got[k] ? compareOutputs(r, got[k].data as ArrayLike<number>) : compareOutputs(r, [])]),
  );
}

const summary = (d: OutputDiff & { output?: string }) => ({
  ok: d.ok,
  output: d.output,
  maxAbs: +d.maxAbs.toExponential(3),
  scale: +d.scale.toPrecision(4),
  ...(d.why ? { why: d.why } : {}),
});

// ---------- the cluster side ----------

/** VRAM in use on GPU 0 by nvidia-smi's reading (every process), MiB; null without nvidia-smi. */
async function nvidiaSmiUsedMiB(): Promise<number | null> {
  try {
    const { stdout } = await promisify(execFile)('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', '0'], {
      timeout: 5000,
    });
    const n = Number(stdout.trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

async function readyReplica(c: FlotillaClient, model: string, timeoutMs = 60_000): Promise<{ r: LoadedReplicaState; w: WorkerStatus }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await c.status();
    for (const w of st.workers)
      for (const r of w.replicas) if (r.model === model && r.state === 'ready') return { r: r as LoadedReplicaState, w };
    if (Date.now() > deadline) throw new Error(`no ready replica of '${model}' within ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

function replicaFacts(r: LoadedReplicaState, w: WorkerStatus) {
  const dev = w.devices.find((d) => d.id === r.device);
  return {
    device: r.device,
    executionProvider: r.executionProvider,
    // The event loop, or a thread of its own (`--session-host`; auto: for runs of 1 ms or more).
    sessionHost: r.sessionHost ?? 'event-loop',
    chargedMiB: +(r.bytes / MiB).toFixed(1),
    batching: r.batching,
    profile: r.profile
      ? {
          source: r.profile.source,
          deviceClass: r.profile.deviceClass,
          replicaMiB: +(r.profile.replicaBytes / MiB).toFixed(1),
          itemsPerSec: r.profile.itemsPerSec,
          tookMs: r.profile.tookMs,
          reason: r.profile.reason,
        }
      : null,
    deviceUsedMiB: dev ? +(dev.usedBytes / MiB).toFixed(1) : null,
    deviceBudgetMiB: dev ? +(dev.budgetBytes / MiB).toFixed(1) : null,
  };
}

/** Deploys `model` as `name` on the GPU (no CPU fallback), infers once per input shape, compares with the CPU. */
async function deployAndCompare(
  c: FlotillaClient,
  model: SampleModel,
  name: string,
  shapes: Array<Record<string, number>>,
  sessionHost?: SessionHost,
) {
  const path = modelPath(model);
  const t0 = performance.now();
  await c.deploy(path, name, { device: 'gpu', allowFallback: false, waitTimeoutMs: 90_000, ...(sessionHost ? { sessionHost } : {}) });
  const deployMs = Math.round(performance.now() - t0);
  const { r, w } = await readyReplica(c, name);
  const probe = await session(path, 'cpu');
  const meta = probe.inputMetadata;
  await probe.release();
  const compared = [];
  for (const [i, sizes] of shapes.entries()) {
    const feeds = inputsFor(meta, 1, 100 + i, sizes);
    const ref = await cpuOutputs(path, feeds);
    const got = await c.infer(name, feeds, { timeoutMs: 60_000 });
    compared.push({ dims: Object.values(feeds).map((t) => t.dims.join('x')), ...summary(worstDiff(diffAll(ref, got))) });
  }
  const facts = replicaFacts(r, w);
  const wrong = [
    !r.device.startsWith('gpu:') ? `replica on ${r.device}, not a GPU` : '',
    r.executionProvider !== provider ? `replica runs ${r.executionProvider}, not ${provider}` : '',
    sessionHost && facts.sessionHost !== sessionHost ? `session on the ${facts.sessionHost}, not ${sessionHost}` : '',
    ...compared.filter((x) => !x.ok).map((x) => `outputs at ${x.dims.join(',')}: ${x.why}`),
  ].filter(Boolean);
  return { model, deployMs, ...facts, compared, ...(wrong.length ? { failed: wrong.join('; ') } : {}) };
}

/** A load run on `name` and the replica's batch histogram over it (its heartbeat a moment later). */
async function withBatches(c: FlotillaClient, name: string, run: () => Promise<LoadSummary>) {
  const before = (await readyReplica(c, name)).r.batchHistogram ?? {};
  const load = await run();
  await new Promise((r) => setTimeout(r, 600)); // a heartbeat or two, so status has the batches
  const batches = histogramDiff((await readyReplica(c, name)).r.batchHistogram ?? {}, before);
  return { load, itemsPerSec: Math.round(load.itemsPerSec), batches };
}

/** Deploys conv-classifier as 'g-shapes' on the GPU and profiles a new shape (48×48) under traffic. */
async function shapeProfileWhileServing(c: FlotillaClient) {
  const name = 'g-shapes';
  const path = modelPath('conv-classifier');
  await c.deploy(path, name, { device: 'gpu', allowFallback: false, waitTimeoutMs: 90_000 });
  const probe = await session(path, 'cpu');
  const feeds = inputsFor(probe.inputMetadata, 1, 7, { H: 48, W: 48 });
  await probe.release();
  // The replica also lists the shapes stored for this model and device class (64×64 from the step before).
  const key = shapeKey(Object.fromEntries(Object.entries(feeds).map(([n, t]) => [n, t.dims.slice(1)])));
  const shapeOf = async () => (await readyReplica(c, name)).r.profile?.shapes?.find((x) => x.shape === key);
  const wire = Object.fromEntries(Object.entries(feeds).map(([n, t]) => [n, fromTypedArray(t.dtype, t.dims, t.data)]));
  const load = (concurrency: number, durationMs: number) => () => runLoad(c, name, wire, { concurrency, durationMs, timeoutMs: 30_000 });
  // Before its profile: a burst of 16.
  const burst = await withBatches(c, name, load(16, 300));
  // Traffic from 4 callers until the shape's profile is in.
  let shape = await shapeOf();
  const traffic = await loadUntil(c, name, wire, {
    concurrency: 4,
    maxMs: 30_000,
    done: async () => {
      shape = await shapeOf();
      return shape !== undefined && shape.state !== 'queued' && shape.state !== 'profiling';
    },
  });
  const settledMs = traffic.ms;
  // This shape's stored profile (none when it was cut short: such a profile serves its replica but is not stored).
  const stored = (await c.profiles(name)).find((p) => p.shape !== undefined && shapeKey(p.shape) === key);
  const after = await withBatches(c, name, load(16, 1500));
  const { r } = await readyReplica(c, name);
  const onCuda = r.executionProvider === 'cuda';
  const chosen = shape?.maxBatchSize;
  const wrong = [
    // Measured now: nothing stored a 48×48 profile before this run.
    shape?.state !== 'measured' ? `shape not profiled within 30 s (${shape?.state ?? 'not seen'}: ${shape?.reason ?? ''})` : '',
    Object.keys(burst.batches).some((k) => k !== '1')
      ? `before its profile the replica ran batches of ${Object.keys(burst.batches).join(', ')}, not 1`
      : '',
    onCuda && chosen !== undefined && chosen > 1 && shape?.padTo !== chosen
      ? `chose batch ${chosen} on CUDA without padding (${shape?.reason ?? ''})`
      : '',
    ...[burst.load, traffic.load, after.load]
      .filter((l) => Object.keys(l.errored).length > 0)
      .map((l) => `requests failed: ${JSON.stringify(l.errored)}`),
  ].filter(Boolean);
  await c.undeploy(name).catch(() => undefined);
  return {
    settledMs,
    shape: shape ?? null,
    shapeChangeMs: stored?.chosen.shapeChangeMs ?? null,
    stoppedBecause: stored?.stoppedBecause ?? null,
    stored: stored !== undefined,
    rows: stored?.rows.map((r) => ({ batch: r.batch, itemsPerSec: r.itemsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, runs: r.runs })) ?? null,
    beforeProfile: { itemsPerSec: burst.itemsPerSec, batches: burst.batches },
    afterProfile: { itemsPerSec: after.itemsPerSec, batches: after.batches },
    ...(wrong.length ? { failed: wrong.join('; ') } : {}),
  };
}

async function main(): Promise<number> {
  log(`gpu-check: provider ${provider}${fakeGpu ? ' with a stand-in GPU (inventory override)' : ''}, models ${models.join(', ')}`);

  // 1. onnxruntime-node finds the provider's libraries next to its own.
  await step('provider', async () => {
    const backends = supportedBackends();
    const why = providerUnavailable(provider, backends);
    return {
      ortVersion: ort.env.versions.common,
      backends: backends.map((b) => `${b.name}${b.bundled ? '' : ' (separate library)'}`),
      libraryDir: ortLibraryDir() ?? null,
      ldLibraryPath: process.env.LD_LIBRARY_PATH ?? null,
      ...(why ? { failed: why } : {}),
    };
  });

  // 2. Every model in-process on the provider and on the CPU, same inputs (batch 4).
  await step('in-process outputs vs CPU', async () => {
    const rows = [];
    for (const m of models) {
      const path = modelPath(m);
      try {
        const t0 = performance.now();
        const s = await session(path, provider);
        const openMs = Math.round(performance.now() - t0);
        const feeds = inputsFor(s.inputMetadata, 4, 7);
        const out = await s.run(ortFeeds(feeds));
        // A few timed runs after the first (which pays for kernel selection and allocation).
        const times: number[] = [];
        for (let i = 0; i < 10; i++) {
          const a = performance.now();
          await s.run(ortFeeds(feeds));
          times.push(performance.now() - a);
        }
        await s.release();
        times.sort((a, b) => a - b);
        const d = worstDiff(diffAll(await cpuOutputs(path, feeds), out));
        rows.push({ model: m, openMs, batch4MedianMs: +times[5]!.toFixed(3), ...summary(d) });
      } catch (err) {
        rows.push({ model: m, ok: false, why: (err as Error).message.slice(0, 500) });
      }
    }
    const bad = rows.filter((r) => !r.ok);
    return { rows, ...(bad.length ? { failed: bad.map((r) => `${r.model}: ${r.why}`).join('; ') } : {}) };
  });

  // 2b. What a change of batch size between two runs costs on the provider (measured, never failing):
  // a replica's batches vary in size, and a kernel that rebuilds its plan on a new shape pays each time.
  await step('batch-size change cost in-process', async () => {
    const rows = [];
    for (const m of models.filter((x) => x === 'convnet' || x === 'wide-mlp')) {
      const s = await session(modelPath(m), provider);
      try {
        const small = ortFeeds(inputsFor(s.inputMetadata, 6, 11));
        const large = ortFeeds(inputsFor(s.inputMetadata, 10, 12));
        const p50 = async (seq: Array<Record<string, ort.Tensor>>) => {
          for (const f of seq.slice(0, 4)) await s.run(f);
          const t: number[] = [];
          for (const f of seq) {
            const a = performance.now();
            await s.run(f);
            t.push(performance.now() - a);
          }
          t.sort((a, b) => a - b);
          return +t[Math.floor(t.length / 2)]!.toFixed(3);
        };
        const same = await p50(Array.from({ length: 20 }, () => large));
        const alternating = await p50(Array.from({ length: 20 }, (_, i) => (i % 2 ? large : small)));
        rows.push({ model: m, sameBatch10MedianMs: same, alternating6and10MedianMs: alternating, ratio: +(alternating / same).toFixed(1) });
      } finally {
        await s.release();
      }
    }
    return { rows };
  });

  // 3. A cluster whose worker measured the GPU: deployments on `gpu`, outputs through NATS.
  let replicaBytes: number | undefined;
  const cluster = await LocalCluster.start({
    workers: 1,
    worker: { gpuProviders: [provider], ...(fakeGpu ? { inventory: { gpus: fakeGpu } } : {}) },
    logger: clusterLogger,
  });
  try {
    const c = cluster.client();
    const inventory = await step('inventory', async () => {
      const w = (await c.status()).workers[0];
      if (!w) return { gpus: [], failed: 'no worker in status' };
      const gpus = w.inventory.gpus.map((g) => ({ ...g, vramTotalMiB: g.vramTotalBytes / MiB, vramFreeMiB: g.vramFreeBytes / MiB }));
      const devices = w.devices.map((d) => ({
        id: d.id,
        kind: d.kind,
        capacityMiB: d.capacityBytes / MiB,
        budgetMiB: d.budgetBytes / MiB,
      }));
      return {
        source: w.inventory.source,
        cpu: w.inventory.cpu,
        gpus,
        devices,
        ...(gpus.length === 0 ? { failed: 'the worker found no GPU (nvidia-smi)' } : {}),
      };
    });
    const noGpu = !inventory || inventory.gpus.length === 0;
    const placed = await step('deploy on gpu, outputs vs CPU', async () => {
      if (noGpu) return { rows: [], failed: 'skipped: the worker has no GPU' };
      const rows = [];
      const one = [DIM_SIZES];
      if (models.includes('wide-mlp')) rows.push(await deployAndCompare(c, 'wide-mlp', 'g-wide-mlp', one));
      // The same model with its session on a thread of its own (`--session-host thread`): the provider
      // loads and runs there too.
      if (models.includes('wide-mlp')) rows.push(await deployAndCompare(c, 'wide-mlp', 'g-wide-thread', one, 'thread'));
      if (models.includes('tiny-encoder')) rows.push(await deployAndCompare(c, 'tiny-encoder', 'g-encoder', one));
      if (models.includes('conv-classifier'))
        rows.push(await deployAndCompare(c, 'conv-classifier', 'g-classifier', [DIM_SIZES, { H: 96, W: 128 }]));
      const bad = rows.filter((r) => r.failed);
      return { rows, ...(bad.length ? { failed: bad.map((r) => `${r.model}: ${r.failed}`).join('; ') } : {}) };
    });
    // 3b. A dynamic-shape model's background profile of a new shape while it serves: one request at
    // a time until then, the shape's chosen batching after (padded on CUDA, where a change of batch
    // size costs a cuDNN plan rebuild), and what 16 callers get with it.
    if (models.includes('conv-classifier'))
      await step('shape profile while serving', async () => {
        if (noGpu) return { failed: 'skipped: the worker has no GPU' };
        return shapeProfileWhileServing(c);
      });

    replicaBytes = placed?.rows.find((r) => r.model === 'wide-mlp')?.chargedMiB;
    replicaBytes = replicaBytes !== undefined ? replicaBytes * MiB : undefined;

    // 4. VRAM accounting and eviction by budget, on a worker whose budget fits two replicas.
    await step('eviction by VRAM budget', async () => {
      if (!replicaBytes) return { failed: 'no wide-mlp replica charge from the previous step to size the budget' };
      await Promise.all(cluster.workers.map((w) => w.stop()));
      const budget = evictionBudget(replicaBytes);
      const w = await Worker.start({
        id: 'w-budget',
        cluster: cluster.cluster,
        bus: { servers: cluster.url },
        heartbeatMs: 250,
        memoryBudgetBytes: budget,
        eviction: 'fifo',
        gpuProviders: [provider],
        ...(fakeGpu ? { inventory: { gpus: fakeGpu } } : {}),
        logger: clusterLogger,
      });
      const nc = await c.connection();
      let maxOverMiB = -Infinity;
      let beats = 0;
      const sub = nc.subscribe(`flotilla.${cluster.cluster}.hb.w-budget`, {
        callback: (_e, m) => {
          const hb = decode<Heartbeat>(m.data);
          for (const d of hb.devices) if (d.kind === 'gpu') maxOverMiB = Math.max(maxOverMiB, (d.usedBytes - d.budgetBytes) / MiB);
          beats++;
        },
      });
      try {
        for (const n of ['g-wide-mlp', 'g-wide-thread', 'g-encoder', 'g-classifier']) await c.undeploy(n).catch(() => undefined);
        const path = modelPath('wide-mlp');
        const opts = { device: 'gpu' as const, allowFallback: false };
        const gpuDevice = async () => (await c.status()).workers.find((x) => x.id === 'w-budget')?.devices.find((x) => x.kind === 'gpu');
        const evictions = async (n: number) => {
          // The event is published before the load it makes room for; give the stream a moment.
          for (let i = 0; i < 50; i++) {
            const ev = (await c.events({ limit: 200 })).filter((e) => e.type === 'evicted' && e.model?.startsWith('ev-'));
            if (ev.length >= n) return ev;
            await new Promise((r) => setTimeout(r, 100));
          }
          return (await c.events({ limit: 200 })).filter((e) => e.type === 'evicted' && e.model?.startsWith('ev-'));
        };
        // Replicas of one model, one after another, until the budget makes the worker evict.
        const deployed: string[] = [];
        const charges: Array<{ model: string; MiB: number }> = [];
        while (deployed.length < 6) {
          const name = `ev-${deployed.length + 1}`;
          await c.deploy(path, name, opts);
          deployed.push(name);
          const dev = await gpuDevice();
          const held = dev?.models ?? [];
          const mine = held.find((m) => m.name === name);
          if (mine) charges.push({ model: name, MiB: +(mine.bytes / MiB).toFixed(1) });
          if (held.length < deployed.length) break;
        }
        const first = await evictions(1);
        // A request for the evicted replica brings it back, evicting the next oldest (FIFO).
        const victim = first[0]?.model ?? deployed[0]!;
        const probe = await session(path, 'cpu');
        const feeds = inputsFor(probe.inputMetadata, 1, 300);
        await probe.release();
        const t0 = performance.now();
        const again = await c.inferWithMeta(victim, feeds, { timeoutMs: 60_000 });
        const reloadMs = Math.round(performance.now() - t0);
        const d = worstDiff(diffAll(await cpuOutputs(path, feeds), again.outputs));
        const evicted = await evictions(2);
        const gpu = await gpuDevice();
        const smi = await nvidiaSmiUsedMiB();
        const wrong = [
          evicted[0]?.model !== 'ev-1'
            ? `first eviction ${evicted[0]?.model ?? 'none'} after ${deployed.length} replicas, expected ev-1 (fifo)`
            : '',
          evicted[1]?.model !== 'ev-2' ? `the reload of ev-1 evicted ${evicted[1]?.model ?? 'nothing'}, expected ev-2 (fifo)` : '',
          evicted.some((e) => !e.device?.startsWith('gpu:')) ? `evicted from ${evicted.map((e) => e.device).join(', ')}` : '',
          maxOverMiB > 0 ? `accounted VRAM exceeded the budget by ${maxOverMiB} MiB` : '',
          !d.ok ? `reloaded ${victim}'s outputs: ${d.why}` : '',
        ].filter(Boolean);
        return {
          firstChargeMiB: +(replicaBytes / MiB).toFixed(1),
          budgetMiB: +(budget / MiB).toFixed(1),
          deployed,
          charges,
          evicted: evicted.map((e) => ({
            model: e.model,
            device: e.device,
            MiB: e.bytes !== undefined ? +(e.bytes / MiB).toFixed(1) : null,
            reason: e.reason,
          })),
          reloadMs,
          reloaded: summary(d),
          heartbeats: beats,
          maxOverBudgetMiB: +maxOverMiB.toFixed(1),
          deviceAfter: gpu ? { accountedMiB: +(gpu.usedBytes / MiB).toFixed(1), models: gpu.models.map((m) => m.name) } : null,
          nvidiaSmiUsedMiB: smi,
          ...(wrong.length ? { failed: wrong.join('; ') } : {}),
        };
      } finally {
        sub.unsubscribe();
        await w.stop();
      }
    });
  } finally {
    await cluster.stop();
  }

  save();
  process.stdout.write(`${JSON.stringify(document())}\n`);
  const v = verdict(steps);
  log(v.line);
  return v.code;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  log(`gpu-check: ${(err as Error).stack ?? String(err)}`);
}
process.exit(code);
