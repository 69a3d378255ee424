import { MAX_SHAPE_KEY_CHARS, ShapeProfileSummary, profileKey, shapeKey, type ModelProfile, type ProfileShape } from '@flotilla/protocol';
import { describeModel, validateInputs } from './model-io.js';
import { summarize, summarizeShapes } from './session-plan.js';
import {
  MAX_BUCKET_ALIASES,
  ShapeBook,
  bucketShape,
  dynamicDims,
  itemBytes,
  keepHolding,
  maxProfileBatch,
  sampleShape,
  shapeOf,
  unknownBucketDims,
} from './shape-profiles.js';

const image = describeModel(
  [{ name: 'x', isTensor: true, type: 'float32', shape: ['N', 3, 'H', 'W'] }],
  [{ name: 'y', isTensor: true, type: 'float32', shape: ['N', 1, 'H4', 'W4'] }],
);
const text = describeModel(
  [
    { name: 'input_ids', isTensor: true, type: 'int64', shape: ['batch', 'seq'] },
    { name: 'attention_mask', isTensor: true, type: 'int64', shape: ['batch', 'seq'] },
  ],
  [{ name: 'out', isTensor: true, type: 'float32', shape: ['batch', 'seq', 8] }],
);
const fixed = describeModel(
  [{ name: 'x', isTensor: true, type: 'float32', shape: ['N', 16] }],
  [{ name: 'y', isTensor: true, type: 'float32', shape: ['N', 4] }],
);
const unnamed = describeModel(
  [{ name: 'x', isTensor: true, type: 'float32', shape: ['N', 3, '', -1] }],
  [{ name: 'y', isTensor: true, type: 'float32', shape: ['N', 1] }],
);

function profile(shape: ProfileShape, maxBatchSize: number, replicaBytes: number, itemsPerSec = 100): ModelProfile {
  return {
    v: 1,
    digest: 'd',
    deviceClass: 'cpu-x',
    ortVersion: '1.30.0',
    createdAt: 0,
    latencySloMs: 50,
    budgetMs: 1000,
    tookMs: 400,
    rows: [{ batch: maxBatchSize, runs: 3, p50Ms: 1, p99Ms: 2, itemsPerSec, peakBytes: replicaBytes }],
    stoppedBecause: 'x',
    shape,
    chosen: { maxBatchSize, maxQueueDelayMs: 1.5, reason: `batch ${maxBatchSize}` },
    memory: { sessionBytes: 1, peakBytes: replicaBytes, replicaBytes },
  };
}

describe('dynamicDims', () => {
  it.each([
    ['an image model: H and W', image, ['H', 'W']],
    ['a transformer: seq, once for both inputs', text, ['seq']],
    ['fixed non-batch dims: none', fixed, []],
    ['unnamed dims by input and axis', unnamed, ['x[2]', 'x[3]']],
  ])('%s', (_what, sig, expected) => {
    expect(dynamicDims(sig)).toEqual(expected);
  });
});

