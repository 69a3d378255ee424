// Table tests of the dashboard's data shaping (shape.ts, history.ts, view-model.ts helpers): plain
// data in, the page's view model out.
import type { ClusterStatus, EventMessage, ModelProfile, WorkerStatus } from '@flotilla/protocol';
import { EMPTY_HISTORY, advanceHistory } from './history.js';
import {
  buildSnapshot,
  deploymentRows,
  deviceBar,
  eventRows,
  eventText,
  headsView,
  lastScaling,
  profileViews,
  profilesByFile,
  workerViews,
  STANDBY_NOTE,
} from './shape.js';
import { filterEvents, formatBytes, formatNumber } from './view-model.js';

const MiB = 1024 * 1024;
const digest = 'a'.repeat(64);

function device(models: Array<{ name: string; replica: string; bytes: number }>, over: Partial<WorkerStatus['devices'][number]> = {}) {
  return {
    id: 'cpu',
    kind: 'cpu' as const,
    capacityBytes: 1000 * MiB,
    budgetBytes: 100 * MiB,
    usedBytes: models.reduce((s, m) => s + m.bytes, 0),
    executionProvider: 'cpu',
    policy: 'lru',
    models,
    ...over,
  };
}

function readyReplica(id: string, model: string, over: Record<string, unknown> = {}) {
  return {
    id,
    model,
    digest,
    device: 'cpu',
    bytes: 40 * MiB,
    queueDepth: 0,
    inFlight: 0,
    processed: 0,
    failed: 0,
    itemsProcessed: 0,
    pinned: false,
    state: 'ready' as const,
    executionProvider: 'cpu',
    batching: { maxBatchSize: 8, maxQueueDelayMs: 2, maxQueueLength: 1024, batchAxis: true },
    batchHistogram: {},
    loadedAt: 1,
    lastUsedAt: 1,
    ...over,
  };
}

function worker(id: string, replicas: ReturnType<typeof readyReplica>[], lastSeenMs = 1000): WorkerStatus {
  return {
    id,
    pid: 1,
    alive: true,
    state: 'running',
    lastSeenMs,
    inventory: {
      cpu: { cores: 4, model: 'Test CPU', usableCores: 2 },
      memory: { totalBytes: 1000 * MiB, availableBytes: 900 * MiB },
      gpus: [],
      source: 'measured',
      hostname: `${id}.local`,
    },
    devices: [device(replicas.map((r) => ({ name: r.model, replica: r.id, bytes: r.bytes })))],
    replicas,
  } as WorkerStatus;
}

function deployment(name: string, replicas: Array<{ id: string; workerId: string }>, spec: Record<string, unknown> = {}) {
  return {
    spec: {
      name,
      digest,
      sizeBytes: 3000,
      device: 'any',
      allowFallback: true,
      replicas: replicas.length,
      batching: {},
      pin: false,
      autoscale: {},
      profile: {},
      warmup: true,
      ...spec,
    },
    createdAt: 1,
    replicas: replicas.map((r) => ({ ...r, device: 'cpu', state: 'ready' as const, queueDepth: 0 })),
    ready: replicas.length,
  } as ClusterStatus['deployments'][number];
}

function status(workers: WorkerStatus[], deployments: ClusterStatus['deployments']): ClusterStatus {
  return { cluster: 'c1', head: { id: 'h1', pid: 42, startedAt: 5 }, workers, deployments };
}

const ev = (e: Partial<EventMessage> & { type: string; at: number }): EventMessage => ({ v: 1, ...e }) as EventMessage;

function profile(rows: Array<[number, number, number]>, over: Partial<ModelProfile> = {}): ModelProfile {
  return {
    v: 1,
    digest,
    deviceClass: 'cpu:Test CPU',
    ortVersion: '1.2',
    createdAt: 7,
    latencySloMs: 50,
    budgetMs: 3000,
    tookMs: 100,
    rows: rows.map(([batch, itemsPerSec, p99Ms]) => ({ batch, runs: 5, p50Ms: p99Ms / 2, p99Ms, itemsPerSec, peakBytes: batch * 1000 })),
    stoppedBecause: 'items/s stopped growing',
    chosen: { maxBatchSize: 8, maxQueueDelayMs: 2, reason: 'best items/s within the SLO' },
    memory: { sessionBytes: 1, peakBytes: 2, replicaBytes: 3 * MiB },
    ...over,
  };
}

