// Profiles a model on the device its replica runs on: for batch sizes 1, 2, 4, ... it measures
// latency (p50/p99 over timed runs, warm-up excluded), throughput and peak memory, within a time
// budget so a new replica is out of service for a bounded time (default 3 s), and stops early
// once a batch breaks the latency objective or throughput has stopped improving. A model with
// dynamic non-batch dims is profiled per input shape (`shape`), in the background while its
// replica serves: a `gate` holds each run until the replica is idle (background-profiler.ts).
import * as ort from 'onnxruntime-node';
import {
  DTYPES,
  PROTOCOL_VERSION,
  elementCount,
  type ModelProfile,
  type ProfileRow,
  type ProfileShape,
  type ThreadChoice,
} from '@flotilla/protocol';
import {
  DEFAULT_MIN_GAIN,
  DEFAULT_RUN_OVERHEAD_MS,
  FLAT_SIZES_BEFORE_STOP,
  chooseBatch,
  choosePadding,
  contenders,
  servedRate,
  sweepPlateaued,
  tailIsOutlier,
} from './batch-size.js';
import { median, nearestRank } from './latency-window.js';
import { chooseThreads, sameThreads, threadCandidates, type ThreadRow, type ThreadSettings } from './thread-choice.js';
import type { ModelSignature } from './model-io.js';
import type { ModelSession } from './session-thread.js';

/** Time budget of one profile, ms. */
export const DEFAULT_PROFILE_BUDGET_MS = 3000;
/** Latency objective for one batch (p99), ms. */
export const DEFAULT_LATENCY_SLO_MS = 50;
/** Largest batch size tried. */
export const DEFAULT_MAX_PROFILE_BATCH = 128;

export interface ProfileOptions {
  budgetMs?: number;
  latencySloMs?: number;
  maxBatch?: number;
  /** The input shape to measure (non-batch dims per input): required for dynamic non-batch dims. */
  shape?: ProfileShape;
  /**
   * Awaited before every run: resolves with the ms it waited (for the replica to go idle), or
   * null to stop the sweep here (the replica closes, or stayed busy too long). Waiting does not
   * count against the budget. `nextRunMs`: what the coming timed run should take, where known (its
   * size's last timed run, or the size before's scaled), so a gate holding the replica can let
   * short runs follow each other.
   */
  gate?: (nextRunMs?: number) => Promise<number | null>;
  /**
   * Longest one run may take, ms: the sweep stops before a batch size whose run would take longer
   * (predicted from the previous size's p99, doubled with the batch). A background profile runs on
   * the replica's event loop between requests, so this bounds how long a request can wait for it.
   */
  maxRunMs?: number;
  /**
   * Whether the session ran anything else (the replica's batches) since the profile last asked: a
   * timed run is then preceded by an untimed one at the profiled shape, or a device that rebuilds
   * its kernels per input shape (onnxruntime's CUDA convolutions) would time its rebuild.
   */
  othersRan?: () => boolean;
}

/** maxRunMs of a background (gated) shape profile: half the default latency objective. */
export const BACKGROUND_MAX_RUN_MS = 25;

/** Why a gated sweep stopped early (set when the gate said stop). */
export const GATE_STOPPED = 'stopped by its gate';
/** Why a profile's batch-size change measurement did not run: not one round fitted in what was left of its budget. */
export const CHANGE_OVER_BUDGET = 'no round fitted in what was left of the budget';
/** A gated profile whose sweep ended but whose batch-size change measurement the gate stopped. */
export const CHANGE_UNMEASURED = `${GATE_STOPPED} before measuring what a change of batch size costs`;

/**
 * Whether a profile is complete enough to store as its shape's: a sweep the gate cut short is not
 * (its choice may be far below what the device does); one that lacks only the batch-size change
 * measurement is (profilePadTo pads it on a GPU, where that measurement matters).
 */
