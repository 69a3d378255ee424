// Pure helpers of `pnpm bench` (main.ts): settings from the environment, the in-process
// batch sweep's stopping rule, batch-size histograms, the ratios and the text tables. No I/O.
import { BatchingOptions, SessionHostChoice } from '@flotilla/protocol';

export interface BenchSettings {
  /** Measured time of every point (one batch size, one concurrency, one raw-NATS run), ms. */
  durationMs: number;
  /** Unmeasured time before every point, ms. */
  warmupMs: number;
  models: string[];
  concurrencies: number[];
  /** Largest batch the in-process sweep tries. */
  maxBatch: number;
  /** Pin processes to cores with taskset (when there are at least 2 cores). */
  pin: boolean;
  quick: boolean;
  /** Where the replica and the in-process baseline run: `cpu`, or `gpu` (onnxruntime's CUDA provider, device 0). */
  device: 'cpu' | 'gpu';
  /** The deployment's batching.padBatches (undefined: as the profile measured). */
  padBatches?: boolean;
  /** Batching options for every deployment instead of the profile's choice (BENCH_BATCHING, JSON). */
  batching?: BatchingOptions;
  /** Worker processes, the model deployed with one replica on each (on a GPU: sharing it). Default 1. */
  workers: number;
  /** Large-body sizes measured after the models (bodies.ts), MiB; none with BENCH_BODIES=0. Default 8, 64, 256 (QUICK: 8, 64). */
  bodiesMiB: number[];
  /** Transfers per body size (medians reported). Default 3 (QUICK: 1). */
  bodyRounds: number;
  /** The worker's --session-host (thread, event-loop, auto); unset: the worker's default (auto). */
  sessionHost?: SessionHostChoice;
}

export const DEFAULT_BODIES_MIB = [8, 64, 256];

export const DEFAULT_MODELS = ['mlp', 'wide-mlp', 'convnet', 'conv-classifier'];

/** What the bench gives a symbolic non-batch dim: image height and width (H, W) 64, any other 1. */
export const BENCH_DIM_SIZES: Readonly<Record<string, number>> = { H: 64, W: 64 };

/** One dim of a bench input: `batch` on axis 0, fixed dims as they are, symbolic ones from BENCH_DIM_SIZES. */
export function benchDim(d: number | string | undefined, axis: number, batch: number): number {
  if (axis === 0) return batch;
  if (typeof d === 'number' && d >= 0) return d;
  return (typeof d === 'string' ? BENCH_DIM_SIZES[d] : undefined) ?? 1;
}
export const DEFAULT_CONCURRENCIES = [1, 16, 128];

function positiveInts(what: string, raw: string): number[] {
  const out = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 1))
    throw new Error(`${what} must be a comma-separated list of positive integers, got '${raw}'`);
  return out;
}

