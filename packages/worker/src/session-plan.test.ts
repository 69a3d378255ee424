// The decisions of a session open (session-plan.ts), each a table over plain data: no session,
// no profiler, no profile store.
import { PROTOCOL_VERSION, parseDeploySpec, type DeploySpec, type ModelProfile, type ThreadSettings } from '@flotilla/protocol';
import {
  batchingFor,
  checkThreads,
  chooseSessionHost,
  chosenRunMs,
  chooseThreadPlan,
  cpuSessionOptions,
  judgeCompile,
  replicaFootprint,
  THREAD_SESSION_BYTES,
  lookUpBeforeOpen,
  needsLookup,
  planMeasure,
  planProfile,
  shouldWarmUp,
  summarize,
  useCompileCache,
  type ProfileOutcome,
  type ThreadPlan,
} from './session-plan.js';

const seq = (intraOp: number): ThreadSettings => ({ intraOp, interOp: 1, mode: 'sequential' });
const par = (intraOp: number, interOp: number): ThreadSettings => ({ intraOp, interOp, mode: 'parallel' });

/** A deployment as the head sends it (defaults filled in by the schema). */
const spec = (over: Record<string, unknown> = {}): DeploySpec =>
  parseDeploySpec({ name: 'm', digest: 'a'.repeat(64), sizeBytes: 1000, ...over });

/** A stored profile: batch 8 chosen at 800 items/s, 2 threads tuned at 900 items/s. */
function profile(over: Partial<ModelProfile> = {}): ModelProfile {
  return {
    v: PROTOCOL_VERSION,
    digest: 'a'.repeat(64),
    deviceClass: 'cpu-x-2c-t0',
    ortVersion: '1',
    createdAt: 0,
    latencySloMs: 50,
    budgetMs: 3000,
    tookMs: 1200.04,
    rows: [
      { batch: 1, runs: 10, p50Ms: 1, p99Ms: 1, itemsPerSec: 500, peakBytes: 0 },
      { batch: 8, runs: 10, p50Ms: 8, p99Ms: 10, itemsPerSec: 800, peakBytes: 0 },
    ],
    stoppedBecause: 'budget',
    chosen: { maxBatchSize: 8, maxQueueDelayMs: 2, reason: 'batch 8: fastest' },
    threads: {
      ...seq(2),
      reason: '2 intra-op',
      tookMs: 300.02,
      rows: [
        { ...seq(2), batch: 8, runs: 10, p50Ms: 8, p99Ms: 9, itemsPerSec: 900 },
        { ...seq(1), batch: 8, runs: 10, p50Ms: 9, p99Ms: 10, itemsPerSec: 600 },
      ],
    },
    memory: { sessionBytes: 10, peakBytes: 20, replicaBytes: 4096 },
    ...over,
  };
}

describe('checkThreads at load', () => {
  it('lets settings within the usable cores through', () => {
    expect(() => checkThreads({}, 0, 2)).not.toThrow();
    expect(() => checkThreads({ threads: seq(2) }, 2, 2)).not.toThrow();
    expect(() => checkThreads({ threads: par(1, 2) }, 0, 2)).not.toThrow();
  });

  it("refuses a deployment's threads beyond the worker's cores with BAD_REQUEST", () => {
    expect(() => checkThreads({ threads: seq(1024) }, 0, 2)).toThrow(
      expect.objectContaining({ code: 'BAD_REQUEST', message: "threads.intraOp 1024 exceeds this worker's 2 usable cores" }),
    );
    expect(() => checkThreads({ threads: par(1, 64) }, 0, 2)).toThrow(
      expect.objectContaining({ code: 'BAD_REQUEST', message: "threads.interOp 64 exceeds this worker's 2 usable cores" }),
    );
  });

  it("refuses the worker's own --threads beyond the measured cores", () => {
    expect(() => checkThreads({}, 8, 2)).toThrow(
      expect.objectContaining({ code: 'BAD_REQUEST', message: "the worker's --threads 8 exceeds its 2 usable cores" }),
    );
  });
});