export function storable(stoppedBecause: string): boolean {
  return !stoppedBecause.startsWith(GATE_STOPPED) || stoppedBecause === CHANGE_UNMEASURED;
}

export function syntheticFeeds(sig: ModelSignature, batch: number, shape?: ProfileShape): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const s of sig.inputs) {
    const lead = sig.batchAxis ? 1 : 0;
    const dims = s.shape.map((d, i) => (i === 0 && sig.batchAxis ? batch : (d ?? shape?.[s.name]?.[i - lead] ?? 0)));
    const n = elementCount(dims);
    const { array } = DTYPES[s.dtype];
    const data = new array(n);
    if (data instanceof Float32Array || data instanceof Float64Array) for (let i = 0; i < n; i++) data[i] = Math.random() * 2 - 1;
    feeds[s.name] = new ort.Tensor(s.dtype, data as never, dims);
  }
  return feeds;
}

/**
 * One run of `session`, and the run's own time, ms. onnxruntime-node runs a session inside a
 * setImmediate callback (the check phase). Between the call and that callback the event loop
 * polls, and a replica serving traffic reads and parses there whatever arrived meanwhile; timed
 * from the call, a run is charged for that work too, as much for a batch of 1 as for a batch of
 * 64. Under 128 callers that made conv-classifier's background shape profile measure batch 1 at
 * 1,387 items/s against 2,150 in-process, and choose batches of 8 where 4 serve more. An
 * immediate queued just before the call runs in the same check phase, right before the
 * session's, so the run's own time is what the call did before it returned (a session that
 * copies its inputs, or does its work, synchronously) plus the time from that immediate on. A
 * session whose run resolves before that immediate (on a thread, quicker than one loop turn) is
 * timed from the call.
 */
export async function timedRun(session: ModelSession, feeds: Record<string, ort.Tensor>): Promise<number> {
  let started = NaN;
  setImmediate(() => (started = performance.now()));
  const called = performance.now();
  const running = session.run(feeds);
  const returned = performance.now();
  await running;
  const ended = performance.now();
  return Number.isNaN(started) ? ended - called : returned - called + (ended - started);
}

/**
 * Runs the session once on synthetic inputs of `batch` items, so the first real request does not
 * pay for first-run work (allocator arenas, GPU kernel selection). Returns the run's time, ms.
 */
export async function warmUp(session: ModelSession, sig: ModelSignature, batch = 1): Promise<number> {
  return timedRun(session, syntheticFeeds(sig, sig.batchAxis ? batch : 1));
}

/** Why the model cannot be profiled with synthetic inputs, or null. */
export function unprofilable(sig: ModelSignature): string | null {
  const dynamic = sig.inputs.filter((s) => s.shape.some((d, i) => d === null && !(i === 0 && sig.batchAxis)));
  return dynamic.length
    ? `inputs ${dynamic.map((s) => `'${s.name}'`).join(', ')} have dynamic non-batch dims: no synthetic input to profile with`
    : null;
}

/**
 * A gated profile's hold on the session (profileSession wraps ProfileOptions.gate): `pass` waits
 * for the replica to go idle (false: stop), `othersRan` says whether the replica ran a batch since
 * it was last asked, and `waitedMs` is the total waited at `pass` so far.
 */
interface RunGate {
  pass: (nextRunMs?: number) => Promise<boolean>;
  othersRan?: () => boolean;
  waitedMs: () => number;
}

/**
 * Times `session` on `feeds`: one warm-up run (not timed), then runs filling `shareMs` (at least
 * 3, at most 30), stopping early past `deadline` (performance.now() time) once 3 are in. With a
 * gate, each run waits for it (`waited` collects the ms) and the sweep stops (null) when it says so.
 */
