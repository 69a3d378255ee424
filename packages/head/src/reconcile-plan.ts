// Reconciliation, pure: from a deployment, its model's replicas as the heartbeats report them and
// the placement view of the cluster, which loads and unloads bring actual state to desired state.
// No timers and no I/O: the head asks `planReconcile(..., now)` each round (like the worker's
// batcher.next(now)) and carries out the plan; placing goes through placement.ts.
import { ErrorCode, estimateReplicaBytes, type ReplicaState, type WireError } from '@flotilla/protocol';
import { observe } from './autoscaler.js';
import type { IndexedReplica } from './cluster-view.js';
import { activeRefusals, placementHold, type Deployment, type PlacementHold } from './deployment.js';
import { place, type PlacementRule, type WorkerView } from './placement.js';
import { DEFAULT_PLACEMENT_RETRY, loadsInFlight } from './placement-retry.js';
import type { WorkerRecord } from './registry.js';

export interface ClusterSnapshot {
  /** The placement view with every load sent and not yet reported charged; a function because it costs O(workers) and is needed only to place. */
  workers(): readonly WorkerView[];
  /** Most loads of one deployment awaiting their reply. Default DEFAULT_PLACEMENT_RETRY.maxLoadsInFlight. */
  maxLoadsInFlight?: number;
  /** The placement rule (head option `placement`). Default cost-aware. */
  placement?: PlacementRule;
}

export interface LoadAction {
  workerId: string;
  device: string;
  bytes: number;
}

export interface UnloadAction {
  workerId: string;
  replicaId: string;
}

export interface ReconcilePlan {
  loads: LoadAction[];
  unloads: UnloadAction[];
  /** Replicas were missing and none could be placed: the failure to record (transition 'unplaced'). */
  failure?: WireError;
  /** Every wanted replica is there (transition 'satisfied'). */
  satisfied: boolean;
  /** Why replicas are missing and none is being added. */
  held?: PlacementHold | 'loads-in-flight';
}

/** A replica that counts for its deployment, with its place in its worker's load order (pending loads last). */
export interface CountedReplica {
  id: string;
  workerId: string;
  createdOrder: number;
}

/** Replicas that count for a deployment: on running workers, current digest, ready or loading; plus its pending loads. */
export function countedReplicas(d: Deployment, replicas: readonly IndexedReplica[]): CountedReplica[] {
  const out = new Map<string, CountedReplica>();
  for (const { r, workerId, order } of replicas) {
    if (r.digest === d.spec.digest && (r.state === 'ready' || r.state === 'loading'))
      out.set(r.id, { id: r.id, workerId, createdOrder: order });
  }
  for (const [id, p] of d.pending) out.set(id, { id, workerId: p.workerId, createdOrder: Number.MAX_SAFE_INTEGER });
  return [...out.values()];
}

/** Memory one replica needs: the user's figure, else the profiled one, else the file-size estimate. */
export function replicaBytes(d: Deployment): number {
  return d.spec.memoryBytes ?? d.measuredBytes ?? estimateReplicaBytes(d.spec);
}

/**
 * One round for one deployment. `replicas`: its model's replicas on running workers (any digest,
 * any state), each worker's in load order. Does not change its inputs.
 */
