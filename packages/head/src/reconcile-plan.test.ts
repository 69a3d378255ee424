import { parseDeploySpec, type DeploySpec, type ReplicaState } from '@flotilla/protocol';
import { Autoscaler } from './autoscaler.js';
import type { IndexedReplica } from './cluster-view.js';
import { newDeployment, type Deployment } from './deployment.js';
import type { WorkerView } from './placement.js';
import { countedReplicas, planAutoscale, planOrphans, planReconcile, replicaBytes, type ReconcilePlan } from './reconcile-plan.js';
import type { WorkerRecord } from './registry.js';
import { replicaState } from './testing/replica-state.js';

const MiB = 1024 * 1024;
const OLD = 'a'.repeat(64);
const NEW = 'b'.repeat(64);
const NOW = 100_000;

const spec = (over: Partial<DeploySpec> = {}): DeploySpec =>
  parseDeploySpec({ name: 'm', digest: NEW, sizeBytes: 10 * MiB, memoryBytes: 100 * MiB, device: 'cpu', replicas: 1, ...over });
const dep = (over: Partial<DeploySpec> = {}, change: (d: Deployment) => void = () => undefined): Deployment => {
  const d = newDeployment(spec(over), 0, 0, 0);
  change(d);
  return d;
};
const rep = (id: string, workerId: string, order: number, over: Partial<ReplicaState> = {}): IndexedReplica => ({
  workerId,
  order,
  r: replicaState(id, 'm', { digest: NEW, bytes: 100 * MiB, ...over }),
});
/** A worker with one cpu device of `freeMiB` free. */
const worker = (id: string, freeMiB: number): WorkerView => ({
  id,
  schedulable: true,
  replicasByModel: {},
  devices: [{ id: 'cpu', kind: 'cpu', budgetBytes: 1000 * MiB, usedBytes: (1000 - freeMiB) * MiB }],
});
const pend = (d: Deployment, id: string, workerId: string, repliedAt?: number) =>
  d.pending.set(id, { workerId, device: 'cpu', bytes: 100 * MiB, sentAt: 0, repliedAt });
const refuse = (d: Deployment, device: string, until: number) =>
  (d.refused ??= new Map()).set(device, { until, error: { code: 'NO_CAPACITY', message: `${device} refused` } });
const plan = (d: Deployment, replicas: IndexedReplica[], workers: WorkerView[], now = NOW) =>
  planReconcile(d, replicas, { workers: () => workers }, now);
const loadsOn = (p: ReconcilePlan) => p.loads.map((l) => `${l.workerId}/${l.device}`);

