// Each schema of control-schemas.ts: a valid message, its boundaries, and invalid ones (the error
// is BAD_REQUEST naming the path, and never echoes unbounded input).
import {
  BadRequestError,
  MAX_GPU_BYTES,
  MAX_HOST_BYTES,
  MAX_REPLICAS_PER_HEARTBEAT,
  MAX_TUNED_BATCH_KEYS,
  PROTOCOL_VERSION,
  parseControlRequest,
  parseDeploymentRecord,
  parseEventMessage,
  parseHeadPresence,
  parseHeartbeat,
  parseLeaseHolder,
  parseLoadResult,
  parseModelProfile,
  type Heartbeat,
  type LoadedReplicaState,
  type LoadingReplicaState,
} from './index.js';

const v = PROTOCOL_VERSION;
const GiB = 1024 ** 3;
const digest = 'a'.repeat(64);

function replica(over: Partial<LoadedReplicaState> = {}): LoadedReplicaState {
  return {
    id: 'mlp-abcdefghij',
    model: 'mlp',
    digest,
    device: 'cpu',
    state: 'ready',
    bytes: 20e6,
    queueDepth: 0,
    inFlight: 0,
    processed: 3,
    failed: 0,
    itemsProcessed: 3,
    executionProvider: 'cpu',
    batching: { maxBatchSize: 8, maxQueueDelayMs: 2, maxQueueLength: 1024, batchAxis: true },
    batchHistogram: { '1': 3 },
    pinned: false,
    loadedAt: Date.now(),
    lastUsedAt: Date.now(),
    profile: {
      source: 'measured',
      deviceClass: 'cpu-x',
      reason: 'best',
      replicaBytes: 1e6,
      itemsPerSec: 1000,
      tookMs: 100,
      threads: { intraOp: 2, interOp: 1, mode: 'sequential', source: 'profile' },
    },
    ...over,
  };
}

/** A replica whose session is still opening: what it is and what it reserved, nothing it cannot know yet. */
function loading(over: Partial<LoadingReplicaState> = {}): LoadingReplicaState {
  return {
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
    ...over,
  };
}

function hb(over: Record<string, unknown> = {}): Heartbeat {
  return {
    v,
    workerId: 'w0',
    pid: 1234,
    state: 'running',
    seq: 5,
    startedAt: Date.now() - 1000,
    sentAt: Date.now(),
    inventory: {
      cpu: { cores: 8, model: 'x', usableCores: 2 },
      memory: { totalBytes: 16 * GiB, availableBytes: 8 * GiB },
      gpus: [{ index: 0, vendor: 'NVIDIA', model: 'L4', vramTotalBytes: 24 * GiB, vramFreeBytes: 23 * GiB }],
      source: 'override',
      hostname: 'h',
    },
    devices: [
      { id: 'cpu', kind: 'cpu', capacityBytes: 16 * GiB, budgetBytes: 12 * GiB, usedBytes: 0, executionProvider: 'cpu', policy: 'fifo' },
      { id: 'gpu:0', kind: 'gpu', capacityBytes: 24 * GiB, budgetBytes: 20 * GiB, usedBytes: 0, executionProvider: 'cuda', policy: 'lru' },
    ],
    replicas: [replica()],
    ...over,
  } as Heartbeat;
}

/** The BadRequestError a parse throws (fails the test when it does not throw). */
function refusal(f: () => unknown): BadRequestError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(BadRequestError);
    return err as BadRequestError;
  }
  throw new Error('expected a BAD_REQUEST');
}