async function timeBatch(
  session: ModelSession,
  feeds: Record<string, ort.Tensor>,
  batch: number,
  shareMs: number,
  deadline: () => number,
  gate?: RunGate,
  estimateMs?: number,
) {
  let peakRss = process.memoryUsage().rss;
  if (gate && !(await gate.pass())) return null;
  gate?.othersRan?.(); // the warm-up run below re-establishes this shape
  const warm = await timedRun(session, feeds);
  const times: number[] = [];
  // Runs until their own times fill the share (the warm-up's is no guide: on a GPU it includes a
  // plan rebuild), at least 3 and at most 30.
  let timed = 0; // the runs' own times, summed
  for (let i = 0; i < 30 && (i < 3 || timed < shareMs); i++) {
    // The first timed run's length: from the size before (the warm-up's may include a plan rebuild).
    if (gate && !(await gate.pass(times.at(-1) ?? estimateMs ?? warm))) return null;
    if (gate?.othersRan?.()) await session.run(feeds);
    const ms = await timedRun(session, feeds);
    times.push(ms);
    timed += ms;
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    if (i >= 2 && performance.now() > deadline()) break;
  }
  // Throughput from the runs' own times: with a gate, the waits between runs are not the session's.
  times.sort((a, b) => a - b);
  return {
    peakRss,
    stats: {
      runs: times.length,
      p50Ms: +nearestRank(times, 0.5).toFixed(3),
      p99Ms: +nearestRank(times, 0.99).toFixed(3),
      itemsPerSec: +((batch * times.length) / (timed / 1000)).toFixed(1),
    },
  };
}

/** Rounds of the shape-change measurement: each runs the smaller size, then the chosen size twice (timed). */
export const SHAPE_CHANGE_ROUNDS = 4;
/**
 * Rounds of a background (gated) profile's shape-change measurement: where a change costs a plan
 * rebuild (50 ms on an H200) every round holds the serving replica for two of them, and the
 * difference it looks for is a hundredfold, not a few percent.
 */
export const BACKGROUND_SHAPE_CHANGE_ROUNDS = 2;
/**
 * Share of a profile's budget its batch-size sweep leaves for the shape-change measurement after
 * it. At load as in the background: without it a sweep that filled the budget ran the measurement
 * past it (convnet on one core: 3,585–3,642 ms of a 3,000 ms budget, 2026-11-30).
 */
export const CHANGE_RESERVE = 0.25;

/**
 * Median time of a `batch` run right after a `other` run, over the median of a `batch` run right
 * after another `batch` run, ms (null when the gate stopped it). After one untimed round, each
 * round runs `other`, then `batch` twice. A background (gated) profile skips the untimed round: the
 * sweep has just run both sizes, and on a GPU each round costs the serving replica plan rebuilds.
 */
async function shapeChangeCost(
  session: ModelSession,
  sig: ModelSignature,
  batch: number,
  other: number,
  shape: ProfileShape | undefined,
  gate?: RunGate,
  rounds = SHAPE_CHANGE_ROUNDS,
  /** A `batch` run's time from the sweep (tells the gate what the first 'same' run takes). */
  batchMs?: number,
  /** The budget left (ms) and what one round should take: no round starts that would not fit. */
  budget?: { left: () => number; roundMs: number },
): Promise<number | 'gate' | 'budget'> {
  const big = syntheticFeeds(sig, batch, shape);
  const small = syntheticFeeds(sig, other, shape);
  const changed: number[] = [];
  const same: number[] = [];
  for (let round = gate ? 1 : 0; round <= rounds; round++) {
    if (budget && budget.left() < budget.roundMs) {
      if (changed.length && same.length) break;
      return 'budget';
    }
    if (gate && !(await gate.pass())) return 'gate';
    // The smaller size, then the chosen one timed, back to back: what ran before it is known.
    await session.run(small);
    const afterChange = await timedRun(session, big);
    if (round > 0) changed.push(afterChange);
    if (gate && !(await gate.pass(same.at(-1) ?? batchMs))) return 'gate';
    // Another shape ran in between: a 'same' run is then not one; re-establish the chosen size first.
    if (gate?.othersRan?.()) await session.run(big);
    const again = await timedRun(session, big);
    if (round > 0) same.push(again);
  }
  return median(changed) - median(same);
}

