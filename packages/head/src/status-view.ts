// What `describe`, `list` and `status` answer, built from the head's state, pure. Replicas come
// from an index by model (cluster-view.ts), so a status of 500 deployments over 100,000 replicas
// costs O(replicas + deployments), not O(replicas × deployments).
import type { DeploySpec, DeploymentStatus, ModelSignature, PlacedReplica, WireError, WorkerStatus } from '@flotilla/protocol';
import type { IndexedReplica } from './cluster-view.js';
import type { PendingPlacement } from './placement-retry.js';
import type { WorkerRecord } from './registry.js';

export interface DeploymentFacts {
  spec: DeploySpec;
  createdAt: number;
  pending: ReadonlyMap<string, PendingPlacement>;
  dormant: boolean;
  pendingReason?: WireError;
}

/** A deployment's status: its replicas on live workers (from `replicas`, the index entry of its model) and its pending loads. */
export function deploymentStatus(d: DeploymentFacts, replicas: readonly IndexedReplica[]): DeploymentStatus {
  const out: PlacedReplica[] = replicas.map(({ r, workerId }) => ({
    id: r.id,
    workerId,
    device: r.device,
    state: r.state,
    queueDepth: r.queueDepth,
    error: r.error,
  }));
  if (d.pending.size > 0) {
    const seen = new Set(out.map((r) => r.id));
    for (const [id, p] of d.pending) if (!seen.has(id)) out.push({ id, workerId: p.workerId, device: p.device, state: 'pending' });
  }
  const signature = signatureOf(d.spec.digest, replicas);
  return {
    spec: d.spec,
    createdAt: d.createdAt,
    replicas: out,
    ready: out.filter((r) => r.state === 'ready').length,
    ...(d.dormant ? { dormant: true } : {}),
    ...(d.pendingReason ? { pendingReason: d.pendingReason } : {}),
    ...(signature ? { signature } : {}),
  };
}

/** The signature any loaded replica of the deployed file reports (a replica of an older digest may differ). */
function signatureOf(digest: string, replicas: readonly IndexedReplica[]): ModelSignature | undefined {
  for (const { r } of replicas) if (r.state !== 'loading' && r.digest === digest && r.signature) return r.signature;
  return undefined;
}

/** Every known worker as `status` shows it. */
export function workerStatuses(workers: readonly WorkerRecord[], now: number): WorkerStatus[] {
  return workers.map((w) => {
    const byDevice = new Map<string, Array<{ name: string; replica: string; bytes: number }>>();
    for (const r of w.hb.replicas) {
      const list = byDevice.get(r.device) ?? [];
      list.push({ name: r.model, replica: r.id, bytes: r.bytes });
      byDevice.set(r.device, list);
    }
    return {
      id: w.hb.workerId,
      pid: w.hb.pid,
      alive: w.alive,
      state: w.alive ? w.hb.state : 'stopped',
      lastSeenMs: now - w.lastSeen,
      inventory: w.hb.inventory,
      devices: w.hb.devices.map((dev) => ({ ...dev, models: byDevice.get(dev.id) ?? [] })),
      replicas: w.hb.replicas,
    };
  });
}