describe('deviceBar: used / budget / capacity with one segment per replica', () => {
  it.each([
    {
      name: 'empty device',
      models: [],
      over: {},
      want: { usedBytes: 0, freeBytes: 100 * MiB, usedFraction: 0, budgetFraction: 0.1, segments: [] },
      summary: 'cpu: 0 B used of a 100 MiB budget (capacity 1000 MiB, eviction lru): no replicas',
    },
    {
      name: 'two replicas laid end to end, sorted by model',
      models: [
        { name: 'b', replica: 'b-1', bytes: 40 * MiB },
        { name: 'a', replica: 'a-1', bytes: 20 * MiB },
      ],
      over: {},
      want: {
        usedBytes: 60 * MiB,
        freeBytes: 40 * MiB,
        usedFraction: 0.6,
        segments: [
          { model: 'a', replica: 'a-1', bytes: 20 * MiB, offsetBytes: 0 },
          { model: 'b', replica: 'b-1', bytes: 40 * MiB, offsetBytes: 20 * MiB },
        ],
      },
      summary: 'cpu: 60 MiB used of a 100 MiB budget (capacity 1000 MiB, eviction lru): a 20 MiB, b 40 MiB',
    },
    {
      name: 'over budget (a pinned replica), zero capacity',
      models: [{ name: 'a', replica: 'a-1', bytes: 150 * MiB }],
      over: { capacityBytes: 0, policy: 'fifo' },
      want: { freeBytes: -50 * MiB, usedFraction: 1.5, budgetFraction: 1, policy: 'fifo' },
      summary: 'cpu: 150 MiB used of a 100 MiB budget (capacity 0 B, eviction fifo): a 150 MiB',
    },
  ])('$name', ({ models, over, want, summary }) => {
    const bar = deviceBar(device(models, over));
    expect(bar).toMatchObject(want);
    expect(bar.summary).toBe(summary);
  });

  it('a zero budget is 0 % used, not NaN', () => {
    expect(deviceBar(device([], { budgetBytes: 0 })).usedFraction).toBe(0);
  });
});

describe('workerViews', () => {
  it('sorts workers, says how long ago each was heard from, and marks the silent ones', () => {
    const dead = { ...worker('w1', [], 1500), alive: false };
    const views = workerViews(status([dead, worker('w0', [], 500)], []));
    expect(views.map((w) => [w.id, w.state, w.lastSeenAgoMs, w.cpu])).toEqual([
      ['w0', 'running', 500, '2 cores, Test CPU'],
      ['w1', 'running (not heard from)', 1500, '2 cores, Test CPU'],
    ]);
  });
});