/**
 * A pause before a run, ms: long enough for the core to have left the model's kernels. On this
 * 2-core Xeon VM (AVX-512), conv-classifier's batch-2 run took 0.72–0.88 ms after 0–0.3 ms of
 * other work (spinning or sleeping) and 1.05–1.26 ms after 0.5–5 ms of it, whatever the work
 * touched (a 1 MiB sweep of memory between runs cost nothing; `taskset -c 1 node
 * scripts/resume-cost.mjs`): the core, not its caches, resumes slowly. A replica under load reads and answers requests between its runs, so every run it makes
 * is the paused kind, and a batch of 2 paid that third more per run where one of 16 paid it once
 * per 16 items (`OVERHEAD_MODEL=conv-classifier OVERHEAD_CONCURRENCY=128 OVERHEAD_BATCHING=…
 * pnpm bench:overhead`: 908–933 µs of worker CPU per request at batch 2, 576–606 at 16).
 */
export const RESUME_PAUSE_MS = 1;
/** Rounds of the resume measurement: each a pause, a timed run, then a timed run right after it. */
export const RESUME_ROUNDS = 5;
/**
 * Shortest run the resume cost is measured at, ms: the core resumes over about half a millisecond
 * here, so a batch-1 run of conv-classifier (0.3–0.5 ms) showed 0.15–0.24 ms of it and a batch-2
 * run 0.35.
 */
export const RESUME_MIN_RUN_MS = 1;
/** Longest run the resume cost is measured at, ms: past it, a fraction of a ms per run is noise. */
export const RESUME_MAX_RUN_MS = 20;
/** Most of what is left of the sweep's budget the resume measurement may take. */
const RESUME_BUDGET_SHARE = 0.1;
/** Fewest valid rounds a resume cost is taken from (a gated profile drops rounds a served batch interrupted). */
const RESUME_MIN_ROUNDS = 3;

/**
 * What a run costs after a pause of RESUME_PAUSE_MS over one right after another run, ms
 * (median of each, never below 0), or undefined when fewer than RESUME_MIN_ROUNDS rounds were
 * valid or the gate stopped it. A gated round counts only if no served batch ran during its pause
 * and the gate did not wait before its second run (that would make it a paused one too).
 */
async function resumeCost(
  session: ModelSession,
  feeds: Record<string, ort.Tensor>,
  runMs: number,
  gate?: RunGate,
): Promise<number | undefined> {
  const paused: number[] = [];
  const again: number[] = [];
  for (let round = 0; round < RESUME_ROUNDS; round++) {
    await new Promise((r) => setTimeout(r, RESUME_PAUSE_MS));
    if (gate && !(await gate.pass(runMs))) return undefined;
    if (gate?.othersRan?.()) continue; // a served batch ran during the pause: not the same model resumed
    const first = await timedRun(session, feeds);
    const waited = gate?.waitedMs() ?? 0;
    if (gate && !(await gate.pass(runMs))) return undefined;
    if (gate && (gate.othersRan?.() || gate.waitedMs() > waited)) continue;
    paused.push(first);
    again.push(await timedRun(session, feeds));
  }
  if (paused.length < RESUME_MIN_ROUNDS) return undefined;
  return Math.max(0, median(paused) - median(again));
}

