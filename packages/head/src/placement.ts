// Placement policy, pure: choose a worker device for each new replica of a deployment, by the
// memory each device has free in its budget, the deployment's device preference (gpu > cpu
// fallback when allowed), and spreading replicas of one model over workers. A device with room
// wins over one that must evict; among those that must, the one where evicting costs least (the
// expected reload time of what it would drop, per second) — the whole cluster is used first.
// The `first-fit` rule (for comparison, `pnpm bench:models`) takes the first device in the workers'
// order where the model fits, evicting there even when another worker has room.
import type { DeviceKind, DevicePreference } from '@flotilla/protocol';

export interface DeviceView {
  id: string;
  kind: DeviceKind;
  budgetBytes: number;
  usedBytes: number;
  /** Bytes the worker could free by evicting unpinned replicas of other models (0 if unknown). */
  evictableBytes?: number;
  /** Those replicas with what losing each costs (absent: the bytes alone, at no known cost). */
  evictable?: EvictableReplica[];
}

/** A ready, unpinned replica a device could drop to make room. */
export interface EvictableReplica {
  bytes: number;
  /** Expected requests per second it serves (the worker's decayed count); 0 if unknown. */
  rate?: number;
  /** Time to load it again, ms (measured by the worker; estimated from bytes if unknown). */
  reloadMs?: number;
}

/** Reload estimate when the worker measured none, ms: a fixed overhead plus per MiB (README, `pnpm bench:memory`). */
export function estimateReloadMs(bytes: number): number {
  return 7 + (bytes / (1 << 20)) * 2.5;
}

/** What evicting `r` costs: expected reload ms per second of traffic (rate × reload time). */
export function evictionCost(r: EvictableReplica): number {
  return (r.rate ?? 0) * (r.reloadMs ?? estimateReloadMs(r.bytes));
}

/**
 * The cheapest way to free `needed` bytes from `victims`: greedily by cost per byte (the same rule
 * as the workers' `cost` policy, so an estimate for workers with other policies); how many of the
 * sorted list it takes, what they free and what they cost. `victims` must be sorted by `byCostPerByte`.
 */
export function cheapestEviction(victims: readonly EvictableReplica[], needed: number): { count: number; freed: number; cost: number } {
  let freed = 0;
  let cost = 0;
  let count = 0;
  for (const v of victims) {
    if (freed >= needed) break;
    freed += v.bytes;
    cost += evictionCost(v);
    count++;
  }
  return { count, freed, cost };
}

/** Cheapest per byte first; ties → larger first. */
export const byCostPerByte = (a: EvictableReplica, b: EvictableReplica): number =>
  evictionCost(a) / Math.max(1, a.bytes) - evictionCost(b) / Math.max(1, b.bytes) || b.bytes - a.bytes;

export interface WorkerView {
  id: string;
  /** Only workers that are alive and running take new replicas. */
  schedulable: boolean;
  devices: DeviceView[];
  /** Replicas per model already on (or on their way to) this worker. */
  replicasByModel: Record<string, number>;
}

/**
 * How a device is chosen among those of the preferred kind, after spreading a model's replicas:
 * `cost-aware` (default): a device with room before one that must evict, then the cheapest
 * eviction, then the most free memory; `first-fit`: the first device in the workers' order where
 * the model fits, once it evicts if it must (the rule before room and cost were weighed).
 */
export type PlacementRule = 'cost-aware' | 'first-fit';
export const PLACEMENT_RULES: readonly PlacementRule[] = ['cost-aware', 'first-fit'];
export const DEFAULT_PLACEMENT_RULE: PlacementRule = 'cost-aware';

export interface PlacementRequest {
  model: string;
  /** Bytes one replica needs on its device. */
  bytes: number;
  device: DevicePreference;
  allowFallback: boolean;
  count: number;
  /** Also consider devices where the model fits only after the worker evicts others. Default false. */
  allowEviction?: boolean;
  /** Default `cost-aware`. */
  rule?: PlacementRule;
}

export interface Placement {
  workerId: string;
  device: string;
  kind: DeviceKind;
  /** True when the worker will have to evict replicas to make room. */
  evicts: boolean;
  /** True when the deployment asked for a GPU and got a CPU. */
  fallback: boolean;
}

export interface PlacementResult {
  placements: Placement[];
  /** Replicas that found no device; `reason` says why. */
  unplaced: number;
  reason?: string;
}

