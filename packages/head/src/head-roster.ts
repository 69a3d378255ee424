// The other heads a head has heard of (their presence messages), pure: no clock, no I/O (the
// caller passes `now`). Every head publishes its presence about once a period; the leader lists
// the heads heard within `expireMs` in `status`. Bounded and forgery-safe: a presence is judged by
// the worker heartbeat rules (heartbeat-rules.ts: replays and implausible seq jumps are refused,
// another incarnation takes over an id only once the current one went silent), the map holds at
// most `maxHeads` ids (expired ones are dropped first, further ids are refused), and a message
// naming the receiving head itself is ignored (a head reports itself from its own state).
import type { HeadPresence, HeadStatus } from '@flotilla/protocol';
import { DEFAULT_HEARTBEAT_RULES, judgeHeartbeat, type HeartbeatRules, type HeartbeatTrack } from './heartbeat-rules.js';

/** Most heads tracked; presence from further head ids is refused until some expire. */
export const DEFAULT_MAX_HEADS = 64;
/** Missed presence periods after which a head is no longer listed. */
export const HEAD_PRESENCE_MISSES = 3;

export interface HeadRosterOptions {
  /** The receiving head's id: presence naming it is ignored. */
  selfId: string;
  /** A head not heard for this long is dropped, ms. */
  expireMs: number;
  /** Most heads tracked. Default DEFAULT_MAX_HEADS. */
  maxHeads?: number;
  /** Seq plausibility; defaults to the worker heartbeat rules, with `switchAfterMs` no longer than the expiry. */
  rules?: HeartbeatRules;
}

export type PresenceVerdict =
  | { accepted: true; joined: boolean }
  | { accepted: false; reason: 'self' | 'too many heads' | 'replayed' | 'implausible seq' | 'another incarnation is live' };

interface Entry {
  last: HeadPresence;
  track: HeartbeatTrack;
  /** Receiver's clock when the last accepted presence arrived, ms. */
  seenAt: number;
}

export class HeadRoster {
  private readonly heads = new Map<string, Entry>();
  private readonly maxHeads: number;
  private readonly rules: HeartbeatRules;

  constructor(private readonly o: HeadRosterOptions) {
    this.maxHeads = o.maxHeads ?? DEFAULT_MAX_HEADS;
    this.rules = o.rules ?? { ...DEFAULT_HEARTBEAT_RULES, switchAfterMs: Math.min(DEFAULT_HEARTBEAT_RULES.switchAfterMs, o.expireMs) };
  }

  get size(): number {
    return this.heads.size;
  }

  /** Judges one presence message (already parsed by its schema) and records it when believed. */
  observe(p: HeadPresence, now: number): PresenceVerdict {
    if (p.id === this.o.selfId) return { accepted: false, reason: 'self' };
    this.expire(now);
    const prev = this.heads.get(p.id);
    if (!prev && this.heads.size >= this.maxHeads) return { accepted: false, reason: 'too many heads' };
    // A presence has no `stopped` state: the role stands in for the heartbeat's state.
    const v = judgeHeartbeat(prev?.track, { startedAt: p.startedAt, pid: p.pid, seq: p.seq, state: p.role }, now, this.rules);
    if (!v.accept) {
      if (prev) prev.track = v.track; // a rival stream is remembered (it may win a resync)
      return { accepted: false, reason: v.reason };
    }
    this.heads.set(p.id, { last: p, track: v.track, seenAt: now });
    return { accepted: true, joined: !prev || v.kind === 'restart' };
  }

  /** Drops heads silent for `expireMs` or longer. */
  expire(now: number): void {
    for (const [id, e] of this.heads) if (now - e.seenAt >= this.o.expireMs) this.heads.delete(id);
  }

  /** The heads heard within the expiry, leaders first, then by id. */
  list(now: number): HeadStatus[] {
    const out: HeadStatus[] = [];
    for (const e of this.heads.values()) {
      if (now - e.seenAt >= this.o.expireMs) continue;
      const { id, pid, host, role, since, startedAt } = e.last;
      out.push({ id, pid, host, role, since, startedAt, lastSeenAt: e.seenAt });
    }
    return out.sort((a, b) => (a.role === b.role ? a.id.localeCompare(b.id) : a.role === 'leader' ? -1 : 1));
  }

  clear(): void {
    this.heads.clear();
  }
}
