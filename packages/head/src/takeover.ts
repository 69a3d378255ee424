// How long a head that takes the lead holds placement back, pure. A head that has just taken over
// knows the workers only from the heartbeats since: placing at once would place replicas that
// exist on workers not heard of yet a second time. A fresh head waits `settleMs` (a heartbeat
// period or two). A head leading *again* knew workers before it stopped leading; those that were
// reconnecting with it (the NATS server they shared went away) may take longer than that to be
// heard, so it also waits for them, up to the worker timeout (by which a silent one is dead anyway).

export interface TakeoverHold {
  /** The settle period every takeover waits, epoch ms. */
  base: number;
  /** When placement may start, epoch ms: `base`, or later while known workers are awaited. */
  until: number;
  /** Workers known before this head stopped leading, not heard from since. */
  awaiting: Set<string>;
}

export function takeoverHold(now: number, settleMs: number, workerTimeoutMs: number, knownBefore: Iterable<string>): TakeoverHold {
  const awaiting = new Set(knownBefore);
  const base = now + settleMs;
  return { base, until: awaiting.size > 0 ? Math.max(base, now + workerTimeoutMs) : base, awaiting };
}

/**
 * A heartbeat from `workerId`: when it was the last awaited worker, the hold ends at `base` (or
 * now, if that has passed) and the new end is returned; otherwise undefined (nothing changes).
 */
export function heardDuringHold(hold: TakeoverHold, workerId: string, now: number): number | undefined {
  if (!hold.awaiting.delete(workerId) || hold.awaiting.size > 0 || now >= hold.until) return undefined;
  hold.until = Math.max(hold.base, now);
  return hold.until;
}
