import {
  bounds,
  checkBody,
  checkTargets,
  checkText,
  chosenLoss,
  chosenLossText,
  pairedVsBounds,
  targetsLine,
  TARGETS,
  type Bounds,
  type CheckInputs,
  type TargetCheck,
} from './bounds.js';

// conv-classifier on this 2-core VM (pnpm bench, 2026-11-30 23:40 UTC): its sweep's CPU per item,
// the empty responder's CPU per 49 KB request, and the peers' rates.
const ccSweep = [
  { batch: 1, itemsPerSec: 3070, cpuUsPerItem: 315.45 },
  { batch: 4, itemsPerSec: 3242, cpuUsPerItem: 298.97 },
  { batch: 8, itemsPerSec: 3301.9, cpuUsPerItem: 294.25 },
  { batch: 32, itemsPerSec: 3024.1, cpuUsPerItem: 320.88 },
];

describe('bounds', () => {
  test('the most a one-core nats.js server serves: the model at its best batch plus the bare responder, per item', () => {
    const b = bounds({
      sweep: ccSweep,
      inprocBest: 3301.9,
      chosenBatch: 16,
      responderUsPerMsg: 30,
      rawC1P50Ms: 0.2144,
      peers: { moleculer: 2160.79 },
    })!;
    expect(b.modelUsPerItem).toBe(294.3);
    expect(b.itemsPerSec).toBeCloseTo(1e6 / 324.25, 0); // 3,084 items/s
    expect(b.ceiling).toBeCloseTo(0.934, 3);
    // Chosen 16: the sweep's largest size within it is 8 (its rate and CPU there).
    expect(b.atChosen).toBeCloseTo(1e6 / 324.25 / 3301.9, 3);
    expect(bounds({ sweep: ccSweep, inprocBest: 3301.9, chosenBatch: 32, responderUsPerMsg: 30, peers: {} })!.atChosen).toBeCloseTo(
      1e6 / 350.88 / 3024.1,
      3,
    );
    expect(b.vs).toEqual({ moleculer: 1.427, triton: null, rayServe: null });
    expect(b.c1AddedMs).toBe(0.214);
  });
  test("a sweep row without its own CPU counts at its rate's reciprocal; unusable rows are skipped", () => {
    const b = bounds({
      sweep: [
        { batch: 1, itemsPerSec: 1000 },
        { batch: 2, itemsPerSec: 0 },
        { batch: 4, itemsPerSec: 2000 },
      ],
      inprocBest: 2000,
      responderUsPerMsg: 500,
      peers: { rayServe: 100, triton: 0 },
    })!;
    expect(b.modelUsPerItem).toBe(500);
    expect(b.itemsPerSec).toBe(1000);
    expect(b.ceiling).toBe(0.5);
    expect(b.vs).toEqual({ moleculer: null, triton: null, rayServe: 10 });
    expect(b.c1AddedMs).toBeNull();
    expect(b.atChosen).toBeNull();
  });
  test('none without the responder’s CPU, a usable sweep or an in-process best', () => {
    expect(bounds({ sweep: ccSweep, inprocBest: 3300, peers: {} })).toBeNull();
    expect(bounds({ sweep: [], inprocBest: 3300, responderUsPerMsg: 30, peers: {} })).toBeNull();
    expect(bounds({ sweep: [{ batch: 1, itemsPerSec: 0 }], inprocBest: 3300, responderUsPerMsg: 30, peers: {} })).toBeNull();
    expect(bounds({ sweep: ccSweep, inprocBest: 0, responderUsPerMsg: 30, peers: {} })).toBeNull();
    expect(bounds({ sweep: ccSweep, inprocBest: 3300, responderUsPerMsg: NaN, peers: {} })).toBeNull();
  });
});