function positiveNumber(what: string, raw: string | undefined, dflt: number, min = 0): number {
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${what} must be a number ≥ ${min}, got '${raw}'`);
  return n;
}

/**
 * Settings from env: BENCH_QUICK=1 (every point ~0.5 s), BENCH_DURATION_MS, BENCH_WARMUP_MS,
 * BENCH_MODELS=mlp,wide-mlp, BENCH_CONCURRENCY=1,16,128, BENCH_MAX_BATCH=128, BENCH_PIN=0,
 * BENCH_DEVICE=gpu, BENCH_PAD_BATCHES=0|1 (the deployments' batching.padBatches; unset: the profile's),
 * BENCH_BODIES=8,64,256 (large-body sizes in MiB; 0: none), BENCH_SESSION_HOST=thread|event-loop|auto,
 * BENCH_BATCHING='{"maxBatchSize":16}' (a deployment's batching options, as `flotilla deploy` takes them).
 */
export function benchSettings(env: Record<string, string | undefined>): BenchSettings {
  const quick = env.BENCH_QUICK === '1' || env.BENCH_QUICK === 'true';
  const durationMs = positiveNumber('BENCH_DURATION_MS', env.BENCH_DURATION_MS, quick ? 500 : 3000, 1);
  const warmupMs = positiveNumber('BENCH_WARMUP_MS', env.BENCH_WARMUP_MS, quick ? 100 : 500);
  const models = env.BENCH_MODELS
    ? env.BENCH_MODELS.split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : DEFAULT_MODELS;
  if (models.length === 0) throw new Error('BENCH_MODELS names no model');
  const concurrencies = env.BENCH_CONCURRENCY ? positiveInts('BENCH_CONCURRENCY', env.BENCH_CONCURRENCY) : DEFAULT_CONCURRENCIES;
  const maxBatch = env.BENCH_MAX_BATCH ? positiveInts('BENCH_MAX_BATCH', env.BENCH_MAX_BATCH)[0]! : 128;
  const pin = !(env.BENCH_PIN === '0' || env.BENCH_PIN === 'false');
  const device = env.BENCH_DEVICE ?? 'cpu';
  if (device !== 'cpu' && device !== 'gpu') throw new Error(`BENCH_DEVICE must be cpu or gpu, got '${device}'`);
  const pad = env.BENCH_PAD_BATCHES;
  if (pad !== undefined && !['0', '1', 'true', 'false'].includes(pad)) throw new Error(`BENCH_PAD_BATCHES must be 0 or 1, got '${pad}'`);
  const padBatches = pad === undefined ? undefined : pad === '1' || pad === 'true';
  const workers = env.BENCH_WORKERS ? positiveInts('BENCH_WORKERS', env.BENCH_WORKERS)[0]! : 1;
  const bodiesMiB =
    env.BENCH_BODIES === '0' || env.BENCH_BODIES === 'false'
      ? []
      : env.BENCH_BODIES
        ? positiveInts('BENCH_BODIES', env.BENCH_BODIES)
        : quick
          ? [8, 64]
          : DEFAULT_BODIES_MIB;
  if (bodiesMiB.some((m) => m > 256))
    throw new Error(`BENCH_BODIES sizes must be at most 256 MiB (Flotilla's body limit), got '${env.BENCH_BODIES}'`);
  const bodyRounds = quick ? 1 : 3;
  const host = env.BENCH_SESSION_HOST === undefined ? undefined : SessionHostChoice.safeParse(env.BENCH_SESSION_HOST);
  if (host && !host.success) throw new Error(`BENCH_SESSION_HOST must be thread, event-loop or auto, got '${env.BENCH_SESSION_HOST}'`);
  let batching: BatchingOptions | undefined;
  if (env.BENCH_BATCHING !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(env.BENCH_BATCHING);
    } catch {
      raw = undefined;
    }
    const parsed = BatchingOptions.safeParse(raw);
    if (!parsed.success)
      throw new Error(`BENCH_BATCHING must be batching options as JSON (e.g. '{"maxBatchSize":16}'), got '${env.BENCH_BATCHING}'`);
    batching = parsed.data;
  }
  return {
    durationMs,
    warmupMs,
    models,
    concurrencies,
    maxBatch,
    pin,
    quick,
    device,
    workers,
    bodiesMiB,
    bodyRounds,
    ...(padBatches !== undefined ? { padBatches } : {}),
    ...(host?.success ? { sessionHost: host.data } : {}),
    ...(batching ? { batching } : {}),
  };
}

/** 1, 2, 4, ... up to and including `max` (and `max` itself when it is not a power of two). */
export function batchSizes(max: number): number[] {
  const out: number[] = [];
  for (let b = 1; b <= max; b *= 2) out.push(b);
  if (out[out.length - 1] !== max && max >= 1) out.push(max);
  return out;
}

/**
 * Rounds the in-process sweep takes over its batch sizes, interleaved (1, 2, … 128, then 1, 2, …
 * again), each size timed for a third of its time in each: a host whose speed moves within minutes
 * then moves every size's rate alike, where one stretch per size would hand the best rate to
 * whichever size met a fast stretch (2026-12-01: conv-classifier, flat from batch 1 to 128, swept
 * 1,921–2,407 items/s in one pass with no order to it).
 */
export const SWEEP_ROUNDS = 3;

/** One stretch of timed runs of one batch size (the in-process sweep times each size in SWEEP_ROUNDS of them). */
export interface RunSlice {
  batch: number;
  /** Each run's time, ms. */
  timesMs: number[];
  /** Wall time of the stretch, ms. */
  elapsedMs: number;
  /** CPU time of the process over the stretch, µs. */
  cpuUs: number;
}