/** Device kinds to try, best first. */
export function deviceOrder(pref: DevicePreference, allowFallback: boolean): DeviceKind[] {
  if (pref === 'cpu') return ['cpu'];
  if (pref === 'gpu') return allowFallback ? ['gpu', 'cpu'] : ['gpu'];
  return ['gpu', 'cpu'];
}

export function place(req: PlacementRequest, workers: readonly WorkerView[]): PlacementResult {
  // Work on copies: the caller's view stays as it was.
  const free = new Map<string, number>();
  const evictable = new Map<string, number>();
  const victims = new Map<string, EvictableReplica[]>();
  const counts = new Map<string, number>();
  for (const w of workers) {
    counts.set(w.id, w.replicasByModel[req.model] ?? 0);
    for (const d of w.devices) {
      const key = `${w.id}/${d.id}`;
      free.set(key, d.budgetBytes - d.usedBytes);
      evictable.set(key, req.allowEviction ? (d.evictableBytes ?? 0) : 0);
      if (req.allowEviction && d.evictable) victims.set(key, [...d.evictable].sort(byCostPerByte));
    }
  }
  const order = deviceOrder(req.device, req.allowFallback);
  const placements: Placement[] = [];
  const firstFit = req.rule === 'first-fit';
  /** tier 0: fits in free memory; tier 1: fits once the worker evicts others, at `cost`. */
  type Cand = { w: WorkerView; d: DeviceView; rank: number; tier: number; cost: number };
  const costOf = (key: string): number => cheapestEviction(victims.get(key) ?? [], req.bytes - free.get(key)!).cost;
  for (let n = 0; n < req.count; n++) {
    let best: Cand | undefined;
    for (const w of workers) {
      if (!w.schedulable) continue;
      for (const d of w.devices) {
        const rank = order.indexOf(d.kind);
        const key = `${w.id}/${d.id}`;
        if (rank < 0) continue;
        const tier = free.get(key)! >= req.bytes ? 0 : free.get(key)! + evictable.get(key)! >= req.bytes ? 1 : -1;
        if (tier < 0) continue;
        const c = { w, d, rank, tier, cost: tier === 1 ? costOf(key) : 0 };
        if (!best || better(c, best)) best = c;
      }
    }
    if (!best) break;
    const key = `${best.w.id}/${best.d.id}`;
    const f = free.get(key)!;
    if (f >= req.bytes) free.set(key, f - req.bytes);
    else if (victims.has(key)) {
      // The estimated victims go: what they free beyond the need stays free.
      const list = victims.get(key)!;
      const { count, freed } = cheapestEviction(list, req.bytes - f);
      victims.set(key, list.slice(count));
      evictable.set(key, Math.max(0, evictable.get(key)! - freed));
      free.set(key, Math.max(0, f + freed - req.bytes));
    } else {
      evictable.set(key, evictable.get(key)! - (req.bytes - f));
      free.set(key, 0);
    }
    counts.set(best.w.id, counts.get(best.w.id)! + 1);
    placements.push({
      workerId: best.w.id,
      device: best.d.id,
      kind: best.d.kind,
      evicts: best.tier === 1,
      fallback: req.device === 'gpu' && best.d.kind === 'cpu',
    });
  }

  function better(a: Cand, cur: Cand): boolean {
    if (a.rank !== cur.rank) return a.rank < cur.rank; // preferred device kind first
    const cw = counts.get(a.w.id)!;
    const cc = counts.get(cur.w.id)!;
    if (firstFit) return cw < cc; // spread over workers, else the first that fits (evicting or not)
    if (a.tier !== cur.tier) return a.tier < cur.tier; // no eviction beats eviction
    if (cw !== cc) return cw < cc; // spread over workers
    if (a.cost !== cur.cost) return a.cost < cur.cost; // evict where it costs least
    const fw = free.get(`${a.w.id}/${a.d.id}`)!;
    const fc = free.get(`${cur.w.id}/${cur.d.id}`)!;
    if (fw !== fc) return fw > fc; // most free memory
    return `${a.w.id}/${a.d.id}` < `${cur.w.id}/${cur.d.id}`; // deterministic
  }

  const unplaced = req.count - placements.length;
  if (unplaced === 0) return { placements, unplaced };
  const schedulable = workers.filter((w) => w.schedulable);
  const kinds = order.join(' or ');
  const reason =
    schedulable.length === 0
      ? 'no live workers'
      : !schedulable.some((w) => w.devices.some((d) => order.includes(d.kind)))
        ? `no worker has a ${kinds} device`
        : `no ${kinds} device has ${req.bytes} bytes free`;
  return { placements, unplaced, reason };
}
