// Workers known to the head, from their heartbeats (already parsed by the schema). A worker silent
// for longer than the timeout is dead: its replicas stop counting and get placed elsewhere. Which
// heartbeats are believed is decided by heartbeat-rules.ts; the registry is bounded: at most
// `maxWorkers` ids, and a worker heard only once is forgotten as soon as it times out (a stream of
// one-off forged ids cannot fill the head's memory for long).
import type { Heartbeat } from '@flotilla/protocol';
import { DEFAULT_HEARTBEAT_RULES, judgeHeartbeat, type HeartbeatRules, type HeartbeatTrack } from './heartbeat-rules.js';

/** Most workers the registry holds. */
export const DEFAULT_MAX_WORKERS = 10_000;
/** Dead workers that had been confirmed (two or more heartbeats) are forgotten after this long, ms. */
export const DEFAULT_DEAD_WORKER_TTL_MS = 10 * 60_000;

export interface WorkerRecord {
  hb: Heartbeat;
  lastSeen: number;
  alive: boolean;
  track: HeartbeatTrack;
}

/** Two or more heartbeats accepted from the worker's current incarnation. */
export function confirmed(w: WorkerRecord): boolean {
  return w.track.accepted >= 2;
}

export type UpsertResult =
  { accepted: true; joined: boolean; kind: 'first' | 'next' | 'restart' | 'resync' } | { accepted: false; reason: string };

export interface RegistryOptions {
  /** Most workers held; a heartbeat from a new id beyond it is refused. Default 10,000. */
  maxWorkers?: number;
  /** Heartbeat plausibility rules (see heartbeat-rules.ts). */
  rules?: Partial<HeartbeatRules>;
}

export class WorkerRegistry {
  private readonly workers = new Map<string, WorkerRecord>();
  readonly maxWorkers: number;
  readonly rules: HeartbeatRules;

  constructor(
    private readonly timeoutMs: number,
    opts: RegistryOptions = {},
  ) {
    this.maxWorkers = opts.maxWorkers ?? DEFAULT_MAX_WORKERS;
    // A new incarnation may take over after half the timeout of silence: before the old one is dead.
    this.rules = { ...DEFAULT_HEARTBEAT_RULES, switchAfterMs: Math.max(100, Math.floor(timeoutMs / 2)), ...opts.rules };
  }

  /** Records a heartbeat if the rules believe it; `joined` when the worker is new or came back from the dead. */
  upsert(hb: Heartbeat, now: number): UpsertResult {
    const prev = this.workers.get(hb.workerId);
    if (!prev && this.workers.size >= this.maxWorkers) {
      this.prune(now, 0, true);
      if (this.workers.size >= this.maxWorkers) return { accepted: false, reason: `registry full (${this.maxWorkers} workers)` };
    }
    const v = judgeHeartbeat(prev?.track, hb, now, this.rules);
    if (!v.accept) {
      if (prev) prev.track = v.track;
      return { accepted: false, reason: v.reason };
    }
    this.workers.set(hb.workerId, { hb, lastSeen: now, alive: hb.state !== 'stopped', track: v.track });
    return { accepted: true, joined: !prev || !prev.alive, kind: v.kind };
  }

  /** Marks workers silent past the timeout dead; returns their ids. */
  sweep(now: number): string[] {
    const died: string[] = [];
    for (const [id, w] of this.workers) {
      if (w.alive && now - w.lastSeen > this.timeoutMs) {
        w.alive = false;
        died.push(id);
      }
    }
    return died;
  }

  /** Restarts every live worker's timeout (after the head itself was cut off from NATS). */
  touchAll(now: number): void {
    for (const w of this.workers.values()) {
      if (w.alive) {
        w.lastSeen = now;
        w.track = { ...w.track, at: now };
      }
    }
  }

  /**
   * Forgets dead workers: those heard only once at once (`sweep` marked them dead after the
   * timeout), the others after `afterMs` (keeps `status` short on long-lived clusters). With
   * `all`, every dead worker.
   */
  prune(now: number, afterMs = DEFAULT_DEAD_WORKER_TTL_MS, all = false): void {
    for (const [id, w] of this.workers) {
      if (w.alive) continue;
      if (all || !confirmed(w) || now - w.lastSeen > afterMs) this.workers.delete(id);
    }
  }

  get(id: string): WorkerRecord | undefined {
    return this.workers.get(id);
  }

  get size(): number {
    return this.workers.size;
  }

  all(): WorkerRecord[] {
    return [...this.workers.values()];
  }

  /** Forgets every worker (a head that stops leading hears no more heartbeats). */
  clear(): void {
    this.workers.clear();
  }

  /** Alive workers in the running state. */
  running(): WorkerRecord[] {
    return this.all().filter((w) => w.alive && w.hb.state === 'running');
  }
}
