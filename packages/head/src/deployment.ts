// A deployment as the head keeps it (desired spec plus what placing it has taught the head), and
// every change to it as one transition `transition(d, event, now)`, pure: nothing else writes a
// Deployment's fields, so its lifecycle (settling after a takeover, placing, backing off after a
// failure with refusing devices skipped, dormant after an eviction) reads in one place and is
// table-tested (deployment.test.ts). Back-off and device skipping follow placement-retry.ts.
import { ErrorCode, type DeploySpec, type WireError } from '@flotilla/protocol';
import { Autoscaler } from './autoscaler.js';
import { retryDelay, skipDeviceMs, type PendingPlacement } from './placement-retry.js';

export interface Deployment {
  spec: DeploySpec;
  createdAt: number;
  /** Load commands sent whose replica the worker has not reported in a heartbeat yet. */
  pending: Map<string, PendingPlacement>;
  pendingReason?: WireError;
  /** Failed placement rounds in a row and when to try again (epoch ms). */
  failures: number;
  retryAt: number;
  /** Failure codes already reported since the last change. */
  reported: Set<string>;
  /** The head's capacity epoch at the last failure or reset: a newer one resets the back-off. */
  epoch: number;
  /** Footprint of one replica as profiled on a worker (largest seen), bytes. */
  measuredBytes?: number;
  /** Evicted: no replicas are added until a caller asks for the model (`ensure`) or it is scaled. */
  dormant: boolean;
  /** Present when minReplicas < maxReplicas. */
  autoscaler?: Autoscaler;
  /** Last sample of requests answered by the deployment's replicas (for the arrival rate). */
  answered?: { at: number; total: number };
  /** Devices ("worker/device") skipped after a refusal or an unconfirmed load, until when (epoch ms), and why. */
  refused?: Map<string, { until: number; error: WireError }>;
}

/** An autoscaler for specs whose replica range is open (minReplicas < maxReplicas). */
export function autoscalerFor(spec: DeploySpec): Autoscaler | undefined {
  const min = spec.minReplicas ?? Math.min(spec.replicas, spec.maxReplicas ?? spec.replicas);
  const max = spec.maxReplicas ?? Math.max(spec.replicas, min);
  if (max <= min) return undefined;
  return new Autoscaler({ minReplicas: min, maxReplicas: max, ...spec.autoscale });
}

/**
 * A new deployment; `retryAt` in the future holds placement back (a head that just took over waits
 * for the heartbeats). A redeploy passes the previous one's `pending` so its loads stay counted.
 */
export function newDeployment(
  spec: DeploySpec,
  createdAt: number,
  retryAt: number,
  epoch: number,
  autoscaler = autoscalerFor(spec),
  pending = new Map<string, PendingPlacement>(),
): Deployment {
  return { spec, createdAt, pending, failures: 0, retryAt, reported: new Set(), epoch, dormant: false, autoscaler };
}

/** Why no replicas are added now; undefined when they may be. */
export type PlacementHold = 'dormant' | 'settling' | 'backing-off';

export function placementHold(d: Deployment, now: number): PlacementHold | undefined {
  if (d.dormant) return 'dormant';
  if (now < d.retryAt) return d.failures > 0 ? 'backing-off' : 'settling';
  return undefined;
}

/** Everything that changes a deployment. `epoch` is the head's capacity epoch when it happened. */
export type DeploymentEvent =
  /** A load command was sent. */
  | { type: 'load-sent'; replicaId: string; workerId: string; device: string; bytes: number }
  /** The worker answered the load; the replica counts once a heartbeat reports it. */
  | { type: 'load-answered'; replicaId: string }
  /** The load failed; a NO_CAPACITY refusal skips the device, other failures back off only. */
  | { type: 'load-failed'; replicaId: string; workerId: string; device: string; error: WireError; epoch: number }
  /** A heartbeat reports the pending replica: it counts from here on. */
  | { type: 'confirmed'; replicaId: string }
  /** Answered but not reported within `confirmMs`: a failed placement, its device skipped. */
  | { type: 'unconfirmed'; replicaId: string; confirmMs: number; epoch: number }
  /** Evicted or unloaded before a heartbeat reported it: settled, not a failed placement. */
  | { type: 'gone'; replicaId: string }
  /** Missing replicas found no device at all. */
  | { type: 'unplaced'; error: WireError; epoch: number }
  /** All wanted replicas are there: a NO_CAPACITY reason no longer holds. */
  | { type: 'satisfied' }
  /** Capacity may have been freed (the epoch moved since the last failure): place again now. */
  | { type: 'capacity'; epoch: number }
  /** A replica of it was evicted: dormant (re-placing it would thrash). */
  | { type: 'evicted' }
  /** A caller asked for it (`ensure`), `counted` replicas live. */
  | { type: 'requested'; counted: number; epoch: number }
  /** Scaled by an operator (the spec as stored). */
  | { type: 'scaled'; spec: DeploySpec; epoch: number }
  /** Scaled by its autoscaler. */
  | { type: 'autoscaled'; replicas: number }
  /** A worker profiled one replica at `bytes`. */
  | { type: 'measured'; bytes: number }
  /** Requests answered so far by its replicas (for the arrival rate). */
  | { type: 'sampled'; total: number };

