// Placement policy, pure: choose a worker device for each new replica of a deployment, by the
// memory each device has free in its budget, the deployment's device preference (gpu > cpu
// fallback when allowed), and spreading replicas of one model over workers.
import type { DeviceKind, DevicePreference } from '@flotilla/protocol';

export interface DeviceView {
  id: string;
  kind: DeviceKind;
  budgetBytes: number;
  usedBytes: number;
  /** Bytes the worker could free by evicting unpinned replicas of other models (0 if unknown). */
  evictableBytes?: number;
}

export interface WorkerView {
  id: string;
  /** Only workers that are alive and running take new replicas. */
  schedulable: boolean;
  devices: DeviceView[];
  /** Replicas per model already on (or on their way to) this worker. */
  replicasByModel: Record<string, number>;
}

export interface PlacementRequest {
  model: string;
  /** Bytes one replica needs on its device. */
  bytes: number;
  device: DevicePreference;
  allowFallback: boolean;
  count: number;
  /** Also consider devices where the model fits only after the worker evicts others. Default false. */
  allowEviction?: boolean;
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
  const counts = new Map<string, number>();
  for (const w of workers) {
    counts.set(w.id, w.replicasByModel[req.model] ?? 0);
    for (const d of w.devices) {
      free.set(`${w.id}/${d.id}`, d.budgetBytes - d.usedBytes);
      evictable.set(`${w.id}/${d.id}`, req.allowEviction ? (d.evictableBytes ?? 0) : 0);
    }
  }
  const order = deviceOrder(req.device, req.allowFallback);
  const placements: Placement[] = [];
  type Cand = { w: WorkerView; d: DeviceView; rank: number; tier: number };
  for (let n = 0; n < req.count; n++) {
    let best: Cand | undefined;
    for (const w of workers) {
      if (!w.schedulable) continue;
      for (const d of w.devices) {
        const rank = order.indexOf(d.kind);
        const key = `${w.id}/${d.id}`;
        if (rank < 0) continue;
        // tier 0: fits in free memory; tier 1: fits once the worker evicts others.
        const tier = free.get(key)! >= req.bytes ? 0 : free.get(key)! + evictable.get(key)! >= req.bytes ? 1 : -1;
        if (tier < 0) continue;
        const c = { w, d, rank, tier };
        if (!best || better(c, best)) best = c;
      }
    }
    if (!best) break;
    const key = `${best.w.id}/${best.d.id}`;
    const f = free.get(key)!;
    if (f >= req.bytes) free.set(key, f - req.bytes);
    else {
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
    if (a.tier !== cur.tier) return a.tier < cur.tier; // no eviction beats eviction
    const cw = counts.get(a.w.id)!;
    const cc = counts.get(cur.w.id)!;
    if (cw !== cc) return cw < cc; // spread over workers
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