const noPeers = { moleculer: { items: null, p99: null }, triton: { items: null, p99: null }, rayServe: { items: null, p99: null } };
const ccBounds: Bounds = {
  modelUsPerItem: 294.3,
  responderUsPerMsg: 30,
  itemsPerSec: 3084,
  ceiling: 0.934,
  atChosen: 0.966,
  vs: { moleculer: 1.427, triton: 2.38, rayServe: 6.6 },
  c1AddedMs: 0.214,
};

describe('checkTargets', () => {
  test('a compute-bound model: the ceiling targets and every peer that ran; a target beyond its bound is out of reach', () => {
    const checks = checkTargets({
      ratios: { ceiling_ratio: 0.815, ceiling_at_chosen: 0.85, c1_added_ms: 0.5, broker_ratio: 0.27 },
      peers: { ...noPeers, moleculer: { items: 1.246, p99: 0.773 }, triton: { items: 1.63, p99: 1.2 } },
      bounds: ccBounds,
      computeBound: true,
    });
    expect(checks.map((c) => [c.target, c.status])).toEqual([
      ['ceiling', 'met'],
      ['@chosen', 'met'],
      ['÷ Moleculer', 'out of reach here'],
      ['p99 ÷ Moleculer', 'met'],
      ['÷ Triton', 'met'],
      ['p99 ÷ Triton', 'missed'],
    ]);
    expect(checks[2]).toEqual({
      target: '÷ Moleculer',
      sense: 'min',
      goal: 1.5,
      measured: 1.246,
      bound: 1.427,
      status: 'out of reach here',
    });
  });
  test('a model the broker bounds: the broker and c=1 targets, the latter out of reach where raw NATS alone takes longer', () => {
    const slow = checkTargets({
      ratios: { ceiling_ratio: 0.004, ceiling_at_chosen: 0.004, c1_added_ms: 0.42, broker_ratio: 0.79 },
      peers: noPeers,
      bounds: { ...ccBounds, c1AddedMs: 0.35 },
      computeBound: false,
    });
    expect(slow.map((c) => [c.target, c.status])).toEqual([
      ['broker', 'missed'],
      ['c=1 +ms', 'out of reach here'],
    ]);
    const fast = checkTargets({
      ratios: { ceiling_ratio: 0.004, ceiling_at_chosen: 0.004, c1_added_ms: 0.339, broker_ratio: 0.933 },
      peers: noPeers,
      bounds: ccBounds,
      computeBound: false,
    });
    expect(fast.map((c) => [c.target, c.status])).toEqual([
      ['broker', 'met'],
      ['c=1 +ms', 'missed'],
    ]);
  });
  test('exactly at the goal is met; no figure is not measured; no bound is a plain miss', () => {
    const checks = checkTargets({
      ratios: { ceiling_ratio: TARGETS.ceiling, ceiling_at_chosen: null, c1_added_ms: null, broker_ratio: null },
      peers: { ...noPeers, rayServe: { items: 2.41, p99: 0.43 } },
      bounds: null,
      computeBound: true,
    });
    expect(checks.map((c) => [c.target, c.status, c.bound])).toEqual([
      ['ceiling', 'met', null],
      ['@chosen', 'not measured', null],
      ['÷ Ray Serve', 'missed', null],
      ['p99 ÷ Ray Serve', 'met', null],
    ]);
  });
});

