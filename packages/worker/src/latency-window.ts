// A replica's recent request latencies, for the p50/p99 its heartbeats report: the last `capacity`
// answers (a fixed ring, so memory never grows) of those within `maxAgeMs` of the snapshot (an idle
// replica reports no stale p99). Recording is two writes into one preallocated array and no sort;
// percentiles are computed only when a snapshot asks. No timers and no I/O: callers pass the clock.

/** Latencies kept per replica (16 KiB: latency and time, 8 bytes each). */
export const DEFAULT_LATENCY_WINDOW_SIZE = 1024;
/** Oldest answer a summary counts, ms: ten heartbeats at one a second. */
export const DEFAULT_LATENCY_WINDOW_MS = 10_000;

/** p50 and p99 (nearest rank) of the latencies in the window, ms, and how many there were. */
export interface LatencySummary {
  p50: number;
  p99: number;
  count: number;
}

export class LatencyWindow {
  /** Interleaved `[latencyMs, atMs]` pairs, written round-robin. */
  private readonly ring: Float64Array;
  /** Reused by `summary` for the sort (no allocation per heartbeat). */
  private readonly scratch: Float64Array;
  /** Next slot to write, 0..capacity-1. */
  private next = 0;
  /** Slots written so far, at most capacity. */
  private filled = 0;

  constructor(
    readonly capacity = DEFAULT_LATENCY_WINDOW_SIZE,
    readonly maxAgeMs = DEFAULT_LATENCY_WINDOW_MS,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.ring = new Float64Array(2 * capacity);
    this.scratch = new Float64Array(capacity);
  }

  /** One answered request: its latency and when it was answered (ms, any monotonic clock shared with `summary`). */
  record(latencyMs: number, atMs: number): void {
    const i = this.next;
    this.ring[2 * i] = latencyMs;
    this.ring[2 * i + 1] = atMs;
    this.next = i + 1 === this.capacity ? 0 : i + 1;
    if (this.filled < this.capacity) this.filled++;
  }

  /** Percentiles of the latencies answered within `maxAgeMs` before `nowMs`; undefined when there are none. */
  summary(nowMs: number): LatencySummary | undefined {
    const since = nowMs - this.maxAgeMs;
    let n = 0;
    for (let i = 0; i < this.filled; i++) if (this.ring[2 * i + 1]! >= since) this.scratch[n++] = this.ring[2 * i]!;
    if (n === 0) return undefined;
    const sorted = this.scratch.subarray(0, n).sort();
    return { p50: nearestRank(sorted, 0.5), p99: nearestRank(sorted, 0.99), count: n };
  }
}

/** The nearest-rank percentile of ascending values: the smallest value with at least q of them at or below it. */
export function nearestRank(sorted: ArrayLike<number>, q: number): number {
  // The epsilon keeps float error (0.29 * 100 = 28.999…) from moving the rank.
  const rank = Math.max(1, Math.ceil(q * sorted.length - 1e-9));
  return sorted[rank - 1]!;
}

/** The median of `xs` (nearest rank). */
export function median(xs: readonly number[]): number {
  return nearestRank(
    [...xs].sort((a, b) => a - b),
    0.5,
  );
}
