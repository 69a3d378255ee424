// A heartbeat that fits one NATS message, pure. A heartbeat over the server's max_payload is not
// sent at all (nats.js refuses it), and a worker the head does not hear from is gone to it: its
// replicas are placed elsewhere. The protocol allows 4,096 replicas a heartbeat; a fixed-shape
// replica takes ≈ 850 bytes, one of a dynamic-shape model that has seen 64 input shapes ≈ 16 KB
// (its per-shape profiles and tuned batch sizes, shapes its callers choose): 1 MiB holds ≈ 1,200
// of the first and 64 of the second. So past the limit the worker leaves out, for every replica at
// once, what only status and the dashboard read, least needed first, until the heartbeat fits:
// what placement, eviction and autoscaling read (state, bytes, queues, counters, the profile's
// replicaBytes and itemsPerSec, rate, reloadMs) always stays.

import type { Heartbeat, ReplicaState } from '@flotilla/protocol';

/** What is left out, in this order, each for every replica, until the heartbeat fits. */
export const HEARTBEAT_TRIM_STEPS = ['tunedBatches', 'profile.shapes', 'signature', 'batchHistogram', 'latencyMs'] as const;
export type HeartbeatTrimStep = (typeof HEARTBEAT_TRIM_STEPS)[number];

export interface FittedHeartbeat {
  heartbeat: Heartbeat;
  /** Its encoded bytes (`encode(heartbeat)`), to publish as they are. */
  bytes: Uint8Array;
  /** The steps taken (none when it fitted as it was). */
  trimmed: HeartbeatTrimStep[];
  /** Whether it fits now (false: over the limit even with every step taken). */
  fits: boolean;
}

function trim(r: ReplicaState, step: HeartbeatTrimStep): ReplicaState {
  if (step === 'profile.shapes') {
    if (!r.profile?.shapes) return r;
    const { shapes: _, ...profile } = r.profile;
    return { ...r, profile };
  }
  // The other details are a loaded replica's only.
  if (r.state === 'loading') return r;
  switch (step) {
    case 'tunedBatches': {
      const { tunedBatches: _, ...rest } = r;
      return rest;
    }
    case 'signature': {
      const { signature: _, ...rest } = r;
      return rest;
    }
    case 'batchHistogram':
      return { ...r, batchHistogram: {} };
    case 'latencyMs': {
      const { latencyMs: _, ...rest } = r;
      return rest;
    }
  }
}

/** `hb` as it is when its encoding (`encode`) is at most `maxBytes`, else with HEARTBEAT_TRIM_STEPS taken in turn until it is. */
export function fitHeartbeat(hb: Heartbeat, maxBytes: number, encode: (hb: Heartbeat) => Uint8Array): FittedHeartbeat {
  let heartbeat = hb;
  let bytes = encode(heartbeat);
  const trimmed: HeartbeatTrimStep[] = [];
  for (const step of HEARTBEAT_TRIM_STEPS) {
    if (bytes.byteLength <= maxBytes) break;
    const next = { ...heartbeat, replicas: heartbeat.replicas.map((r) => trim(r, step)) };
    const nextBytes = encode(next);
    if (nextBytes.byteLength === bytes.byteLength) continue; // nothing of that kind in it
    heartbeat = next;
    bytes = nextBytes;
    trimmed.push(step);
  }
  return { heartbeat, bytes, trimmed, fits: bytes.byteLength <= maxBytes };
}