describe('planReconcile', () => {
  type Case = [string, Deployment, IndexedReplica[], WorkerView[], Partial<ReconcilePlan> & { loadsOn?: string[] }];
  const cases: Case[] = [
    [
      'no workers: nothing placed, NO_CAPACITY says why',
      dep(),
      [],
      [],
      { loads: [], failure: { code: 'NO_CAPACITY', message: "1 replica(s) of 'm' cannot be placed: no live workers" } },
    ],
    [
      'fits: replicas spread over workers, charged the spec memory',
      dep({ replicas: 2 }),
      [],
      [worker('w0', 900), worker('w1', 500)],
      { loadsOn: ['w0/cpu', 'w1/cpu'], failure: undefined, satisfied: false },
    ],
    [
      'only the missing replicas are placed',
      dep({ replicas: 3 }),
      [rep('m-1', 'w0', 0), rep('m-2', 'w1', 0)],
      [worker('w0', 900), worker('w1', 900)],
      { loadsOn: ['w0/cpu'] },
    ],
    [
      'does not fit',
      dep(),
      [],
      [worker('w0', 50)],
      {
        loads: [],
        failure: { code: 'NO_CAPACITY', message: `1 replica(s) of 'm' cannot be placed: no cpu device has ${100 * MiB} bytes free` },
      },
    ],
    [
      'some fit: no failure recorded for the rest',
      dep({ replicas: 3 }),
      [],
      [worker('w0', 250)],
      { loadsOn: ['w0/cpu', 'w0/cpu'], failure: undefined },
    ],
    [
      'a refusing device is skipped',
      dep({}, (d) => refuse(d, 'w0/cpu', NOW + 1)),
      [],
      [worker('w0', 900), worker('w1', 100)],
      { loadsOn: ['w1/cpu'] },
    ],
    [
      'only refusing devices: its own words are the failure',
      dep({}, (d) => refuse(d, 'w0/cpu', NOW + 1)),
      [],
      [worker('w0', 900)],
      { loads: [], failure: { code: 'NO_CAPACITY', message: 'w0/cpu refused' } },
    ],
    [
      'an expired refusal no longer skips',
      dep({}, (d) => refuse(d, 'w0/cpu', NOW)),
      [],
      [worker('w0', 900), worker('w1', 100)],
      { loadsOn: ['w0/cpu'] },
    ],
    [
      'dormant: nothing placed, no failure',
      dep({}, (d) => (d.dormant = true)),
      [],
      [worker('w0', 900)],
      { loads: [], held: 'dormant', failure: undefined },
    ],
    [
      'backing off',
      dep({}, (d) => Object.assign(d, { failures: 2, retryAt: NOW + 1 })),
      [],
      [worker('w0', 900)],
      { loads: [], held: 'backing-off' },
    ],
    [
      'back-off over: placed again',
      dep({}, (d) => Object.assign(d, { failures: 2, retryAt: NOW })),
      [],
      [worker('w0', 900)],
      { loadsOn: ['w0/cpu'], held: undefined },
    ],
    ['settle period after a takeover', dep({}, (d) => (d.retryAt = NOW + 2500)), [], [worker('w0', 900)], { loads: [], held: 'settling' }],
    [
      'max loads in flight reached: no more sent',
      dep({ replicas: 100 }, (d) => Array.from({ length: 32 }, (_, i) => pend(d, `p${i}`, 'w0'))),
      [],
      [worker('w0', 900)],
      { loads: [], held: 'loads-in-flight' },
    ],
    [
      'answered loads leave room for more in flight',
      dep({ replicas: 100 }, (d) => Array.from({ length: 32 }, (_, i) => pend(d, `p${i}`, 'w0', i < 2 ? 1 : undefined))),
      [],
      [worker('w0', 900), worker('w1', 900), worker('w2', 900)],
      { loadsOn: ['w0/cpu', 'w1/cpu'] },
    ],
    [
      'too many: the newest is unloaded',
      dep({ replicas: 1 }),
      [rep('m-1', 'w0', 0), rep('m-2', 'w0', 1)],
      [],
      { loads: [], unloads: [{ workerId: 'w0', replicaId: 'm-2' }], satisfied: true },
    ],
    [
      'too many: a pending one is never unloaded',
      dep({ replicas: 1 }, (d) => pend(d, 'm-p', 'w1')),
      [rep('m-1', 'w0', 0)],
      [],
      { unloads: [{ workerId: 'w0', replicaId: 'm-1' }], satisfied: true },
    ],
    [
      'too many, all pending: nothing unloaded',
      dep({ replicas: 0 }, (d) => pend(d, 'm-p', 'w1')),
      [],
      [],
      { unloads: [], satisfied: true },
    ],
    [
      'failed and draining replicas do not count',
      dep({ replicas: 1 }),
      [rep('m-1', 'w0', 0, { state: 'failed' }), rep('m-2', 'w0', 1, { state: 'draining' })],
      [worker('w1', 900)],
      { loadsOn: ['w1/cpu'], unloads: [] },
    ],
    [
      'rollover: old-digest replicas stay until the new ones are there',
      dep(),
      [rep('m-old', 'w0', 0, { digest: OLD })],
      [worker('w0', 900)],
      { loadsOn: ['w0/cpu'], unloads: [] },
    ],
    [
      'rollover: then they go',
      dep(),
      [rep('m-old', 'w0', 0, { digest: OLD }), rep('m-new', 'w1', 0)],
      [],
      { loads: [], unloads: [{ workerId: 'w0', replicaId: 'm-old' }], satisfied: true },
    ],
  ];

  it.each(cases)('%s', (_name, d, replicas, workers, expected) => {
    const { loadsOn: on, ...rest } = expected;
    const p = plan(d, replicas, workers);
    for (const [key, value] of Object.entries(rest)) expect([key, p[key as keyof ReconcilePlan]]).toEqual([key, value]); // undefined: must be absent
    if (on) expect(loadsOn(p)).toEqual(on);
    for (const l of p.loads) expect(l.bytes).toBe(100 * MiB);
  });

  it('too many: unloads the newest replicas (last in their worker’s load order) first', () => {
    const p = plan(dep({ replicas: 1 }), [rep('m-1', 'w0', 0), rep('m-2', 'w0', 2), rep('m-3', 'w1', 1)], []);
    expect(p.unloads).toEqual([
      { workerId: 'w0', replicaId: 'm-2' },
      { workerId: 'w1', replicaId: 'm-3' },
    ]);
  });

  it('builds the cluster view only when it places', () => {
    let built = 0;
    const cluster = { workers: () => (built++, [worker('w0', 900)]) };
    planReconcile(dep(), [rep('m-1', 'w0', 0)], cluster, NOW);
    planReconcile(
      dep({}, (d) => (d.dormant = true)),
      [],
      cluster,
      NOW,
    );
    expect(built).toBe(0);
    planReconcile(dep(), [], cluster, NOW);
    expect(built).toBe(1);
  });

  it('does not change its inputs', () => {
    const d = dep({ replicas: 3 }, (x) => {
      refuse(x, 'w0/cpu', NOW - 1); // expired
      refuse(x, 'w1/cpu', NOW + 1);
      pend(x, 'm-p', 'w2');
    });
    const workers = [worker('w0', 900), worker('w1', 900), worker('w2', 900)];
    const before = JSON.stringify([[...d.pending], [...d.refused!], d.failures, d.retryAt, d.pendingReason, workers]);
    expect(plan(d, [], workers).loads).toHaveLength(2);
    expect(JSON.stringify([[...d.pending], [...d.refused!], d.failures, d.retryAt, d.pendingReason, workers])).toBe(before);
  });

  it('the placement rule is the cluster’s to set (head option placement)', () => {
    // w0 is full of an evictable replica, w1 has room: first-fit evicts on w0, the default uses w1.
    const full: WorkerView = {
      ...worker('w0', 0),
      devices: [{ ...worker('w0', 0).devices[0]!, evictableBytes: 1000 * MiB, evictable: [{ bytes: 1000 * MiB }] }],
    };
    const workers = [full, worker('w1', 900)];
    expect(loadsOn(plan(dep(), [], workers))).toEqual(['w1/cpu']);
    expect(loadsOn(planReconcile(dep(), [], { workers: () => workers, placement: 'first-fit' }, NOW))).toEqual(['w0/cpu']);
  });

  it('the maximum of loads in flight is the cluster’s to set', () => {
    const p = planReconcile(dep({ replicas: 5 }), [], { workers: () => [worker('w0', 900)], maxLoadsInFlight: 2 }, NOW);
    expect(p.loads).toHaveLength(2);
  });
});

