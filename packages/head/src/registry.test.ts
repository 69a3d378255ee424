import { PROTOCOL_VERSION, type Heartbeat } from '@flotilla/protocol';
import { WorkerRegistry } from './registry.js';

const hb = (id: string, seq: number, state: Heartbeat['state'] = 'running', startedAt = 1): Heartbeat => ({
  v: PROTOCOL_VERSION,
  workerId: id,
  pid: 1,
  state,
  seq,
  startedAt,
  sentAt: 0,
  inventory: { cpu: { cores: 1, model: 'x' }, memory: { totalBytes: 1, availableBytes: 1 }, gpus: [], source: 'measured', hostname: 'h' },
  devices: [],
  replicas: [],
});
const joined = (r: ReturnType<WorkerRegistry['upsert']>) => r.accepted && r.joined;

describe('WorkerRegistry', () => {
  it('tracks workers, reports new ones and marks silent ones dead after the timeout', () => {
    const r = new WorkerRegistry(3000);
    expect(joined(r.upsert(hb('a', 0), 0))).toBe(true);
    expect(r.upsert(hb('a', 1), 1000)).toEqual({ accepted: true, joined: false, kind: 'next' });
    expect(r.sweep(3999)).toEqual([]);
    expect(r.sweep(4001)).toEqual(['a']);
    expect(r.running()).toEqual([]);
    expect(joined(r.upsert(hb('a', 2), 5000))).toBe(true); // back from the dead
    expect(r.running()).toHaveLength(1);
  });

  it('ignores reordered heartbeats and treats stopped or draining workers as not running', () => {
    const r = new WorkerRegistry(3000);
    r.upsert(hb('a', 5), 0);
    expect(r.upsert(hb('a', 4, 'draining'), 1)).toEqual({ accepted: false, reason: 'replayed' });
    expect(r.get('a')!.hb.seq).toBe(5);
    r.upsert(hb('a', 6, 'draining'), 2);
    expect(r.running()).toEqual([]);
    r.upsert(hb('a', 7, 'stopped'), 3);
    expect(r.get('a')!.alive).toBe(false);
    r.upsert(hb('a', 0, 'running', 2), 4); // restarted process: seq starts over
    expect(r.running()).toHaveLength(1);
  });

  it('a forged seq of 1e15 does not hide the real heartbeats', () => {
    const r = new WorkerRegistry(5000);
    r.upsert(hb('a', 5), 0);
    expect(r.upsert(hb('a', 1e15), 100)).toEqual({ accepted: false, reason: 'implausible seq' });
    for (let s = 6; s < 20; s++) expect(r.upsert(hb('a', s), (s - 5) * 1000).accepted).toBe(true);
    expect(r.sweep(15_000)).toEqual([]);
    expect(r.get('a')!.hb.seq).toBe(19);
  });

  it('is bounded: a worker heard once is forgotten once it timed out; beyond maxWorkers new ids are refused', () => {
    const r = new WorkerRegistry(1000, { maxWorkers: 3 });
    r.upsert(hb('real', 0), 0);
    r.upsert(hb('real', 1), 500);
    r.upsert(hb('fake1', 0), 0);
    r.upsert(hb('fake2', 0), 0);
    expect(r.upsert(hb('fake3', 0), 10)).toEqual({ accepted: false, reason: 'registry full (3 workers)' });
    expect(r.sweep(1200)).toEqual(['fake1', 'fake2']);
    r.prune(1200);
    expect(r.all().map((w) => w.hb.workerId)).toEqual(['real']);
    expect(r.upsert(hb('fake3', 0), 1300).accepted).toBe(true);
    // A confirmed worker (two heartbeats) that died is kept for the dead-worker TTL.
    expect(r.sweep(3000)).toEqual(['real', 'fake3']);
    r.prune(3000, 60_000);
    expect(r.all().map((w) => w.hb.workerId)).toEqual(['real']);
    r.prune(70_000, 60_000);
    expect(r.size).toBe(0);
  });
});