/** Most rounds of the interleaved re-timing after a sweep (each: every measured size once). */
export const RETIME_MAX_ROUNDS = 8;
/** Fewest rounds worth a re-timing: fewer fit in what is left of the sweep's budget, the sweep's rows stand. */
export const RETIME_MIN_ROUNDS = 3;
/**
 * Share of the sweep's budget its batch sizes leave for re-timing: where every size does not fit
 * RETIME_MIN_ROUNDS rounds, the contenders for the choice (batch-size.ts contenders) are re-timed
 * alone, and a slow model's sizes would otherwise spend the whole sweep (convnet on the AMD EPYC
 * host of 2026-12-01: ≈ 400 ms a round of its sizes, never re-timed; three rounds of its two
 * contenders there, 16 and 32, ≈ 400 ms; on the Intel host, 32 and 64, ≈ 260 ms).
 */
export const RETIME_RESERVE = 0.2;
/** Why a profile's re-timing did not finish. */
export const RETIME_STOPPED = `${GATE_STOPPED} while re-timing its batch sizes`;

/**
 * The sweep's rows re-timed side by side: in each round every size runs once untimed (its shape
 * re-established, as a GPU rebuilds its plan for a new one) and once timed, in an order that turns
 * around each round. A sweep times its sizes one after another, and on a shared machine the core's
 * speed moves within seconds (conv-classifier's batch 1 measured 1,570 to 2,944 items/s in four
 * profiles of one minute, `taskset -c 1`, 2026-11-30), so a size that ran in a slow stretch lost to
 * one that ran in a quick one and the choice fell anywhere from 2 to 32. Side by side, every size
 * meets the same stretches. Rows keep the sweep's p99 and runs; their p50 is the re-timing's
 * median run, and their rate the batch over it. Undefined when fewer than RETIME_MIN_ROUNDS rounds fit
 * in what `leftMs` says is left of the budget; 'gate' when the gate stopped it.
 */
async function retimeInterleaved(
  session: ModelSession,
  sig: ModelSignature,
  rows: readonly ProfileRow[],
  shape: ProfileShape | undefined,
  leftMs: () => number,
  gate?: RunGate,
): Promise<ProfileRow[] | undefined | 'gate'> {
  // A round's length: estimated from the rows at first, then what the last round took (a device
  // that rebuilds its plan for each new shape pays that on every untimed run).
  let roundMs = rows.reduce((n, r) => n + 2 * r.p50Ms, 0);
  if (leftMs() < RETIME_MIN_ROUNDS * roundMs) return undefined;
  const feeds = rows.map((r) => syntheticFeeds(sig, r.batch, shape));
  const times: number[][] = rows.map(() => []);
  let rounds = 0;
  rounds: while (rounds < RETIME_MAX_ROUNDS && leftMs() >= roundMs) {
    const t0 = performance.now();
    const waited0 = gate?.waitedMs() ?? 0;
    for (let k = 0; k < rows.length; k++) {
      if (leftMs() <= 0) break rounds; // a round longer than estimated: the rounds before it stand
      const i = rounds % 2 === 0 ? k : rows.length - 1 - k;
      if (gate && !(await gate.pass(2 * rows[i]!.p50Ms))) return 'gate';
      gate?.othersRan?.();
      await session.run(feeds[i]!);
      times[i]!.push(await timedRun(session, feeds[i]!));
    }
    rounds++;
    roundMs = performance.now() - t0 - ((gate?.waitedMs() ?? 0) - waited0);
  }
  if (rounds < RETIME_MIN_ROUNDS) return undefined;
  // From the median run: one run preempted in a round must not move a size's rate.
  return rows.map((r, i) => {
    const p50 = median(times[i]!);
    return { ...r, p50Ms: +p50.toFixed(3), itemsPerSec: +((r.batch * 1000) / p50).toFixed(1) };
  });
}