describe('lookUpBeforeOpen', () => {
  it.each([
    ['a CPU replica, profiling on by default', {}, 'cpu', true],
    ['a CPU replica, profiling off', { profile: { enabled: false } }, 'cpu', false],
    ['a GPU replica (looks up once open, on its own device class)', {}, 'gpu', false],
  ] as const)('%s → %s', (_what, over, kind, expected) => {
    expect(lookUpBeforeOpen(spec(over), kind)).toBe(expected);
  });
});

describe('cpuSessionOptions', () => {
  const noSpin = { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } };
  it.each<[string, ThreadSettings, boolean, object]>([
    ['2 threads: pools sleep instead of spinning', seq(2), false, { intraOpNumThreads: 2, executionMode: 'sequential', extra: noSpin }],
    ['2 threads, spinning asked for', seq(2), true, { intraOpNumThreads: 2, executionMode: 'sequential' }],
    ['1 thread: no pool to spin', seq(1), false, { intraOpNumThreads: 1, executionMode: 'sequential' }],
    [
      'parallel 1×2: the inter-op pool',
      par(1, 2),
      false,
      { intraOpNumThreads: 1, executionMode: 'parallel', interOpNumThreads: 2, extra: noSpin },
    ],
    ['parallel 1×1', par(1, 1), false, { intraOpNumThreads: 1, executionMode: 'parallel', interOpNumThreads: 1 }],
  ])('%s', (_what, threads, spinning, expected) => expect(cpuSessionOptions(threads, spinning)).toEqual(expected));
});

describe('chooseThreadPlan', () => {
  const stored = profile().threads;
  it.each<[string, Parameters<typeof chooseThreadPlan>[0], ThreadPlan]>([
    [
      "the deployment's settings win over everything",
      { deployment: par(1, 2), workerThreads: 3, stored, usableCores: 4 },
      { settings: par(1, 2), source: 'deployment' },
    ],
    ["then the worker's --threads (sequential)", { workerThreads: 3, stored, usableCores: 4 }, { settings: seq(3), source: 'worker' }],
    [
      "then the stored profile's",
      { workerThreads: 0, stored: { ...par(2, 2), reason: 'r', rows: [], tookMs: 1 }, usableCores: 4 },
      { settings: par(2, 2), source: 'profile' },
    ],
    ['else every usable core', { workerThreads: 0, usableCores: 4 }, { settings: seq(4), source: 'default' }],
  ])('%s', (_what, facts, expected) => {
    expect(chooseThreadPlan(facts)).toEqual(expected);
  });
});

describe('chooseSessionHost', () => {
  it.each<[string, Parameters<typeof chooseSessionHost>[0], 'thread' | 'event-loop']>([
    ['auto, a GPU, runs of 5 ms: a thread', { worker: 'auto', kind: 'gpu', usableCores: 1, runMs: 5 }, 'thread'],
    ['auto, 4 usable cores, runs of 1 ms: a thread', { worker: 'auto', kind: 'cpu', usableCores: 4, runMs: 1 }, 'thread'],
    [
      'auto, 4 usable cores, runs of 0.3 ms: the event loop (the crossing costs more)',
      { worker: 'auto', kind: 'cpu', usableCores: 4, runMs: 0.3 },
      'event-loop',
    ],
    [
      'auto, 3 usable cores, long runs: the event loop (no core to spare)',
      { worker: 'auto', kind: 'cpu', usableCores: 3, runMs: 50 },
      'event-loop',
    ],
    [
      'auto, one core (the bench pins a worker so): the event loop',
      { worker: 'auto', kind: 'cpu', usableCores: 1, runMs: 50 },
      'event-loop',
    ],
    ['auto, a GPU, no run time yet (no profile): the event loop', { worker: 'auto', kind: 'gpu', usableCores: 8 }, 'event-loop'],
    ["the worker's thread over auto's rule", { worker: 'thread', kind: 'cpu', usableCores: 1, runMs: 0.01 }, 'thread'],
    ["the worker's event-loop on a GPU with long runs", { worker: 'event-loop', kind: 'gpu', usableCores: 8, runMs: 50 }, 'event-loop'],
    [
      "the deployment's choice over the worker's",
      { deployment: 'event-loop', worker: 'thread', kind: 'cpu', usableCores: 8 },
      'event-loop',
    ],
    [
      "the deployment's auto follows the rule, not the worker's choice",
      { deployment: 'auto', worker: 'thread', kind: 'cpu', usableCores: 2, runMs: 9 },
      'event-loop',
    ],
  ])('%s', (_what, facts, expected) => {
    expect(chooseSessionHost(facts)).toBe(expected);
  });

  it("chosenRunMs: the profile's median run at its chosen batch size", () => {
    const p = profile();
    expect(chosenRunMs(p)).toBe(p.rows.find((r) => r.batch === p.chosen.maxBatchSize)!.p50Ms);
    expect(chosenRunMs({ ...p, chosen: { ...p.chosen, maxBatchSize: 999 } })).toBeUndefined();
    expect(chosenRunMs(undefined)).toBeUndefined();
  });
});

