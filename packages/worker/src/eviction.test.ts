import {
  DEFAULT_RATE_HALF_LIFE_MS,
  EVICTION_POLICIES,
  MIN_RATE_WINDOW_MS,
  costPolicy,
  estimateReloadMs,
  evictionCost,
  observeUses,
  usageRate,
  type EvictionCandidate,
  type EvictionPolicy,
  fifoPolicy,
  lfuPolicy,
  lruPolicy,
  planEviction,
  resolveEvictionPolicy,
} from './eviction.js';

// Synthetic access traces: one event per clock tick (the event's index is its time).
type Event =
  { op: 'load'; owner: string; bytes?: number; pinned?: boolean } | { op: 'use'; owner: string } | { op: 'unload'; owner: string };

const load = (owner: string, bytes = 10, pinned = false): Event => ({ op: 'load', owner, bytes, pinned });
const use = (owner: string): Event => ({ op: 'use', owner });

/** Replays a trace into the candidates a worker would report at its end. */
function candidatesOf(trace: readonly Event[]): EvictionCandidate[] {
  const live = new Map<string, EvictionCandidate>();
  trace.forEach((e, t) => {
    if (e.op === 'load') {
      live.set(e.owner, {
        owner: e.owner,
        model: `model-${e.owner}`,
        bytes: e.bytes ?? 10,
        loadedAt: t,
        lastUsedAt: t,
        uses: 0,
        pinned: e.pinned ?? false,
      });
    } else if (e.op === 'use') {
      const c = live.get(e.owner)!;
      c.lastUsedAt = t;
      c.uses++;
    } else {
      live.delete(e.owner);
    }
  });
  return [...live.values()];
}

const owners = (cs: readonly EvictionCandidate[]) => cs.map((c) => c.owner);
const POLICIES = [fifoPolicy, lruPolicy, lfuPolicy, costPolicy];

describe('eviction order from access traces', () => {
  // [description, trace, fifo order, lru order, lfu order]
  const table: [string, Event[], string[], string[], string[]][] = [
    ['load A, B, use A', [load('A'), load('B'), use('A')], ['A', 'B'], ['B', 'A'], ['B', 'A']],
    [
      'load A, B, C; use A ×3, B ×1, C ×2; then B again',
      [load('A'), load('B'), load('C'), use('A'), use('A'), use('A'), use('C'), use('C'), use('B')],
      ['A', 'B', 'C'],
      ['A', 'C', 'B'],
      ['B', 'C', 'A'],
    ],
    [
      'LFU ties on uses → least recently used first',
      [load('A'), load('B'), load('C'), use('B'), use('A'), use('C')],
      ['A', 'B', 'C'],
      ['B', 'A', 'C'],
      ['B', 'A', 'C'],
    ],
    [
      'never used: LRU and LFU fall back to load order',
      [load('A'), load('B'), load('C')],
      ['A', 'B', 'C'],
      ['A', 'B', 'C'],
      ['A', 'B', 'C'],
    ],
    [
      'unloaded models are no candidates; a reload is new',
      [load('A'), load('B'), { op: 'unload', owner: 'A' }, load('A'), use('B')],
      ['B', 'A'],
      ['A', 'B'],
      ['A', 'B'],
    ],
    ['pinned models are never ordered', [load('A', 10, true), load('B'), load('C'), use('B')], ['B', 'C'], ['C', 'B'], ['C', 'B']],
  ];

  it.each(table)('%s', (_, trace, fifo, lru, lfu) => {
    const cs = candidatesOf(trace);
    expect(owners(fifoPolicy.order(cs))).toEqual(fifo);
    expect(owners(lruPolicy.order(cs))).toEqual(lru);
    expect(owners(lfuPolicy.order(cs))).toEqual(lfu);
  });

  it('budget fits 2 of 3: load A, B, use A, then C needs room → FIFO evicts A, LRU and LFU evict B', () => {
    const cs = candidatesOf([load('A'), load('B'), use('A')]);
    const budget = 20;
    const free = budget - cs.reduce((n, c) => n + c.bytes, 0);
    const evicted = (p: EvictionPolicy) => owners(planEviction(p, cs, 10, free).evict);
    expect(evicted(fifoPolicy)).toEqual(['A']);
    expect(evicted(lruPolicy)).toEqual(['B']);
    expect(evicted(lfuPolicy)).toEqual(['B']);
  });

  it('breaks full ties by owner, whatever the input order', () => {
    const same = (owner: string): EvictionCandidate => ({
      owner,
      model: 'm',
      bytes: 1,
      loadedAt: 5,
      lastUsedAt: 7,
      uses: 2,
      pinned: false,
    });
    const a = [same('r2'), same('r10'), same('r1'), same('b')];
    for (const p of POLICIES) {
      expect(owners(p.order(a))).toEqual(['b', 'r1', 'r10', 'r2']);
      expect(owners(p.order([...a].reverse()))).toEqual(['b', 'r1', 'r10', 'r2']);
    }
  });

  it('LFU ties on uses and last use → loaded longest ago', () => {
    const c = (owner: string, loadedAt: number): EvictionCandidate => ({
      owner,
      model: 'm',
      bytes: 1,
      loadedAt,
      lastUsedAt: 9,
      uses: 1,
      pinned: false,
    });
    expect(owners(lfuPolicy.order([c('a', 3), c('b', 1), c('c', 2)]))).toEqual(['b', 'c', 'a']);
  });
});

