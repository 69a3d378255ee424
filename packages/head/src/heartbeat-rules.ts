// Which heartbeats the head believes, pure (no clock, no I/O: the caller passes `now`, its own
// clock). Anyone who may publish on the bus can send a heartbeat for any worker id, so a single
// replayed or forged heartbeat must never hide the real worker:
//
// - A worker *incarnation* is (startedAt, pid); its `seq` counts from 0. Within an incarnation a
//   heartbeat is accepted when its seq is above the last accepted one and at most
//   `seqBurst + elapsed / seqPeriodMs` above it (elapsed on the head's clock since that one): a
//   worker sends about one a second plus one per load/unload, so `seq: 1e15` is refused.
// - Refused heartbeats of the current incarnation that are consistent among themselves (a
//   "rival" stream: increasing, within the same allowance) win after `resyncAfter` of them, so a
//   forged jump ahead, or a head that first heard a forgery, hides the real worker for at most a
//   few of its heartbeats (less than its timeout: it never looks dead).
// - Another incarnation of a known worker id (a restart, or a forgery) takes over only once the
//   current one said `stopped` or has been silent for `switchAfterMs`. While the current one
//   keeps sending, a forged new incarnation is ignored and cannot lock the real worker out; a
//   one-off forged incarnation that got in (the real worker was silent) is replaced by the real
//   worker's heartbeats `switchAfterMs` after the forgery's last one.
// What remains trusted: a sender that keeps publishing a consistent stream for a worker id can
// contest it for as long as it keeps sending (the head then flips between the two streams and the
// worker stays alive); NATS permissions decide who may publish heartbeats (docs/security.md).

export interface HeartbeatRules {
  /** Heartbeats a worker may send in a burst beyond the elapsed-time allowance. Default 64. */
  seqBurst: number;
  /** One more seq is plausible per this many ms since the last accepted heartbeat. Default 10 (100/s). */
  seqPeriodMs: number;
  /** A refused stream consistent among itself is followed after this many heartbeats. Default 3. */
  resyncAfter: number;
  /** Silence of the current incarnation after which another one may take the worker id, ms. */
  switchAfterMs: number;
}

export const DEFAULT_HEARTBEAT_RULES: HeartbeatRules = { seqBurst: 64, seqPeriodMs: 10, resyncAfter: 3, switchAfterMs: 2500 };

/** What the head remembers of one worker id's heartbeats. */
export interface HeartbeatTrack {
  /** `<startedAt>/<pid>` of the incarnation followed. */
  incarnation: string;
  /** Last accepted seq, and when it was accepted (head clock, ms). */
  seq: number;
  at: number;
  /** Heartbeats accepted from this incarnation (2 or more: the worker is confirmed). */
  accepted: number;
  /** The last accepted heartbeat said `stopped`. */
  stopped: boolean;
  /** Refused heartbeats of the same incarnation that form a stream of their own. */
  rival?: { seq: number; at: number; count: number };
}

export type HeartbeatVerdict =
  | { accept: true; kind: 'first' | 'next' | 'restart' | 'resync'; track: HeartbeatTrack }
  | { accept: false; reason: 'replayed' | 'implausible seq' | 'another incarnation is live'; track: HeartbeatTrack };

export interface HeartbeatId {
  startedAt: number;
  pid: number;
  seq: number;
  state: string;
}

/** The largest seq that follows `seq` accepted at `at` plausibly at `now`. */
export function maxNextSeq(seq: number, at: number, now: number, rules: HeartbeatRules): number {
  return seq + rules.seqBurst + Math.floor(Math.max(0, now - at) / rules.seqPeriodMs);
}

/** Judges one heartbeat against what was accepted before; returns the new track either way. */
export function judgeHeartbeat(
  prev: HeartbeatTrack | undefined,
  hb: HeartbeatId,
  now: number,
  rules: HeartbeatRules = DEFAULT_HEARTBEAT_RULES,
): HeartbeatVerdict {
  const incarnation = `${hb.startedAt}/${hb.pid}`;
  const stopped = hb.state === 'stopped';
  const fresh = (kind: 'first' | 'restart'): HeartbeatVerdict => ({
    accept: true,
    kind,
    track: { incarnation, seq: hb.seq, at: now, accepted: 1, stopped },
  });
  if (!prev) return fresh('first');
  if (incarnation !== prev.incarnation) {
    if (prev.stopped || now - prev.at >= rules.switchAfterMs) return fresh('restart');
    return { accept: false, reason: 'another incarnation is live', track: prev };
  }
  if (hb.seq > prev.seq && hb.seq <= maxNextSeq(prev.seq, prev.at, now, rules)) {
    return { accept: true, kind: 'next', track: { ...prev, seq: hb.seq, at: now, accepted: prev.accepted + 1, stopped } };
  }
  const r = prev.rival;
  const continues = r !== undefined && hb.seq > r.seq && hb.seq <= maxNextSeq(r.seq, r.at, now, rules);
  const rival = { seq: hb.seq, at: now, count: continues ? r.count + 1 : 1 };
  if (rival.count >= rules.resyncAfter) {
    return { accept: true, kind: 'resync', track: { incarnation, seq: hb.seq, at: now, accepted: prev.accepted + 1, stopped } };
  }
  return { accept: false, reason: hb.seq <= prev.seq ? 'replayed' : 'implausible seq', track: { ...prev, rival } };
}