describe('advanceHistory: items/s per replica and a series per model', () => {
  const at = (items: number, queueDepth = 0) =>
    status(
      [worker('w0', [readyReplica('m-1', 'm', { itemsProcessed: items, queueDepth })])],
      [deployment('m', [{ id: 'm-1', workerId: 'w0' }])],
    );

  it.each([
    { name: 'first sample: rate 0', steps: [[1000, 50]], rates: [0] },
    {
      name: '100 items in 0.5 s: 200/s',
      steps: [
        [1000, 0],
        [1500, 100],
      ],
      rates: [0, 200],
    },
    {
      name: 'a counter that went back (new replica under the same id) is 0, not negative',
      steps: [
        [1000, 100],
        [1500, 10],
      ],
      rates: [0, 0],
    },
    {
      name: 'same instant twice: 0, not Infinity',
      steps: [
        [1000, 0],
        [1000, 10],
      ],
      rates: [0, 0],
    },
  ])('$name', ({ steps, rates }) => {
    let h = EMPTY_HISTORY;
    const got: number[] = [];
    for (const [now, items] of steps) {
      const adv = advanceHistory(h, at(items!), now!);
      h = adv.history;
      got.push(adv.rates['w0/m-1']!);
    }
    expect(got).toEqual(rates);
    expect(h.series.m).toHaveLength(steps.length);
  });

  it('keeps at most maxPoints samples, oldest dropped, and never mutates the previous history', () => {
    let h = EMPTY_HISTORY;
    for (let i = 0; i < 10; i++) h = advanceHistory(h, at(i * 10, i), 1000 + i * 500, 4).history;
    expect(h.series.m!.map((p) => p.queueDepth)).toEqual([6, 7, 8, 9]);
    expect(h.series.m![3]).toEqual({ t: 5.5, itemsPerSec: 20, queueDepth: 9, inFlight: 0 });
    const frozen = JSON.stringify(h);
    advanceHistory(h, at(1000), 99_999, 4);
    expect(JSON.stringify(h)).toBe(frozen);
  });

  it.each([
    {
      name: 'p99 from each heartbeat beside items/s; null while the replica answered nothing lately',
      steps: [
        { now: 1000, items: 0, latencyMs: undefined },
        { now: 1500, items: 100, latencyMs: { p50: 2, p99: 9.5, count: 100 } },
        { now: 2000, items: 150, latencyMs: { p50: 3, p99: 12, count: 150 } },
        { now: 2500, items: 150, latencyMs: undefined },
      ],
      want: [
        { t: 1, itemsPerSec: 0, p99Ms: null },
        { t: 1.5, itemsPerSec: 200, p99Ms: 9.5 },
        { t: 2, itemsPerSec: 100, p99Ms: 12 },
        { t: 2.5, itemsPerSec: 0, p99Ms: null },
      ],
    },
  ])('a series per replica: $name', ({ steps, want }) => {
    let h = EMPTY_HISTORY;
    for (const { now, items, latencyMs } of steps) {
      const st = status(
        [worker('w0', [readyReplica('m-1', 'm', { itemsProcessed: items, ...(latencyMs ? { latencyMs } : {}) })])],
        [deployment('m', [{ id: 'm-1', workerId: 'w0' }])],
      );
      h = advanceHistory(h, st, now).history;
    }
    expect(h.replicaSeries['w0/m-1']).toEqual(want);
  });

  it('keeps at most 60 samples per replica (and maxPoints when fewer), and forgets replicas no longer reported', () => {
    let h = EMPTY_HISTORY;
    for (let i = 0; i < 100; i++) h = advanceHistory(h, at(i), 1000 + i * 500).history;
    expect(h.replicaSeries['w0/m-1']).toHaveLength(60);
    expect(h.replicaSeries['w0/m-1']![59]!.t).toBe(50.5);
    expect(advanceHistory(h, at(200), 99_000, 4).history.replicaSeries['w0/m-1']).toHaveLength(4);
    expect(advanceHistory(h, status([], []), 99_000).history.replicaSeries).toEqual({});
  });

  it('forgets models no longer deployed', () => {
    const h = advanceHistory(EMPTY_HISTORY, at(0), 1000).history;
    expect(Object.keys(advanceHistory(h, status([], []), 1500).history.series)).toEqual([]);
  });
});