describe('cost policy', () => {
  const MiB = 1 << 20;
  const c = (owner: string, over: Partial<EvictionCandidate>): EvictionCandidate => ({
    owner,
    model: `model-${owner}`,
    bytes: 10 * MiB,
    loadedAt: 0,
    lastUsedAt: 0,
    uses: 0,
    pinned: false,
    ...over,
  });

  // [description, candidates, expected order]
  const table: [string, EvictionCandidate[], string[]][] = [
    [
      'same size and reload time: the less requested goes first',
      [c('hot', { rate: 50 }), c('warm', { rate: 5 }), c('cold', { rate: 0.2 })],
      ['cold', 'warm', 'hot'],
    ],
    [
      'same rate and size: the one quicker to reload goes first',
      [c('slow', { rate: 1, reloadMs: 400 }), c('quick', { rate: 1, reloadMs: 20 })],
      ['quick', 'slow'],
    ],
    [
      'same rate and reload time: the larger frees more per unit of cost, so it goes first',
      [c('small', { rate: 1, reloadMs: 100, bytes: 4 * MiB }), c('large', { rate: 1, reloadMs: 100, bytes: 64 * MiB })],
      ['large', 'small'],
    ],
    [
      'rate × reload / bytes: a 2× rate is outweighed by a 4× cheaper reload',
      [c('a', { rate: 2, reloadMs: 25 }), c('b', { rate: 1, reloadMs: 100 })],
      ['a', 'b'],
    ],
    [
      'recently used but rarely (a scan) goes before the steady favourite used a little earlier',
      [c('favourite', { rate: 20, lastUsedAt: 90 }), c('scanned', { rate: 0.2, lastUsedAt: 100, loadedAt: 99 })],
      ['scanned', 'favourite'],
    ],
    [
      'no rates known: least recently used first, then loaded longest ago',
      [c('A', { lastUsedAt: 5, loadedAt: 1 }), c('B', { lastUsedAt: 3, loadedAt: 2 }), c('C', { lastUsedAt: 5, loadedAt: 0 })],
      ['B', 'C', 'A'],
    ],
    [
      'no reload measured: estimated from bytes, so size still cancels for equal rates',
      [c('big', { rate: 1, bytes: 80 * MiB }), c('tiny', { rate: 1, bytes: 1 * MiB })],
      ['big', 'tiny'],
    ],
    ['pinned never ordered', [c('P', { pinned: true }), c('A', { rate: 3 })], ['A']],
  ];

  it.each(table)('%s', (_, cs, order) => {
    expect(owners(costPolicy.order(cs))).toEqual(order);
  });

  it('costs reload × rate per byte, with the estimate when no reload was measured', () => {
    expect(evictionCost(c('x', { rate: 4, reloadMs: 50, bytes: 100 }))).toBe(2);
    expect(evictionCost(c('x', { rate: 0, reloadMs: 50 }))).toBe(0);
    expect(evictionCost(c('x', { rate: 1, bytes: 10 * MiB }))).toBeCloseTo(estimateReloadMs(10 * MiB) / (10 * MiB));
    expect(estimateReloadMs(0)).toBe(7);
    expect(estimateReloadMs(100 * MiB)).toBe(257);
  });

  it('plans the cheapest prefix: keeps the hot model that LRU would evict after a scan', () => {
    // hot was used at t=90 at 20 req/s; the scan touched s1, s2 once at t=95..96; C needs 20 MiB.
    const cs = [
      c('hot', { rate: 20, loadedAt: 0, lastUsedAt: 90 }),
      c('s1', { rate: 0.2, loadedAt: 94, lastUsedAt: 95 }),
      c('s2', { rate: 0.2, loadedAt: 95, lastUsedAt: 96 }),
    ];
    expect(owners(planEviction(costPolicy, cs, 20 * MiB, 0).evict)).toEqual(['s1', 's2']);
    expect(owners(planEviction(lruPolicy, cs, 20 * MiB, 0).evict)).toEqual(['hot', 's1']);
  });
});

