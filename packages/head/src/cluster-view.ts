// What the head derives from the workers' heartbeats, pure: replicas indexed by model (so a
// reconcile round over D deployments costs O(replicas + D), not O(replicas × D)), and the
// placement policy's view of each worker with the loads it has sent but not yet seen reported.
import type { ReplicaState } from '@flotilla/protocol';
import type { EvictableReplica, WorkerView } from './placement.js';
import type { WorkerRecord } from './registry.js';

export interface IndexedReplica {
  r: ReplicaState;
  workerId: string;
  /** Position in its worker's heartbeat: load order. */
  order: number;
}

/**
 * Replicas of the given workers by model, each worker's in load order. A replica id is counted
 * once: when several workers claim it (a forged heartbeat copying a real worker's replicas), the
 * worker heard of first keeps it (`workers` in registry order: first heard first).
 */
export function indexReplicas(workers: readonly WorkerRecord[]): Map<string, IndexedReplica[]> {
  const index = new Map<string, IndexedReplica[]>();
  const claimed = new Set<string>();
  for (const w of workers) {
    w.hb.replicas.forEach((r, order) => {
      if (claimed.has(r.id)) return;
      claimed.add(r.id);
      const entry = { r, workerId: w.hb.workerId, order };
      const list = index.get(r.model);
      if (list) list.push(entry);
      else index.set(r.model, [entry]);
    });
  }
  return index;
}

/** A load command sent and not answered yet. */
export interface PendingLoad {
  replicaId: string;
  workerId: string;
  device: string;
  bytes: number;
  model: string;
}

/** The ready, unpinned replicas of a device, with what evicting each costs (placement). */
function evictableOn(w: WorkerRecord, device: string): { evictableBytes: number; evictable: EvictableReplica[] } {
  const evictable: EvictableReplica[] = [];
  let evictableBytes = 0;
  for (const r of w.hb.replicas) {
    if (r.device !== device || r.state !== 'ready' || r.pinned) continue;
    evictableBytes += r.bytes;
    evictable.push({
      bytes: r.bytes,
      ...(r.rate !== undefined ? { rate: r.rate } : {}),
      ...(r.reloadMs !== undefined ? { reloadMs: r.reloadMs } : {}),
    });
  }
  return { evictableBytes, evictable };
}

/**
 * The placement view: each worker's devices with their budget, use (plus pending loads not yet in
 * its heartbeat) and evictable bytes (ready, unpinned replicas), and its replicas per model.
 */
export function workerViews(workers: readonly WorkerRecord[], pending: readonly PendingLoad[]): WorkerView[] {
  const byId = new Map(workers.map((w) => [w.hb.workerId, w]));
  const pendingBy = new Map<string, PendingLoad[]>();
  for (const p of pending) {
    if (byId.get(p.workerId)?.hb.replicas.some((r) => r.id === p.replicaId)) continue; // already charged in the heartbeat
    const list = pendingBy.get(p.workerId) ?? [];
    list.push(p);
    pendingBy.set(p.workerId, list);
  }
  return workers.map((w) => {
    const pend = pendingBy.get(w.hb.workerId) ?? [];
    const replicasByModel: Record<string, number> = {};
    for (const r of w.hb.replicas) replicasByModel[r.model] = (replicasByModel[r.model] ?? 0) + 1;
    for (const p of pend) replicasByModel[p.model] = (replicasByModel[p.model] ?? 0) + 1;
    return {
      id: w.hb.workerId,
      schedulable: w.alive && w.hb.state === 'running',
      replicasByModel,
      devices: w.hb.devices.map((dev) => ({
        id: dev.id,
        kind: dev.kind,
        budgetBytes: dev.budgetBytes,
        usedBytes: dev.usedBytes + pend.filter((p) => p.device === dev.id).reduce((n, p) => n + p.bytes, 0),
        ...evictableOn(w, dev.id),
      })),
    };
  });
}
