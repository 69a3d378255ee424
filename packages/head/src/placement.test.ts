import { place, type WorkerView } from './placement.js';

const GiB = 1024 ** 3;
function worker(
  id: string,
  devices: Array<[string, 'cpu' | 'gpu', number, number]>,
  replicas: Record<string, number> = {},
  schedulable = true,
): WorkerView {
  return {
    id,
    schedulable,
    replicasByModel: replicas,
    devices: devices.map(([d, kind, budget, used]) => ({ id: d, kind, budgetBytes: budget * GiB, usedBytes: used * GiB })),
  };
}
const req = (over: Partial<Parameters<typeof place>[0]> = {}) => ({
  model: 'm',
  bytes: 1 * GiB,
  device: 'any' as const,
  allowFallback: true,
  count: 1,
  ...over,
});

describe('placement policy', () => {
  const cpuOnly = worker('a', [['cpu', 'cpu', 8, 0]]);
  const gpuBox = worker('b', [
    ['cpu', 'cpu', 8, 0],
    ['gpu:0', 'gpu', 16, 0],
    ['gpu:1', 'gpu', 16, 10],
  ]);

  it.each([
    [
      'gpu preferred and present',
      req({ device: 'gpu' }),
      [cpuOnly, gpuBox],
      [{ workerId: 'b', device: 'gpu:0', kind: 'gpu', evicts: false, fallback: false }],
    ],
    [
      'any prefers a gpu',
      req({ device: 'any' }),
      [cpuOnly, gpuBox],
      [{ workerId: 'b', device: 'gpu:0', kind: 'gpu', evicts: false, fallback: false }],
    ],
    [
      'cpu asked: never a gpu',
      req({ device: 'cpu' }),
      [gpuBox],
      [{ workerId: 'b', device: 'cpu', kind: 'cpu', evicts: false, fallback: false }],
    ],
    [
      'gpu asked, none: cpu fallback',
      req({ device: 'gpu' }),
      [cpuOnly],
      [{ workerId: 'a', device: 'cpu', kind: 'cpu', evicts: false, fallback: true }],
    ],
    [
      'gpu asked, too small: fallback',
      req({ device: 'gpu', bytes: 20 * GiB }),
      [
        worker('c', [
          ['cpu', 'cpu', 64, 0],
          ['gpu:0', 'gpu', 16, 0],
        ]),
      ],
      [{ workerId: 'c', device: 'cpu', kind: 'cpu', evicts: false, fallback: true }],
    ],
    [
      'picks the gpu with most free memory',
      req({ device: 'gpu', bytes: 4 * GiB }),
      [gpuBox],
      [{ workerId: 'b', device: 'gpu:0', kind: 'gpu', evicts: false, fallback: false }],
    ],
  ])('%s', (_name, r, workers, expected) => {
    expect(place(r, workers).placements).toEqual(expected);
  });

  it('refuses a gpu-only deployment when no gpu fits, with a reason', () => {
    const r = place(req({ device: 'gpu', allowFallback: false }), [cpuOnly]);
    expect(r).toEqual({ placements: [], unplaced: 1, reason: 'no worker has a gpu device' });
    const r2 = place(req({ device: 'gpu', allowFallback: false, bytes: 100 * GiB }), [gpuBox]);
    expect(r2.reason).toBe(`no gpu device has ${100 * GiB} bytes free`);
  });

  it('spreads replicas of one model over workers', () => {
    const ws = [worker('a', [['cpu', 'cpu', 8, 0]]), worker('b', [['cpu', 'cpu', 8, 0]]), worker('c', [['cpu', 'cpu', 8, 1]], { m: 1 })];
    const r = place(req({ device: 'cpu', count: 4 }), ws);
    expect(r.placements.map((p) => p.workerId).sort()).toEqual(['a', 'a', 'b', 'b']);
  });

  it('counts memory taken by its own earlier placements and stops when full', () => {
    const r = place(req({ device: 'cpu', count: 5, bytes: 3 * GiB }), [worker('a', [['cpu', 'cpu', 8, 0]])]);
    expect(r.placements).toHaveLength(2);
    expect(r.unplaced).toBe(3);
    expect(r.reason).toMatch(/no cpu device has/);
  });

  it('skips workers that are not schedulable (dead or draining)', () => {
    const r = place(req({ device: 'cpu' }), [worker('a', [['cpu', 'cpu', 8, 0]], {}, false)]);
    expect(r).toMatchObject({ unplaced: 1, reason: 'no live workers' });
  });

  it('does not modify its input', () => {
    const ws = [worker('a', [['cpu', 'cpu', 8, 0]])];
    const before = JSON.stringify(ws);
    place(req({ device: 'cpu', count: 3 }), ws);
    expect(JSON.stringify(ws)).toBe(before);
  });

  it('uses evictable memory only when allowed, and prefers devices that need no eviction', () => {
    const full = worker('a', [['cpu', 'cpu', 8, 7.5]]);
    full.devices[0]!.evictableBytes = 6 * GiB;
    expect(place(req({ device: 'cpu', bytes: 2 * GiB }), [full]).unplaced).toBe(1);
    expect(place(req({ device: 'cpu', bytes: 2 * GiB, allowEviction: true }), [full]).placements).toEqual([
      { workerId: 'a', device: 'cpu', kind: 'cpu', evicts: true, fallback: false },
    ]);
    const roomy = worker('b', [['cpu', 'cpu', 8, 0]]);
    expect(place(req({ device: 'cpu', bytes: 2 * GiB, allowEviction: true }), [full, roomy]).placements[0]).toMatchObject({
      workerId: 'b',
      evicts: false,
    });
    // Eviction cannot free more than what is evictable.
    expect(place(req({ device: 'cpu', bytes: 7 * GiB, allowEviction: true }), [full]).unplaced).toBe(1);
  });
});