export async function profileSession(
  session: ModelSession,
  sig: ModelSignature,
  base: {
    digest: string;
    deviceClass: string;
    sessionBytes: number;
    fileBytes: number;
    rssBaseline: number;
    /**
     * For sessions whose memory is not process RSS (a GPU): bytes the session holds on its device
     * now (e.g. VRAM used − used before the session), sampled after each batch size's runs.
     */
    deviceBytes?: () => Promise<number | undefined>;
  },
  opts: ProfileOptions = {},
): Promise<ModelProfile> {
  const budgetMs = opts.budgetMs ?? DEFAULT_PROFILE_BUDGET_MS;
  const latencySloMs = opts.latencySloMs ?? DEFAULT_LATENCY_SLO_MS;
  const maxBatch = sig.batchAxis ? (opts.maxBatch ?? DEFAULT_MAX_PROFILE_BATCH) : 1;
  const start = performance.now();
  // Time spent waiting at the gate (for the replica to go idle) does not count against the budget.
  let waited = 0;
  const spent = () => performance.now() - start - waited;
  const gate = opts.gate
    ? {
        pass: async (nextRunMs?: number) => {
          const w = await opts.gate!(nextRunMs);
          if (w !== null) waited += w;
          return w !== null;
        },
        ...(opts.othersRan ? { othersRan: opts.othersRan } : {}),
        waitedMs: () => waited,
      }
    : undefined;
  const rows: ProfileRow[] = [];
  /** What a run after other work costs more (resumeCost), measured once during the sweep, ms. */
  let resumeMs: number | undefined;
  let resumeTried = false;
  let runOverheadMs = DEFAULT_RUN_OVERHEAD_MS;
  let stoppedBecause = `reached the largest batch tried (${maxBatch})`;
  // The sweep leaves part of the budget for the shape-change measurement after it, and its sizes
  // part of the sweep's for re-timing them side by side.
  const sweepMs = maxBatch > 1 ? budgetMs * (1 - CHANGE_RESERVE) : budgetMs;
  const sizesMs = maxBatch > 1 ? sweepMs * (1 - RETIME_RESERVE) : sweepMs;
  for (let batch = 1; batch <= maxBatch; batch *= 2) {
    const left = sizesMs - spent();
    if (left <= 0) {
      stoppedBecause =
        sweepMs < budgetMs ? `time budget of ${budgetMs} ms spent (${sweepMs} ms on the sweep)` : `time budget of ${budgetMs} ms spent`;
      break;
    }
    const prev = rows[rows.length - 1];
    if (opts.maxRunMs !== undefined && prev && prev.p99Ms * (batch / prev.batch) > opts.maxRunMs) {
      stoppedBecause = `a batch of ${batch} would hold the replica ~${Math.round(prev.p99Ms * (batch / prev.batch))} ms per run (> ${opts.maxRunMs} ms)`;
      break;
    }
    // Spend at most a fair share of what is left on this size.
    const share = left / Math.max(1, Math.log2(maxBatch / batch) + 1);
    const feeds = syntheticFeeds(sig, batch, opts.shape);
    const estimateMs = prev ? prev.p50Ms * (batch / prev.batch) : undefined;
    let t = await timeBatch(session, feeds, batch, share, () => start + waited + sizesMs, gate, estimateMs);
    // The p99 this row is held to: the objective and, where a run cap stops the sweep, half the cap
    // (the next size, twice this one, would be projected past it). One preempted run must not stop it.
    const tailLimit = opts.maxRunMs !== undefined && batch * 2 <= maxBatch ? Math.min(latencySloMs, opts.maxRunMs / 2) : latencySloMs;
    if (t && tailIsOutlier(t.stats, tailLimit)) {
      // A few slow runs, not a slow batch size: time it once more and keep the steadier reading.
      const again = await timeBatch(session, feeds, batch, share, () => start + waited + sizesMs, gate, t.stats.p50Ms);
      if (again && again.stats.p99Ms < t.stats.p99Ms) t = { ...again, peakRss: Math.max(t.peakRss, again.peakRss) };
    }
    if (!t) {
      stoppedBecause = `${GATE_STOPPED} before batch ${batch}`;
      break;
    }
    // onnxruntime's arenas keep what the largest run took, so a reading after the runs is the peak.
    const onDevice = base.deviceBytes ? await base.deviceBytes() : undefined;
    const row: ProfileRow = { batch, ...t.stats, peakBytes: Math.max(0, onDevice ?? t.peakRss - base.rssBaseline) };
    rows.push(row);
    // Measured once, at the first size whose run lasts RESUME_MIN_RUN_MS (the core resumes over about
    // that long: a shorter run shows only part of the cost), or at the last size the sweep reaches.
    const last = batch * 2 > maxBatch;
    if (!resumeTried && (row.p50Ms >= RESUME_MIN_RUN_MS || last) && row.p50Ms <= RESUME_MAX_RUN_MS) {
      resumeTried = true;
      // What a run after other work costs over the sweep's back-to-back runs: the replica pays it per run.
      const roundMs = RESUME_PAUSE_MS + 2 * row.p50Ms;
      if (RESUME_ROUNDS * roundMs <= (sweepMs - spent()) * RESUME_BUDGET_SHARE) {
        resumeMs = await resumeCost(session, feeds, row.p50Ms, gate);
        if (resumeMs !== undefined) runOverheadMs = DEFAULT_RUN_OVERHEAD_MS + resumeMs;
      }
    }
    if (row.p99Ms > latencySloMs) {
      stoppedBecause = `batch ${batch} p99 ${row.p99Ms} ms exceeds the objective of ${latencySloMs} ms`;
      break;
    }
    // Sizes are judged as the replica serves them (its per-run cost counted), here as in the choice.
    if (sweepPlateaued(rows.map((r) => servedRate(r, runOverheadMs)))) {
      stoppedBecause = `throughput stopped improving after batch ${batch / 2 ** FLAT_SIZES_BEFORE_STOP}`;
      break;
    }
  }
  if (rows.length > 1 && !stoppedBecause.startsWith(GATE_STOPPED)) {
    const left = () => sweepMs - spent();
    let retimed = await retimeInterleaved(session, sig, rows, opts.shape, left, gate);
    // Not every size fits: the ones the choice could fall on, side by side (fewer than every size, or none would fit either).
    const few = retimed === undefined ? contenders(rows, latencySloMs, runOverheadMs) : [];
    if (few.length > 1 && few.length < rows.length) retimed = await retimeInterleaved(session, sig, few, opts.shape, left, gate);
    if (retimed === 'gate') stoppedBecause = RETIME_STOPPED;
    else if (retimed) for (const r of retimed) rows[rows.findIndex((x) => x.batch === r.batch)] = r;
  }
  let chosen = chooseBatch(rows, latencySloMs, DEFAULT_MIN_GAIN, runOverheadMs);
  if (resumeMs !== undefined) chosen = { ...chosen, resumeMs: +resumeMs.toFixed(3) };
  // What a change of batch size costs at the chosen size (decides padding): against the next smaller size measured.
  const smaller = rows.filter((r) => r.batch < chosen.maxBatchSize).pop();
  if (smaller) {
    const rounds = gate ? BACKGROUND_SHAPE_CHANGE_ROUNDS : SHAPE_CHANGE_ROUNDS;
    const batchMs = rows.find((r) => r.batch === chosen.maxBatchSize)?.p50Ms;
    // One round: the smaller size once, the chosen one twice.
    const roundMs = smaller.p50Ms + 2 * (batchMs ?? 0);
    const change = await shapeChangeCost(session, sig, chosen.maxBatchSize, smaller.batch, opts.shape, gate, rounds, batchMs, {
      left: () => budgetMs - spent(),
      roundMs,
    });
    if (typeof change === 'number') chosen = choosePadding(rows, chosen, change);
    // Cut short before the measurement (stored all the same: see storable).
    else if (change === 'gate') stoppedBecause = CHANGE_UNMEASURED;
    else chosen = { ...chosen, reason: `${chosen.reason}; what a change of batch size costs was not measured (${CHANGE_OVER_BUDGET})` };
  }
  const chosenRow = rows.find((r) => r.batch === chosen.maxBatchSize) ?? rows[0];
  const peakBytes = chosenRow?.peakBytes ?? 0;
  return {
    v: PROTOCOL_VERSION,
    digest: base.digest,
    deviceClass: base.deviceClass,
    ortVersion: ortVersion(),
    createdAt: Date.now(),
    latencySloMs,
    budgetMs,
    tookMs: +spent().toFixed(1),
    rows,
    stoppedBecause,
    ...(opts.shape ? { shape: opts.shape } : {}),
    chosen,
    memory: {
      sessionBytes: base.sessionBytes,
      peakBytes,
      replicaBytes: Math.max(base.sessionBytes, peakBytes, base.fileBytes),
    },
  };
}