describe('countedReplicas and replicaBytes', () => {
  it('counts ready and loading replicas of the current digest, and pending loads last', () => {
    const d = dep({}, (x) => pend(x, 'm-p', 'w1'));
    const counted = countedReplicas(d, [
      rep('m-1', 'w0', 0),
      rep('m-2', 'w0', 1, { state: 'loading' }),
      rep('m-3', 'w0', 2, { digest: OLD }),
      rep('m-4', 'w0', 3, { state: 'failed' }),
    ]);
    expect(counted).toEqual([
      { id: 'm-1', workerId: 'w0', createdOrder: 0 },
      { id: 'm-2', workerId: 'w0', createdOrder: 1 },
      { id: 'm-p', workerId: 'w1', createdOrder: Number.MAX_SAFE_INTEGER },
    ]);
  });

  it.each([
    ['the spec’s memoryBytes first', { memoryBytes: 100 * MiB }, 300 * MiB, 100 * MiB],
    ['else the profiled footprint', { memoryBytes: undefined }, 300 * MiB, 300 * MiB],
    ['else the file-size estimate', { memoryBytes: undefined }, undefined, Math.ceil(10 * MiB * 1.5) + 16 * MiB],
  ])('%s', (_name, over, measured, bytes) => {
    expect(replicaBytes(dep(over, (d) => (d.measuredBytes = measured)))).toBe(bytes);
  });
});

