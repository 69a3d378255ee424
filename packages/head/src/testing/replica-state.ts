// Test fixture (used only by the head's table tests): a ready replica as a heartbeat reports it.
import type { ReplicaState } from '@flotilla/protocol';

/** A ready CPU replica of `model` (10 MiB, batch 1, idle); `over` sets anything else. */
export function replicaState(id: string, model: string, over: Partial<ReplicaState> = {}): ReplicaState {
  return {
    id,
    model,
    digest: 'a'.repeat(64),
    device: 'cpu',
    state: 'ready',
    bytes: 10 * 1024 * 1024,
    queueDepth: 0,
    inFlight: 0,
    processed: 0,
    failed: 0,
    executionProvider: 'cpu',
    batching: { maxBatchSize: 1, maxQueueDelayMs: 0, maxQueueLength: 1, batchAxis: true },
    batchHistogram: {},
    pinned: false,
    loadedAt: 0,
    lastUsedAt: 0,
    ...over,
  } as ReplicaState;
}