/**
 * Applies `e` at `now`. True when the change is one to report: a failure code not reported since
 * the last change, or the deployment turning dormant.
 */
export function transition(d: Deployment, e: DeploymentEvent, now: number): boolean {
  switch (e.type) {
    case 'load-sent':
      d.pending.set(e.replicaId, { workerId: e.workerId, device: e.device, bytes: e.bytes, sentAt: now });
      return false;
    case 'load-answered': {
      const p = d.pending.get(e.replicaId);
      if (p) p.repliedAt = now;
      if (d.pendingReason && d.pendingReason.code !== ErrorCode.NO_CAPACITY) d.pendingReason = undefined;
      return false;
    }
    case 'load-failed':
      d.pending.delete(e.replicaId);
      // NO_CAPACITY: the head's view of that device was stale (or the worker has limits the head
      // cannot see): skip it. Others (an artifact store mid-election, a timeout) retry the best
      // device after the back-off, so one transient error does not stack replicas on another worker.
      return recordFailure(d, e.error, now, e.epoch, e.error.code === ErrorCode.NO_CAPACITY ? `${e.workerId}/${e.device}` : undefined);
    case 'confirmed':
    case 'gone':
      d.pending.delete(e.replicaId);
      return false;
    case 'unconfirmed': {
      const p = d.pending.get(e.replicaId);
      if (!p) return false;
      d.pending.delete(e.replicaId);
      const message = `worker ${p.workerId} answered the load of ${e.replicaId} but has not reported it in its heartbeats for ${e.confirmMs} ms`;
      const error = { code: ErrorCode.UNAVAILABLE, message };
      return recordFailure(d, error, now, e.epoch, `${p.workerId}/${p.device}`);
    }
    case 'unplaced':
      return recordFailure(d, e.error, now, e.epoch);
    case 'satisfied':
      if (d.pendingReason?.code === ErrorCode.NO_CAPACITY) d.pendingReason = undefined;
      return false;
    case 'capacity':
      if (d.failures > 0 && d.epoch !== e.epoch) resetRetry(d, e.epoch);
      return false;
    case 'evicted':
      if (d.dormant) return false;
      d.dormant = true;
      return true;
    case 'requested':
      if (d.dormant || e.counted === 0) resetRetry(d, e.epoch);
      d.dormant = false;
      if (d.spec.replicas === 0) d.spec = { ...d.spec, replicas: 1 }; // scaled to zero: a request brings one back
      return false;
    case 'scaled': {
      // A head that just took over holds placement until the workers' heartbeats are in (recover):
      // a scale then must wait too, or it places on the few workers heard of so far (seen in CI:
      // a replica scaled onto a worker that had one while the spare was not heard of yet).
      const settling = d.failures === 0 && d.retryAt > now ? d.retryAt : 0;
      d.spec = e.spec;
      resetRetry(d, e.epoch);
      d.retryAt = settling;
      d.dormant = false;
      return false;
    }
    case 'autoscaled':
      d.spec = { ...d.spec, replicas: e.replicas };
      return false;
    case 'measured':
      if (e.bytes > (d.measuredBytes ?? 0)) d.measuredBytes = e.bytes;
      return false;
    case 'sampled':
      d.answered = { at: now, total: e.total };
      return false;
  }
}

/** Place again now: failures, skipped devices and reported codes are forgotten. */
export function resetRetry(d: Deployment, epoch: number): void {
  d.failures = 0;
  d.retryAt = 0;
  d.reported.clear();
  d.refused?.clear();
  d.epoch = epoch;
}

/**
 * Records a failed placement at `now`: one more failed round (failures within the current back-off
 * window, e.g. 32 loads of one round refused, count once), `device` skipped for as long as the
 * back-off (at least the refusal time). True when this code was not reported since the last change.
 */
export function recordFailure(d: Deployment, error: WireError, now: number, epoch: number, device?: string): boolean {
  if (now >= d.retryAt) {
    d.failures++;
    d.retryAt = now + retryDelay(d.failures);
  }
  d.epoch = epoch;
  d.pendingReason = error;
  if (device) {
    d.refused ??= new Map();
    for (const [key, r] of d.refused) if (r.until <= now) d.refused.delete(key); // expired: the map holds only skips in force
    d.refused.set(device, { until: now + skipDeviceMs(d.failures), error });
  }
  if (d.reported.has(error.code)) return false;
  d.reported.add(error.code);
  return true;
}

/** Skipped devices still in force at `now`, oldest first (does not change `d`). */
export function activeRefusals(d: Deployment, now: number): Map<string, { until: number; error: WireError }> {
  const out = new Map<string, { until: number; error: WireError }>();
  if (d.refused) for (const [key, r] of d.refused) if (r.until > now) out.set(key, r);
  return out;
}