/**
 * Measures thread settings for a CPU session at the profile's chosen batch size (and input shape,
 * for a model with dynamic non-batch dims): the session the
 * batch sweep ran with (`current`, the widest setting), then narrower ones and parallel mode,
 * each opened with `open`, timed within a share of `budgetMs`, and released. Keeps the cheapest
 * setting within 5 % of the fastest (thread-choice.ts). Returns the session to serve with:
 * `current` when it won, else one opened with the chosen setting (`current` is then released).
 * At most two sessions of the model are open at once.
 */
export async function profileThreads(
  current: { session: ModelSession; settings: ThreadSettings },
  open: (t: ThreadSettings) => Promise<ModelSession>,
  sig: ModelSignature,
  opts: { batch: number; usableCores: number; budgetMs?: number; latencySloMs?: number; shape?: ProfileShape },
): Promise<{ session: ModelSession; settings: ThreadSettings; profile: ThreadChoice & { rows: ThreadRow[]; tookMs: number } }> {
  const start = performance.now();
  const budgetMs = opts.budgetMs ?? DEFAULT_PROFILE_BUDGET_MS;
  const deadline = start + budgetMs;
  const latencySloMs = opts.latencySloMs ?? DEFAULT_LATENCY_SLO_MS;
  const feeds = syntheticFeeds(sig, opts.batch, opts.shape);
  const candidates = [current.settings, ...threadCandidates(opts.usableCores).filter((c) => !sameThreads(c, current.settings))];
  const share = budgetMs / candidates.length;
  const rows: ThreadRow[] = [];
  for (const [i, settings] of candidates.entries()) {
    if (i > 0 && performance.now() > deadline) break;
    const session = i === 0 ? current.session : await open(settings);
    try {
      const t = (await timeBatch(session, feeds, opts.batch, share, () => deadline))!;
      rows.push({ ...settings, interOp: settings.mode === 'parallel' ? settings.interOp : 1, batch: opts.batch, ...t.stats });
    } finally {
      if (i > 0) await session.release();
    }
  }
  const choice = chooseThreads(rows, latencySloMs)!;
  const profile = { ...choice, rows, tookMs: +(performance.now() - start).toFixed(1) };
  if (sameThreads(choice, current.settings)) return { session: current.session, settings: current.settings, profile };
  const session = await open(choice);
  await current.session.release();
  return { session, settings: { intraOp: choice.intraOp, interOp: choice.interOp, mode: choice.mode }, profile };
}

export function ortVersion(): string {
  const v = (ort.env as { versions?: Record<string, string> }).versions;
  return v?.node ?? v?.common ?? 'unknown';
}

/** A device class name profiles are shared under: same CPU model, cores and threads (or GPU model). */
export function deviceClass(kind: 'cpu' | 'gpu', model: string, cores: number, threads: number, provider: string): string {
  const slug =
    model
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-|-$/g, '')
      .slice(0, 40) || 'unknown';
  return kind === 'cpu' ? `cpu-${slug}-${cores}c-t${threads}` : `gpu-${slug}-${provider}`;
}
