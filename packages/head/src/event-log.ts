// The events the head keeps for `flotilla events`, pure: the last `perType` of each event type
// (one noisy type, e.g. thousands of `refused`, cannot push the others out), at most `maxTypes`
// types and `maxBytes` in all (each event is already bounded by its schema).
import type { EventMessage } from '@flotilla/protocol';

export interface EventLogLimits {
  /** Events kept per type. Default 1000. */
  perType: number;
  /** Types kept; a new one beyond this replaces the type heard from least recently. Default 64. */
  maxTypes: number;
  /** Encoded bytes kept in all. Default 16 MiB. */
  maxBytes: number;
}

export const DEFAULT_EVENT_LOG_LIMITS: EventLogLimits = { perType: 1000, maxTypes: 64, maxBytes: 16 * 1024 * 1024 };

interface Entry {
  e: EventMessage;
  size: number;
  /** Arrival order. */
  n: number;
}

export class EventLog {
  private readonly byType = new Map<string, Entry[]>();
  private n = 0;
  bytes = 0;

  constructor(readonly limits: EventLogLimits = DEFAULT_EVENT_LOG_LIMITS) {}

  /** Adds an event of `size` encoded bytes. */
  push(e: EventMessage, size: number): void {
    let list = this.byType.get(e.type);
    if (!list) {
      if (this.byType.size >= this.limits.maxTypes) this.dropType(this.stalestType()!);
      list = [];
      this.byType.set(e.type, list);
    }
    list.push({ e, size, n: this.n++ });
    this.bytes += size;
    if (list.length > this.limits.perType) this.bytes -= list.shift()!.size;
    while (this.bytes > this.limits.maxBytes) this.dropOldestOf(this.largestType()!);
  }

  /** The last `limit` events matching, oldest first. */
  query(q: { model?: string; type?: string; limit: number }): EventMessage[] {
    const lists = q.type ? [this.byType.get(q.type) ?? []] : [...this.byType.values()];
    const hits: Entry[] = [];
    for (const list of lists) {
      // Each list is in arrival order: only its last `limit` matches can be among the result.
      let taken = 0;
      for (let i = list.length - 1; i >= 0 && taken < q.limit; i--) {
        if (!q.model || list[i]!.e.model === q.model) {
          hits.push(list[i]!);
          taken++;
        }
      }
    }
    return hits
      .sort((a, b) => a.n - b.n)
      .slice(-q.limit)
      .map((h) => h.e);
  }

  get size(): number {
    let n = 0;
    for (const list of this.byType.values()) n += list.length;
    return n;
  }

  clear(): void {
    this.byType.clear();
    this.bytes = 0;
  }

  private stalestType(): string | undefined {
    let best: [string, number] | undefined;
    for (const [t, list] of this.byType) {
      const last = list.length ? list[list.length - 1]!.n : -1;
      if (!best || last < best[1]) best = [t, last];
    }
    return best?.[0];
  }

  private largestType(): string | undefined {
    let best: [string, number] | undefined;
    for (const [t, list] of this.byType) if (!best || list.length > best[1]) best = [t, list.length];
    return best?.[0];
  }

  private dropType(t: string): void {
    for (const x of this.byType.get(t) ?? []) this.bytes -= x.size;
    this.byType.delete(t);
  }

  private dropOldestOf(t: string): void {
    const list = this.byType.get(t)!;
    const x = list.shift();
    if (x) this.bytes -= x.size;
    if (list.length === 0) this.byType.delete(t);
  }
}

/**
 * Models whose last load or eviction event in `history` (in time order) is an eviction: a head that
 * takes over keeps them dormant (the previous leader would not have re-placed them either).
 */
export function evictedModels(history: readonly EventMessage[]): string[] {
  const last = new Map<string, string>();
  for (const e of history) if (e.model && (e.type === 'evicted' || e.type === 'loaded')) last.set(e.model, e.type);
  return [...last].flatMap(([model, type]) => (type === 'evicted' ? [model] : []));
}
