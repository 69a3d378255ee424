// How the head retries placements, pure: exponential back-off per deployment (a deployment that
// cannot be placed is retried at 0.25 s, 0.5 s, 1 s, ... up to 60 s, not every round), how long a
// device that refused a replica is skipped, and which loads count as failed because the worker
// answered them but never reported the replica in a heartbeat (a load reply alone is not believed:
// a fake worker that answers load commands must not absorb placements).

export interface PlacementRetryPolicy {
  /** First back-off after a failure, ms. Default 250. */
  baseMs: number;
  /** Longest back-off, ms. Default 60 000. */
  maxMs: number;
  /** Shortest time a device that refused a replica (NO_CAPACITY) is skipped, ms. Default 5000. */
  refusalMs: number;
  /** Most load commands of one deployment awaiting their reply at once. Default 32. */
  maxLoadsInFlight: number;
}

export const DEFAULT_PLACEMENT_RETRY: PlacementRetryPolicy = { baseMs: 250, maxMs: 60_000, refusalMs: 5000, maxLoadsInFlight: 32 };

/** Back-off after the `failures`-th failure in a row (1, 2, ...), ms. */
export function retryDelay(failures: number, p: PlacementRetryPolicy = DEFAULT_PLACEMENT_RETRY): number {
  if (failures <= 0) return 0;
  return Math.min(p.maxMs, p.baseMs * 2 ** Math.min(failures - 1, 30));
}

/** How long a device that refused (or never confirmed) a replica is skipped after the `failures`-th failure, ms. */
export function skipDeviceMs(failures: number, p: PlacementRetryPolicy = DEFAULT_PLACEMENT_RETRY): number {
  return Math.max(p.refusalMs, retryDelay(failures, p));
}

/** A load command sent for a replica, until the replica shows up in its worker's heartbeats. */
export interface PendingPlacement {
  workerId: string;
  device: string;
  bytes: number;
  /** When the load was sent (head clock, ms). */
  sentAt: number;
  /** When the worker answered it successfully; unset while the command is in flight. */
  repliedAt?: number;
}

export interface PendingVerdict {
  /** Replicas now in their worker's heartbeats: they count from there. */
  seen: string[];
  /** Replicas answered as loaded but not reported within `confirmMs`: failed placements. */
  unconfirmed: string[];
}

/**
 * Settles pending loads against the heartbeats: `reported(workerId, replicaId)` says whether the
 * worker's latest heartbeat lists the replica (loading or ready).
 */
export function settlePending(
  pending: ReadonlyMap<string, PendingPlacement>,
  reported: (workerId: string, replicaId: string) => boolean,
  now: number,
  confirmMs: number,
): PendingVerdict {
  const out: PendingVerdict = { seen: [], unconfirmed: [] };
  for (const [id, p] of pending) {
    if (reported(p.workerId, id)) out.seen.push(id);
    else if (p.repliedAt !== undefined && now - p.repliedAt >= confirmMs) out.unconfirmed.push(id);
  }
  return out;
}

/** Load commands of a deployment still awaiting their reply. */
export function loadsInFlight(pending: ReadonlyMap<string, PendingPlacement>): number {
  let n = 0;
  for (const p of pending.values()) if (p.repliedAt === undefined) n++;
  return n;
}
