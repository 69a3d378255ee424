// What a load run measured: requests sent, answered, retried and failed (by error code), and the
// latency distribution of the answered ones. Pure: no clock, no I/O (the caller passes times in).

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  max: number;
}

export interface LoadSummary {
  /** Requests started (a retried request counts once). */
  sent: number;
  /** Requests answered with outputs. */
  ok: number;
  /** Extra attempts made after retryable errors. */
  retried: number;
  /** Requests that finally failed, by error code. */
  errored: Record<string, number>;
  /** Sent but never answered either way: `sent - ok - sum(errored)`. */
  lost: number;
  /** Items (dims[0] of the first input) in the answered requests. */
  items: number;
  /** The wall time the rates are over, ms. */
  elapsedMs: number;
  /** Items answered per second of `elapsedMs`. */
  itemsPerSec: number;
  /** Requests answered (ok) per second of `elapsedMs`. */
  requestsPerSec: number;
  /** Over the answered requests; all 0 when none was. */
  latencyMs: LatencySummary;
}

/**
 * The `p`th percentile (0..100) of ascending `sortedMs`, nearest-rank: the smallest sample with at
 * least p% of the samples at or below it. NaN for no samples.
 */
export function percentile(sortedMs: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const n = sortedMs.length;
  if (n === 0) return NaN;
  const rank = Math.ceil((p / 100) * n);
  return sortedMs[Math.min(n - 1, Math.max(0, rank - 1))]!;
}

const round = (x: number, digits: number) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** Accumulates the outcomes of a load run; `summary` may be taken at any time (progress). */
export class LoadStats {
  private sentCount = 0;
  private okCount = 0;
  private retriedCount = 0;
  private itemCount = 0;
  private readonly latencies: number[] = [];
  private readonly errors = new Map<string, number>();

  /** A request was started. */
  markSent(): void {
    this.sentCount++;
  }

  /** A request was answered with outputs after `latencyMs` carrying `items` items. */
  recordOk(latencyMs: number, items: number): void {
    this.okCount++;
    this.itemCount += items;
    this.latencies.push(latencyMs);
  }

  /** A request failed for good with this error code. */
  recordError(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  /** A request is being tried again after a retryable error. */
  recordRetry(): void {
    this.retriedCount++;
  }

  /** The figures so far, rates over `elapsedMs` of wall time. */
  summary(elapsedMs: number): LoadSummary {
    const errored: Record<string, number> = {};
    let failed = 0;
    for (const [code, n] of [...this.errors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      errored[code] = n;
      failed += n;
    }
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const n = sorted.length;
    let sum = 0;
    for (const x of sorted) sum += x;
    const latencyMs: LatencySummary =
      n === 0
        ? { p50: 0, p90: 0, p99: 0, mean: 0, max: 0 }
        : {
            p50: round(percentile(sorted, 50), 3),
            p90: round(percentile(sorted, 90), 3),
            p99: round(percentile(sorted, 99), 3),
            mean: round(sum / n, 3),
            max: round(sorted[n - 1]!, 3),
          };
    const perSec = (count: number) => (elapsedMs > 0 ? round((count * 1000) / elapsedMs, 2) : 0);
    return {
      sent: this.sentCount,
      ok: this.okCount,
      retried: this.retriedCount,
      errored,
      lost: this.sentCount - this.okCount - failed,
      items: this.itemCount,
      elapsedMs: round(elapsedMs, 3),
      itemsPerSec: perSec(this.itemCount),
      requestsPerSec: perSec(this.okCount),
      latencyMs,
    };
  }
}