describe('useCompileCache', () => {
  const found = (helps: boolean) => profile({ compile: { plainCreateMs: 10, compiledCreateMs: 5, helps, reason: 'r' } });
  it.each<[string, boolean | undefined, ModelProfile | undefined, boolean]>([
    ['compile: true, even where the profile found it does not help', true, found(false), true],
    ['compile: false, even where the profile found it helps', false, found(true), false],
    ['unset, the profile found it helps', undefined, found(true), true],
    ['unset, the profile found it does not help', undefined, found(false), false],
    ['unset, a profile without the comparison', undefined, profile(), true],
    ['unset, no stored profile (first load: on, then compared)', undefined, undefined, true],
  ])('%s → %s', (_what, deployment, stored, expected) => {
    expect(useCompileCache(deployment, stored)).toBe(expected);
  });
});

describe('planProfile', () => {
  it.each<[string, Parameters<typeof planProfile>[0], ReturnType<typeof planProfile>]>([
    [
      'profiling disabled (even for an unbatched model)',
      { enabled: false, batchAxis: false, dynamicDims: [] },
      { source: 'disabled', reason: 'profiling disabled by the deployment' },
    ],
    [
      'profiling disabled wins over dynamic dims',
      { enabled: false, batchAxis: true, dynamicDims: ['H', 'W'] },
      { source: 'disabled', reason: 'profiling disabled by the deployment' },
    ],
    [
      'no batch axis',
      { enabled: true, batchAxis: false, dynamicDims: [] },
      { source: 'skipped', reason: 'model has no batch axis: runs unbatched', unbatched: true },
    ],
    [
      'dynamic non-batch dims: per shape, as traffic arrives',
      { enabled: true, batchAxis: true, dynamicDims: ['H', 'W'] },
      { source: 'per-shape', dims: ['H', 'W'], reason: 'dynamic dims H, W: profiled per shape as traffic arrives' },
    ],
    [
      'buckets set: per bucket, exact shapes above the largest bound',
      { enabled: true, batchAxis: true, dynamicDims: ['seq'], buckets: { seq: [16, 64] } },
      {
        source: 'per-shape',
        dims: ['seq'],
        reason: 'dynamic dims seq: profiled per bucket (seq ≤ 16/64) and per shape above as traffic arrives',
      },
    ],
    [
      'a bucket for a dim the model does not have: ignored, and said so',
      { enabled: true, batchAxis: true, dynamicDims: ['H', 'W'], buckets: { W: [128], seq: [16] } },
      {
        source: 'per-shape',
        dims: ['H', 'W'],
        reason:
          'dynamic dims H, W: profiled per bucket (W ≤ 128) and per shape above as traffic arrives; buckets for seq ignored: not a dynamic dim of the model',
      },
    ],
    [
      'a profilable model: stored or measured, in the profiling turn',
      { enabled: true, batchAxis: true, dynamicDims: [] },
      { source: 'profile' },
    ],
  ])('%s', (_what, facts, expected) => {
    expect(planProfile(facts)).toEqual(expected);
  });
});

describe('needsLookup', () => {
  it.each([
    ['read before the open, opened on that CPU class: reused', 'cpu-a', 'cpu-a', profile(), false],
    ['none stored before the open: read again (another load may have stored it since)', 'cpu-a', 'cpu-a', undefined, true],
    ['opened on another class (a GPU): read for that class', 'gpu-l4-cuda', 'cpu-a', undefined, true],
    ['read for the CPU class, opened elsewhere: read for the class it runs on', 'gpu-l4-cuda', 'cpu-a', profile(), true],
  ] as const)('%s', (_what, devClass, cpuClass, before, expected) => {
    expect(needsLookup(devClass, cpuClass, before)).toBe(expected);
  });
});

