import { PROTOCOL_VERSION, type Heartbeat } from '@flotilla/protocol';
import { WorkerRegistry } from './registry.js';

const hb = (id: string, seq: number, state: Heartbeat['state'] = 'running', startedAt = 1): Heartbeat => ({
  v: PROTOCOL_VERSION, workerId: id, pid: 1, state, seq, startedAt, sentAt: 0,
  inventory: { cpu: { cores: 1, model: 'x' }, memory: { totalBytes: 1, availableBytes: 1 }, gpus: [], source: 'measured', hostname: 'h' },
  devices: [], replicas: [],
});

describe('WorkerRegistry', () => {
  it('tracks workers, reports new ones and marks silent ones dead after the timeout', () => {
    const r = new WorkerRegistry(3000);
    expect(r.upsert(hb('a', 0), 0)).toBe(true);
    expect(r.upsert(hb('a', 1), 1000)).toBe(false);
    expect(r.sweep(3999)).toEqual([]);
    expect(r.sweep(4001)).toEqual(['a']);
    expect(r.running()).toEqual([]);
    expect(r.upsert(hb('a', 2), 5000)).toBe(true); // back from the dead
    expect(r.running()).toHaveLength(1);
  });

  it('ignores reordered heartbeats and treats stopped or draining workers as not running', () => {
    const r = new WorkerRegistry(3000);
    r.upsert(hb('a', 5), 0);
    r.upsert(hb('a', 4, 'draining'), 1);
    expect(r.get('a')!.hb.seq).toBe(5);
    r.upsert(hb('a', 6, 'draining'), 2);
    expect(r.running()).toEqual([]);
    r.upsert(hb('a', 7, 'stopped'), 3);
    expect(r.get('a')!.alive).toBe(false);
    r.upsert(hb('a', 0, 'running', 2), 4); // restarted process: seq starts over
    expect(r.running()).toHaveLength(1);
  });
});