describe('deploymentRows', () => {
  const w0 = worker('w0', [
    readyReplica('m-1', 'm', { queueDepth: 3, inFlight: 2, processed: 10, batchHistogram: { '1': 4, '8': 2, '>4096': 1 } }),
    readyReplica('m-2', 'm', { batchHistogram: { '8': 3, '16': 1 } }),
  ]);
  const events = [
    ev({ type: 'scaled', model: 'm', at: 10, reason: 'older', data: { from: 1, to: 2 } }),
    ev({ type: 'scaled', model: 'm', at: 20, reason: 'queue 12 > 2 × 4', data: { from: 2, to: 3 } }),
    ev({ type: 'scaled', model: 'other', at: 30, reason: 'not m' }),
  ];
  const rows = deploymentRows(
    status(
      [w0],
      [
        deployment(
          'm',
          [
            { id: 'm-1', workerId: 'w0' },
            { id: 'm-2', workerId: 'w0' },
          ],
          { minReplicas: 1, maxReplicas: 4, autoscale: { targetPerReplica: 4 } },
        ),
        deployment('fixed', [], { replicas: 1, minReplicas: 2, maxReplicas: 2 }),
      ],
    ),
    {
      events,
      rates: { 'w0/m-1': 5, 'w0/m-2': 7 },
      series: { m: [{ t: 1, itemsPerSec: 12, queueDepth: 3, inFlight: 2 }] },
      profiles: new Map([
        [
          'm',
          [
            profile([
              [1, 100, 1],
              [8, 600, 4],
            ]),
          ],
        ],
      ]),
    },
  );

  it('sorts by name; merges the replicas’ batch histograms in batch order, overflow last', () => {
    expect(rows.map((r) => r.name)).toEqual(['fixed', 'm']);
    expect(rows[1]!.batchHistogram).toEqual([
      { batch: '1', count: 4 },
      { batch: '8', count: 5 },
      { batch: '16', count: 1 },
      { batch: '>4096', count: 1 },
    ]);
  });

  it('carries live counters per replica, totals, autoscale bounds, the last scaling decision and the profile p99', () => {
    const m = rows[1]!;
    expect(m.replicas.map((r) => [r.id, r.worker, r.state, r.queueDepth, r.inFlight, r.itemsPerSec, r.maxBatchSize])).toEqual([
      ['m-1', 'w0', 'ready', 3, 2, 5, 8],
      ['m-2', 'w0', 'ready', 0, 0, 7, 8],
    ]);
    expect(m).toMatchObject({ queueDepth: 3, inFlight: 2, itemsPerSec: 12, maxBatchSize: 8, profileP99Ms: 4 });
    expect(m.autoscale).toEqual({ min: 1, max: 4, targetPerReplica: 4 });
    expect(m.lastScaling).toEqual({ at: 20, from: 2, to: 3, reason: 'queue 12 > 2 × 4' });
  });

  it('says which sizes replicas tuned their batches down to on their traffic, per replica and for the deployment', () => {
    const tuned = (id: string, tunedBatches: object[]) => readyReplica(id, 'm', { tunedBatches });
    const w = worker('w0', [
      tuned('m-1', [
        { shape: 'x:16', from: 8, maxBatchSize: 4, state: 'settled' },
        { shape: 'x:32', from: 8, maxBatchSize: 8, state: 'comparing' },
      ]),
      tuned('m-2', [{ shape: 'x:16', from: 8, maxBatchSize: 2, state: 'settled' }]),
      tuned('m-3', [{ shape: 'x:16', from: 8, maxBatchSize: 8, state: 'settled' }]),
    ]);
    const placed = ['m-1', 'm-2', 'm-3'].map((id) => ({ id, workerId: 'w0' }));
    const [m] = deploymentRows(status([w], [deployment('m', placed)]), { events: [], rates: {}, series: {}, profiles: new Map() });
    expect(m!.replicas.map((r) => r.tunedBatchSizes)).toEqual([[4], [2], undefined]);
    expect(m!.tunedBatchSizes).toEqual([2, 4]);
    expect(rows[1]!.tunedBatchSizes).toBeUndefined(); // none tuned
  });

  it('no autoscale when the bounds are equal; no scaling decision, no profile, a pending replica without counters', () => {
    const f = rows[0]!;
    expect(f.autoscale).toBeUndefined();
    expect(f.lastScaling).toBeUndefined();
    expect(f.profileP99Ms).toBeUndefined();
    expect(f.series).toEqual([]);
    expect(f.itemsPerSec).toBe(0);
  });

  it('carries each replica’s latency window and its own series (p99 sparkline); none for a replica that answered nothing lately', () => {
    const latencyMs = { p50: 1.5, p99: 7.25, count: 300 };
    const series = [
      { t: 1, itemsPerSec: 0, p99Ms: null },
      { t: 1.5, itemsPerSec: 40, p99Ms: 7.25 },
    ];
    const s = status(
      [worker('w0', [readyReplica('m-1', 'm', { latencyMs }), readyReplica('m-2', 'm')])],
      [
        deployment('m', [
          { id: 'm-1', workerId: 'w0' },
          { id: 'm-2', workerId: 'w0' },
        ]),
      ],
    );
    const [row] = deploymentRows(s, { events: [], rates: {}, series: {}, replicaSeries: { 'w0/m-1': series }, profiles: new Map() });
    expect(row!.replicas.map((r) => [r.id, r.latencyMs, r.series])).toEqual([
      ['m-1', latencyMs, series],
      ['m-2', undefined, []],
    ]);
    expect(row!.replicas[1]).not.toHaveProperty('latencyMs');
  });

  it('a replica the workers do not report yet (pending) shows zeros and its error', () => {
    const s = status([], [deployment('p', [{ id: 'p-1', workerId: 'w9' }])]);
    s.deployments[0]!.replicas[0] = {
      id: 'p-1',
      workerId: 'w9',
      device: 'cpu',
      state: 'pending',
      error: { code: 'NO_CAPACITY', message: 'full' },
    };
    const [row] = deploymentRows(s, { events: [], rates: {}, series: {}, profiles: new Map() });
    expect(row!.replicas[0]).toEqual({
      id: 'p-1',
      worker: 'w9',
      device: 'cpu',
      state: 'pending',
      queueDepth: 0,
      inFlight: 0,
      processed: 0,
      failed: 0,
      itemsPerSec: 0,
      series: [],
      bytes: 0,
      pinned: false,
      error: { code: 'NO_CAPACITY', message: 'full' },
    });
  });
});

