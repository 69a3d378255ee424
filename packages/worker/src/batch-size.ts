// Batch-size choice, pure: from a model's measured profile on a device, pick the batch size with
// the best throughput whose p99 batch latency stays within the latency objective, and the queue
// delay that goes with it. Larger batches must earn their latency: a gain under `minGain` over a
// smaller batch does not count (on small CPUs, big conv batches are often *slower* per item).
// Throughput is counted as a replica serves it: each run costs the replica `runOverheadMs` besides
// the model (waking for the batch, onnxruntime's call, the replies' socket write), once per run,
// so a batch that only matches batch 1 on the model alone still serves more (conv-classifier).
// Past the best size, the largest size whose served rate stays within `minGain` of it and whose
// run stays short is as good, and saves the replica more per-run work under load: batches may
// grow to it. Where the model alone gains nothing, none waits for company (no queue delay).

import type { BatchChoice, ProfileRow } from '@flotilla/protocol';

export type { BatchChoice, ProfileRow };

/** Relative throughput gain a larger batch must bring to be preferred. Default 0.05 (5 %). */
export const DEFAULT_MIN_GAIN = 0.05;
/** Longest queue delay ever chosen automatically, ms. */
export const MAX_AUTO_QUEUE_DELAY_MS = 5;
/**
 * Longest median run of a size chosen past the best one for being as good (ms, or the best size's
 * run where that is longer): what a request arriving during such a run waits for it at most. Sizes
 * in that band are rated by isolated runs, which do not show what a larger batch costs a replica
 * serving real traffic: on the AMD EPYC host of 2026-12-01 conv-classifier's batch 32 (4.7 ms a
 * run, within 5 % of batch 8 in isolation) cost the worker 18 % more CPU per request than batch 16
 * (2.3 ms) at 128 callers and served 15 % fewer items/s. The band's sizes already count their
 * per-run work (servedRate) and may serve up to 5 % less than the best by that count, so longer
 * runs only buy that penalty: the band stops at 4 ms runs (it was 5 ms, then 3). At 3 ms it left
 * out batch 16 on the Intel host of the same day, whose shape profile read 16's run at 3.05 ms and
 * chose 8: through the replica 8 cost 258.5 µs of CPU per item against 237.2 at 16 and served 0.79
 * of the in-process rate against 0.827 (pnpm bench, BENCH_BATCHING, paired). 4 ms keeps 16 there
 * and still leaves out the AMD host's 32.
 */
export const MAX_FLAT_BATCH_RUN_MS = 4;
/**
 * What one run costs a replica besides the model, ms. `pnpm bench:overhead` on conv-classifier
 * (concurrency 16, this 2-core VM, 2026-11-30): the worker spent 118–153 µs per request outside
 * the model at batch 1 and 67–69 µs at batch 4, i.e. about 90 µs per run and 45 per request;
 * 0.05 ms is the part of that a faster host would still pay. A profile adds what it measured a
 * run after other work to cost over a back-to-back one (profiler.ts resumeCost, `chosen.resumeMs`).
 */
export const DEFAULT_RUN_OVERHEAD_MS = 0.05;

/** Items per second a replica serves at `row`'s batch size: the model's mean run plus `runOverheadMs`. */
export function servedRate(row: Pick<ProfileRow, 'batch' | 'itemsPerSec'>, runOverheadMs = DEFAULT_RUN_OVERHEAD_MS): number {
  if (!(row.itemsPerSec > 0)) return 0;
  return (row.batch * 1000) / ((row.batch * 1000) / row.itemsPerSec + runOverheadMs);
}

