// Child process of `pnpm bench`: the in-process onnxruntime-node baselines of one model, run where
// the bench pins it (the replica's core), with the replica's thread settings (1 intra-op thread,
// 1 inter-op thread, all graph optimisations). (1) batch 1 in a sequential loop; (2) a sweep over
// batch sizes 1, 2, 4, ... until the largest or a clear decline, in SWEEP_ROUNDS interleaved rounds
// (stats.ts; each row sums its size's rounds). Prints one JSON line on stdout.
//   node packages/bench/dist/inproc.js '{"modelPath":"...","durationMs":3000,"warmupMs":500,"maxBatch":128,"device":"cpu"}'
// With "device":"gpu" the session runs on onnxruntime's CUDA provider (device 0), as a GPU replica's does.
// With "probe":{"batch":B,"durationMs":D} it is the bench's host-speed probe instead (host-drift.ts,
// speed-probe.ts): it prints `ready` once its session is open, then for each SIGUSR2 times batch B
// back to back for D ms and prints one JSON SweepRow line, idle in between; SIGTERM ends it.
import { createRequire } from 'node:module';
import { SWEEP_ROUNDS, batchSizes, benchDim, bestPoint, sliceRow, sweepDeclined, type RunSlice } from './stats.js';

interface OrtTensor {
  dims: readonly number[];
}
interface OrtSession {
  inputMetadata: ReadonlyArray<{ name: string; isTensor: boolean; type?: string; shape?: ReadonlyArray<number | string> }>;
  outputMetadata: ReadonlyArray<{ name: string; isTensor: boolean; type?: string; shape?: ReadonlyArray<number | string> }>;
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
interface Ort {
  InferenceSession: { create(path: string, opts: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: string, data: Float32Array, dims: number[]) => OrtTensor;
  env: { versions?: Record<string, string> };
}

// The few onnxruntime-node calls this baseline makes, typed loosely on purpose (input metadata of
// any kind): loaded with require, onnxruntime-node being a CommonJS dependency of this package.
const ort = createRequire(import.meta.url)('onnxruntime-node') as Ort;

export interface SweepRow {
  batch: number;
  runs: number;
  itemsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time of this process per item over the timed runs (µs): the model's cost, not counting time the process waited for a core. */
  cpuUsPerItem?: number;
}

export interface InprocResult {
  ortVersion: string;
  sessionOptions: Record<string, unknown>;
  inputs: Array<{ name: string; type: string; shape: Array<number | string> }>;
  batch1: SweepRow;
  sweep: SweepRow[];
  best: SweepRow;
  sweepStopped: string;
}

/** Warm-up of a size in the sweep's later rounds, ms (at least one run): the first round warmed it up. */
const ROUND_WARMUP_MS = 50;

const SESSION_OPTIONS = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' };

function feedsFor(session: OrtSession, batch: number): Record<string, OrtTensor> {
  const feeds: Record<string, OrtTensor> = {};
  for (const m of session.inputMetadata) {
    if (m.type !== 'float32') throw new Error(`input '${m.name}' is ${m.type}: the bench feeds float32 only`);
    const dims = (m.shape ?? []).map((d, i) => benchDim(d, i, batch));
    const n = dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.random() * 2 - 1;
    feeds[m.name] = new ort.Tensor('float32', data, dims);
  }
  return feeds;
}

/** Runs `batch`-sized inputs back to back: `warmupMs` untimed (at least one run), then `durationMs` timed (at least 3 runs). */
async function slice(session: OrtSession, batch: number, durationMs: number, warmupMs: number): Promise<RunSlice> {
  const feeds = feedsFor(session, batch);
  const w0 = performance.now();
  do await session.run(feeds);
  while (performance.now() - w0 < warmupMs);
  const timesMs: number[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  while (timesMs.length < 3 || performance.now() - t0 < durationMs) {
    const s = performance.now();
    await session.run(feeds);
    timesMs.push(performance.now() - s);
  }
  const elapsedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { batch, timesMs, elapsedMs, cpuUs: cpu.user + cpu.system };
}

/** One stretch as a sweep row. */
async function measure(session: OrtSession, batch: number, durationMs: number, warmupMs: number): Promise<SweepRow> {
  return sliceRow([await slice(session, batch, durationMs, warmupMs)]);
}

/** The host-speed probe: the session stays open while the bench runs its phases; each SIGUSR2 is one timed measure. */
async function probe(session: OrtSession, batch: number, durationMs: number): Promise<void> {
  await measure(session, batch, 0, 0); // first runs allocate
  let turn = Promise.resolve();
  process.on('SIGUSR2', () => {
    turn = turn.then(async () => {
      const row = await measure(session, batch, durationMs, Math.min(100, durationMs / 4));
      process.stdout.write(JSON.stringify(row) + '\n');
    });
  });
  process.on('SIGTERM', () => void turn.then(() => session.release()).finally(() => process.exit(0)));
  setInterval(() => undefined, 1 << 30); // idle between probes until SIGTERM
  process.stdout.write('ready\n');
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as {
    modelPath: string;
    durationMs: number;
    warmupMs: number;
    maxBatch: number;
    device?: 'cpu' | 'gpu';
    probe?: { batch: number; durationMs: number };
  };
  const sessionOptions =
    args.device === 'gpu' ? { ...SESSION_OPTIONS, executionProviders: [{ name: 'cuda', deviceId: 0 }] } : SESSION_OPTIONS;
  const session = await ort.InferenceSession.create(args.modelPath, sessionOptions);
  if (args.probe) return probe(session, args.probe.batch, args.probe.durationMs);
  try {
    const batchAxis = session.inputMetadata.every((m) => typeof m.shape?.[0] !== 'number');
    // (1) batch 1, sequential, and (2) the sweep, whose first point is (1): SWEEP_ROUNDS rounds over
    // the sizes, interleaved (stats.ts); the first finds where the sweep stops, the others re-time those sizes.
    const perRound = args.durationMs / SWEEP_ROUNDS;
    const slices = new Map<number, RunSlice[]>();
    const first: SweepRow[] = [];
    let sweepStopped = batchAxis ? `reached the largest batch tried (${args.maxBatch})` : 'the model has no batch axis';
    for (const b of batchAxis ? batchSizes(args.maxBatch) : [1]) {
      const s = await slice(session, b, perRound, args.warmupMs);
      slices.set(b, [s]);
      first.push(sliceRow([s]));
      if (sweepDeclined(first)) {
        sweepStopped = `declined: batches ${first
          .slice(-2)
          .map((r) => r.batch)
          .join(' and ')} are below 80% of the best`;
        break;
      }
    }
    for (let round = 1; round < SWEEP_ROUNDS; round++) {
      for (const [b, got] of slices) got.push(await slice(session, b, perRound, Math.min(args.warmupMs, ROUND_WARMUP_MS)));
    }
    const sweep = [...slices.values()].map(sliceRow);
    for (const row of sweep) process.stderr.write(`    in-process batch ${row.batch}: ${row.itemsPerSec} items/s (p50 ${row.p50Ms} ms)\n`);
    const batch1 = sweep[0]!;
    const result: InprocResult = {
      ortVersion: ort.env.versions?.node ?? ort.env.versions?.common ?? 'unknown',
      sessionOptions,
      inputs: session.inputMetadata.map((m) => ({ name: m.name, type: m.type ?? '?', shape: [...(m.shape ?? [])] })),
      batch1,
      sweep,
      best: bestPoint(sweep)!,
      sweepStopped,
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await session.release();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`inproc: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