describe('planMeasure', () => {
  const miss = { compile: 'miss' as const, createMs: 100 };
  it.each<[string, Partial<Parameters<typeof planMeasure>[0]>, ReturnType<typeof planMeasure>]>([
    ['CPU, default threads, first load: tune at the chosen batch and compare compile', {}, { tuneThreadsAt: 8, compareCompile: true }],
    [
      "tunes at the deployment's batch size when it sets one",
      { spec: spec({ batching: { maxBatchSize: 32 } }) },
      { tuneThreadsAt: 32, compareCompile: true },
    ],
    ['a GPU session keeps its threads', { onCpu: false }, { tuneThreadsAt: null, compareCompile: true }],
    ['threads chosen by the worker flag are kept', { threadSource: 'worker' }, { tuneThreadsAt: null, compareCompile: true }],
    ['threads chosen by the deployment are kept', { threadSource: 'deployment' }, { tuneThreadsAt: null, compareCompile: true }],
    ['tuneThreads: false', { spec: spec({ profile: { tuneThreads: false } }) }, { tuneThreadsAt: null, compareCompile: true }],
    ['compile set by the deployment: nothing to compare', { spec: spec({ compile: true }) }, { tuneThreadsAt: 8, compareCompile: false }],
    [
      'the cache was hit (not this load that wrote it)',
      { opened: { compile: 'hit', createMs: 100 } },
      { tuneThreadsAt: 8, compareCompile: false },
    ],
    [
      'four creates of 800 ms do not fit the default 3 s budget',
      { opened: { compile: 'miss', createMs: 800 } },
      { tuneThreadsAt: 8, compareCompile: false },
    ],
    ['exactly four creates in the budget', { opened: { compile: 'miss', createMs: 750 } }, { tuneThreadsAt: 8, compareCompile: true }],
    [
      'a larger budget makes room',
      { opened: { compile: 'miss', createMs: 800 }, spec: spec({ profile: { budgetMs: 4000 } }) },
      { tuneThreadsAt: 8, compareCompile: true },
    ],
  ])('%s', (_what, over, expected) => {
    expect(planMeasure({ onCpu: true, threadSource: 'default', spec: spec(), opened: miss, chosenBatch: 8, ...over })).toEqual(expected);
  });
});

describe('replicaFootprint', () => {
  const MiB = 1024 * 1024;
  it.each([
    { what: 'a profile, on the event loop', profileBytes: 100 * MiB, host: 'event-loop', onCpu: true, charged: 100 * MiB },
    {
      what: 'a profile, a CPU session on a thread: the thread on top',
      profileBytes: 100 * MiB,
      host: 'thread',
      onCpu: true,
      charged: 100 * MiB + THREAD_SESSION_BYTES,
    },
    {
      what: 'a profile, a GPU session on a thread: VRAM, the thread is host memory',
      profileBytes: 100 * MiB,
      host: 'thread',
      onCpu: false,
      charged: 100 * MiB,
    },
    {
      what: 'a profile measured on a thread, a CPU session on a thread: the thread counted once',
      profileBytes: 110 * MiB,
      host: 'thread',
      onCpu: true,
      profileHost: 'thread',
      charged: 110 * MiB,
    },
    {
      what: 'a profile measured on a thread, the session now on the event loop: as measured',
      profileBytes: 110 * MiB,
      host: 'event-loop',
      onCpu: true,
      profileHost: 'thread',
      charged: 110 * MiB,
    },
    {
      what: 'no profile: what the open measured (on the thread, it includes the thread)',
      profileBytes: 0,
      host: 'thread',
      onCpu: true,
      charged: 90 * MiB,
    },
  ] as const)('$what', (row) =>
    expect(
      replicaFootprint({
        profileBytes: row.profileBytes,
        measuredBytes: 90 * MiB,
        host: row.host,
        onCpu: row.onCpu,
        ...('profileHost' in row ? { profileHost: row.profileHost } : {}),
      })?.bytes,
    ).toBe(row.charged),
  );
  it('nothing measured: no footprint', () => {
    expect(replicaFootprint({ profileBytes: 0, host: 'event-loop', onCpu: true })).toBeUndefined();
  });
});

