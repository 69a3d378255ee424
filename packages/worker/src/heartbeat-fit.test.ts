import {
  PROTOCOL_VERSION,
  decode,
  encode,
  parseHeartbeat,
  type Heartbeat,
  type LoadedReplicaState,
  type LoadingReplicaState,
} from '@flotilla/protocol';
import { HEARTBEAT_TRIM_STEPS, fitHeartbeat } from './heartbeat-fit.js';

const GiB = 1024 ** 3;
const digest = 'a'.repeat(64);

/** A dynamic-shape replica that has seen `shapes` input shapes (its per-shape profiles and tuned sizes: the bulk of it). */
function dynamicReplica(i: number, shapes: number): LoadedReplicaState {
  const keys = Array.from({ length: shapes }, (_, s) => `x:3x${64 + s}x${64 + s}`);
  return {
    id: `cls-${String(i).padStart(10, '0')}`,
    model: `cls-${i}`,
    digest,
    device: 'cpu',
    state: 'ready',
    bytes: 40e6,
    queueDepth: 2,
    inFlight: 8,
    processed: 1000,
    failed: 1,
    itemsProcessed: 1000,
    executionProvider: 'cpu',
    batching: { maxBatchSize: 8, maxQueueDelayMs: 0, maxQueueLength: 1024, batchAxis: true },
    batchHistogram: { '1': 3, '8': 120, '16': 400 },
    pinned: false,
    loadedAt: 1,
    lastUsedAt: 2,
    rate: 120,
    reloadMs: 300,
    signature: {
      inputs: [{ name: 'x', dtype: 'float32', shape: ['N', 3, 'H', 'W'] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: ['N', 10] }],
      batchAxis: true,
    },
    latencyMs: { p50: 10, p99: 40, count: 1024 },
    profile: {
      source: 'per-shape',
      deviceClass: 'cpu-x',
      reason: 'dynamic dims H, W: profiled per shape as traffic arrives',
      replicaBytes: 35e6,
      itemsPerSec: 2000,
      tookMs: 0,
      dynamicDims: ['H', 'W'],
      shapes: keys.map((shape) => ({
        shape,
        state: 'measured' as const,
        requests: 100,
        maxBatchSize: 16,
        maxQueueDelayMs: 0.4,
        replicaBytes: 35e6,
        tookMs: 2000,
        reason: 'best items/s within the SLO: batch 16 at 2,345 items/s, p99 12.3 ms',
      })),
    },
    tunedBatches: keys.map((shape) => ({ shape, from: 16, maxBatchSize: 8, state: 'settled' as const })),
  };
}

const loading: LoadingReplicaState = {
  id: 'mlp-klmnopqrst',
  model: 'mlp',
  digest,
  device: 'cpu',
  state: 'loading',
  bytes: 20e6,
  queueDepth: 0,
  inFlight: 0,
  processed: 0,
  failed: 0,
  pinned: true,
};

function heartbeat(replicas: Heartbeat['replicas']): Heartbeat {
  return {
    v: PROTOCOL_VERSION,
    workerId: 'w0',
    pid: 1234,
    state: 'running',
    seq: 5,
    startedAt: 1,
    sentAt: 2,
    inventory: {
      cpu: { cores: 8, model: 'x', usableCores: 2 },
      memory: { totalBytes: 16 * GiB, availableBytes: 8 * GiB },
      gpus: [],
      source: 'override',
      hostname: 'h',
    },
    devices: [
      { id: 'cpu', kind: 'cpu', capacityBytes: 16 * GiB, budgetBytes: 12 * GiB, usedBytes: 0, executionProvider: 'cpu', policy: 'fifo' },
    ],
    replicas,
  } as Heartbeat;
}

/** What placement, eviction and autoscaling read of each replica: never left out. */
const placementView = (hb: Heartbeat) =>
  hb.replicas.map((r) => ({
    id: r.id,
    state: r.state,
    bytes: r.bytes,
    queueDepth: r.queueDepth,
    inFlight: r.inFlight,
    processed: r.processed,
    replicaBytes: r.profile?.replicaBytes,
    itemsPerSec: r.profile?.itemsPerSec,
    rate: r.state === 'loading' ? undefined : r.rate,
    reloadMs: r.state === 'loading' ? undefined : r.reloadMs,
  }));

describe('fitHeartbeat', () => {
  // 80 dynamic-shape replicas that have each seen 64 shapes: 1.27 MB as they stand.
  const big = heartbeat([loading, ...Array.from({ length: 80 }, (_, i) => dynamicReplica(i, 64))]);
  const MiB = 1024 * 1024;

  test('a heartbeat that fits is sent as it is', () => {
    const small = heartbeat([loading, dynamicReplica(0, 3)]);
    const fit = fitHeartbeat(small, MiB, encode);
    expect(fit).toMatchObject({ heartbeat: small, trimmed: [], fits: true });
    expect(fit.bytes).toEqual(encode(small));
  });

  test('over max_payload: details only status reads go, least needed first, until it fits; placement’s figures stay', () => {
    expect(encode(big).byteLength).toBeGreaterThan(MiB);
    const fit = fitHeartbeat(big, MiB, encode);
    expect(fit.fits).toBe(true);
    expect(fit.trimmed).toEqual(['tunedBatches']);
    expect(fit.bytes.byteLength).toBeLessThanOrEqual(MiB);
    const got = parseHeartbeat(decode(fit.bytes));
    expect(placementView(got)).toEqual(placementView(big));
    const r = got.replicas[1] as LoadedReplicaState;
    expect(r.tunedBatches).toBeUndefined();
    expect(r.profile?.shapes).toHaveLength(64); // still there: it fitted without going further
  });

  test.each([
    [256 * 1024, ['tunedBatches', 'profile.shapes']],
    [50_000, ['tunedBatches', 'profile.shapes', 'signature']],
    [45_000, ['tunedBatches', 'profile.shapes', 'signature', 'batchHistogram']],
  ])('at most %i bytes: leaves out %j', (max, steps) => {
    const fit = fitHeartbeat(big, max, encode);
    expect(fit).toMatchObject({ trimmed: steps, fits: true });
    const got = parseHeartbeat(decode(fit.bytes));
    expect(placementView(got)).toEqual(placementView(big));
  });

  test('too many replicas even without details: every step taken, and it says it does not fit', () => {
    const fit = fitHeartbeat(big, 8 * 1024, encode);
    expect(fit.fits).toBe(false);
    expect(fit.trimmed).toEqual([...HEARTBEAT_TRIM_STEPS]);
    const r = parseHeartbeat(decode(fit.bytes)).replicas[1] as LoadedReplicaState;
    expect(r).toMatchObject({ batchHistogram: {}, profile: { replicaBytes: 35e6, itemsPerSec: 2000 } });
    for (const k of ['tunedBatches', 'signature', 'latencyMs'] as const) expect(r[k]).toBeUndefined();
  });

  test('a step that would change nothing is not named', () => {
    const plain = heartbeat(
      Array.from({ length: 64 }, (_, i) => {
        const { tunedBatches: _t, ...r } = dynamicReplica(i, 64);
        return r;
      }),
    );
    expect(fitHeartbeat(plain, 256 * 1024, encode).trimmed).toEqual(['profile.shapes']);
  });
});
