import { PROTOCOL_VERSION, parseDeploySpec, type Heartbeat, type ReplicaState } from '@flotilla/protocol';
import { ClusterState } from './cluster-state.js';
import { newDeployment } from './deployment.js';
import { replicaState } from './testing/replica-state.js';

const MiB = 1024 * 1024;
const DIGEST = 'a'.repeat(64);
const rep = (id: string, over: Partial<ReplicaState> = {}): ReplicaState => replicaState(id, 'mlp', { digest: DIGEST, ...over });
const hb = (id: string, seq: number, replicas: ReplicaState[]): Heartbeat => ({
  v: PROTOCOL_VERSION,
  workerId: id,
  pid: 1,
  state: 'running',
  seq,
  startedAt: 1,
  sentAt: 0,
  inventory: { cpu: { cores: 1, model: 'x' }, memory: { totalBytes: 1, availableBytes: 1 }, gpus: [], source: 'measured', hostname: 'h' },
  devices: [
    { id: 'cpu', kind: 'cpu', capacityBytes: 1000 * MiB, budgetBytes: 900 * MiB, usedBytes: 0, executionProvider: 'cpu', policy: 'fifo' },
  ],
  replicas,
});
const profile = (replicaBytes: number) => ({ replicaBytes }) as ReplicaState['profile'];

function withMlp(): ClusterState {
  const c = new ClusterState(5000, 100);
  const d = newDeployment(parseDeploySpec({ name: 'mlp', digest: DIGEST, sizeBytes: MiB }), 0, 0, 0);
  d.pending.set('mlp-p', { workerId: 'w0', device: 'cpu', bytes: MiB, sentAt: 0 });
  c.deployments.set('mlp', d);
  return c;
}

describe('ClusterState', () => {
  it('a joining worker frees capacity; its heartbeats index replicas and measure footprints of the current digest', () => {
    const c = withMlp();
    expect(
      c.heartbeat(
        hb('w0', 0, [rep('mlp-1', { profile: profile(30 * MiB) }), rep('mlp-old', { digest: 'b'.repeat(64), profile: profile(90 * MiB) })]),
        0,
      ),
    ).toMatchObject({ accepted: true, joined: true });
    expect(c.capacityEpoch).toBe(1);
    expect(c.deployments.get('mlp')!.measuredBytes).toBe(30 * MiB);
    expect(c.replicasOf('mlp').map((e) => e.r.id)).toEqual(['mlp-1', 'mlp-old']);
    expect(c.counted(c.deployments.get('mlp')!)).toBe(2); // mlp-1 and the pending load
    c.heartbeat(hb('w0', 1, []), 1000);
    expect(c.capacityEpoch).toBe(1); // not a join
    expect(c.replicasOf('mlp')).toEqual([]); // the index was rebuilt
  });

  it('an eviction makes the model dormant, frees capacity and settles a load of that replica', () => {
    const c = withMlp();
    const evicted = { v: PROTOCOL_VERSION, type: 'evicted', model: 'mlp', replica: 'mlp-p', at: 0 };
    expect(c.event(evicted, 100, 0)).toBe(true);
    expect(c.event(evicted, 100, 0)).toBe(false); // dormant already
    const d = c.deployments.get('mlp')!;
    expect([d.dormant, d.pending.size, c.capacityEpoch, c.events.size]).toEqual([true, 0, 2, 2]);
    expect(c.event({ v: PROTOCOL_VERSION, type: 'loaded', model: 'mlp', at: 0 }, 100, 0)).toBe(false);
    expect(c.capacityEpoch).toBe(2);
  });

  it('the placement view charges pending loads not yet in a heartbeat; describe lists them as pending', () => {
    const c = withMlp();
    c.heartbeat(hb('w0', 0, [rep('mlp-1')]), 0);
    expect(c.view()[0]!.devices[0]!.usedBytes).toBe(MiB);
    expect(c.describe('mlp').replicas.map((r) => [r.id, r.state])).toEqual([
      ['mlp-1', 'ready'],
      ['mlp-p', 'pending'],
    ]);
    expect(() => c.describe('nope')).toThrow(expect.objectContaining({ code: 'UNKNOWN_MODEL' }));
  });

  it('sweep marks silent workers dead; their replicas stop counting', () => {
    const c = withMlp();
    c.heartbeat(hb('w0', 0, [rep('mlp-1')]), 0);
    expect(c.sweep(4000)).toEqual([]);
    expect(c.sweep(5001)).toEqual(['w0']);
    expect(c.replicasOf('mlp')).toEqual([]);
  });
});