describe('decayed usage rate', () => {
  const H = DEFAULT_RATE_HALF_LIFE_MS;

  it('halves a count every half-life, and adds new uses at full weight', () => {
    let s = observeUses(undefined, 100, 0, 0);
    expect(s).toEqual({ count: 100, uses: 100, at: 0, since: 0 });
    s = observeUses(s, 100, H, 0);
    expect(s.count).toBeCloseTo(50);
    s = observeUses(s, 110, 2 * H, 0);
    expect(s.count).toBeCloseTo(35);
    expect(s.uses).toBe(110);
  });

  it('restarts for a new load (another loadedAt: a newcomer earns its place) or a counter that went back', () => {
    const s = observeUses(undefined, 50, 1000, 0);
    expect(observeUses(s, 3, 2000, 1500)).toEqual({ count: 3, uses: 3, at: 2000, since: 1500 });
    expect(observeUses(s, 10, 2000, 0)).toEqual({ count: 10, uses: 10, at: 2000, since: 0 });
  });

  it('never decays backwards when the clock does', () => {
    const s = observeUses(undefined, 10, 5000, 0);
    expect(observeUses(s, 12, 4000, 0)).toEqual({ count: 12, uses: 12, at: 5000, since: 0 });
  });

  // [description, steady rate req/s, observe every ms, for ms, expected rate within 10 %]
  it.each([
    ['a steady 10 req/s over 5 half-lives reads ≈ 10', 10, 250, 5 * H, 10],
    ['a steady 0.5 req/s reads ≈ 0.5', 0.5, 1000, 5 * H, 0.5],
    ['a young replica at 8 req/s for 20 s reads ≈ 8', 8, 250, 20_000, 8],
  ] as [string, number, number, number, number][])('%s', (_, rate, every, forMs, expected) => {
    let s: ReturnType<typeof observeUses> | undefined;
    for (let t = 0; t <= forMs; t += every) s = observeUses(s, Math.floor((rate * t) / 1000), t, 0);
    expect(usageRate(s!, forMs)).toBeGreaterThan(expected * 0.9);
    expect(usageRate(s!, forMs)).toBeLessThan(expected * 1.1);
  });

  it('one request just after a load is no hot model: the window is at least MIN_RATE_WINDOW_MS', () => {
    const s = observeUses(undefined, 1, 100, 0);
    expect(usageRate(s, 100)).toBeCloseTo(1000 / MIN_RATE_WINDOW_MS);
  });

  it('yesterday’s favourite fades: 4 half-lives after its traffic stopped it reads 1/16 of its rate', () => {
    let s: ReturnType<typeof observeUses> | undefined;
    for (let t = 0; t <= 10 * H; t += 500) s = observeUses(s, Math.floor((20 * t) / 1000), t, 0);
    const before = usageRate(s!, 10 * H);
    expect(usageRate(s!, 14 * H) / before).toBeCloseTo(1 / 16, 1);
  });
});