describe('events', () => {
  it.each([
    [ev({ type: 'loaded', model: 'a', worker: 'w0', device: 'cpu', bytes: 40 * MiB, at: 1 }), 'loaded a on w0/cpu (40 MiB)'],
    [
      ev({ type: 'evicted', model: 'b', worker: 'w0', device: 'cpu', bytes: 40 * MiB, reason: "lru: make room for 'c'", at: 1 }),
      "evicted b on w0/cpu (40 MiB): lru: make room for 'c'",
    ],
    [ev({ type: 'load_failed', model: 'x', reason: 'bad onnx', at: 1 }), 'load failed x: bad onnx'],
    [ev({ type: 'scaled', model: 'm', reason: 'queue', data: { from: 1, to: 3 }, at: 1 }), 'scaled m 1 → 3 replicas: queue'],
    [ev({ type: 'scaled', model: 'm', data: { from: 'x' }, at: 1 }), 'scaled m'],
  ])('event %#', (e, text) => {
    expect(eventText(e)).toBe(text);
  });

  it('rows are newest first; filterEvents keeps one model’s (all for none)', () => {
    const rows = eventRows([
      ev({ type: 'loaded', model: 'a', at: 1 }),
      ev({ type: 'loaded', model: 'b', at: 3 }),
      ev({ type: 'evicted', model: 'a', at: 2 }),
    ]);
    expect(rows.map((r) => [r.at, r.model])).toEqual([
      [3, 'b'],
      [2, 'a'],
      [1, 'a'],
    ]);
    expect(filterEvents(rows, 'a').map((r) => r.at)).toEqual([2, 1]);
    expect(filterEvents(rows, '')).toHaveLength(3);
    expect(filterEvents(rows, 'zzz')).toEqual([]);
  });

  it('lastScaling ignores other types and models, picks the newest', () => {
    expect(lastScaling([ev({ type: 'loaded', model: 'm', at: 5 })], 'm')).toBeUndefined();
    expect(lastScaling([ev({ type: 'scaled', model: 'm', at: 9 }), ev({ type: 'scaled', model: 'm', at: 3, reason: 'x' })], 'm')).toEqual({
      at: 9,
      reason: '',
    });
  });
});