describe('judgeCompile', () => {
  it.each([
    [100, 50, true, 'the cached graph opens in 50.0 ms vs 100.0 ms plain: compile on'],
    [100, 94.9, true, 'the cached graph opens in 94.9 ms vs 100.0 ms plain: compile on'],
    [100, 95, false, 'the cached graph opens in 95.0 ms vs 100.0 ms plain (< 5 % saved): compile off'],
    [100, 120, false, 'the cached graph opens in 120.0 ms vs 100.0 ms plain (< 5 % saved): compile off'],
  ])('plain %d ms, cached %d ms → helps %s', (plain, compiled, helps, reason) => {
    expect(judgeCompile(plain, compiled)).toEqual({ plainCreateMs: plain, compiledCreateMs: compiled, helps, reason });
  });

  it('judges the times as recorded (to 0.1 ms), so the verdict follows from the record', () => {
    // 19.03 < 20.04 × 0.95 = 19.038, but the record says 19.0 and 20.0: 19.0 is not under 19.0.
    const c = judgeCompile(20.04, 19.03);
    expect(c).toMatchObject({ plainCreateMs: 20, compiledCreateMs: 19, helps: false });
    expect(c.helps).toBe(c.compiledCreateMs < c.plainCreateMs * 0.95);
  });
});

describe('summarize', () => {
  const def: ThreadPlan = { settings: seq(4), source: 'default' };
  const tuned: ThreadPlan = { settings: seq(2), source: 'profile' };
  it.each<[string, ProfileOutcome, { onCpu: boolean; threads: ThreadPlan }, object]>([
    [
      'disabled on CPU: zeros, the threads it runs with',
      { source: 'disabled', reason: 'profiling disabled by the deployment' },
      { onCpu: true, threads: def },
      {
        source: 'disabled',
        deviceClass: 'cls',
        reason: 'profiling disabled by the deployment',
        replicaBytes: 0,
        itemsPerSec: 0,
        tookMs: 0,
        threads: { ...seq(4), source: 'default' },
      },
    ],
    [
      'skipped on a GPU: no threads',
      { source: 'skipped', reason: 'model has no batch axis: runs unbatched', unbatched: true },
      { onCpu: false, threads: def },
      {
        source: 'skipped',
        deviceClass: 'cls',
        reason: 'model has no batch axis: runs unbatched',
        replicaBytes: 0,
        itemsPerSec: 0,
        tookMs: 0,
      },
    ],
    [
      'measured with tuned threads: their rate, sweep plus tuning time',
      { source: 'measured', profile: profile() },
      { onCpu: true, threads: tuned },
      {
        source: 'measured',
        deviceClass: 'cls',
        reason: 'batch 8: fastest',
        replicaBytes: 4096,
        itemsPerSec: 900,
        tookMs: 1500.1,
        threads: { ...seq(2), source: 'profile' },
      },
    ],
    [
      "from the cache with the deployment's threads: the sweep's rate, no time spent",
      { source: 'cache', profile: profile() },
      { onCpu: true, threads: { settings: seq(2), source: 'deployment' } },
      {
        source: 'cache',
        deviceClass: 'cls',
        reason: 'batch 8: fastest',
        replicaBytes: 4096,
        itemsPerSec: 800,
        tookMs: 0,
        threads: { ...seq(2), source: 'deployment' },
      },
    ],
    [
      'from the cache, profile threads not among the measured rows: the sweep rate',
      { source: 'cache', profile: profile() },
      { onCpu: true, threads: { settings: par(1, 2), source: 'profile' } },
      {
        source: 'cache',
        deviceClass: 'cls',
        reason: 'batch 8: fastest',
        replicaBytes: 4096,
        itemsPerSec: 800,
        tookMs: 0,
        threads: { ...par(1, 2), source: 'profile' },
      },
    ],
    [
      'measured on a GPU without thread tuning: the sweep time alone',
      { source: 'measured', profile: profile({ threads: undefined }) },
      { onCpu: false, threads: def },
      { source: 'measured', deviceClass: 'cls', reason: 'batch 8: fastest', replicaBytes: 4096, itemsPerSec: 800, tookMs: 1200 },
    ],
  ])('%s', (_what, outcome, f, expected) => {
    expect(summarize(outcome, { deviceClass: 'cls', ...f })).toEqual(expected);
  });
});