describe('planEviction', () => {
  // A (30, oldest) … D (40, newest); pinned P (100) is oldest of all.
  const cs = candidatesOf([load('P', 100, true), load('A', 30), load('B', 10), load('C', 20), load('D', 40)]);

  it.each([
    // [needed, free, evict (FIFO order A, B, C, D), fits]
    [10, 10, [], true],
    [0, 0, [], true],
    [11, 10, ['A'], true],
    [40, 10, ['A'], true],
    [41, 10, ['A', 'B'], true],
    [50, 10, ['A', 'B'], true],
    [51, 10, ['A', 'B', 'C'], true],
    [110, 10, ['A', 'B', 'C', 'D'], true],
    [111, 10, [], false], // every unpinned gone is still short: evict nothing
    [500, 0, [], false],
  ] as [number, number, string[], boolean][])('needs %d with %d free → evicts %j, fits %s', (needed, free, evict, fits) => {
    expect(planEviction(fifoPolicy, cs, needed, free)).toEqual({
      evict: cs.filter((c) => evict.includes(c.owner)).sort((a, b) => a.loadedAt - b.loadedAt),
      fits,
    });
  });

  it('returns the candidates themselves, in the policy order', () => {
    const plan = planEviction(lruPolicy, cs, 100, 45);
    expect(plan.fits).toBe(true);
    for (const c of plan.evict) expect(cs).toContain(c);
  });

  it('never evicts pinned, even when only the pinned one would make room', () => {
    const only = candidatesOf([load('P', 100, true), load('A', 5)]);
    for (const p of POLICIES) expect(planEviction(p, only, 50, 0)).toEqual({ evict: [], fits: false });
  });

  it('skips pinned candidates returned by a misbehaving policy', () => {
    const sloppy: EvictionPolicy = { name: 'sloppy', order: (c) => [...c] };
    const plan = planEviction(sloppy, cs, 40, 0);
    expect(owners(plan.evict)).toEqual(['A', 'B']);
    expect(plan.fits).toBe(true);
  });

  it('handles no candidates', () => {
    expect(planEviction(lruPolicy, [], 1, 0)).toEqual({ evict: [], fits: false });
    expect(planEviction(lruPolicy, [], 1, 1)).toEqual({ evict: [], fits: true });
  });

  it('never mutates its inputs', () => {
    const input = candidatesOf([load('A', 30), load('B', 10), use('A'), load('C', 20, true), use('B')]);
    const snapshot = structuredClone(input);
    const order = owners(input);
    Object.freeze(input);
    input.forEach((c) => Object.freeze(c));
    for (const p of POLICIES) {
      p.order(input);
      planEviction(p, input, 35, 0);
      planEviction(p, input, 1000, 0);
    }
    expect(input).toEqual(snapshot);
    expect(owners(input)).toEqual(order);
  });
});