describe('text', () => {
  test('what was missed and what no server here could meet, with the bound', () => {
    const checks = checkTargets({
      ratios: { ceiling_ratio: 0.628, ceiling_at_chosen: 0.691, c1_added_ms: 0.5, broker_ratio: 0.27 },
      peers: { ...noPeers, moleculer: { items: 1.16, p99: 0.744 } },
      bounds: ccBounds,
      computeBound: true,
    });
    expect(checkText(checks[2]!)).toBe('÷ Moleculer 1.16 < 1.5 (at most 1.43 here)');
    expect(checkText({ ...checks[2]!, drift: 0.2 })).toBe('÷ Moleculer 1.16 < 1.5 (at most 1.43 here; host +20 %)');
    expect(checkText({ ...checks[2]!, drift: 0.05 })).toBe('÷ Moleculer 1.16 < 1.5 (at most 1.43 here)');
    expect(targetsLine(checks)).toBe(
      'met p99 ÷ Moleculer | missed ceiling 0.628 < 0.7 (at most 0.934 here); @chosen 0.691 < 0.85 (at most 0.966 here) | out of reach on this core ÷ Moleculer 1.16 < 1.5 (at most 1.43 here)',
    );
    expect(targetsLine([])).toBe('met none');
  });
  test('a ratio whose phases ran at speeds more than 10 % apart says so beside its verdict, met or not; p99 and c=1 carry none', () => {
    const checks = checkTargets({
      ratios: { ceiling_ratio: 0.75, ceiling_at_chosen: 0.8, c1_added_ms: 0.5, broker_ratio: 0.27 },
      peers: { ...noPeers, moleculer: { items: 1.6, p99: 0.7 }, triton: { items: 1.2, p99: 0.5 } },
      bounds: null,
      computeBound: true,
      drift: { ceiling: -0.172, vs: { moleculer: 0.14, triton: 0.05 } },
    });
    expect(checks.map((c) => [c.target, c.drift])).toEqual([
      ['ceiling', -0.172],
      ['@chosen', -0.172],
      ['÷ Moleculer', 0.14],
      ['p99 ÷ Moleculer', undefined],
      ['÷ Triton', 0.05],
      ['p99 ÷ Triton', undefined],
    ]);
    expect(targetsLine(checks)).toBe(
      'met ceiling (host −17 %), ÷ Moleculer (host +14 %), p99 ÷ Moleculer, p99 ÷ Triton | missed @chosen 0.8 < 0.85 (host −17 %); ÷ Triton 1.2 < 1.5',
    );
    const broker = checkTargets({
      ratios: { ceiling_ratio: null, ceiling_at_chosen: null, c1_added_ms: 0.2, broker_ratio: 0.9 },
      peers: noPeers,
      bounds: null,
      computeBound: false,
      drift: { ceiling: 0.5, broker: 0.101 },
    });
    expect(targetsLine(broker)).toBe('met broker (host +10 %), c=1 +ms');
  });
});