describe('shapes and their keys', () => {
  const x = (dims: number[]) => ({ dtype: 'float32' as const, dims, data: new Uint8Array(dims.reduce((a, b) => a * b, 4)) });
  const ids = (dims: number[]) => ({ dtype: 'int64' as const, dims, data: new Uint8Array(dims.reduce((a, b) => a * b, 8)) });

  it.each([
    ['image', image, { x: x([2, 3, 48, 320]) }, { x: [3, 48, 320] }, 'x:3x48x320'],
    [
      'text (model input order, whatever the request order)',
      text,
      { attention_mask: ids([1, 7]), input_ids: ids([1, 7]) },
      { input_ids: [7], attention_mask: [7] },
      'input_ids:7|attention_mask:7',
    ],
  ])("%s: the shape's key is the batcher's key", (_what, sig, inputs, shape, key) => {
    expect(shapeOf(sig, inputs)).toEqual(shape);
    expect(shapeKey(shapeOf(sig, inputs))).toBe(key);
    expect(validateInputs(sig, inputs).key).toBe(key);
  });

  it.each<[string, Record<string, number[]>, ProfileShape | RegExp]>([
    ['a sample request: batch dim dropped', { x: [1, 3, 64, 96] }, { x: [3, 64, 96] }],
    ['the batch dim may be any size', { x: [8, 3, 64, 96] }, { x: [3, 64, 96] }],
    ['a fixed dim must match', { x: [1, 4, 64, 96] }, /dim 1 must be 3/],
    ['rank must match', { x: [1, 3, 64] }, /rank 4/],
    ['a dynamic dim of 0 is refused', { x: [1, 3, 0, 96] }, /dim 2/],
    ['unknown input', { x: [1, 3, 8, 8], z: [1] }, /unknown input\(s\) z/],
    ['missing input', {}, /no dims for input 'x'/],
  ])('sampleShape: %s', (_what, full, expected) => {
    const got = sampleShape(image, full);
    if (expected instanceof RegExp) expect(got).toMatch(expected);
    else expect(got).toEqual(expected);
  });

  it('keys every shape under the model digest, apart from the fixed-shape key, and short whatever the shape', () => {
    const base = profileKey('abc', 'cpu-x', '1.30.0');
    const a = profileKey('abc', 'cpu-x', '1.30.0', 'x:3x48x320');
    expect(base).toBe('abc.cpu-x.1_30_0'); // unchanged for models with fixed shapes
    expect(a.startsWith(`${base}.s`)).toBe(true);
    expect(a).toMatch(/^[A-Za-z0-9_.-]+$/);
    expect(a).not.toBe(profileKey('abc', 'cpu-x', '1.30.0', 'x:3x48x321'));
    // '|' and ':' both become '_' in the token: the hash keeps the keys apart.
    expect(profileKey('abc', 'c', 'v', 'a:1|b:2')).not.toBe(profileKey('abc', 'c', 'v', 'a:1:b|2'));
    expect(profileKey('abc', 'c', 'v', `x:${Array(16).fill(99999).join('x')}`).length).toBeLessThan(150);
  });
});

describe('profile batch bound by input bytes', () => {
  it.each([
    ['small items: the max', 3 * 64 * 96 * 4, 64, 64],
    ['a 12 MiB image: 4 fit in 64 MiB', 3 * 1024 * 1024 * 4, 64, 4],
    ['an item over the bound alone: batch 1', 100 * 1024 * 1024, 64, 1],
    ['never above the deployment max', 16, 8, 8],
  ])('%s', (_what, bytes, max, expected) => {
    expect(maxProfileBatch(bytes, max)).toBe(expected);
  });
  it('item bytes count every input at its dtype', () => {
    expect(itemBytes(text, { input_ids: [7], attention_mask: [7] })).toBe(2 * 7 * 8);
  });
});