describe('policy registry', () => {
  it('knows fifo, lru and lfu', () => {
    expect([...EVICTION_POLICIES.keys()]).toEqual(expect.arrayContaining(['fifo', 'lru', 'lfu']));
    expect(resolveEvictionPolicy('fifo')).toBe(fifoPolicy);
    expect(resolveEvictionPolicy('lru')).toBe(lruPolicy);
    expect(resolveEvictionPolicy('lfu')).toBe(lfuPolicy);
  });

  it('rejects an unknown name with BAD_REQUEST listing the known ones', () => {
    let err: unknown;
    try {
      resolveEvictionPolicy('mru');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'BAD_REQUEST', name: 'BadRequestError' });
    expect((err as Error).message).toMatch(/mru/);
    for (const name of ['fifo', 'lru', 'lfu', 'cost']) expect((err as Error).message).toContain(name);
  });

  it('knows cost', () => {
    expect(resolveEvictionPolicy('cost')).toBe(costPolicy);
  });

  it('knows only the built-ins by name; another policy is planned with directly', () => {
    expect([...EVICTION_POLICIES.keys()].sort()).toEqual(['cost', 'fifo', 'lfu', 'lru']);
    const biggest: EvictionPolicy = {
      name: 'largest-first',
      order: (cs) => cs.filter((c) => !c.pinned).sort((a, b) => b.bytes - a.bytes),
    };
    expect(() => resolveEvictionPolicy('largest-first')).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    const cs = candidatesOf([load('A', 10), load('B', 40), load('C', 20)]);
    expect(owners(planEviction(biggest, cs, 30, 0).evict)).toEqual(['B']);
  });
});

describe('randomized traces (seeded)', () => {
  /** mulberry32: small, deterministic PRNG in [0, 1). */
  function rng(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  it.each(POLICIES.flatMap((p) => [1, 2, 3, 42, 1234].map((seed) => [p.name, seed] as const)))(
    '%s, seed %d: simulated device never exceeds its budget and evicts minimally',
    (name, seed) => {
      const policy = resolveEvictionPolicy(name);
      const rand = rng(seed);
      const budget = 1000;
      const live = new Map<string, EvictionCandidate>();
      const used = () => [...live.values()].reduce((n, c) => n + c.bytes, 0);
      let loads = 0;
      let refused = 0;
      let evictions = 0;

      for (let t = 0; t < 2000; t++) {
        const r = rand();
        const present = [...live.values()];
        if (r < 0.35 || present.length === 0) {
          const owner = `r${t}`;
          const bytes = 1 + Math.floor(rand() * 400);
          const pinned = rand() < 0.1;
          const before = present.map((c) => ({ ...c }));
          const plan = planEviction(policy, present, bytes, budget - used());
          expect(present.map((c) => ({ ...c }))).toEqual(before);
          if (!plan.fits) {
            expect(plan.evict).toEqual([]);
            const reclaimable = present.filter((c) => !c.pinned).reduce((n, c) => n + c.bytes, 0);
            expect(budget - used() + reclaimable).toBeLessThan(bytes);
            refused++;
            continue;
          }
          // Minimal prefix of the policy's order, pinned never included.
          expect(plan.evict).toEqual(policy.order(present).slice(0, plan.evict.length));
          for (const c of plan.evict) expect(c.pinned).toBe(false);
          const freed = (cs: EvictionCandidate[]) => cs.reduce((n, c) => n + c.bytes, 0);
          if (plan.evict.length > 0) {
            expect(budget - used() + freed(plan.evict.slice(0, -1))).toBeLessThan(bytes);
          }
          for (const c of plan.evict) live.delete(c.owner);
          evictions += plan.evict.length;
          live.set(owner, { owner, model: `m${t % 7}`, bytes, loadedAt: t, lastUsedAt: t, uses: 0, pinned });
          loads++;
        } else if (r < 0.95) {
          const c = present[Math.floor(rand() * present.length)]!;
          c.lastUsedAt = t;
          c.uses++;
        } else {
          live.delete(present[Math.floor(rand() * present.length)]!.owner);
        }
        expect(used()).toBeLessThanOrEqual(budget);
      }
      // The trace exercised every branch.
      expect(loads).toBeGreaterThan(100);
      expect(evictions).toBeGreaterThan(50);
      expect(refused).toBeGreaterThan(0);
    },
  );
});
