import {
  peerBatching,
  peerRatio,
  peerRatioFields,
  peerRatioLine,
  peerRow,
  peerSelection,
  ratioText,
  type PeerName,
  type PeerRatio,
} from './peer-report.js';

describe('peerSelection (BENCH_PEERS)', () => {
  const runs = (env: Record<string, string | undefined>) =>
    Object.entries(peerSelection(env))
      .filter(([, v]) => 'run' in v)
      .map(([k]) => k);
  test.each([
    [undefined, ['moleculer', 'triton', 'rayServe']],
    ['', ['moleculer', 'triton', 'rayServe']],
    ['1', ['moleculer', 'triton', 'rayServe']],
    ['all', ['moleculer', 'triton', 'rayServe']],
    ['0', []],
    ['false', []],
    ['moleculer', ['moleculer']],
    ['triton, ray', ['triton', 'rayServe']],
    ['Ray-Serve,MOLECULER', ['moleculer', 'rayServe']],
  ])('BENCH_PEERS=%p runs %p', (raw, want) => {
    expect(runs({ BENCH_PEERS: raw })).toEqual(want);
  });
  test('each peer left out says why', () => {
    expect(peerSelection({ BENCH_PEERS: '0' }).triton).toEqual({ skipped: 'BENCH_PEERS=0' });
    expect(peerSelection({ BENCH_PEERS: 'moleculer' }).rayServe).toEqual({ skipped: 'not in BENCH_PEERS=moleculer' });
  });
  test('an unknown name is an error that lists the known ones', () => {
    expect(() => peerSelection({ BENCH_PEERS: 'moleculer,nos' })).toThrow(/unknown peer 'nos' \(have moleculer, triton, ray/);
  });
});

describe('peerRatio', () => {
  const flotilla = { itemsPerSec: 3000, p99Ms: 40 };
  test('Flotilla ÷ peer in items/s and in p99', () => {
    expect(peerRatio(flotilla, { itemsPerSec: 2000, p50Ms: 10, p99Ms: 80, concurrency: 128 })).toEqual({ items: 1.5, p99: 0.5 });
  });
  test('null for a skipped or failed peer, or one with no figure', () => {
    expect(peerRatio(flotilla, { skipped: 'x' })).toEqual({ items: null, p99: null });
    expect(peerRatio(flotilla, { error: 'x' })).toEqual({ items: null, p99: null });
    expect(peerRatio(flotilla, undefined)).toEqual({ items: null, p99: null });
    expect(peerRatio(flotilla, { itemsPerSec: 0, p50Ms: null, p99Ms: null, concurrency: 1 })).toEqual({ items: null, p99: null });
  });
});

describe('ratio fields and text', () => {
  const ratios: Record<PeerName, PeerRatio> = {
    moleculer: { items: 1.21, p99: 0.8 },
    triton: { items: 1.02, p99: null },
    rayServe: { items: null, p99: null },
  };
  test('flat JSON fields per peer', () => {
    expect(peerRatioFields(ratios)).toEqual({
      vs_moleculer: 1.21,
      p99_vs_moleculer: 0.8,
      vs_triton: 1.02,
      p99_vs_triton: null,
      vs_ray_serve: null,
      p99_vs_ray_serve: null,
    });
  });
  test('text: ratio and p99, or a dash', () => {
    expect(ratioText(ratios.moleculer)).toBe('1.21× (p99 0.8)');
    expect(ratioText(ratios.triton)).toBe('1.02×');
    expect(ratioText(ratios.rayServe)).toBe('-');
  });
  test('the line under a model table names skipped and failed peers', () => {
    const line = peerRatioLine(ratios, {
      moleculer: { itemsPerSec: 1, p50Ms: 1, p99Ms: 1, concurrency: 1 },
      triton: { error: 'boom' },
      rayServe: { skipped: 'no venv' },
    });
    expect(line).toContain('vs Moleculer (5a) 1.21× (p99 0.8)');
    expect(line).toContain('vs Triton (5b): error');
    expect(line).toContain('vs Ray Serve (5c): skipped');
  });
});

describe('peerRow', () => {
  const describe_ = () => ({ version: '9.9', notes: 'n' });
  test('a run: label with version and concurrency, figures, batch 1 when the peer does not batch', () => {
    expect(peerRow(0, 'moleculer', { itemsPerSec: 1234.5, p50Ms: 1.5, p99Ms: 20, concurrency: 128 }, describe_)).toEqual([
      '(5a) Moleculer 9.9, c=128',
      '1,235',
      '1.5',
      '20',
      '1',
      'n',
    ]);
  });
  test('skipped and failed peers keep the reason', () => {
    expect(peerRow(1, 'triton', { skipped: 'no venv' }, describe_)).toEqual(['(5b) Triton', '-', '-', '-', '-', 'skipped: no venv']);
    expect(peerRow(2, 'rayServe', { error: 'a\n  b' }, describe_)[5]).toBe('error: a b');
  });
});

describe('peerBatching', () => {
  const batching = { maxBatchSize: 8, maxQueueDelayMs: 0, maxQueueLength: 1024, batchAxis: true };
  const profile = { source: 'per-shape' as const, deviceClass: 'cpu', reason: '', replicaBytes: 0, itemsPerSec: 0, tookMs: 0 };
  const shape = (s: string, requests: number, maxBatchSize?: number, maxQueueDelayMs?: number) => ({
    shape: s,
    state: maxBatchSize ? ('measured' as const) : ('queued' as const),
    requests,
    maxBatchSize,
    maxQueueDelayMs,
    replicaBytes: 0,
    tookMs: 0,
    reason: '',
  });
  test("the replica's batching for a model without per-shape profiles; batch at least 1", () => {
    expect(peerBatching({ batching, profile: undefined })).toEqual({ maxBatchSize: 8, batchWaitMs: 0, from: 'replica' });
    expect(peerBatching({ batching: { ...batching, maxBatchSize: 0 }, profile: undefined }).maxBatchSize).toBe(1);
    expect(peerBatching(undefined)).toEqual({ maxBatchSize: 1, batchWaitMs: 0, from: 'replica' });
  });
  test('the most requested profiled shape of a per-shape model', () => {
    const shapes = [shape('x:3x32x32', 5, 16, 1), shape('x:3x64x64', 900, 2, 0.5), shape('x:3x99x99', 5000)];
    expect(peerBatching({ batching, profile: { ...profile, shapes } })).toEqual({
      maxBatchSize: 2,
      batchWaitMs: 0.5,
      from: 'shape x:3x64x64',
    });
  });
  test('what the deployment set wins over a shape’s profile, as in the replica', () => {
    const shapes = [shape('x:3x64x64', 900, 8, 0.5)];
    // The replica's own batching already holds the deployment's values.
    const set = { ...batching, maxBatchSize: 16, maxQueueDelayMs: 0 };
    expect(peerBatching({ batching: set, profile: { ...profile, shapes } }, { maxBatchSize: 16, maxQueueDelayMs: 0 })).toEqual({
      maxBatchSize: 16,
      batchWaitMs: 0,
      from: 'replica',
    });
    // Only the delay set: the shape's batch size, the deployment's delay.
    expect(peerBatching({ batching, profile: { ...profile, shapes } }, { maxQueueDelayMs: 3 })).toEqual({
      maxBatchSize: 8,
      batchWaitMs: 3,
      from: 'shape x:3x64x64',
    });
  });
});