describe('ShapeBook', () => {
  const s = (w: number): ProfileShape => ({ x: [3, 48, w] });
  const k = (w: number) => shapeKey(s(w));

  it('names a shape whose key is longer than a heartbeat allows by a cut key (a model with many long input names)', () => {
    const b = new ShapeBook({ maxShapes: 8 });
    const names = Array.from({ length: 8 }, (_, i) => `${'input_with_a_long_descriptive_name_'.repeat(5)}${i}`);
    const shape: ProfileShape = Object.fromEntries(names.map((n) => [n, [3, 48, 64]]));
    const key = shapeKey(shape);
    expect(key.length).toBeGreaterThan(MAX_SHAPE_KEY_CHARS);
    b.see(key, shape, 0);
    const [summary] = b.summaries();
    expect(summary!.shape).toHaveLength(MAX_SHAPE_KEY_CHARS);
    expect(summary!.shape.endsWith('…')).toBe(true);
    expect(ShapeProfileSummary.safeParse(summary).success).toBe(true); // the head would refuse the whole heartbeat otherwise
  });

  it('queues each new shape once, profiles one at a time, the most requested first (oldest among equals)', () => {
    const b = new ShapeBook({ maxShapes: 8 });
    b.see(k(100), s(100), 0);
    b.see(k(200), s(200), 1);
    b.see(k(300), s(300), 2);
    b.see(k(300), s(300), 3);
    expect(b.next()).toBe(k(300)); // 2 requests
    b.start(k(300));
    expect(b.next()).toBeNull(); // one at a time
    b.settle(k(300), profile(s(300), 4, 10), 'measured', 400);
    expect(b.next()).toBe(k(100)); // 1 request each: the oldest
    b.fail(k(100), 'no run measured');
    expect(b.next()).toBe(k(200));
    expect(b.get(k(100))).toMatchObject({ state: 'failed', reason: 'no run measured' });
  });

  it('profiles at most maxShapes shapes; later ones run on the defaults; tracks at most maxTracked', () => {
    const b = new ShapeBook({ maxShapes: 2, maxTracked: 3 });
    for (const w of [1, 2, 3]) b.see(k(w), s(w), w);
    expect(b.get(k(3))).toMatchObject({ state: 'skipped', reason: expect.stringMatching(/limit of 2 shapes/) });
    expect(b.see(k(4), s(4), 4)).toBeUndefined(); // not tracked
    expect(b.size).toBe(3);
    expect(b.see(k(1), s(1), 5)).toMatchObject({ requests: 2 }); // known shapes still count
  });

  it('maxShapes 0: nothing is profiled in the background', () => {
    const b = new ShapeBook({ maxShapes: 0 });
    b.see(k(1), s(1), 0);
    expect(b.next()).toBeNull();
  });

  it.each<[string, Record<string, number | boolean | undefined>, string, { maxBatchSize: number; maxQueueDelayMs: number } | undefined]>([
    ['a profiled shape: its choice', {}, 'profiled', { maxBatchSize: 4, maxQueueDelayMs: 1.5 }],
    ['the deployment pads its batches', { padBatches: true }, 'profiled', { maxBatchSize: 4, maxQueueDelayMs: 1.5, padTo: 4 }],
    [
      'padding asked for, nothing to pad (max 1)',
      { padBatches: true, maxBatchSize: 1 },
      'profiled',
      { maxBatchSize: 1, maxQueueDelayMs: 1.5 },
    ],
    ['the deployment max wins, the delay from the profile', { maxBatchSize: 2 }, 'profiled', { maxBatchSize: 2, maxQueueDelayMs: 1.5 }],
    ['the deployment delay wins', { maxQueueDelayMs: 0 }, 'profiled', { maxBatchSize: 4, maxQueueDelayMs: 0 }],
    ['a shape still queued: the replica defaults (undefined)', {}, 'queued', undefined],
    ['an unknown key: the replica defaults', {}, 'unknown', undefined],
  ])('batchingFor: %s', (_what, deployment, which, expected) => {
    const b = new ShapeBook({ maxShapes: 8 });
    b.see(k(1), s(1), 0);
    b.see(k(2), s(2), 0);
    b.start(k(1));
    b.settle(k(1), profile(s(1), 4, 10), 'measured', 100);
    const key = { profiled: k(1), queued: k(2), unknown: 'x:1x1x1' }[which]!;
    expect(b.batchingFor(key, deployment)).toEqual(expected);
  });

  it('charges the largest footprint of any profiled shape; reports each shape', () => {
    const b = new ShapeBook({ maxShapes: 8 });
    expect(b.footprint()).toBe(0);
    b.add({ ...profile(s(640), 2, 900), shape: s(640) }, 'measured', 0);
    b.add({ ...profile(s(100), 8, 300, 5000), shape: s(100) }, 'cache', 0);
    b.see(k(100), s(100), 1);
    b.see(k(50), s(50), 2);
    expect(b.footprint()).toBe(900);
    expect(b.itemsPerSec()).toBe(5000); // the most requested profiled shape
    expect(b.summaries()).toEqual([
      {
        shape: k(640),
        state: 'measured',
        requests: 0,
        maxBatchSize: 2,
        maxQueueDelayMs: 1.5,
        replicaBytes: 900,
        tookMs: 400,
        reason: 'batch 2',
      },
      {
        shape: k(100),
        state: 'cache',
        requests: 1,
        maxBatchSize: 8,
        maxQueueDelayMs: 1.5,
        replicaBytes: 300,
        tookMs: 0,
        reason: 'batch 8',
      },
      { shape: k(50), state: 'queued', requests: 1, replicaBytes: 0, tookMs: 0, reason: 'waiting for a background profile' },
    ]);
  });

  it("the replica's summary says why and how far: dims, shapes profiled, the largest footprint", () => {
    const threads = { settings: { intraOp: 2, interOp: 1, mode: 'sequential' as const }, source: 'default' as const };
    const base = summarize(
      { source: 'per-shape', dims: ['H', 'W'], reason: 'dynamic dims H, W: profiled per shape as traffic arrives' },
      { deviceClass: 'cpu-x', onCpu: true, threads },
    );
    expect(base).toMatchObject({ source: 'per-shape', replicaBytes: 0, dynamicDims: ['H', 'W'] });
    const b = new ShapeBook({ maxShapes: 8 });
    b.see(k(1), s(1), 0);
    const none = summarizeShapes(base, { summaries: b.summaries(), footprint: b.footprint(), itemsPerSec: b.itemsPerSec() });
    expect(none.reason).toBe('dynamic dims H, W: profiled per shape as traffic arrives (0 of 1 shape profiled)');
    b.start(k(1));
    b.settle(k(1), profile(s(1), 4, 1234), 'measured', 250);
    const one = summarizeShapes(none, { summaries: b.summaries(), footprint: b.footprint(), itemsPerSec: b.itemsPerSec() });
    expect(one).toMatchObject({
      reason: 'dynamic dims H, W: profiled per shape as traffic arrives (1 of 1 shape profiled)',
      replicaBytes: 1234,
      tookMs: 250,
      shapes: [{ shape: k(1), state: 'measured', maxBatchSize: 4 }],
    });
  });

  it('pads a shape whose profile measured a costly change of batch size, unless the deployment says not to', () => {
    const b = new ShapeBook({ maxShapes: 8 });
    b.see(k(1), s(1), 0);
    b.start(k(1));
    const p = profile(s(1), 8, 10);
    b.settle(k(1), { ...p, chosen: { ...p.chosen, shapeChangeMs: 30, padTo: 8 } }, 'measured', 100);
    expect(b.batchingFor(k(1), {})).toEqual({ maxBatchSize: 8, maxQueueDelayMs: 1.5, padTo: 8 });
    expect(b.batchingFor(k(1), { maxBatchSize: 4 })).toEqual({ maxBatchSize: 4, maxQueueDelayMs: 1.5, padTo: 4 });
    expect(b.batchingFor(k(1), { padBatches: false })).toEqual({ maxBatchSize: 8, maxQueueDelayMs: 1.5 });
    expect(b.summaries()).toEqual([expect.objectContaining({ shape: k(1), maxBatchSize: 8, padTo: 8 })]);
  });

  it.each([
    ['measured cheap, CPU', 0.2, false, undefined],
    ['measured cheap, GPU', 0.2, true, undefined],
    ['not measured (cut short), CPU', undefined, false, undefined],
    ['not measured (cut short), GPU: padded', undefined, true, 8],
  ] as const)('a change of batch size %s → padTo %s', (_what, change, gpu, padTo) => {
    const b = new ShapeBook({ maxShapes: 8, onGpu: gpu });
    b.see(k(1), s(1), 0);
    b.start(k(1));
    const p = profile(s(1), 8, 10);
    const chosen = { ...p.chosen, ...(change !== undefined ? { shapeChangeMs: change } : {}) };
    b.settle(k(1), { ...p, chosen, stoppedBecause: 'stopped: the replica stayed busy' }, 'measured', 100);
    expect(b.batchingFor(k(1), {})?.padTo).toBe(padTo);
    expect(b.batchingFor(k(1), { padBatches: false })?.padTo).toBeUndefined();
    // What the replica reports is what it runs, and why.
    const [summary] = b.summaries();
    expect(summary!.padTo).toBe(padTo);
    if (padTo !== undefined)
      expect(summary!.reason).toMatch(/not measured \(stopped: the replica stayed busy\): on a GPU smaller batches run padded to 8$/);
    else expect(summary!.reason).not.toMatch(/padded/);
  });
});

