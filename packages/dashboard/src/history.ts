// Rates and sparkline series from successive cluster statuses: a replica's items/s is the change of
// its counter between two samples, a model's series the sum over its replicas; a replica's own series
// pairs its items/s with the p99 its heartbeats report (`latencyMs`). Pure (the feed calls
// `advanceHistory` with each status and the time it arrived): no timers, no I/O.
import type { ClusterStatus } from '@flotilla/protocol';
import type { ReplicaPoint, SeriesPoint } from './view-model.js';

/** Samples kept per model (at one per 500 ms poll: the last minute). */
export const DEFAULT_HISTORY_POINTS = 120;
/** Samples kept per replica (the last 30 s): a replica's series is sent for every replica in every snapshot. */
export const DEFAULT_REPLICA_HISTORY_POINTS = 60;

export interface History {
  /** Per replica (`worker/replica`): its item counter and when it was read. */
  counters: Record<string, { items: number; at: number }>;
  /** Per model: recent samples, oldest first. */
  series: Record<string, SeriesPoint[]>;
  /** Per replica (`worker/replica`) still reported: recent samples, oldest first. */
  replicaSeries: Record<string, ReplicaPoint[]>;
}

export const EMPTY_HISTORY: History = { counters: {}, series: {}, replicaSeries: {} };

export interface Advanced {
  history: History;
  /** Items/s per replica (`worker/replica`) since the previous sample; 0 when it is new or its counter went back. */
  rates: Record<string, number>;
}

export function replicaKey(worker: string, replica: string): string {
  return `${worker}/${replica}`;
}

/** The next history after `status` was read at `now` (ms). Never mutates `prev`. */
export function advanceHistory(prev: History, status: ClusterStatus, now: number, maxPoints = DEFAULT_HISTORY_POINTS): Advanced {
  const counters: History['counters'] = {};
  const rates: Record<string, number> = {};
  const replicaSeries: History['replicaSeries'] = {};
  const t = now / 1000;
  const replicaPoints = Math.min(maxPoints, DEFAULT_REPLICA_HISTORY_POINTS);
  const perModel = new Map<string, { itemsPerSec: number; queueDepth: number; inFlight: number }>();
  for (const d of status.deployments) perModel.set(d.spec.name, { itemsPerSec: 0, queueDepth: 0, inFlight: 0 });
  for (const w of status.workers) {
    for (const r of w.replicas) {
      const key = replicaKey(w.id, r.id);
      const items = r.itemsProcessed ?? r.processed;
      const before = prev.counters[key];
      const dt = before ? (now - before.at) / 1000 : 0;
      const rate = before && dt > 0 && items >= before.items ? (items - before.items) / dt : 0;
      counters[key] = { items, at: now };
      rates[key] = rate;
      const p99Ms = r.state !== 'loading' && r.latencyMs ? r.latencyMs.p99 : null;
      const old = prev.replicaSeries[key] ?? [];
      replicaSeries[key] = [...old.slice(Math.max(0, old.length - replicaPoints + 1)), { t, itemsPerSec: rate, p99Ms }];
      const m = perModel.get(r.model);
      if (m) {
        m.itemsPerSec += rate;
        m.queueDepth += r.queueDepth;
        m.inFlight += r.inFlight;
      }
    }
  }
  const series: History['series'] = {};
  for (const [model, m] of perModel) {
    const old = prev.series[model] ?? [];
    const next = [...old.slice(Math.max(0, old.length - maxPoints + 1)), { t, ...m }];
    series[model] = next;
  }
  return { history: { counters, series, replicaSeries }, rates };
}
