// A deployment as the head keeps it (desired spec plus what placing it has taught the head), and
// the transitions of its placement retries, pure: a failure backs off exponentially
// (placement-retry.ts) and skips the device that failed; a change (scale, redeploy, `ensure`,
// capacity freed) resets it. Each failure code is reported once until something changes.
import type { DeploySpec, WireError } from '@flotilla/protocol';
import type { Autoscaler } from './autoscaler.js';
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

export function newDeployment(spec: DeploySpec, createdAt: number, retryAt: number, epoch: number, autoscaler?: Autoscaler, pending = new Map<string, PendingPlacement>()): Deployment {
  return { spec, createdAt, pending, failures: 0, retryAt, reported: new Set(), epoch, dormant: false, autoscaler };
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
  if (device) (d.refused ??= new Map()).set(device, { until: now + skipDeviceMs(d.failures), error });
  if (d.reported.has(error.code)) return false;
  d.reported.add(error.code);
  return true;
}

/** Skipped devices still in force (expired ones are dropped). */
export function activeRefusals(d: Deployment, now: number): Map<string, { until: number; error: WireError }> {
  if (!d.refused) return new Map();
  for (const [key, r] of d.refused) if (r.until <= now) d.refused.delete(key);
  return d.refused;
}
