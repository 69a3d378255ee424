// `pnpm bench:memory`: what device memory management costs. For each model, in one run:
//   plain      onnxruntime-node session create (no cache), median of N       ms
//   compiled   create from the compile cache (optimised graph saved earlier)   ms, and the first
//              (compiling) create; items/s at batch 1 with and without the cached graph
//   Ray Serve  the reload scenario on Ray Serve's model multiplexing (peers venv), same baseline
//   threads    items/s at batch 16 for each thread setting the profiler tries, and its choice
//   reload     a request for an evicted model, answered after the transparent reload (worker
//              budget fits one model; deploy A, deploy B → A evicted, infer A)     ms
// Ratios: reload_ratio = reload / plain create timed between the reloads (target ≤ 1.2), compile_create_ratio = compiled / plain,
// compile_speed_ratio = items/s compiled / items/s plain. Last stdout line: one JSON object.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import {
  compiledPath,
  createCompiledSession,
  describeModel,
  describeThreads,
  measureInventory,
  profileThreads,
  threadCost,
} from '@flotilla/worker/internal';
import * as peers from './peers.js';

type OrtTensor = ort.Tensor;
type OrtSession = ort.InferenceSession;

const quick = process.env.BENCH_QUICK === '1';
const models = (process.env.BENCH_MODELS ?? 'mlp,wide-mlp,convnet').split(',') as Array<'wide-mlp' | 'convnet' | 'mlp'>;
const N = quick ? 3 : 7;
const RATE_MS = quick ? 500 : 2000;
/** Batch size the thread settings are compared at. */
const THREAD_BATCH = 16;
const out = (s = '') => process.stdout.write(`${s}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const opts = { executionProviders: ['cpu'], intraOpNumThreads: 1 };

function feeds(model: string, batch: number): Record<string, OrtTensor> {
  const dims = model === 'convnet' ? [batch, 3, 64, 64] : model === 'wide-mlp' ? [batch, 1024] : [batch, 16];
  const n = dims.reduce((a, b) => a * b, 1);
  return { x: new ort.Tensor('float32', randomFloats(n, 1), dims) };
}

async function rate(session: OrtSession, model: string): Promise<number> {
  const f = feeds(model, 1);
  await session.run(f);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < RATE_MS) {
    await session.run(f);
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

const results: Record<string, unknown> = {};
const dir = mkdtempSync(join(tmpdir(), 'flotilla-bench-mem-'));
try {
  for (const model of models) {
    const path = sampleModelPath(model);
    process.stderr.write(`${model}: session create times…\n`);
    const plain: number[] = [];
    for (let i = 0; i < N; i++) {
      const t = performance.now();
      const s = await ort.InferenceSession.create(path, { ...opts, graphOptimizationLevel: 'all' });
      plain.push(performance.now() - t);
      await s.release();
    }
    const cache = { path: compiledPath(dir, model, 'cpu', 'bench', 'x') };
    const first = await createCompiledSession(path, opts, cache);
    await first.session.release();
    const hits: number[] = [];
    for (let i = 0; i < N; i++) {
      const c = await createCompiledSession(path, opts, cache);
      hits.push(c.createMs);
      await c.session.release();
    }
    const sPlain = await ort.InferenceSession.create(path, { ...opts, graphOptimizationLevel: 'all' });
    const sComp = (await createCompiledSession(path, opts, cache)).session as unknown as OrtSession;
    const ratePlain = await rate(sPlain, model);
    const rateComp = await rate(sComp, model);
    await sPlain.release();
    await sComp.release();

    process.stderr.write(`${model}: thread settings…\n`);
    // The profiler's thread phase, in process: every candidate timed at batch THREAD_BATCH, and
    // the setting it keeps (the cheapest within 5 % of the fastest).
    const openWith = (t: { intraOp: number; interOp: number; mode: 'sequential' | 'parallel' }) =>
      ort.InferenceSession.create(path, {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        intraOpNumThreads: t.intraOp,
        executionMode: t.mode,
        ...(t.mode === 'parallel' ? { interOpNumThreads: t.interOp } : {}),
      });
    const cores = (await measureInventory()).cpu.usableCores!;
    const widest = { intraOp: cores, interOp: 1, mode: 'sequential' as const };
    const widestSession = (await openWith(widest)) as unknown as Parameters<typeof profileThreads>[0]['session'];
    const tuned = await profileThreads(
      { session: widestSession, settings: widest },
      async (t) => (await openWith(t)) as never,
      describeModel(widestSession.inputMetadata, widestSession.outputMetadata),
      { batch: THREAD_BATCH, usableCores: cores, budgetMs: quick ? 1500 : 6000 },
    );
    await (tuned.session as unknown as OrtSession).release();
    const widestRow = tuned.profile.rows[0]!;
    const chosenRow = tuned.profile.rows.find((r) => r.intraOp === tuned.settings.intraOp && r.mode === tuned.settings.mode)!;

    process.stderr.write(`${model}: reload after eviction…\n`);
    const cluster = await LocalCluster.start({ workers: 1, worker: { memoryBudgetBytes: 400 * 1024 * 1024, threads: 1 } });
    const reload: number[] = [];
    const plainBeside: number[] = [];
    let workerLoad = { loadMs: 0, sessionCreateMs: 0 };
    try {
      const client = cluster.client();
      const spec = { device: 'cpu' as const, memoryBytes: 300 * 1024 * 1024 };
      await client.deploy(path, 'a', spec);
      await client.deploy(sampleModelPath('mlp'), 'b', { ...spec, memoryBytes: 200 * 1024 * 1024 });
      const x = { x: { dtype: 'float32' as const, dims: [...feeds(model, 1).x!.dims], data: feeds(model, 1).x!.data as Float32Array } };
      for (let i = 0; i < N; i++) {
        // The baseline again, interleaved with the reloads: same process, same moment, same page cache.
        const p0 = performance.now();
        const s = await ort.InferenceSession.create(path, { ...opts, graphOptimizationLevel: 'all' });
        plainBeside.push(performance.now() - p0);
        await s.release();
        // a is evicted (b took its room): time the request that brings it back, then evict it again.
        const t = performance.now();
        await client.infer('a', x, { timeoutMs: 60_000 });
        reload.push(performance.now() - t);
        await client.infer('b', { x: { dtype: 'float32', dims: [1, 16], data: new Float32Array(16) } }, { timeoutMs: 60_000 });
      }
      const events = await client.events({ limit: 1000 });
      const evictions = events.filter((e) => e.type === 'evicted').length;
      if (evictions < N) process.stderr.write(`warning: only ${evictions} evictions for ${N} reloads\n`);
      // Where a reload's time goes, from the worker's own 'loaded' events (the first load excluded).
      const loads = events
        .filter((e) => e.type === 'loaded' && e.model === 'a')
        .slice(1)
        .map((e) => e.data as { loadMs: number; sessionCreateMs: number });
      workerLoad = { loadMs: median(loads.map((l) => l.loadMs)), sessionCreateMs: median(loads.map((l) => l.sessionCreateMs)) };
    } finally {
      await cluster.stop();
    }
    // The same scenario on Ray Serve's model multiplexing (LRU, one model per replica), unpinned
    // like this in-process cluster, when the peers venv exists.
    let rayServe: Awaited<ReturnType<typeof peers.runRayMultiplex>> | { skipped: string } | { error: string };
    const py = peers.rayServePython(process.env);
    if ('skipped' in py) rayServe = py;
    else {
      process.stderr.write(`${model}: Ray Serve multiplexed reload…\n`);
      rayServe = await peers
        .runRayMultiplex({
          python: py.python,
          a: path,
          aDims: [...feeds(model, 1).x!.dims],
          b: sampleModelPath('mlp'),
          bDims: [1, 16],
          n: N,
        })
        .catch((e: Error) => ({ error: e.message }));
    }
    const r = {
      plainCreateMs: +median(plain).toFixed(1),
      compileFirstCreateMs: +first.createMs.toFixed(1),
      compiledCreateMs: +median(hits).toFixed(1),
      itemsPerSecPlain: +ratePlain.toFixed(1),
      itemsPerSecCompiled: +rateComp.toFixed(1),
      reloadMs: +median(reload).toFixed(1),
      // Of which: the worker's load (session create + profile lookup + subscribe), and its session create.
      reloadWorkerLoadMs: +workerLoad.loadMs.toFixed(1),
      reloadSessionCreateMs: +workerLoad.sessionCreateMs.toFixed(1),
      plainCreateBesideMs: +median(plainBeside).toFixed(1),
      // What the transparent reload adds to a session create: fixed, whatever the model's size.
      reloadOverheadMs: +(median(reload) - median(plainBeside)).toFixed(1),
      // The reload ÷ a plain create timed between the reloads (the fair pair); and ÷ the isolated one.
      reload_ratio: +(median(reload) / median(plainBeside)).toFixed(3),
      reload_ratio_isolated: +(median(reload) / median(plain)).toFixed(3),
      compile_create_ratio: +(median(hits) / median(plain)).toFixed(3),
      compile_speed_ratio: +(rateComp / ratePlain).toFixed(3),
      rayServe,
      threads: {
        batch: THREAD_BATCH,
        rows: tuned.profile.rows.map((r) => ({
          intraOp: r.intraOp,
          interOp: r.interOp,
          mode: r.mode,
          itemsPerSec: r.itemsPerSec,
          p50Ms: r.p50Ms,
        })),
        chosen: tuned.settings,
        reason: tuned.profile.reason,
        // Throughput of the chosen setting ÷ all usable cores (the onnxruntime default), and per thread.
        chosen_vs_widest: +(chosenRow.itemsPerSec / widestRow.itemsPerSec).toFixed(3),
        per_thread_gain: +(chosenRow.itemsPerSec / threadCost(chosenRow) / (widestRow.itemsPerSec / threadCost(widestRow))).toFixed(3),
      },
    };
    results[model] = r;
    out(
      `${model.padEnd(9)} plain create ${r.plainCreateMs} ms | compiled create ${r.compiledCreateMs} ms (first ${r.compileFirstCreateMs} ms) | ` +
        `items/s b1 ${r.itemsPerSecPlain} → ${r.itemsPerSecCompiled} | reload after eviction ${r.reloadMs} ms ` +
        `(worker load ${r.reloadWorkerLoadMs} ms, of which session ${r.reloadSessionCreateMs} ms; plain create beside it ${r.plainCreateBesideMs} ms; overhead ${r.reloadOverheadMs} ms) | ` +
        `reload_ratio ${r.reload_ratio} compile_create_ratio ${r.compile_create_ratio} compile_speed_ratio ${r.compile_speed_ratio}`,
    );
    out(
      `${''.padEnd(9)} Ray Serve multiplexed reload: ` +
        ('reloadMs' in rayServe
          ? `${rayServe.reloadMs} ms vs plain create ${rayServe.plainCreateMs} ms in its replica: reload_ratio ${rayServe.reload_ratio}, overhead ${rayServe.overheadMs} ms (ray ${rayServe.rayVersion}, onnxruntime ${rayServe.ortVersion})`
          : 'skipped' in rayServe
            ? `skipped: ${rayServe.skipped}`
            : `error: ${rayServe.error.slice(0, 300)}`),
    );
    out(
      `${''.padEnd(9)} threads @batch ${THREAD_BATCH}: ` +
        r.threads.rows.map((t) => `${describeThreads(t)} ${t.itemsPerSec} items/s`).join(' | ') +
        ` → chosen ${describeThreads(r.threads.chosen)} (chosen/widest ${r.threads.chosen_vs_widest}, per-thread ${r.threads.per_thread_gain}×)`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
out(JSON.stringify({ bench: 'memory', quick, n: N, models: results }));
process.exit(0);