/** A sweep row from one batch size's stretches: items/s and CPU per item over their summed time, p50/p99 over all their runs. */
export function sliceRow(slices: readonly RunSlice[]): {
  batch: number;
  runs: number;
  itemsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerItem: number;
} {
  if (!slices.length) throw new Error('sliceRow: no stretches');
  const batch = slices[0]!.batch;
  if (slices.some((x) => x.batch !== batch)) throw new Error('sliceRow: stretches of different batch sizes');
  const times = slices.flatMap((x) => x.timesMs).sort((a, b) => a - b);
  const elapsed = slices.reduce((a, x) => a + x.elapsedMs, 0);
  const cpu = slices.reduce((a, x) => a + x.cpuUs, 0);
  const pct = (p: number) => times[Math.min(times.length - 1, Math.ceil((p / 100) * times.length) - 1)] ?? 0;
  const items = batch * times.length;
  return {
    batch,
    runs: times.length,
    itemsPerSec: elapsed > 0 ? round((items * 1000) / elapsed, 1) : 0,
    p50Ms: round(pct(50), 3),
    p99Ms: round(pct(99), 3),
    cpuUsPerItem: items > 0 ? round(cpu / items, 2) : 0,
  };
}

export interface RatePoint {
  batch: number;
  itemsPerSec: number;
}

/** The point with the most items/s (the first of equals); undefined for none. */
export function bestPoint<T extends RatePoint>(points: readonly T[]): T | undefined {
  let best: T | undefined;
  for (const p of points) if (!best || p.itemsPerSec > best.itemsPerSec) best = p;
  return best;
}

/** Below this fraction of the best rate a point counts as clearly worse. */
export const DECLINE_FACTOR = 0.8;
/** That many clearly worse points in a row end the sweep. */
export const DECLINE_POINTS = 2;

/**
 * Whether the sweep has clearly declined: the last `points` measured sizes are all larger than
 * the best one and each below `factor` × the best rate. One noisy dip does not stop it.
 */
export function sweepDeclined(rows: readonly RatePoint[], factor = DECLINE_FACTOR, points = DECLINE_POINTS): boolean {
  if (rows.length < points + 1) return false;
  const best = bestPoint(rows)!;
  const tail = rows.slice(-points);
  return tail.every((r) => r.batch > best.batch && r.itemsPerSec < best.itemsPerSec * factor);
}

export type Histogram = Record<string, number>;

/** Batches run between two snapshots of a replica's cumulative histogram (zero counts dropped). */
export function histogramDiff(after: Histogram, before: Histogram = {}): Histogram {
  const out: Histogram = {};
  for (const key of Object.keys(after).sort((a, b) => Number(a) - Number(b))) {
    const n = (after[key] ?? 0) - (before[key] ?? 0);
    if (n > 0) out[key] = n;
  }
  return out;
}

/** Batches and items in a histogram, and the mean items per batch (0 when empty). */
export function histogramTotals(h: Histogram): { batches: number; items: number; meanBatch: number } {
  let batches = 0;
  let items = 0;
  for (const [size, n] of Object.entries(h)) {
    batches += n;
    items += Number(size) * n;
  }
  return { batches, items, meanBatch: batches ? round(items / batches, 2) : 0 };
}

/**
 * Milliseconds per item of a session.run at `batch`, from an in-process sweep: the measured size's,
 * or between the two measured sizes around it, linear in the batch size (a run's time grows about
 * linearly between neighbouring sizes); clamped to the sweep's smallest and largest size.
 */
export function perItemMsAt(sweep: readonly { batch: number; itemsPerSec: number }[], batch: number): number | undefined {
  const rows = sweep.filter((r) => r.itemsPerSec > 0).sort((a, b) => a.batch - b.batch);
  if (!rows.length) return undefined;
  const at = rows.findIndex((r) => r.batch >= batch);
  if (at < 0) return 1000 / rows[rows.length - 1]!.itemsPerSec; // above the largest
  if (at === 0 || rows[at]!.batch === batch) return 1000 / rows[at]!.itemsPerSec; // at or below the smallest, or measured
  const lo = rows[at - 1]!;
  const hi = rows[at]!;
  const runMs = (r: { batch: number; itemsPerSec: number }) => (r.batch / r.itemsPerSec) * 1000;
  return (runMs(lo) + ((batch - lo.batch) / (hi.batch - lo.batch)) * (runMs(hi) - runMs(lo))) / batch;
}

/**
 * What the batches of a histogram cost in the model alone, per item (µs): each size's share at
 * the in-process rate for that size (perItemMsAt). Undefined for an empty histogram or sweep.
 */
export function modelUsPerItem(h: Histogram, sweep: readonly { batch: number; itemsPerSec: number }[]): number | undefined {
  let items = 0;
  let ms = 0;
  for (const [size, n] of Object.entries(h)) {
    const b = Number(size);
    const per = Number.isFinite(b) && b > 0 ? perItemMsAt(sweep, b) : undefined;
    if (per === undefined) continue;
    items += b * n;
    ms += per * b * n;
  }
  return items ? (ms / items) * 1000 : undefined;
}