export function chooseBatch(
  rows: readonly ProfileRow[],
  latencySloMs: number,
  minGain = DEFAULT_MIN_GAIN,
  runOverheadMs = DEFAULT_RUN_OVERHEAD_MS,
): BatchChoice {
  const sorted = [...rows].sort((a, b) => a.batch - b.batch);
  const one = sorted.find((r) => r.batch === 1);
  if (!one) return { maxBatchSize: 1, maxQueueDelayMs: 0, reason: 'no profile for batch 1: running unbatched' };
  const served = (r: ProfileRow) => servedRate(r, runOverheadMs);
  let best = one;
  for (const r of sorted) {
    if (r.batch === 1 || r.p99Ms > latencySloMs) continue;
    if (served(r) > served(best) * (1 + minGain)) best = r;
  }
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
  const counting = `${+runOverheadMs.toFixed(3)} ms of serving per run`;
  // Past the best: as good within `minGain` (served), with a short run.
  const runBound = Math.max(MAX_FLAT_BATCH_RUN_MS, best.p50Ms);
  let pick = best;
  for (const r of sorted) {
    if (r.batch <= pick.batch) continue;
    if (r.p99Ms > latencySloMs || r.p50Ms > runBound || served(r) < served(best) * (1 - minGain)) break;
    pick = r;
  }
  const gain = `${(pick.itemsPerSec / one.itemsPerSec).toFixed(2)}× batch 1`;
  const head = `batch ${pick.batch}: ${fmt(pick.itemsPerSec)} items/s = ${gain}`;
  const slo = `p99 ${fmt(pick.p99Ms)} ms ≤ objective ${latencySloMs} ms`;
  const band =
    pick === best
      ? ''
      : `; the largest within ${Math.round(minGain * 100)}% of batch ${best.batch}'s served rate whose run takes ≤ ${fmt(runBound)} ms`;
  if (best.itemsPerSec <= one.itemsPerSec * (1 + minGain)) {
    // The model alone gains nothing: batches only save the replica its per-run work, so none
    // waits for company; a batch takes what queued while the last one ran.
    if (pick.batch > 1) {
      return {
        maxBatchSize: pick.batch,
        maxQueueDelayMs: 0,
        reason: `${head} on the model alone, ${(served(pick) / served(one)).toFixed(2)}× counting ${counting}; ${slo}${band}; no queue delay: a batch takes what is queued`,
      };
    }
    const larger = sorted.filter((r) => r.batch > 1);
    const why =
      larger.length === 0
        ? 'no larger batch was measured'
        : larger.every((r) => r.p99Ms > latencySloMs)
          ? `every larger batch breaks the p99 objective of ${latencySloMs} ms`
          : `no larger batch is ${Math.round(minGain * 100)}% faster per item counting ${counting} (best ${fmt(Math.max(...larger.map(served)))} vs ${fmt(served(one))} items/s) or within ${Math.round(minGain * 100)}% with a run of ≤ ${fmt(runBound)} ms`;
    return { maxBatchSize: 1, maxQueueDelayMs: 0, reason: `batch 1: ${why}` };
  }
  // Waiting for company costs latency; wait at most half a batch-1 run (capped): at low load that
  // bounds the added latency to 50 %, at high load batches fill while the replica is busy anyway.
  const delay = Math.min(MAX_AUTO_QUEUE_DELAY_MS, Math.round((one.p50Ms / 2) * 10) / 10);
  return {
    maxBatchSize: pick.batch,
    maxQueueDelayMs: delay,
    reason: `${head}, ${slo}${band}; queue delay ${delay} ms = half a batch-1 run (≤ ${MAX_AUTO_QUEUE_DELAY_MS} ms)`,
  };
}

/**
 * Sizes in a row without a 5 % gain after which the sweep stops (the budget and the objective
 * still stop it first). A plateau of two can end in a further gain: wide-mlp on one core was flat
 * from 16 to 64 in one profile (4,688 / 4,729 / 4,728 items/s), which then settled the replica on
 * batch 16, while in-process it gains 9 % from 32 to 64 and 11 % more at 128 (`pnpm bench`,
 * 2026-11-30 05:48 UTC).
 */
export const FLAT_SIZES_BEFORE_STOP = 3;

/**
 * Whether a sweep whose sizes (1, 2, 4, …) measured `rates` items/s so far should stop: the last
 * FLAT_SIZES_BEFORE_STOP sizes each fell short of beating the best rate before them by `minGain`.
 */
export function sweepPlateaued(rates: readonly number[], minGain = DEFAULT_MIN_GAIN, steps = FLAT_SIZES_BEFORE_STOP): boolean {
  let best = 0;
  let flat = 0;
  for (const r of rates) {
    if (r > best * (1 + minGain)) {
      best = r;
      flat = 0;
    } else flat++;
  }
  return flat >= steps;
}