describe('how long a background profile holds its replica', () => {
  it.each([
    ['short GPU runs: the next fits', 3, 0.5, 25, true],
    ['exactly at the cap', 20, 5, 25, true],
    ['the next run would pass the cap', 21, 5, 25, false],
    ['one run as long as the cap, alone', 0, 25, 25, true],
    ['a tight objective caps it lower', 2, 1, 2, false],
  ] as const)('%s', (_what, granted, next, cap, keep) => expect(keepHolding(granted, next, cap)).toBe(keep));
});

describe('shape buckets (profile.buckets)', () => {
  const seq = (n: number): ProfileShape => ({ input_ids: [n], attention_mask: [n] });
  it.each<[string, typeof text, ProfileShape, Record<string, number[]>, ProfileShape]>([
    ['below the first bound: the first bucket', text, seq(7), { seq: [16, 64] }, seq(16)],
    ['inside a bucket: raised to its bound', text, seq(12), { seq: [16, 64] }, seq(16)],
    ['on a bound: that bucket', text, seq(16), { seq: [16, 64] }, seq(16)],
    ['just past a bound: the next bucket', text, seq(17), { seq: [16, 64] }, seq(64)],
    ['the last bucket', text, seq(40), { seq: [16, 64] }, seq(64)],
    ['above the largest bound: exact', text, seq(65), { seq: [16, 64] }, seq(65)],
    ['a dim not named: exact', text, seq(7), { H: [16] }, seq(7)],
    ['no buckets: exact', text, seq(7), {}, seq(7)],
    ['image: only the named dim, fixed dims never', image, { x: [3, 37, 100] }, { W: [128, 256], C: [8] }, { x: [3, 37, 128] }],
    ['both image dims', image, { x: [3, 37, 300] }, { H: [32, 64], W: [128, 256] }, { x: [3, 64, 300] }],
    ['an unnamed dim by input and axis', unnamed, { x: [3, 5, 9] }, { 'x[3]': [10] }, { x: [3, 5, 10] }],
  ])('%s', (_what, sig, shape, buckets, expected) => {
    expect(bucketShape(sig, shape, buckets)).toEqual(expected);
  });

  it('returns the shape itself when no dim moves (its key stays the batch key)', () => {
    const s = seq(16);
    expect(bucketShape(text, s, { seq: [16, 64] })).toBe(s);
    expect(bucketShape(text, seq(7), { seq: [16] })).not.toBe(seq(7));
  });

  it("the replica's summary keeps the bucket text as shapes settle (only the count is replaced)", () => {
    const threads = { settings: { intraOp: 2, interOp: 1, mode: 'sequential' as const }, source: 'default' as const };
    const why = 'dynamic dims seq: profiled per bucket (seq ≤ 16/64) and per shape above as traffic arrives';
    const base = summarize({ source: 'per-shape', dims: ['seq'], reason: why }, { deviceClass: 'cpu-x', onCpu: true, threads });
    const b = new ShapeBook({ maxShapes: 8 });
    b.see(shapeKey(seq(16)), seq(16), 0, shapeKey(seq(7)));
    const sum = () => ({ summaries: b.summaries(), footprint: b.footprint(), itemsPerSec: b.itemsPerSec() });
    const once = summarizeShapes(base, sum());
    expect(once.reason).toBe(`${why} (0 of 1 shape profiled)`);
    b.start(shapeKey(seq(16)));
    b.settle(shapeKey(seq(16)), profile(seq(16), 4, 10), 'measured', 100);
    expect(summarizeShapes(once, sum()).reason).toBe(`${why} (1 of 1 shape profiled)`);
  });

  it('names the bucketed dims the model does not have', () => {
    expect(unknownBucketDims(text, { seq: [16], H: [8] })).toEqual(['H']);
    expect(unknownBucketDims(image, { H: [8], W: [8] })).toEqual([]);
  });

  it('requests of one bucket share its entry, profile and batching; each exact shape keeps its own batch key', () => {
    const buckets = { seq: [16, 64] };
    const b = new ShapeBook({ maxShapes: 8 });
    const see = (n: number, now: number) => {
      const shape = bucketShape(text, seq(n), buckets);
      return b.see(shapeKey(shape), shape, now, shapeKey(seq(n)));
    };
    see(7, 0);
    see(12, 1);
    see(12, 2);
    see(40, 3);
    expect(b.size).toBe(2);
    expect(b.summaries().map((e) => [e.shape, e.requests])).toEqual([
      [shapeKey(seq(16)), 3],
      [shapeKey(seq(64)), 1],
    ]);
    expect(b.next()).toBe(shapeKey(seq(16))); // the busier bucket first
    b.start(shapeKey(seq(16)));
    b.settle(shapeKey(seq(16)), profile(seq(16), 4, 10), 'measured', 100);
    // Both exact shapes of bucket 16 take its batching; bucket 64 has none yet; a shape never seen has none.
    expect(b.batchingFor(shapeKey(seq(7)), {})).toEqual({ maxBatchSize: 4, maxQueueDelayMs: 1.5 });
    expect(b.batchingFor(shapeKey(seq(12)), {})).toEqual({ maxBatchSize: 4, maxQueueDelayMs: 1.5 });
    expect(b.batchingFor(shapeKey(seq(16)), {})).toEqual({ maxBatchSize: 4, maxQueueDelayMs: 1.5 });
    expect(b.batchingFor(shapeKey(seq(40)), {})).toBeUndefined();
    expect(b.batchingFor(shapeKey(seq(9)), {})).toBeUndefined();
    b.start(shapeKey(seq(64)));
    b.settle(shapeKey(seq(64)), profile(seq(64), 2, 40), 'measured', 100);
    expect(b.batchingFor(shapeKey(seq(40)), { maxQueueDelayMs: 0 })).toEqual({ maxBatchSize: 2, maxQueueDelayMs: 0 });
    expect(b.footprint()).toBe(40);
  });

  it('remembers at most MAX_BUCKET_ALIASES exact shapes; the rest still count, on the defaults', () => {
    const b = new ShapeBook({ maxShapes: 8 });
    const bucket = shapeKey({ x: [1] });
    for (let i = 0; i <= MAX_BUCKET_ALIASES; i++) b.see(bucket, { x: [1] }, i, `x:${i + 2}`);
    b.start(bucket);
    b.settle(bucket, profile({ x: [1] }, 8, 1), 'measured', 1);
    expect(b.get(bucket)!.requests).toBe(MAX_BUCKET_ALIASES + 1);
    expect(b.batchingFor(`x:${MAX_BUCKET_ALIASES + 1}`, {})).toEqual({ maxBatchSize: 8, maxQueueDelayMs: 1.5 });
    expect(b.batchingFor(`x:${MAX_BUCKET_ALIASES + 2}`, {})).toBeUndefined();
  });
});