describe('paired ceilings', () => {
  // pnpm bench, 2026-12-01 08:30 UTC (Intel Xeon): wide-mlp, the run 0.622 over a sweep taken on a faster host, paired 0.753.
  const run = { ceiling_ratio: 0.622, ceiling_at_chosen: 0.622, c1_added_ms: null, broker_ratio: 0.15 };
  /** The wide-mlp run's checks with `o` on top (no peers, no bounds, compute-bound unless said). */
  const checkRun = (o: Partial<CheckInputs>) => checkTargets({ ratios: run, peers: noPeers, bounds: null, computeBound: true, ...o });
  /** What each test compares of a check. */
  const row = (c: TargetCheck) => [c.target, c.measured, c.status, c.unpaired, c.drift];
  test('the paired ratios are what the ceiling targets check, the run beside them, and no drift note', () => {
    const checks = checkRun({ drift: { ceiling: -0.17 }, paired: { ceiling: 0.753, atChosen: 0.753 } });
    expect(checks.map(row)).toEqual([
      ['ceiling', 0.753, 'met', 0.622, undefined],
      ['@chosen', 0.753, 'missed', 0.622, undefined],
    ]);
    expect(targetsLine(checks)).toBe('met ceiling (paired; one run 0.622) | missed @chosen 0.753 < 0.85 (paired; one run 0.622)');
  });
  test('a paired ratio that could not be measured leaves the run and its drift to the verdict', () => {
    const checks = checkRun({ drift: { ceiling: -0.17 }, paired: { ceiling: null, atChosen: null } });
    expect(checks.map(row)).toEqual([
      ['ceiling', 0.622, 'missed', undefined, -0.17],
      ['@chosen', 0.622, 'missed', undefined, -0.17],
    ]);
  });
  test('each peer ratio checks Flotilla ÷ the peer measured in turns where there is one, the run beside it', () => {
    const checks = checkRun({
      peers: { ...noPeers, moleculer: { items: 1.16, p99: 0.7 }, triton: { items: 1.41, p99: 0.6 } },
      drift: { vs: { moleculer: 0.14, triton: 0.24 } },
      paired: { ceiling: null, atChosen: null, vs: { moleculer: null, triton: 1.62 } },
    });
    expect(checks.filter((c) => c.target.startsWith('÷')).map(row)).toEqual([
      ['÷ Moleculer', 1.16, 'missed', undefined, 0.14],
      ['÷ Triton', 1.62, 'met', 1.41, undefined],
    ]);
  });

  test('a bound the paired figure is above (measured at another speed of the host) is left out: missed, not out of reach', () => {
    // conv-classifier, 2026-12-01: ÷ Moleculer paired 1.31, one run 0.908, the bound from the one run's Moleculer rate 1.16.
    const checks = checkRun({
      peers: { ...noPeers, moleculer: { items: 0.908, p99: 0.5 } },
      bounds: { ...ccBounds, vs: { moleculer: 1.16, triton: null, rayServe: null } },
      paired: { ceiling: null, atChosen: null, vs: { moleculer: 1.31 } },
    });
    const m = checks.find((c) => c.target === '÷ Moleculer')!;
    expect([m.measured, m.bound, m.status]).toEqual([1.31, null, 'missed']);
    const within = checkRun({
      peers: { ...noPeers, moleculer: { items: 0.908, p99: 0.5 } },
      bounds: { ...ccBounds, vs: { moleculer: 1.4, triton: null, rayServe: null } },
      paired: { ceiling: null, atChosen: null, vs: { moleculer: 1.31 } },
    });
    expect(within.find((c) => c.target === '÷ Moleculer')!.status).toBe('out of reach here');
  });

  // conv-classifier, pnpm bench 2026-12-01 10:47 UTC (AMD EPYC): the bound's 1,825.8 items/s over the
  // sweep's 2,083.6 at batch 4, the cluster at 0.778 of the probe in turns, Flotilla ÷ Moleculer 1.226
  // and ÷ Triton 3.279 in turns. The one-run bound ÷ Moleculer was 1.725 (Moleculer's own run, 1,058
  // items/s, on a slow stretch: 1,270–1,433 in its turns).
  const ccTurns = { bounds: { ...ccBounds, itemsPerSec: 1825.8, vs: { moleculer: 1.725, triton: 4.569, rayServe: null } } };
  test.each([
    [
      'each paired peer ratio × the bound ÷ the cluster at the probe’s pace',
      2083.6,
      0.778,
      { moleculer: 1.226, triton: 3.279 },
      { moleculer: 1.381, triton: 3.693, rayServe: null },
    ],
    [
      'a peer with no ratio in turns has no paired bound',
      2083.6,
      0.778,
      { moleculer: null, triton: 3.279 },
      { moleculer: null, triton: 3.693, rayServe: null },
    ],
    [
      'the cluster at the bound in its turns: the bound is the paired ratio',
      1825.8,
      1,
      { moleculer: 1.226 },
      { moleculer: 1.226, triton: null, rayServe: null },
    ],
    ['no paired @chosen: none', 2083.6, null, { moleculer: 1.226 }, null],
    ['a zero @chosen: none', 2083.6, 0, { moleculer: 1.226 }, null],
    ['no sweep rate at the probe’s batch: none', 0, 0.778, { moleculer: 1.226 }, null],
  ])('pairedVsBounds: %s', (_, sweepAtProbe, atChosen, vs, expected) => {
    expect(pairedVsBounds({ ...ccTurns, sweepAtProbe, atChosen, vs })).toEqual(expected);
  });

  test('a paired peer ratio is checked against the bound from the turns; an unpaired one against the one-run bound', () => {
    const pairedVs = pairedVsBounds({ ...ccTurns, sweepAtProbe: 2083.6, atChosen: 0.778, vs: { moleculer: 1.226, triton: 3.279 } })!;
    const checks = checkRun({
      peers: { ...noPeers, moleculer: { items: 1.45, p99: 0.49 }, triton: { items: 3.84, p99: 0.34 }, rayServe: { items: 2.5, p99: 0.8 } },
      bounds: { ...ccTurns.bounds, vs: { moleculer: 1.725, triton: 4.569, rayServe: 2.9 }, pairedVs },
      paired: { ceiling: 0.745, atChosen: 0.778, vs: { moleculer: 1.226, triton: 3.279, rayServe: null } },
    });
    expect(checks.filter((c) => c.target.startsWith('÷')).map((c) => [c.target, c.measured, c.bound, c.status])).toEqual([
      ['÷ Moleculer', 1.226, 1.381, 'out of reach here'],
      ['÷ Triton', 3.279, 3.693, 'met'],
      ['÷ Ray Serve', 2.5, 2.9, 'out of reach here'],
    ]);
    // Without the turns' bound the same ratio is a miss under the one-run bound.
    const oneRun = checkRun({
      peers: { ...noPeers, moleculer: { items: 1.45, p99: 0.49 } },
      bounds: ccTurns.bounds,
      paired: { ceiling: 0.745, atChosen: 0.778, vs: { moleculer: 1.226 } },
    });
    expect(oneRun.find((c) => c.target === '÷ Moleculer')).toMatchObject({ bound: 1.725, status: 'missed' });
  });

  test('not compute-bound: the broker target checks the broker ratio paired with raw NATS; the ceilings do not enter', () => {
    const checks = checkRun({ computeBound: false, drift: { broker: 0.23 }, paired: { ceiling: 0.9, atChosen: 0.9, broker: 0.84 } });
    expect(checks.map(row)).toEqual([
      ['broker', 0.84, 'met', 0.15, undefined],
      ['c=1 +ms', null, 'not measured', undefined, undefined],
    ]);
    const unpaired = checkRun({ computeBound: false, drift: { broker: 0.23 }, paired: { ceiling: null, atChosen: null, broker: null } });
    expect(unpaired.map((c) => [c.target, c.measured, c.unpaired, c.drift])[0]).toEqual(['broker', 0.15, undefined, 0.23]);
  });
});

