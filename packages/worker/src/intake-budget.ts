// How many bytes of accepted, unanswered requests one worker holds at once, pure (no I/O). A
// replica's queue is bounded by its length (maxQueueLength, 1,024 by default), which does not bound
// memory: 1,024 requests of 1 MiB each are a GiB, and a worker hosts many replicas. Measured on
// 2026-12-01 (this VM): one burst of 1,200 requests of 995 KB to a replica slowed to 10 batches a
// second left 984 MiB of request bodies queued in the worker, which a Kubernetes memory limit ends
// by killing the pod. With this budget a request that would take the worker past it is answered
// OVERLOADED at once (the caller's retries or another replica take it): nothing accepted is dropped,
// and what is held stays under the limit plus one request. A request larger than the whole budget
// is still taken when nothing else is held, so a budget below the largest request never refuses
// every request.

/** Most bytes of unanswered requests a worker holds by default: 1/16 of its memory, at most this. */
export const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024 * 1024;
/**
 * The share of the worker's memory (its inventory's, a cgroup limit included) held at most by
 * default: within the 10 % the memory ledger keeps free of models by default (DEFAULT_HEADROOM).
 */
export const QUEUED_BYTES_SHARE = 1 / 16;
/** The default is never below this (a small container still queues a few large requests). */
export const MIN_DEFAULT_QUEUED_BYTES = 64 * 1024 * 1024;

/** The default budget for a worker whose memory is `memoryTotalBytes`. */
export function defaultMaxQueuedBytes(memoryTotalBytes: number): number {
  const share = Number.isFinite(memoryTotalBytes) && memoryTotalBytes > 0 ? Math.floor(memoryTotalBytes * QUEUED_BYTES_SHARE) : 0;
  return Math.min(DEFAULT_MAX_QUEUED_BYTES, Math.max(MIN_DEFAULT_QUEUED_BYTES, share));
}

export interface IntakeStats {
  /** Bytes of accepted, unanswered requests held now. */
  heldBytes: number;
  /** The most held at once since the worker started. */
  peakBytes: number;
  limitBytes: number;
  /** Requests refused for the budget. */
  refused: number;
}

export class IntakeBudget {
  private held = 0;
  private peak = 0;
  private refusals = 0;

  constructor(readonly limitBytes: number) {
    if (!(limitBytes >= 1)) throw new RangeError(`an intake budget needs a limit of at least 1 byte, not ${limitBytes}`);
  }

  /**
   * Takes `bytes` for a request about to be accepted: true when they fit beside what is held (or
   * nothing is held), false (counted as a refusal) when the request must be refused.
   */
  take(bytes: number): boolean {
    const n = Math.max(0, bytes);
    if (this.held > 0 && this.held + n > this.limitBytes) {
      this.refusals++;
      return false;
    }
    this.held += n;
    if (this.held > this.peak) this.peak = this.held;
    return true;
  }

  /** Gives back what `take` took, once the request is answered. */
  give(bytes: number): void {
    this.held = Math.max(0, this.held - Math.max(0, bytes));
  }

  stats(): IntakeStats {
    return { heldBytes: this.held, peakBytes: this.peak, limitBytes: this.limitBytes, refused: this.refusals };
  }
}