/**
 * How far below the best served rate a size may have measured and still be re-timed as a
 * contender for the choice. A sweep times its sizes one after another, and a slow stretch of a
 * shared core took 18 % off one: on the AMD EPYC host of 2026-12-01 convnet's batch 32 measured
 * 705 items/s in a profile where the bench's interleaved sweep had 864, so batch 16 (749) was
 * chosen and the cluster served 0.60 of the in-process best.
 */
export const CONTENDER_MARGIN = 0.25;

/**
 * The rows a choice could fall on, were the sweep's readings a slow stretch off: every size within
 * the objective whose served rate is within `margin` of the best one's, in the rows' order.
 */
export function contenders(
  rows: readonly ProfileRow[],
  latencySloMs: number,
  runOverheadMs = DEFAULT_RUN_OVERHEAD_MS,
  margin = CONTENDER_MARGIN,
): ProfileRow[] {
  const eligible = rows.filter((r) => r.p99Ms <= latencySloMs);
  const best = Math.max(0, ...eligible.map((r) => servedRate(r, runOverheadMs)));
  return eligible.filter((r) => servedRate(r, runOverheadMs) >= best * (1 - margin));
}

/** Share of the objective a batch's median run may take for a p99 over it to count as noise. */
export const OUTLIER_MEDIAN_SHARE = 0.8;

/**
 * Whether a profiled row's p99 breaks the objective only through a few slow runs: with at most 30
 * runs per size, p99 is the slowest run, and one preempted run (another process, a collection)
 * would end the sweep there and settle the replica on a batch size far below what the device
 * does. Such a row is timed again (profiler.ts); a row whose median run is near the objective is
 * really too slow.
 */
export function tailIsOutlier(row: Pick<ProfileRow, 'p50Ms' | 'p99Ms'>, latencySloMs: number): boolean {
  return row.p99Ms > latencySloMs && row.p50Ms <= latencySloMs * OUTLIER_MEDIAN_SHARE;
}

/** A change of shape must cost at least this much before batches are padded, ms (below it: timer noise). */
export const MIN_PAD_SHAPE_CHANGE_MS = 1;

/**
 * Whether smaller batches should run padded to the chosen size. Batches vary in size with the
 * load, and some kernels rebuild their plan whenever the input shape differs from their last run
 * (onnxruntime's cuDNN convolutions on CUDA rebuild a cuDNN graph per new shape, tens of ms): then
 * every batch pays that instead of its run. Padding a batch to the chosen size keeps one shape;
 * it costs at most the chosen size's run over a batch-1 run. `shapeChangeMs` is what a run at the
 * chosen size costs right after a run at another size, over its run after the same size.
 */
export function choosePadding(rows: readonly ProfileRow[], chosen: BatchChoice, shapeChangeMs: number): BatchChoice {
  const measured = { ...chosen, shapeChangeMs: +Math.max(0, shapeChangeMs).toFixed(3) };
  const at = rows.find((r) => r.batch === chosen.maxBatchSize);
  const one = rows.find((r) => r.batch === 1);
  if (chosen.maxBatchSize <= 1 || !at || !one) return measured;
  const padCost = Math.max(0, at.p50Ms - one.p50Ms);
  if (shapeChangeMs < MIN_PAD_SHAPE_CHANGE_MS || shapeChangeMs <= padCost) return measured;
  return {
    ...measured,
    padTo: chosen.maxBatchSize,
    reason:
      `${chosen.reason}; a change of batch size costs ${shapeChangeMs.toFixed(1)} ms (> ${padCost.toFixed(2)} ms of padding at most): ` +
      `smaller batches run padded to ${chosen.maxBatchSize}`,
  };
}

/**
 * Rows smaller batches run padded to, by a profile's choice (undefined: unpadded): its `padTo`
 * where it found a change of batch size dearer than padding; on a GPU, also its chosen size where it
 * did not measure what a change costs (a background profile cut short, or a profile stored before
 * that measurement existed), because there a change may cost a plan rebuild and padding costs little.
 */
export function profilePadTo(chosen: Pick<BatchChoice, 'maxBatchSize' | 'padTo' | 'shapeChangeMs'>, onGpu: boolean): number | undefined {
  if (chosen.padTo !== undefined) return chosen.padTo;
  return onGpu && chosen.shapeChangeMs === undefined && chosen.maxBatchSize > 1 ? chosen.maxBatchSize : undefined;
}