// pnpm bench, 2026-12-01 03:18 UTC (AMD EPYC): wide-mlp's and conv-classifier's best points at c=128.
const wideSweep = [
  { batch: 64, itemsPerSec: 11922.5, cpuUsPerItem: 83.78 },
  { batch: 128, itemsPerSec: 13187.9, cpuUsPerItem: 75.73 },
];
const ccToday = [
  { batch: 16, itemsPerSec: 7336.5, cpuUsPerItem: 135.82 },
  { batch: 32, itemsPerSec: 7126, cpuUsPerItem: 140.09 },
  { batch: 64, itemsPerSec: 5674.2, cpuUsPerItem: 175.98 },
];

describe('chosenLoss', () => {
  test.each([
    {
      // Served batches averaged 63.8 (pairs summing to 128): the model cost 82.9 µs per item there against 75.7 at 128.
      name: 'wide-mlp: smaller batches than chosen and per-request work',
      sweep: wideSweep,
      chosenBatch: 128,
      worker: { busy: 0.958, modelUsPerItem: 82.9, otherUsPerItem: 17.2 },
      responder: 3.5,
      want: { busy: 0.958, batches: 0.914, perRequest: 0.828, perRequestFloor: 0.959, product: 0.725 },
      measured: 0.726,
    },
    {
      name: 'conv-classifier: batches as chosen, the loss is the work besides the model',
      sweep: ccToday,
      chosenBatch: 32,
      worker: { busy: 0.958, modelUsPerItem: 140.1, otherUsPerItem: 30.7 },
      responder: 16.4,
      want: { busy: 0.958, batches: 1, perRequest: 0.82, perRequestFloor: 0.895, product: 0.786 },
      measured: 0.787,
    },
    {
      // Chosen 48: the sweep's largest size within it (32) is the chosen size's cost.
      name: 'a chosen size between sweep rows takes the largest row within it',
      sweep: ccToday,
      chosenBatch: 48,
      worker: { busy: 1, modelUsPerItem: 140.09, otherUsPerItem: 0 },
      responder: undefined,
      want: { busy: 1, batches: 1, perRequest: 1, perRequestFloor: 1, product: 1 },
      measured: 1,
    },
  ])('$name', ({ sweep, chosenBatch, worker, responder, want, measured }) => {
    const l = chosenLoss({ sweep, chosenBatch, worker, responderUsPerMsg: responder })!;
    expect(l).toEqual(want);
    expect(Math.abs(l.product - measured)).toBeLessThan(0.01);
    expect(chosenLossText(l, measured)).toContain(`= ${l.product} (measured ${measured})`);
  });

  test("nothing to say without the worker's split, a chosen size or a CPU figure there", () => {
    const worker = { busy: 0.9, modelUsPerItem: 100, otherUsPerItem: 10 };
    expect(chosenLoss({ sweep: wideSweep, chosenBatch: 128 })).toBeNull();
    expect(chosenLoss({ sweep: wideSweep, chosenBatch: 128, worker: { busy: 0.9 } })).toBeNull();
    expect(chosenLoss({ sweep: wideSweep, worker })).toBeNull();
    expect(chosenLoss({ sweep: wideSweep, chosenBatch: 8, worker })).toBeNull(); // no row within 8
    expect(chosenLoss({ sweep: [{ batch: 1, itemsPerSec: 0 }], chosenBatch: 8, worker })).toBeNull();
    expect(chosenLoss({ sweep: wideSweep, chosenBatch: 128, worker: { ...worker, busy: 0 } })).toBeNull();
  });
});

