import {
  DEFAULT_CONCURRENCIES,
  DEFAULT_MODELS,
  batchSizes,
  benchDim,
  benchSettings,
  bestPoint,
  fmt,
  histogramDiff,
  histogramText,
  histogramTotals,
  modelUsPerItem,
  perItemMsAt,
  rateWithin,
  ratios,
  sliceRow,
  sweepDeclined,
  table,
} from './stats.js';

describe('benchSettings', () => {
  test('defaults: 3 s per point, the four models, concurrency 1/16/128, batches to 128, pinned', () => {
    expect(benchSettings({})).toEqual({
      durationMs: 3000,
      warmupMs: 500,
      models: DEFAULT_MODELS,
      concurrencies: DEFAULT_CONCURRENCIES,
      maxBatch: 128,
      pin: true,
      quick: false,
      device: 'cpu',
      workers: 1,
      bodiesMiB: [8, 64, 256],
      bodyRounds: 3,
    });
  });
  test('BENCH_QUICK shortens every phase; explicit durations still win', () => {
    expect(benchSettings({ BENCH_QUICK: '1' })).toMatchObject({
      durationMs: 500,
      warmupMs: 100,
      quick: true,
      bodiesMiB: [8, 64],
      bodyRounds: 1,
    });
    expect(benchSettings({ BENCH_QUICK: '1', BENCH_DURATION_MS: '800', BENCH_WARMUP_MS: '0' })).toMatchObject({
      durationMs: 800,
      warmupMs: 0,
    });
  });
  test('models, concurrency, max batch and pinning from env', () => {
    const s = benchSettings({ BENCH_MODELS: 'mlp, wide-mlp', BENCH_CONCURRENCY: '2,8', BENCH_MAX_BATCH: '32', BENCH_PIN: '0' });
    expect(s).toMatchObject({ models: ['mlp', 'wide-mlp'], concurrencies: [2, 8], maxBatch: 32, pin: false });
    expect(benchSettings({ BENCH_DEVICE: 'gpu' }).device).toBe('gpu');
    expect(benchSettings({ BENCH_PAD_BATCHES: '0' }).padBatches).toBe(false);
    expect(benchSettings({ BENCH_PAD_BATCHES: '1' }).padBatches).toBe(true);
    expect(benchSettings({}).padBatches).toBeUndefined();
    expect(() => benchSettings({ BENCH_PAD_BATCHES: 'maybe' })).toThrow(/BENCH_PAD_BATCHES must be 0 or 1/);
    expect(benchSettings({ BENCH_WORKERS: '4' }).workers).toBe(4);
    expect(benchSettings({ BENCH_BODIES: '0' }).bodiesMiB).toEqual([]);
    expect(benchSettings({ BENCH_BODIES: '64' }).bodiesMiB).toEqual([64]);
    expect(benchSettings({ BENCH_SESSION_HOST: 'thread' }).sessionHost).toBe('thread');
    expect(benchSettings({}).sessionHost).toBeUndefined();
    expect(() => benchSettings({ BENCH_SESSION_HOST: 'gpu' })).toThrow(/BENCH_SESSION_HOST must be/);
    expect(benchSettings({ BENCH_BATCHING: '{"maxBatchSize":16,"maxQueueDelayMs":0}' }).batching).toEqual({
      maxBatchSize: 16,
      maxQueueDelayMs: 0,
    });
    expect(benchSettings({}).batching).toBeUndefined();
    for (const bad of ['{"maxBatchSize":0}', '{"size":4}', 'sixteen'])
      expect(() => benchSettings({ BENCH_BATCHING: bad })).toThrow(/BENCH_BATCHING must be batching options/);
  });
  test('bad values are refused with the variable named', () => {
    expect(() => benchSettings({ BENCH_CONCURRENCY: '1,x' })).toThrow(/BENCH_CONCURRENCY/);
    expect(() => benchSettings({ BENCH_CONCURRENCY: '0' })).toThrow(/BENCH_CONCURRENCY/);
    expect(() => benchSettings({ BENCH_DURATION_MS: '-5' })).toThrow(/BENCH_DURATION_MS/);
    expect(() => benchSettings({ BENCH_MODELS: ' , ' })).toThrow(/BENCH_MODELS/);
    expect(() => benchSettings({ BENCH_DEVICE: 'tpu' })).toThrow(/BENCH_DEVICE must be cpu or gpu/);
    expect(() => benchSettings({ BENCH_WORKERS: '0' })).toThrow(/BENCH_WORKERS/);
    expect(() => benchSettings({ BENCH_BODIES: '512' })).toThrow(/BENCH_BODIES sizes must be at most 256/);
    expect(() => benchSettings({ BENCH_BODIES: 'x' })).toThrow(/BENCH_BODIES/);
  });
});