describe('batchingFor', () => {
  const p = profile();
  it.each<[string, ProfileOutcome, DeploySpec['batching'], DeploySpec['batching']]>([
    ['disabled: the deployment alone', { source: 'disabled', reason: 'r' }, { maxQueueLength: 5 }, { maxQueueLength: 5 }],
    [
      'no batch axis: one item at a time, whatever was asked',
      { source: 'skipped', reason: 'r', unbatched: true },
      { maxBatchSize: 16, maxQueueDelayMs: 3 },
      { maxBatchSize: 1, maxQueueDelayMs: 3 },
    ],
    ['unprofilable: the deployment alone', { source: 'skipped', reason: 'r', unbatched: false }, {}, {}],
    [
      "profiled: the profile's choice where the deployment is silent",
      { source: 'measured', profile: p },
      { maxQueueLength: 7 },
      { maxBatchSize: 8, maxQueueDelayMs: 2, maxQueueLength: 7 },
    ],
    [
      "profiled: the deployment's settings override the choice",
      { source: 'cache', profile: p },
      { maxBatchSize: 4, maxQueueDelayMs: 0 },
      { maxBatchSize: 4, maxQueueDelayMs: 0 },
    ],
    [
      'a profile that pads: batches padded (to the max size in force)',
      { source: 'measured', profile: { ...p, chosen: { ...p.chosen, shapeChangeMs: 40, padTo: 8 } } },
      { maxBatchSize: 4 },
      { maxBatchSize: 4, maxQueueDelayMs: 2, padBatches: true },
    ],
    [
      'a profile that pads, a deployment that says not to',
      { source: 'cache', profile: { ...p, chosen: { ...p.chosen, shapeChangeMs: 40, padTo: 8 } } },
      { padBatches: false },
      { maxBatchSize: 8, maxQueueDelayMs: 2, padBatches: false },
    ],
    [
      'a deployment that pads whatever the profile measured',
      { source: 'measured', profile: p },
      { padBatches: true },
      { maxBatchSize: 8, maxQueueDelayMs: 2, padBatches: true },
    ],
  ])('%s', (_what, outcome, deployment, expected) => {
    const before = structuredClone(deployment);
    expect(batchingFor(outcome, deployment)).toEqual(expected);
    expect(deployment).toEqual(before); // never mutates the deployment's options
  });

  // A profile that did not measure a change of batch size (stored before the measurement existed, or cut short).
  const unmeasured = { ...p, chosen: { ...p.chosen, shapeChangeMs: undefined } };
  const cheap = { ...p, chosen: { ...p.chosen, shapeChangeMs: 0.2 } };
  it.each<[string, ModelProfile, boolean, DeploySpec['batching'], boolean | undefined]>([
    ['unmeasured on a GPU: padded', unmeasured, true, {}, true],
    ['unmeasured on a CPU: not padded', unmeasured, false, {}, undefined],
    ['measured cheap on a GPU: not padded', cheap, true, {}, undefined],
    ['unmeasured on a GPU, the deployment says not to', unmeasured, true, { padBatches: false }, false],
    [
      'unmeasured on a GPU, batch 1 chosen: nothing to pad',
      { ...unmeasured, chosen: { ...unmeasured.chosen, maxBatchSize: 1 } },
      true,
      {},
      undefined,
    ],
  ])('%s', (_what, profile, onGpu, deployment, padBatches) => {
    expect(batchingFor({ source: 'cache', profile }, deployment, onGpu).padBatches).toBe(padBatches);
  });
});

describe('shouldWarmUp', () => {
  it.each<[ProfileOutcome['source'], boolean, string[], boolean]>([
    ['cache', true, [], true],
    ['disabled', true, [], true],
    ['skipped', true, [], true],
    ['measured', true, [], false], // the profile just ran it
    ['cache', false, [], false], // the deployment turned it off
    ['per-shape', true, ['H', 'W'], false], // no shape to run it at
    ['disabled', true, ['seq'], false],
  ])('source %s, warmup %s, dynamic dims %j → %s', (source, warmup, dims, expected) => {
    expect(shouldWarmUp(source, warmup, dims)).toBe(expected);
  });
});