describe('checkBody', () => {
  // pnpm bench, 2026-12-01 11:40 UTC (AMD EPYC): 8 MiB direct through a replica 191.7 MB/s per
  // direction, raw NATS 250.5 MB/s one way and 270.8 the other (there and back: 260.3).
  test.each([
    ['under a raw NATS under the goal: out of reach', 191.7, { requestMBps: 250.5, replyMBps: 270.8 }, 260.3, 'out of reach here'],
    ['under the goal where raw NATS is above it: missed', 241, { requestMBps: 325, replyMBps: 400 }, 358.6, 'missed'],
    ['at the goal: met', 300, { requestMBps: 386, replyMBps: 512 }, 440.2, 'met'],
    ['above its bound (measured apart): the bound is left out', 290, { requestMBps: 250.5, replyMBps: 270.8 }, null, 'missed'],
    ['no raw figure: no bound', 250, null, null, 'missed'],
    ['no figure through a replica: not measured', null, { requestMBps: 250.5, replyMBps: 270.8 }, 260.3, 'not measured'],
  ] as const)('%s', (_, direct, raw, bound, status) => {
    const c = checkBody(8, direct, raw);
    expect([c.target, c.goal, c.measured, c.bound, c.status]).toEqual(['8 MiB body', 300, direct, bound, status]);
  });

  test('the verdict line names each size', () => {
    const checks = [
      checkBody(8, 191.7, { requestMBps: 250.5, replyMBps: 270.8 }),
      checkBody(64, 310, { requestMBps: 330, replyMBps: 340 }),
    ];
    expect(targetsLine(checks, 'on this machine')).toBe(
      'met 64 MiB body | out of reach on this machine 8 MiB body 192 < 300 (at most 260 here)',
    );
  });
});