/** "1×12 2×3 64×40": a histogram in one short line, sizes ascending. */
export function histogramText(h: Histogram, maxEntries = 10): string {
  const entries = Object.entries(h).sort((a, b) => Number(a[0]) - Number(b[0]));
  if (entries.length === 0) return '-';
  // Too many sizes: keep the most frequent ones (still listed by size).
  const kept =
    entries.length > maxEntries
      ? new Set(
          [...entries]
            .sort((a, b) => b[1] - a[1])
            .slice(0, maxEntries)
            .map((e) => e[0]),
        )
      : undefined;
  const shown = entries.filter((e) => !kept || kept.has(e[0])).map(([s, n]) => `${s}×${n}`);
  return kept ? `${shown.join(' ')} (+${entries.length - maxEntries} sizes)` : shown.join(' ');
}

export interface RatioInputs {
  /** (1) in-process, batch 1, sequential, items/s. */
  inprocBatch1: number;
  /** (2) in-process at the best batch size, items/s. */
  inprocBest: number;
  /** (3) raw NATS request/reply, msgs/s. */
  rawNats: number;
  /** best of (4): the cluster's items/s over the concurrencies. */
  clusterBest: number;
  /** (2)'s sweep at the largest batch size within the replica's chosen max batch, items/s. */
  inprocAtChosen?: number;
  /** p50 of (1) (one session.run at batch 1) and of (4) at concurrency 1, ms. */
  inprocBatch1P50Ms?: number;
  clusterC1P50Ms?: number;
}

export interface Ratios {
  ceiling_ratio: number | null;
  /** best(4) ÷ in-process at the batch size the replica's profile chose. */
  ceiling_at_chosen: number | null;
  /** p50 added at concurrency 1 over one in-process batch-1 run, ms. */
  c1_added_ms: number | null;
  broker_ratio: number | null;
  batching_gain: number | null;
  inproc_gain: number | null;
}

/** a / b to 4 significant digits (tiny ratios must not round to 0); null without a usable b. */
const ratio = (a: number, b: number): number | null =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? Number((a / b).toPrecision(4)) : null;

export function ratios(r: RatioInputs): Ratios {
  return {
    ceiling_ratio: ratio(r.clusterBest, r.inprocBest),
    ceiling_at_chosen: r.inprocAtChosen === undefined ? null : ratio(r.clusterBest, r.inprocAtChosen),
    c1_added_ms:
      r.clusterC1P50Ms === undefined || r.inprocBatch1P50Ms === undefined ? null : round(r.clusterC1P50Ms - r.inprocBatch1P50Ms, 3),
    broker_ratio: ratio(r.clusterBest, r.rawNats),
    batching_gain: ratio(r.clusterBest, r.inprocBatch1),
    inproc_gain: ratio(r.inprocBest, r.inprocBatch1),
  };
}

/** The sweep's rate at the largest batch size within `maxBatch` (what a replica batching up to it runs at). */
export function rateWithin(sweep: readonly { batch: number; itemsPerSec: number }[], maxBatch: number): number | undefined {
  return rowWithin(sweep, maxBatch)?.itemsPerSec;
}

/** The sweep's row at the largest batch size within `maxBatch`. */
export function rowWithin<R extends { batch: number }>(sweep: readonly R[], maxBatch: number): R | undefined {
  const within = sweep.filter((r) => r.batch <= maxBatch);
  return within.length ? within.reduce((a, b) => (b.batch > a.batch ? b : a)) : undefined;
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** A number for a table: grouped integers from 100, three significant digits below (no trailing zeros); '-' for none. */
export function fmt(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString('en-US');
  return String(Number(x.toPrecision(3)));
}

/**
 * A plain-text table: the first column and text columns (any cell with a letter) left-aligned,
 * number columns right-aligned (or as `align` says), columns two spaces apart, a dashed line
 * under the header.
 */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>, align?: ReadonlyArray<'l' | 'r'>): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const left = header.map((_, i) => (align?.[i] ? align[i] === 'l' : i === 0 || rows.some((r) => /[a-z]/i.test(r[i] ?? ''))));
  const line = (r: readonly string[]) =>
    header
      .map((_, i) => (left[i] ? (r[i] ?? '').padEnd(widths[i]!) : (r[i] ?? '').padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