describe('batch sweep', () => {
  test('batchSizes: powers of two up to the largest, which is always included', () => {
    expect(batchSizes(128)).toEqual([1, 2, 4, 8, 16, 32, 64, 128]);
    expect(batchSizes(1)).toEqual([1]);
    expect(batchSizes(48)).toEqual([1, 2, 4, 8, 16, 32, 48]);
  });
  test('bestPoint: most items/s, first of equals', () => {
    expect(bestPoint([])).toBeUndefined();
    expect(
      bestPoint([
        { batch: 1, itemsPerSec: 10 },
        { batch: 2, itemsPerSec: 30 },
        { batch: 4, itemsPerSec: 30 },
      ])?.batch,
    ).toBe(2);
  });
  test('sweepDeclined: two points in a row clearly (< 80 %) below the best and past it', () => {
    const r = (pairs: Array<[number, number]>) => pairs.map(([batch, itemsPerSec]) => ({ batch, itemsPerSec }));
    expect(
      sweepDeclined(
        r([
          [1, 100],
          [2, 70],
        ]),
      ),
    ).toBe(false); // one dip
    expect(
      sweepDeclined(
        r([
          [1, 100],
          [2, 70],
          [4, 75],
        ]),
      ),
    ).toBe(true);
    expect(
      sweepDeclined(
        r([
          [1, 100],
          [2, 70],
          [4, 90],
        ]),
      ),
    ).toBe(false); // recovered within 80 %
    expect(
      sweepDeclined(
        r([
          [1, 100],
          [2, 200],
          [4, 150],
          [8, 140],
        ]),
      ),
    ).toBe(true);
    expect(
      sweepDeclined(
        r([
          [1, 100],
          [2, 200],
          [4, 150],
          [8, 170],
        ]),
      ),
    ).toBe(false); // 170 ≥ 160
    expect(
      sweepDeclined(
        r([
          [1, 100],
          [2, 110],
          [4, 120],
        ]),
      ),
    ).toBe(false); // still rising
  });
});

describe('histograms', () => {
  test('histogramDiff: the batches run between two cumulative snapshots', () => {
    expect(histogramDiff({ '1': 10, '4': 3, '64': 20 }, { '1': 8, '4': 3 })).toEqual({ '1': 2, '64': 20 });
    expect(histogramDiff({ '2': 1 })).toEqual({ '2': 1 });
    expect(Object.keys(histogramDiff({ '64': 1, '8': 1, '16': 1 }))).toEqual(['8', '16', '64']);
  });
  test('histogramTotals: batches, items and mean batch', () => {
    expect(histogramTotals({ '1': 2, '4': 2 })).toEqual({ batches: 4, items: 10, meanBatch: 2.5 });
    expect(histogramTotals({})).toEqual({ batches: 0, items: 0, meanBatch: 0 });
  });
  test('histogramText: sizes ascending, long ones cut to the most frequent sizes', () => {
    expect(histogramText({})).toBe('-');
    expect(histogramText({ '16': 3, '1': 12 })).toBe('1×12 16×3');
    expect(histogramText({ '1': 1, '2': 50, '3': 2, '4': 40 }, 2)).toBe('2×50 4×40 (+2 sizes)');
  });
});

describe('ratios', () => {
  test('the four ratios of the brief', () => {
    expect(ratios({ inprocBatch1: 1000, inprocBest: 4000, rawNats: 20000, clusterBest: 3000 })).toEqual({
      ceiling_ratio: 0.75,
      ceiling_at_chosen: null,
      c1_added_ms: null,
      broker_ratio: 0.15,
      batching_gain: 3,
      inproc_gain: 4,
    });
    expect(
      ratios({
        inprocBatch1: 1000,
        inprocBest: 4000,
        rawNats: 20000,
        clusterBest: 3000,
        inprocAtChosen: 3200,
        inprocBatch1P50Ms: 0.025,
        clusterC1P50Ms: 0.3456,
      }),
    ).toMatchObject({ ceiling_at_chosen: 0.9375, c1_added_ms: 0.321 });
  });
  test('rateWithin: the sweep at the largest batch within the chosen max', () => {
    const sweep = [1, 2, 4, 8].map((batch) => ({ batch, itemsPerSec: batch * 100 }));
    expect(rateWithin(sweep, 4)).toBe(400);
    expect(rateWithin(sweep, 6)).toBe(400);
    expect(rateWithin(sweep, 128)).toBe(800);
    expect(rateWithin(sweep, 0)).toBeUndefined();
  });
  test('four significant digits, so a tiny ratio is not 0', () => {
    expect(ratios({ inprocBatch1: 3, inprocBest: 9_000_000, rawNats: 7, clusterBest: 2000 })).toMatchObject({
      ceiling_ratio: 0.0002222,
      batching_gain: 666.7,
    });
  });
  test('null where the denominator is zero or missing', () => {
    expect(ratios({ inprocBatch1: 0, inprocBest: NaN, rawNats: 0, clusterBest: 5 })).toEqual({
      ceiling_ratio: null,
      ceiling_at_chosen: null,
      c1_added_ms: null,
      broker_ratio: null,
      batching_gain: null,
      inproc_gain: null,
    });
  });
});