describe('heartbeat schema', () => {
  it('accepts what a worker sends: loaded replicas, and loading ones without provider, batching, history or times', () => {
    const replicas = parseHeartbeat(hb({ replicas: [replica(), replica({ id: 'mlp-d', state: 'draining' }), loading()] })).replicas;
    expect(replicas.map((r) => r.state)).toEqual(['ready', 'draining', 'loading']);
    const l = replicas[2]!;
    expect(l).toEqual(loading());
    expect(l).not.toHaveProperty('executionProvider');
    expect(l).not.toHaveProperty('batching');
  });

  it.each([
    [
      'a loading replica with the old placeholders (empty provider, zeroed batching)',
      loading({ executionProvider: '', batching: { maxBatchSize: 0, maxQueueDelayMs: 0, maxQueueLength: 0, batchAxis: false } } as object),
      'replicas.0.executionProvider: unknown key',
    ],
    ['a loading replica with load times', loading({ loadedAt: 1, lastUsedAt: 1 } as object), 'replicas.0.loadedAt: unknown key'],
    ['a ready replica with no batching', (({ batching: _b, ...r }) => r)(replica()), 'replicas.0.batching'],
    ['a ready replica with an empty provider', replica({ executionProvider: '' }), 'replicas.0.executionProvider'],
    [
      'a ready replica with a zero batch size',
      replica({ batching: { maxBatchSize: 0, maxQueueDelayMs: 0, maxQueueLength: 1, batchAxis: true } }),
      'replicas.0.batching.maxBatchSize',
    ],
    [
      'a ready replica with a zero queue length',
      replica({ batching: { maxBatchSize: 1, maxQueueDelayMs: 0, maxQueueLength: 0, batchAxis: true } }),
      'replicas.0.batching.maxQueueLength',
    ],
    ['a replica in no known state', { ...loading(), state: 'zombie' }, 'replicas.0.state'],
  ])('refuses %s', (_what, r, path) => {
    expect(refusal(() => parseHeartbeat(hb({ replicas: [r] }))).message).toContain(`$.${path}`);
  });

  it('takes a batch histogram with sizes up to 4096 and the shared key for larger runs, and no other keys', () => {
    expect(
      (parseHeartbeat(hb({ replicas: [replica({ batchHistogram: { '1': 2, '4096': 1, '>4096': 3 } })] })).replicas[0] as LoadedReplicaState)
        .batchHistogram['>4096'],
    ).toBe(3);
    refusal(() => parseHeartbeat(hb({ replicas: [replica({ batchHistogram: { '10000': 1 } })] })));
    refusal(() => parseHeartbeat(hb({ replicas: [replica({ batchHistogram: { x: 1 } })] })));
  });

  it('takes a replica latency summary (p50 ≤ p99, bounded), optional, and refuses a malformed one', () => {
    const latencyMs = { p50: 1.25, p99: 9.5, count: 1024 };
    expect((parseHeartbeat(hb({ replicas: [replica({ latencyMs })] })).replicas[0] as LoadedReplicaState).latencyMs).toEqual(latencyMs);
    expect(parseHeartbeat(hb({ replicas: [replica()] })).replicas[0]).not.toHaveProperty('latencyMs');
    const bad: Array<[object, string]> = [
      [{ p50: 10, p99: 2, count: 5 }, 'latencyMs.p50'],
      [{ p50: -1, p99: 2, count: 5 }, 'latencyMs.p50'],
      [{ p50: 1, p99: 1e12, count: 5 }, 'latencyMs.p99'],
      [{ p50: 1, p99: 2, count: 0 }, 'latencyMs.count'],
      [{ p50: 1, p99: 2, count: 1.5 }, 'latencyMs.count'],
      [{ p50: 1, p99: 2, count: 1e15 }, 'latencyMs.count'],
      [{ p50: 1, p99: 2, count: 5, p999: 3 }, 'latencyMs.p999: unknown key'],
      [{ p50: 1, p99: 2 }, 'latencyMs.count'],
    ];
    for (const [l, path] of bad)
      expect(refusal(() => parseHeartbeat(hb({ replicas: [replica({ latencyMs: l as never })] }))).message).toContain(
        `$.replicas.0.${path}`,
      );
    // A loading replica has answered nothing: no latency.
    refusal(() => parseHeartbeat(hb({ replicas: [loading({ latencyMs } as object)] })));
  });

  it('takes the batch sizes a replica tuned on its traffic (bounded, never above where they started), optional', () => {
    const tunedBatches = [
      { shape: 'x:3x64x64', from: 16, maxBatchSize: 8, state: 'settled' },
      { shape: 'x:3x32x32', from: 32, maxBatchSize: 32, state: 'waiting' },
    ];
    const got = parseHeartbeat(hb({ replicas: [replica({ tunedBatches })] })).replicas[0] as LoadedReplicaState;
    expect(got.tunedBatches).toEqual(tunedBatches);
    expect(parseHeartbeat(hb({ replicas: [replica()] })).replicas[0]).not.toHaveProperty('tunedBatches');
    const one = tunedBatches[0]!;
    const bad: Array<[object, string]> = [
      [[{ ...one, maxBatchSize: 32 }], 'tunedBatches.0.maxBatchSize'],
      [[{ ...one, from: 5000 }], 'tunedBatches.0.from'],
      [[{ ...one, maxBatchSize: 0 }], 'tunedBatches.0.maxBatchSize'],
      [[{ ...one, state: 'guessing' }], 'tunedBatches.0.state'],
      [[{ ...one, shape: 'x'.repeat(1025) }], 'tunedBatches.0.shape'],
      [[{ ...one, extra: 1 }], 'tunedBatches.0.extra: unknown key'],
      [Array.from({ length: MAX_TUNED_BATCH_KEYS + 1 }, () => one), 'tunedBatches'],
    ];
    for (const [t, path] of bad)
      expect(refusal(() => parseHeartbeat(hb({ replicas: [replica({ tunedBatches: t as never })] }))).message).toContain(
        `$.replicas.0.${path}`,
      );
    expect(
      (
        parseHeartbeat(hb({ replicas: [replica({ tunedBatches: Array.from({ length: MAX_TUNED_BATCH_KEYS }, () => one) as never })] }))
          .replicas[0] as LoadedReplicaState
      ).tunedBatches,
    ).toHaveLength(MAX_TUNED_BATCH_KEYS);
  });

  it('accepts the boundaries: 64 GPUs of 4 TiB, 64 TiB of host memory, 4096 replicas', () => {
    const gpus = Array.from({ length: 64 }, (_, i) => ({
      index: i,
      vendor: 'v',
      model: 'm',
      vramTotalBytes: MAX_GPU_BYTES,
      vramFreeBytes: 0,
    }));
    const inventory = { ...hb().inventory, gpus, memory: { totalBytes: MAX_HOST_BYTES, availableBytes: 0 } };
    const replicas = Array.from({ length: MAX_REPLICAS_PER_HEARTBEAT }, (_, i) => replica({ id: `mlp-${i}` }));
    expect(parseHeartbeat(hb({ inventory, replicas })).inventory.gpus).toHaveLength(64);
  });

  it.each([
    [
      'a 1 PB GPU device',
      {
        devices: [
          { id: 'gpu:0', kind: 'gpu', capacityBytes: 1e15, budgetBytes: 1e15, usedBytes: 0, executionProvider: 'cuda', policy: 'fifo' },
        ],
      },
      'devices.0.capacityBytes',
    ],
    [
      'a 1 PB GPU in the inventory',
      { inventory: { ...hb().inventory, gpus: [{ index: 0, vendor: 'v', model: 'm', vramTotalBytes: 1e15, vramFreeBytes: 0 }] } },
      'inventory.gpus.0.vramTotalBytes',
    ],
    [
      '65 GPUs',
      {
        inventory: {
          ...hb().inventory,
          gpus: Array.from({ length: 65 }, (_, i) => ({ index: i % 64, vendor: 'v', model: 'm', vramTotalBytes: 1, vramFreeBytes: 0 })),
        },
      },
      'inventory.gpus',
    ],
    ['4097 cores', { inventory: { ...hb().inventory, cpu: { cores: 4097, model: 'x' } } }, 'inventory.cpu.cores'],
    [
      '65 TiB of host memory',
      { inventory: { ...hb().inventory, memory: { totalBytes: MAX_HOST_BYTES + 1, availableBytes: 0 } } },
      'inventory.memory.totalBytes',
    ],
    ['4097 replicas', { replicas: Array.from({ length: MAX_REPLICAS_PER_HEARTBEAT + 1 }, () => replica()) }, 'replicas'],
    ['an unknown key', { extra: 'x'.repeat(600_000) }, '$'],
    ['a bad worker id', { workerId: 'a.b' }, 'workerId'],
    ['a negative seq', { seq: -1 }, 'seq'],
    ['a fractional seq', { seq: 1.5 }, 'seq'],
    ['an unknown state', { state: 'zombie' }, 'state'],
    [
      'a device kind that does not match its id',
      { devices: [{ id: 'cpu', kind: 'gpu', capacityBytes: 1, budgetBytes: 1, usedBytes: 0, executionProvider: 'cpu', policy: 'fifo' }] },
      'devices.0.kind',
    ],
    ['a replica with an unknown key', { replicas: [{ ...replica(), evil: 1 }] }, 'replicas.0'],
    [
      'a replica error with huge data',
      { replicas: [replica({ error: { code: 'X', message: 'm', data: 'x'.repeat(20_000) } })] },
      'replicas.0.error.data',
    ],
  ])('refuses %s', (_what, over, path) => {
    const err = refusal(() => parseHeartbeat(hb(over)));
    expect(err.message).toContain(path === '$' ? 'invalid heartbeat' : `$.${path}`);
    expect(err.message.length).toBeLessThan(400);
    expect(JSON.stringify(err.toWire()).length).toBeLessThan(4000);
  });
});