describe('profileViews: one series per device class and shape, points by batch, chosen marked', () => {
  it('sorts points by batch; threads with the chosen row; compile finding', () => {
    const p = profile(
      [
        [4, 300, 2],
        [1, 100, 1],
        [8, 600, 4],
      ],
      {
        threads: {
          intraOp: 2,
          interOp: 1,
          mode: 'sequential',
          reason: 'fastest',
          tookMs: 10,
          rows: [
            { intraOp: 1, interOp: 1, mode: 'sequential', batch: 8, runs: 3, p50Ms: 5, p99Ms: 6, itemsPerSec: 400 },
            { intraOp: 2, interOp: 1, mode: 'sequential', batch: 8, runs: 3, p50Ms: 3, p99Ms: 4, itemsPerSec: 600 },
            { intraOp: 1, interOp: 2, mode: 'parallel', batch: 8, runs: 3, p50Ms: 4, p99Ms: 5, itemsPerSec: 500 },
          ],
        },
        compile: { plainCreateMs: 30, compiledCreateMs: 10, helps: true, reason: 'cache is 3x faster' },
      },
    );
    const [v] = profileViews('m', [p]);
    expect(v!.points.map((x) => x.batch)).toEqual([1, 4, 8]);
    expect(v!.chosenBatch).toBe(8);
    expect(v!.shape).toBeUndefined();
    expect(v!.threads!.chosen).toBe('2 intra-op');
    expect(v!.threads!.rows.map((r) => [r.setting, r.chosen])).toEqual([
      ['1 intra-op', false],
      ['2 intra-op', true],
      ['1 intra-op × 2 inter-op (parallel)', false],
    ]);
    expect(v!.compile).toEqual({ plainCreateMs: 30, compiledCreateMs: 10, helps: true, reason: 'cache is 3x faster' });
  });

  it('several shapes: one view each, by shape key', () => {
    const views = profileViews('img', [
      profile([[1, 1, 1]], { shape: { x: [3, 64, 96] } }),
      profile([[1, 1, 1]], { shape: { x: [3, 32, 32] } }),
    ]);
    expect(views.map((v) => v.shape)).toEqual(['x:3x32x32', 'x:3x64x96']);
  });

  it('a skipped profile says why and has no points', () => {
    const [v] = profileViews('m', [profile([], { skipped: 'no batch axis' })]);
    expect(v).toMatchObject({ skipped: 'no batch axis', points: [] });
  });
});

describe('profilesByFile', () => {
  it('shows a model file’s profiles once, under its first deployment that has them, naming every deployment of the file', () => {
    const other = 'b'.repeat(64);
    const s = status(
      [],
      [
        deployment('z', []),
        deployment('a', []),
        deployment('m', []),
        { ...deployment('o', []), spec: { ...deployment('o', []).spec, digest: other } },
      ],
    );
    const views = profilesByFile(
      s,
      new Map([
        ['m', [profile([[1, 1, 1]])]],
        ['z', [profile([[2, 2, 2]])]],
      ]),
    );
    expect(views.map((v) => [v.model, v.models, v.points.map((p) => p.batch)])).toEqual([['m', ['a', 'm', 'z'], [1]]]);
    // A serving deployment of the file is preferred.
    s.deployments[0]!.ready = 1;
    expect(
      profilesByFile(
        s,
        new Map([
          ['m', [profile([[1, 1, 1]])]],
          ['z', [profile([[2, 2, 2]])]],
        ]),
      )[0]!.model,
    ).toBe('z');
  });
});