describe('text', () => {
  test('fmt: grouped integers from 100, three significant digits below, dash for none', () => {
    expect(fmt(123456.7)).toBe('123,457');
    expect(fmt(3.14159)).toBe('3.14');
    expect(fmt(0.012345)).toBe('0.0123');
    expect(fmt(0.009)).toBe('0.009');
    expect(fmt(1)).toBe('1');
    expect(fmt(null)).toBe('-');
    expect(fmt(NaN)).toBe('-');
  });
  test('table: text columns left, number columns right, a rule under the header', () => {
    expect(
      table(
        ['what', 'n', 'note'],
        [
          ['a', '1', 'x'],
          ['bbb', '1,000', ''],
        ],
      ),
    ).toBe(['what      n  note', '----  -----  ----', 'a         1  x', 'bbb   1,000'].join('\n'));
    expect(
      table(
        ['a', 'b'],
        [
          ['x', '1'],
          ['y', '22'],
        ],
        ['r', 'l'],
      ),
    ).toBe(['a  b', '-  --', 'x  1', 'y  22'].join('\n'));
  });
});

describe('benchDim', () => {
  test.each([
    ['N', 0, 8, 8],
    [1, 0, 4, 4],
    [3, 1, 1, 3],
    ['H', 2, 1, 64],
    ['W', 3, 1, 64],
    ['seq', 1, 1, 1],
    [-1, 1, 1, 1],
    [undefined, 2, 1, 1],
  ] as const)('dim %p on axis %p, batch %p → %p', (d, axis, batch, want) => {
    expect(benchDim(d, axis, batch)).toBe(want);
  });
  test('the default models include the conv classifier with dynamic H/W', () => {
    expect(DEFAULT_MODELS).toEqual(['mlp', 'wide-mlp', 'convnet', 'conv-classifier']);
  });
});

describe('the model’s share of a run, from the in-process sweep', () => {
  // batch 1: 1 ms a run; batch 4: 2 ms a run (0.5 ms/item); batch 8: 3.2 ms a run (0.4 ms/item)
  const sweep = [
    { batch: 8, itemsPerSec: 2500 },
    { batch: 1, itemsPerSec: 1000 },
    { batch: 4, itemsPerSec: 2000 },
  ];
  it.each([
    [1, 1],
    [4, 0.5],
    [8, 0.4],
    [0.5, 1], // below the smallest size: its rate
    [64, 0.4], // above the largest: its rate
    [2, (1 + (1 / 3) * (2 - 1)) / 2], // a third of the way from 1 to 4: 1.333 ms a run
    [6, (2 + 0.5 * (3.2 - 2)) / 6], // half way from 4 to 8: 2.6 ms a run
  ])('batch %p: %p ms per item', (batch, ms) => expect(perItemMsAt(sweep, batch)).toBeCloseTo(ms, 9));

  it('is undefined without a sweep', () => {
    expect(perItemMsAt([], 4)).toBeUndefined();
    expect(perItemMsAt([{ batch: 1, itemsPerSec: 0 }], 1)).toBeUndefined();
  });

  it('weighs each batch size by its items', () => {
    // 2 batches of 1 (2 items at 1 ms) and 1 batch of 8 (8 items at 0.4 ms): 5.2 ms for 10 items
    expect(modelUsPerItem({ '1': 2, '8': 1 }, sweep)).toBeCloseTo(520, 6);
    expect(modelUsPerItem({ '4': 3 }, sweep)).toBeCloseTo(500, 6);
    expect(modelUsPerItem({ '>128': 3 }, sweep)).toBeUndefined(); // no size to weigh
    expect(modelUsPerItem({}, sweep)).toBeUndefined();
    expect(modelUsPerItem({ '4': 1 }, [])).toBeUndefined();
  });
});

describe('sliceRow', () => {
  test('one batch size timed in rounds: items/s and CPU per item over the summed time, percentiles over every run', () => {
    const row = sliceRow([
      { batch: 8, timesMs: [4, 4, 5], elapsedMs: 13, cpuUs: 12_000 }, // a fast stretch
      { batch: 8, timesMs: [6, 6, 7, 9], elapsedMs: 28, cpuUs: 27_000 }, // a slow one
    ]);
    // 7 runs × 8 items in 41 ms; 39 ms of CPU over 56 items.
    expect(row).toEqual({ batch: 8, runs: 7, itemsPerSec: 1365.9, p50Ms: 6, p99Ms: 9, cpuUsPerItem: 696.43 });
    // One stretch is the plain row.
    expect(sliceRow([{ batch: 1, timesMs: [2, 1, 3], elapsedMs: 6, cpuUs: 5_400 }])).toEqual({
      batch: 1,
      runs: 3,
      itemsPerSec: 500,
      p50Ms: 2,
      p99Ms: 3,
      cpuUsPerItem: 1800,
    });
  });

  test('no stretches, or stretches of different sizes, is a bug in the caller', () => {
    expect(() => sliceRow([])).toThrow(/no stretches/);
    expect(() =>
      sliceRow([
        { batch: 1, timesMs: [1], elapsedMs: 1, cpuUs: 1 },
        { batch: 2, timesMs: [1], elapsedMs: 1, cpuUs: 1 },
      ]),
    ).toThrow(/different batch sizes/);
  });
});
