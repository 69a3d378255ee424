// Workers known to the head, from their heartbeats. A worker silent for longer than the timeout
// is dead: its replicas stop counting and get placed elsewhere.
import type { Heartbeat } from '@flotilla/protocol';

export interface WorkerRecord {
  hb: Heartbeat;
  lastSeen: number;
  alive: boolean;
}

export class WorkerRegistry {
  private readonly workers = new Map<string, WorkerRecord>();

  constructor(private readonly timeoutMs: number) {}

  /** Records a heartbeat; returns true when the worker is new or came back from the dead. */
  upsert(hb: Heartbeat, now: number): boolean {
    const prev = this.workers.get(hb.workerId);
    if (prev && prev.hb.startedAt === hb.startedAt && hb.seq < prev.hb.seq) return false; // stale, reordered
    this.workers.set(hb.workerId, { hb, lastSeen: now, alive: hb.state !== 'stopped' });
    return !prev || !prev.alive;
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
    for (const w of this.workers.values()) if (w.alive) w.lastSeen = now;
  }

  /** Forgets workers dead for long (keeps `status` short on long-lived clusters). */
  prune(now: number, afterMs: number): void {
    for (const [id, w] of this.workers) if (!w.alive && now - w.lastSeen > afterMs) this.workers.delete(id);
  }

  get(id: string): WorkerRecord | undefined {
    return this.workers.get(id);
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
