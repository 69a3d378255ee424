import type { Heartbeat, ReplicaState } from '@flotilla/protocol';
import { indexReplicas, workerViews } from './cluster-view.js';
import type { WorkerRecord } from './registry.js';
import { replicaState } from './testing/replica-state.js';

const MiB = 1024 * 1024;
const rep = (id: string, model: string, over: Partial<ReplicaState> = {}): ReplicaState =>
  replicaState(id, model, { digest: 'd', ...over });
const worker = (
  id: string,
  replicas: ReplicaState[],
  over: Partial<WorkerRecord> = {},
  state: Heartbeat['state'] = 'running',
): WorkerRecord => ({
  hb: {
    v: 1,
    workerId: id,
    pid: 1,
    state,
    seq: 0,
    startedAt: 0,
    sentAt: 0,
    inventory: {
      cpu: { cores: 2, model: 'x' },
      memory: { totalBytes: 1e9, availableBytes: 1e9 },
      gpus: [],
      source: 'override',
      hostname: 'h',
    },
    devices: [
      {
        id: 'cpu',
        kind: 'cpu',
        capacityBytes: 1000 * MiB,
        budgetBytes: 900 * MiB,
        usedBytes: replicas.reduce((n, r) => n + r.bytes, 0),
        executionProvider: 'cpu',
        policy: 'fifo',
      },
    ],
    replicas,
  },
  lastSeen: 0,
  alive: true,
  ...over,
});

describe('indexReplicas', () => {
  it('groups replicas by model, keeping each worker’s load order', () => {
    const idx = indexReplicas([worker('w0', [rep('a1', 'a'), rep('b1', 'b'), rep('a2', 'a')]), worker('w1', [rep('a3', 'a')])]);
    expect(idx.get('a')!.map((e) => [e.r.id, e.workerId, e.order])).toEqual([
      ['a1', 'w0', 0],
      ['a2', 'w0', 2],
      ['a3', 'w1', 0],
    ]);
    expect(idx.get('b')!.map((e) => e.r.id)).toEqual(['b1']);
    expect(idx.get('c')).toBeUndefined();
  });

  it('counts a replica id once: the worker heard of first keeps it, copies claimed by others are ignored', () => {
    const idx = indexReplicas([
      worker('w0', [rep('a1', 'a')]),
      worker('ghost1', [rep('a1', 'a'), rep('g1', 'a')]),
      worker('ghost2', [rep('a1', 'a')]),
    ]);
    expect(idx.get('a')!.map((e) => [e.r.id, e.workerId])).toEqual([
      ['a1', 'w0'],
      ['g1', 'ghost1'],
    ]);
  });
});

describe('workerViews', () => {
  it('adds pending loads not yet in a heartbeat to the device use and the model counts', () => {
    const ws = [worker('w0', [rep('a1', 'a')]), worker('w1', [])];
    const v = workerViews(ws, [
      { replicaId: 'a1', workerId: 'w0', device: 'cpu', bytes: 10 * MiB, model: 'a' }, // already reported: not twice
      { replicaId: 'b1', workerId: 'w1', device: 'cpu', bytes: 30 * MiB, model: 'b' },
    ]);
    expect(v[0]).toMatchObject({ id: 'w0', replicasByModel: { a: 1 }, devices: [{ usedBytes: 10 * MiB }] });
    expect(v[1]).toMatchObject({ id: 'w1', replicasByModel: { b: 1 }, devices: [{ usedBytes: 30 * MiB }] });
  });

  it('counts only ready, unpinned replicas as evictable; dead or draining workers are not schedulable', () => {
    const ws = [
      worker('w0', [rep('a', 'a'), rep('p', 'p', { pinned: true }), rep('l', 'l', { state: 'loading' })]),
      worker('w1', [], { alive: false }),
      worker('w2', [], {}, 'draining'),
    ];
    const v = workerViews(ws, []);
    expect(v[0]!.devices[0]!.evictableBytes).toBe(10 * MiB);
    expect(v[0]!.devices[0]!.evictable).toEqual([{ bytes: 10 * MiB }]);
    expect(v.map((w) => w.schedulable)).toEqual([true, false, false]);
  });
});