describe('planOrphans', () => {
  const w = (id: string, replicas: Array<[string, string, ReplicaState['state']]>) =>
    ({
      hb: { workerId: id, replicas: replicas.map(([rid, model, state]) => rep(rid, 'x', 0, { model, state }).r) },
    }) as unknown as WorkerRecord;

  it('unloads replicas of models no longer deployed, except those already draining', () => {
    const running = [
      w('w0', [
        ['m-1', 'm', 'ready'],
        ['gone-1', 'gone', 'ready'],
        ['gone-2', 'gone', 'draining'],
      ]),
      w('w1', [['gone-3', 'gone', 'loading']]),
    ];
    expect(planOrphans(running, new Set(['m']))).toEqual([
      { workerId: 'w0', replicaId: 'gone-1' },
      { workerId: 'w1', replicaId: 'gone-3' },
    ]);
    expect(planOrphans(running, new Set(['m', 'gone']))).toEqual([]);
  });
});

describe('planAutoscale', () => {
  const scaled = (change: (d: Deployment) => void = () => undefined) =>
    dep(
      { replicas: 1, minReplicas: 1, maxReplicas: 4, autoscale: { targetPerReplica: 2, upscaleStabilizationMs: 0, cooldownMs: 0 } },
      change,
    );

  it('nothing for a fixed deployment or a dormant one', () => {
    expect(planAutoscale(dep(), [rep('m-1', 'w0', 0)], NOW)).toBeUndefined();
    expect(
      planAutoscale(
        scaled((d) => (d.dormant = true)),
        [rep('m-1', 'w0', 0)],
        NOW,
      ),
    ).toBeUndefined();
  });

  it('queue depth of the counted replicas decides; answered requests are summed for the next rate', () => {
    const d = scaled();
    expect(d.autoscaler).toBeInstanceOf(Autoscaler);
    const replicas = [
      rep('m-1', 'w0', 0, { queueDepth: 5, inFlight: 1, processed: 7, failed: 1 }),
      rep('m-old', 'w0', 1, { digest: OLD, queueDepth: 100, processed: 1000 }),
    ];
    const step = planAutoscale(d, replicas, NOW)!;
    expect(step).toMatchObject({ desired: 3, total: 8 }); // 6 outstanding / 2 per replica; the old digest's queue is not counted
  });

  it('the arrival rate from the previous sample sizes the step when the profile gives a capacity', () => {
    const d = scaled((x) => (x.answered = { at: NOW - 1000, total: 0 }));
    const step = planAutoscale(d, [rep('m-1', 'w0', 0, { processed: 40, profile: { itemsPerSec: 10 } as ReplicaState['profile'] })], NOW)!;
    expect(step).toMatchObject({ desired: 4, capacity: 10, total: 40 }); // 40 items/s at 10/s per replica, capped at max 4
  });
});
