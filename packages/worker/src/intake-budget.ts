// How many bytes of accepted, unanswered requests one worker holds at once, pure (no I/O). A
// replica's queue is bounded by its length (maxQueueLength, 1,024 by default), which does not bound
// memory: 1,024 requests of 1 MiB each are a GiB, and a worker hosts many replicas. Measured on
// 2026-12-01 (this VM): one burst of 1,200 requests of 995 KB to a replica slowed to 10 batches a
// second left 984 MiB of request bodies queued in the worker, which a Kubernetes memory limit ends
// by killing the pod. With this budget a request that would take the worker past it is answered
// OVERLOADED at once (the caller's retries or another replica take it): nothing accepted is dropped,
// and what is held stays under the limit plus one request. A request larger than the whole budget
// is still taken when nothing else is held, so a budget below the largest request never refuses
// every request. While the worker hosts several replicas, none holds more than half the budget
// (MAX_REPLICA_SHARE): a burst to one model cannot take the memory the others' requests need.

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

/**
 * The most one replica holds while its worker hosts others: half the budget, so a burst to one
 * model leaves the others on the worker at least half of it.
 */
export const MAX_REPLICA_SHARE = 1 / 2;

export interface IntakeStats {
  /** Bytes of accepted, unanswered requests held now. */
  heldBytes: number;
  /** The most held at once since the worker started. */
  peakBytes: number;
  limitBytes: number;
  /** Requests refused for the budget (past the limit or past their replica's share). */
  refused: number;
}

/** Why a request was refused: the worker's limit, or its replica's share of it. */
export interface IntakeRefusal {
  reason: 'limit' | 'share';
  /** What the worker holds. */
  heldBytes: number;
  /** What the request's replica holds. */
  replicaBytes: number;
  limitBytes: number;
  /** The most one replica may hold now (the limit while it is the worker's only one). */
  shareBytes: number;
}

export class IntakeBudget {
  private held = 0;
  private peak = 0;
  private refusals = 0;
  private readonly byReplica = new Map<string, number>();

  /** `replicas`: how many replicas the worker hosts now (the share applies from two). */
  constructor(
    readonly limitBytes: number,
    private readonly replicas: () => number = () => 1,
  ) {
    if (!(limitBytes >= 1)) throw new RangeError(`an intake budget needs a limit of at least 1 byte, not ${limitBytes}`);
  }

  /** The most one replica may hold now. */
  shareBytes(): number {
    return this.replicas() > 1 ? Math.floor(this.limitBytes * MAX_REPLICA_SHARE) : this.limitBytes;
  }

  /**
   * Takes `bytes` for a request `replica` is about to accept; undefined when taken, else why it
   * must be refused (counted). A request always fits when the worker holds nothing, and its
   * replica's share never refuses the replica's only request.
   */
  take(replica: string, bytes: number): IntakeRefusal | undefined {
    const n = Math.max(0, bytes);
    const mine = this.byReplica.get(replica) ?? 0;
    const share = this.shareBytes();
    const reason = this.held > 0 && this.held + n > this.limitBytes ? 'limit' : mine > 0 && mine + n > share ? 'share' : undefined;
    if (reason) {
      this.refusals++;
      return { reason, heldBytes: this.held, replicaBytes: mine, limitBytes: this.limitBytes, shareBytes: share };
    }
    this.held += n;
    this.byReplica.set(replica, mine + n);
    if (this.held > this.peak) this.peak = this.held;
    return undefined;
  }

  /** Gives back what `take` took for `replica`, once the request is answered. */
  give(replica: string, bytes: number): void {
    const n = Math.max(0, bytes);
    this.held = Math.max(0, this.held - n);
    const left = (this.byReplica.get(replica) ?? 0) - n;
    if (left > 0) this.byReplica.set(replica, left);
    else this.byReplica.delete(replica);
  }

  /** What `replica` holds now. */
  heldBy(replica: string): number {
    return this.byReplica.get(replica) ?? 0;
  }

  stats(): IntakeStats {
    return { heldBytes: this.held, peakBytes: this.peak, limitBytes: this.limitBytes, refused: this.refusals };
  }
}