export function planReconcile(d: Deployment, replicas: readonly IndexedReplica[], cluster: ClusterSnapshot, now: number): ReconcilePlan {
  const plan: ReconcilePlan = { loads: [], unloads: [], satisfied: false };
  const live = countedReplicas(d, replicas);
  const want = d.spec.replicas;
  const name = d.spec.name;
  if (live.length < want) {
    plan.held = placementHold(d, now);
    if (plan.held) return plan;
    // At most maxLoadsInFlight loads of one deployment await their reply: a cluster that fits far
    // fewer replicas than asked is not sent hundreds of loads at once.
    const count = Math.min(
      want - live.length,
      (cluster.maxLoadsInFlight ?? DEFAULT_PLACEMENT_RETRY.maxLoadsInFlight) - loadsInFlight(d.pending),
    );
    if (count <= 0) {
      plan.held = 'loads-in-flight';
      return plan;
    }
    const bytes = replicaBytes(d);
    const refusals = activeRefusals(d, now);
    const skip = (w: WorkerView) => ({ ...w, devices: w.devices.filter((dev) => !refusals.has(`${w.id}/${dev.id}`)) });
    const view = refusals.size === 0 ? cluster.workers() : cluster.workers().map(skip);
    const result = place(
      {
        model: name,
        bytes,
        device: d.spec.device,
        allowFallback: d.spec.allowFallback,
        count,
        allowEviction: true,
        rule: cluster.placement,
      },
      view,
    );
    for (const p of result.placements) plan.loads.push({ workerId: p.workerId, device: p.device, bytes });
    if (result.unplaced > 0 && result.placements.length === 0) {
      // When devices were skipped for refusing, their own words say more than "does not fit".
      const refused = [...refusals.values()].pop();
      const message = `${want - live.length} replica(s) of '${name}' cannot be placed: ${result.reason}`;
      plan.failure = refused?.error ?? { code: ErrorCode.NO_CAPACITY, message };
    }
    return plan;
  }
  if (live.length > want) {
    // Remove the newest replicas first (they are the least warmed up); never a pending one.
    const extra = live
      .filter((r) => !d.pending.has(r.id))
      .sort((a, b) => b.createdOrder - a.createdOrder)
      .slice(0, live.length - want);
    for (const r of extra) plan.unloads.push({ workerId: r.workerId, replicaId: r.id });
  }
  plan.satisfied = true;
  // Replicas of an older digest go once the new ones are there.
  for (const { r, workerId } of replicas) if (r.digest !== d.spec.digest) plan.unloads.push({ workerId, replicaId: r.id });
  return plan;
}

/** Replicas of models no longer deployed (`deployed` says which are), on running workers; draining ones are on their way out already. */
export function planOrphans(running: readonly WorkerRecord[], deployed: { has(model: string): boolean }): UnloadAction[] {
  const out: UnloadAction[] = [];
  for (const w of running) {
    for (const r of w.hb.replicas)
      if (!deployed.has(r.model) && r.state !== 'draining') out.push({ workerId: w.hb.workerId, replicaId: r.id });
  }
  return out;
}

export interface AutoscaleStep {
  desired: number;
  reason: string;
  /** Items/s one replica sustains, from the replicas' profiles (undefined until profiled). */
  capacity?: number;
  /** Requests answered so far by the counted replicas (transition 'sampled'). */
  total: number;
}

/**
 * One autoscaling step: queue depth and answered requests of the counted replicas → desired
 * replica count (the autoscaler keeps its own stabilisation window). Undefined for a deployment
 * without an autoscaler, or dormant.
 */
export function planAutoscale(d: Deployment, replicas: readonly IndexedReplica[], now: number): AutoscaleStep | undefined {
  if (!d.autoscaler || d.dormant) return undefined;
  const live = new Set(countedReplicas(d, replicas).map((r) => r.id));
  const states: ReplicaState[] = replicas.flatMap(({ r }) => (live.has(r.id) ? [r] : []));
  const capacity = states.map((r) => r.profile?.itemsPerSec ?? 0).find((c) => c > 0);
  d.autoscaler.setCapacity(capacity);
  // Answered items per second across replicas (capacity is in items too; a request may carry
  // many): a lower bound of the arrival rate. Failed requests count as one item each.
  const total = states.reduce((n, r) => n + (r.itemsProcessed ?? r.processed) + r.failed, 0);
  const prev = d.answered;
  const arrivalRate = prev && now > prev.at && total >= prev.total ? ((total - prev.total) * 1000) / (now - prev.at) : undefined;
  const unplaceable = d.pendingReason?.code === ErrorCode.NO_CAPACITY;
  const decision = d.autoscaler.decide({ now, current: live.size, outstanding: observe(states), arrivalRate, unplaceable });
  return { ...decision, capacity, total };
}