describe('headsView: the leader and the other heads it lists', () => {
  type Heads = NonNullable<ClusterStatus['heads']>;
  const hs = (id: string, role: 'leader' | 'standby', over: Partial<Heads[number]> = {}): Heads[number] => ({
    id,
    pid: 7,
    host: `node-${id}`,
    role,
    since: 100,
    startedAt: 50,
    lastSeenAt: 900,
    ...over,
  });
  const st = (heads: Heads | undefined): ClusterStatus => ({ ...status([], []), ...(heads ? { heads } : {}) });
  const view = (x: Heads[number]) => ({
    id: x.id,
    pid: x.pid,
    startedAt: x.startedAt,
    host: x.host,
    role: x.role,
    since: x.since,
    lastSeenAt: x.lastSeenAt,
  });
  it.each<[string, Heads | undefined, ReturnType<typeof headsView>]>([
    [
      'an older head (no heads field): the leader alone, with the note',
      undefined,
      { leader: { id: 'h1', pid: 42, startedAt: 5 }, standbys: [], standbyNote: STANDBY_NOTE },
    ],
    ['the leader alone: no note', [hs('h1', 'leader')], { leader: view(hs('h1', 'leader')), standbys: [] }],
    [
      'two standbys, by id',
      [hs('h1', 'leader'), hs('s2', 'standby'), hs('s1', 'standby')],
      { leader: view(hs('h1', 'leader')), standbys: [view(hs('s1', 'standby')), view(hs('s2', 'standby'))] },
    ],
    [
      'a former leader not expired yet comes before the standbys, its role kept',
      [hs('h1', 'leader'), hs('b', 'standby'), hs('old', 'leader', { lastSeenAt: 10 })],
      { leader: view(hs('h1', 'leader')), standbys: [view(hs('old', 'leader', { lastSeenAt: 10 })), view(hs('b', 'standby'))] },
    ],
    [
      'heads that do not name the answering head: the leader from `head`, every listed head a standby row',
      [hs('x', 'standby')],
      { leader: { id: 'h1', pid: 42, startedAt: 5 }, standbys: [view(hs('x', 'standby'))] },
    ],
  ])('%s', (_what, heads, expected) => expect(headsView(st(heads))).toEqual(expected));
});

describe('buildSnapshot', () => {
  it('before the first status: empty lists and the error; after: heads, workers, models, profile errors', () => {
    const base = {
      now: 2000,
      cluster: 'c1',
      allowActions: false,
      events: [],
      rates: {},
      series: {},
      profiles: new Map<string, ModelProfile[]>(),
      profileErrors: new Map<string, { code: string; message: string }>(),
    };
    const none = buildSnapshot({ ...base, error: { code: 'UNAVAILABLE', message: 'no head' } });
    expect(none).toMatchObject({
      v: 1,
      cluster: 'c1',
      workers: [],
      deployments: [],
      error: { code: 'UNAVAILABLE' },
      heads: { standbys: [] },
    });

    const s = status([worker('w0', [readyReplica('m-1', 'm')])], [deployment('m', [{ id: 'm-1', workerId: 'w0' }])]);
    const snap = buildSnapshot({
      ...base,
      allowActions: true,
      status: s,
      profiles: new Map([['m', [profile([[1, 1, 1]])]]]),
      profileErrors: new Map([
        ['m', { code: 'FORBIDDEN', message: 'no' }],
        ['gone', { code: 'X', message: 'not deployed' }],
      ]),
    });
    expect(snap.error).toBeUndefined();
    expect(snap.allowActions).toBe(true);
    expect(snap.heads.leader).toEqual({ id: 'h1', pid: 42, startedAt: 5 });
    expect(snap.workers.map((w) => w.id)).toEqual(['w0']);
    expect(snap.deployments.map((d) => d.name)).toEqual(['m']);
    expect(snap.profiles.map((p) => p.model)).toEqual(['m']);
    expect(snap.profileErrors).toEqual([{ model: 'm', code: 'FORBIDDEN', message: 'no' }]);
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap); // plain JSON: what the stream sends
  });
});

describe('formatting', () => {
  it.each([
    [0, '0 B'],
    [512, '512 B'],
    [1536, '1.5 KiB'],
    [40 * MiB, '40 MiB'],
    [1.25 * 1024 * MiB, '1.25 GiB'],
    [-50 * MiB, '-50 MiB'],
    [123.4 * MiB, '123 MiB'],
  ])('formatBytes(%d) = %s', (n, s) => expect(formatBytes(n)).toBe(s));

  it.each([
    [0, '0'],
    [3.14159, '3.14'],
    [999.4, '999'],
    [31151.2, '31,151'],
    [Infinity, 'Infinity'],
  ])('formatNumber(%d) = %s', (n, s) => expect(formatNumber(n)).toBe(s));
});