describe('event schema', () => {
  const ok = {
    v,
    type: 'loaded',
    model: 'mlp',
    worker: 'w0',
    device: 'cpu',
    replica: 'mlp-abc',
    bytes: 10,
    reason: 'r',
    at: Date.now(),
    data: { loadMs: 3 },
  };
  it('accepts an event, and a reason of exactly 1 KiB', () => {
    expect(parseEventMessage(ok)).toEqual(ok);
    expect(parseEventMessage({ ...ok, reason: 'r'.repeat(1024) }).reason).toHaveLength(1024);
  });
  it.each([
    ['a 500 KB reason', { reason: 'r'.repeat(500_000) }, 'reason'],
    ['500 KB of data', { data: { blob: 'x'.repeat(500_000) } }, 'data'],
    ['a type that is not one token', { type: 'a.b' }, 'type'],
    ['no time', { at: undefined }, 'at'],
    ['an unknown key', { extra: 1 }, ''],
  ])('refuses %s', (_what, over, path) => {
    const err = refusal(() => parseEventMessage({ ...ok, ...over }));
    expect(err.message).toContain(`$${path ? '.' + path : ''}`);
    expect(err.message.length).toBeLessThan(400);
  });
});

describe('control requests', () => {
  it('parses each operation, tagged with it', () => {
    expect(parseControlRequest('list', { v })).toEqual({ op: 'list', v });
    expect(parseControlRequest('describe', { v, name: 'mlp' })).toEqual({ op: 'describe', v, name: 'mlp' });
    expect(parseControlRequest('ensure', { v, name: 'mlp', waitMs: 0 })).toMatchObject({ op: 'ensure', waitMs: 0 });
    expect(parseControlRequest('scale', { v, name: 'mlp', replicas: 1000 })).toMatchObject({ replicas: 1000 });
    expect(parseControlRequest('events', { v, limit: 5, model: 'mlp', type: 'refused' })).toMatchObject({ limit: 5 });
    const d = parseControlRequest('deploy', { v, spec: { name: 'mlp', digest, sizeBytes: 10 } });
    expect(d.op === 'deploy' && d.spec.replicas).toBe(1);
  });

  it.each([
    ['describe', { v, name: 'x'.repeat(600_000) }, '$.name'],
    ['describe', { v }, '$.name'],
    ['undeploy', { v, name: 'mlp', extra: true }, 'invalid undeploy request'],
    ['scale', { v, name: 'mlp', replicas: 1001 }, '$.replicas'],
    ['scale', { v, name: 'mlp', replicas: 1.5 }, '$.replicas'],
    ['ensure', { v, name: 'mlp', waitMs: -1 }, '$.waitMs'],
    ['events', { v, limit: 0 }, '$.limit'],
    ['events', { v, model: 5 }, '$.model'],
    ['list', { v, x: 'y'.repeat(600_000) }, 'invalid list request'],
    ['deploy', { v, spec: { name: 'mlp', digest, sizeBytes: 10, ['k'.repeat(600_000)]: 1 } }, 'invalid deploy request'],
    ['nope', { v }, "unknown control operation 'nope'"],
  ])('%s %#: BAD_REQUEST, short', (op, body, expected) => {
    const err = refusal(() => parseControlRequest(op, body));
    expect(err.message).toContain(expected);
    expect(err.message.length).toBeLessThan(500);
    expect(JSON.stringify(err.toWire()).length).toBeLessThan(4000);
  });
});

