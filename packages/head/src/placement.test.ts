import { cheapestEviction, byCostPerByte, evictionCost, place, type EvictableReplica, type WorkerView } from './placement.js';

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

  describe('using the whole cluster before evicting, then evicting where it costs least', () => {
    const MiB = 1 << 20;
    /** A cpu-only worker with `used` MiB of a 100 MiB budget, the evictable replicas listed. */
    const full = (id: string, usedMiB: number, evictable: EvictableReplica[], replicas: Record<string, number> = {}): WorkerView => ({
      id,
      schedulable: true,
      replicasByModel: replicas,
      devices: [
        {
          id: 'cpu',
          kind: 'cpu',
          budgetBytes: 100 * MiB,
          usedBytes: usedMiB * MiB,
          evictableBytes: evictable.reduce((n, r) => n + r.bytes, 0),
          evictable,
        },
      ],
    });
    const r = (mib: number, rate: number, reloadMs?: number): EvictableReplica => ({
      bytes: mib * MiB,
      rate,
      ...(reloadMs === undefined ? {} : { reloadMs }),
    });
    const want = (mib: number, count = 1) => req({ device: 'cpu', bytes: mib * MiB, allowEviction: true, count });
    const where = (res: ReturnType<typeof place>) => res.placements.map((p) => `${p.workerId}${p.evicts ? '!' : ''}`);

    // [description, request, workers, placements ('!' = evicts there)]
    it.each([
      [
        'does not fit on the first worker: goes to the one with room, nothing evicted',
        want(30),
        [full('a', 90, [r(90, 0)]), full('b', 60, [r(60, 5)])],
        ['b'],
      ],
      [
        'no room anywhere: evicts on the worker whose victims are least requested',
        want(30),
        [full('a', 90, [r(45, 10, 100), r(45, 8, 100)]), full('b', 90, [r(45, 1, 100), r(45, 20, 100)])],
        ['b!'],
      ],
      [
        'same rates: evicts where reloading the victims is quicker',
        want(30),
        [full('a', 100, [r(50, 2, 400), r(50, 2, 400)]), full('b', 100, [r(50, 2, 30), r(50, 2, 30)])],
        ['b!'],
      ],
      [
        'counts the free bytes: one small victim there beats a large one elsewhere',
        want(30),
        [full('a', 100, [r(40, 1, 100), r(60, 1, 100)]), full('b', 80, [r(10, 1, 20), r(70, 1, 100)])],
        ['b!'],
      ],
      [
        'nothing known about the victims (older workers): most free, as before',
        want(30),
        [full('a', 95, [r(95, 0)]), full('b', 80, [r(80, 0)])],
        ['b!'],
      ],
      [
        'several replicas: room first, then the cheapest eviction',
        want(40, 2),
        [full('a', 100, [r(50, 1, 50), r(50, 9, 50)]), full('b', 100, [r(50, 3, 50), r(50, 4, 50)]), full('c', 60, [])],
        ['c', 'a!'],
      ],
      [
        'replicas of the same model elsewhere: spreading wins over a cheaper eviction',
        want(30),
        [full('a', 100, [r(100, 0)], { m: 1 }), full('b', 100, [r(100, 5)])],
        ['b!'],
      ],
    ] as [string, ReturnType<typeof want>, WorkerView[], string[]][])('%s', (_, request, workers, expected) => {
      const before = JSON.stringify(workers);
      expect(where(place(request, workers))).toEqual(expected);
      expect(JSON.stringify(workers)).toBe(before);
    });

    // The same views under the `first-fit` rule: the first worker listed where the model fits, evicting or not.
    it.each([
      [
        'room on the second worker: first-fit evicts on the first, the default does not',
        want(30),
        [full('a', 90, [r(90, 0)]), full('b', 60, [r(60, 5)])],
        ['a!'],
        ['b'],
      ],
      [
        'no room anywhere: first-fit evicts on the first, whatever it costs',
        want(30),
        [full('a', 90, [r(45, 10, 100), r(45, 8, 100)]), full('b', 90, [r(45, 1, 100), r(45, 20, 100)])],
        ['a!'],
        ['b!'],
      ],
      [
        'the first cannot free enough: the next that fits',
        want(30),
        [full('a', 100, [r(20, 0)]), full('b', 100, [r(50, 9)]), full('c', 0, [])],
        ['b!'],
        ['c'],
      ],
      ['room on the first: both place there without evicting', want(30), [full('a', 50, [r(50, 0)]), full('b', 0, [])], ['a'], ['b']],
      [
        'several replicas: spread over workers still comes first',
        want(40, 2),
        [full('a', 100, [r(50, 1, 50), r(50, 9, 50)]), full('b', 100, [r(50, 3, 50), r(50, 4, 50)]), full('c', 60, [])],
        ['a!', 'b!'],
        ['c', 'a!'],
      ],
    ] as [string, ReturnType<typeof want>, WorkerView[], string[], string[]][])(
      'first-fit: %s',
      (_, request, workers, firstFit, costAware) => {
        const before = JSON.stringify(workers);
        expect(where(place({ ...request, rule: 'first-fit' }, workers))).toEqual(firstFit);
        expect(where(place({ ...request, rule: 'cost-aware' }, workers))).toEqual(costAware);
        expect(where(place(request, workers))).toEqual(costAware);
        expect(JSON.stringify(workers)).toBe(before);
      },
    );

    it('first-fit keeps the device kind preference and does not evict when eviction is not allowed', () => {
      const gpuFull: WorkerView = {
        ...full('g', 100, [r(100, 0)]),
        devices: [{ ...full('g', 100, [r(100, 0)]).devices[0]!, id: 'gpu:0', kind: 'gpu' }],
      };
      const roomy = full('c', 0, []);
      expect(place(req({ device: 'any', bytes: 30 * MiB, allowEviction: true, rule: 'first-fit' }), [roomy, gpuFull]).placements).toEqual([
        { workerId: 'g', device: 'gpu:0', kind: 'gpu', evicts: true, fallback: false },
      ]);
      expect(where(place(req({ device: 'cpu', bytes: 30 * MiB, rule: 'first-fit' }), [full('a', 90, [r(90, 0)]), roomy]))).toEqual(['c']);
    });

    it('frees the cheapest per byte first, and counts what it frees and costs', () => {
      const list = [r(10, 1, 100), r(40, 1, 100), r(20, 0)].sort(byCostPerByte);
      expect(list.map((v) => v.bytes / MiB)).toEqual([20, 40, 10]);
      expect(cheapestEviction(list, 0)).toEqual({ count: 0, freed: 0, cost: 0 });
      expect(cheapestEviction(list, 30 * MiB)).toEqual({ count: 2, freed: 60 * MiB, cost: 100 });
      expect(cheapestEviction(list, 500 * MiB)).toEqual({ count: 3, freed: 70 * MiB, cost: 200 });
      expect(evictionCost({ bytes: 10 * MiB, rate: 2 })).toBe(2 * (7 + 25));
    });
  });
});