describe('stored values and worker replies', () => {
  it('deployment record: valid, and refused when the spec is not', () => {
    const rec = parseDeploymentRecord({ v, spec: { name: 'mlp', digest, sizeBytes: 10 }, createdAt: 1 });
    expect(rec.spec.device).toBe('any');
    expect(refusal(() => parseDeploymentRecord({ v, spec: { name: 'mlp' }, createdAt: 1 })).message).toContain('$.spec.digest');
  });

  it('lease value: valid, and refused with an extra key or a bad id', () => {
    expect(parseLeaseHolder({ v, id: 'head-1', pid: 1, since: 2 })).toEqual({ v, id: 'head-1', pid: 1, since: 2 });
    expect(refusal(() => parseLeaseHolder({ v, id: 'head 1', pid: 1, since: 2 })).message).toContain('$.id');
    expect(refusal(() => parseLeaseHolder({ v, id: 'h', pid: 1, since: 2, x: 1 })).message).toContain('invalid lease value');
  });

  it('head presence: valid, and refused with an extra key, another role, a bad id, a long host or a huge seq', () => {
    const ok = { v, id: 'head-1', pid: 7, host: 'node-a', startedAt: 1, role: 'standby', since: 2, seq: 0 };
    expect(parseHeadPresence(ok)).toEqual(ok);
    expect(parseHeadPresence({ ...ok, role: 'leader' }).role).toBe('leader');
    expect(refusal(() => parseHeadPresence({ ...ok, x: 1 })).message).toContain('invalid head presence');
    expect(refusal(() => parseHeadPresence({ ...ok, role: 'king' })).message).toContain('$.role');
    expect(refusal(() => parseHeadPresence({ ...ok, id: 'a.b' })).message).toContain('$.id');
    expect(refusal(() => parseHeadPresence({ ...ok, host: 'h'.repeat(100_000) })).message).toContain('$.host');
    expect(refusal(() => parseHeadPresence({ ...ok, seq: 1e300 })).message).toContain('$.seq');
    expect(refusal(() => parseHeadPresence({ ...ok, pid: -1 })).message).toContain('$.pid');
    expect(refusal(() => parseHeadPresence(null)).message).toContain('head presence');
  });

  it('load reply: valid, and refused when it names a model badly or claims 1 PB', () => {
    const ok = {
      replicaId: 'mlp-x',
      device: 'cpu',
      bytes: 10,
      loadMs: 1,
      executionProvider: 'cpu',
      compile: 'off' as const,
      evicted: [{ replica: 'b-1', model: 'b', bytes: 5 }],
    };
    expect(parseLoadResult(ok)).toEqual(ok);
    expect(refusal(() => parseLoadResult({ ...ok, evicted: [{ replica: 'b-1', model: 'b/c', bytes: 5 }] })).message).toContain(
      '$.evicted.0.model',
    );
    expect(refusal(() => parseLoadResult({ ...ok, bytes: 1e18 })).message).toContain('$.bytes');
  });
});

describe('model profile (profiles bucket)', () => {
  const profile = {
    v,
    digest,
    deviceClass: 'cpu-x',
    ortVersion: '1.30.0',
    createdAt: 1,
    latencySloMs: 50,
    budgetMs: 3000,
    tookMs: 120,
    rows: [{ batch: 1, runs: 20, p50Ms: 0.1, p99Ms: 0.3, itemsPerSec: 9000, peakBytes: -4096 }],
    stoppedBecause: 'throughput stopped improving',
    chosen: { maxBatchSize: 1, maxQueueDelayMs: 0.05, reason: 'best' },
    compile: { plainCreateMs: 5, compiledCreateMs: 4, helps: false, reason: 'within 10 %' },
    threads: {
      intraOp: 1,
      interOp: 1,
      mode: 'sequential' as const,
      reason: 'r',
      tookMs: 30,
      rows: [{ intraOp: 1, interOp: 1, mode: 'sequential' as const, batch: 1, runs: 5, p50Ms: 0.1, p99Ms: 0.2, itemsPerSec: 9000 }],
    },
    memory: { sessionBytes: 1000, peakBytes: 2000, replicaBytes: 3000 },
  };
  it('accepts a profile as the profiler writes it', () => {
    expect(parseModelProfile(profile)).toEqual(profile);
  });
  it('a profile a newer worker stored: the keys this version does not know are dropped, at any depth; the rest is kept', () => {
    const newer = {
      ...profile,
      gpuTimeline: [1, 2, 3],
      chosen: { ...profile.chosen, warmBatches: 4 },
      rows: [{ ...profile.rows[0], energyJ: 0.2 }],
      threads: { ...profile.threads, pinned: true, rows: [{ ...profile.threads.rows[0], numaNode: 0 }] },
      memory: { ...profile.memory, arenaBytes: 5 },
    };
    expect(parseModelProfile(newer)).toEqual(profile);
    // The stored value itself is left as it was.
    expect(newer.chosen).toHaveProperty('warmBatches', 4);
  });
  it('an unknown `__proto__` key is dropped as any other, touching no prototype', () => {
    const raw = JSON.parse(`{"__proto__": {"polluted": true}, ${JSON.stringify(profile).slice(1)}`) as object;
    expect(Object.keys(raw)).toContain('__proto__');
    expect(parseModelProfile(raw)).toEqual(profile);
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });
  it.each([
    ['65 rows', { ...profile, rows: Array(65).fill(profile.rows[0]) }, '$.rows'],
    ['a 1 PB replica charge', { ...profile, memory: { ...profile.memory, replicaBytes: 1e18 } }, '$.memory.replicaBytes'],
    ['a known field of the wrong type beside an unknown one', { ...profile, evil: 1, tookMs: 'soon' }, '$.tookMs'],
    ['nothing but unknown keys', { evil: 1 }, 'invalid model profile'],
  ])('refuses %s', (_what, raw, expected) => {
    expect(refusal(() => parseModelProfile(raw)).message).toContain(expected);
  });
});
