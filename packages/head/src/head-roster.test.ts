// The head roster on a fake clock: heads join, expire after missed periods, restart; forged and
// replayed presence is refused; the map stays bounded; a head's own id is ignored.
import { PROTOCOL_VERSION, type HeadPresence } from '@flotilla/protocol';
import { HeadRoster } from './head-roster.js';

const p = (id: string, seq: number, over: Partial<HeadPresence> = {}): HeadPresence => ({
  v: PROTOCOL_VERSION,
  id,
  pid: 10,
  host: `host-${id}`,
  startedAt: 1000,
  role: 'standby',
  since: 1000,
  seq,
  ...over,
});

const roster = (maxHeads?: number) => new HeadRoster({ selfId: 'me', expireMs: 3000, maxHeads });

describe('head roster', () => {
  it('lists heads heard within the expiry, leaders first, with when they were last seen', () => {
    const r = roster();
    expect(r.observe(p('b', 0), 0)).toEqual({ accepted: true, joined: true });
    expect(r.observe(p('a', 0, { role: 'leader', since: 5 }), 10)).toEqual({ accepted: true, joined: true });
    expect(r.observe(p('b', 1), 1000)).toEqual({ accepted: true, joined: false });
    expect(r.list(1500)).toEqual([
      { id: 'a', pid: 10, host: 'host-a', role: 'leader', since: 5, startedAt: 1000, lastSeenAt: 10 },
      { id: 'b', pid: 10, host: 'host-b', role: 'standby', since: 1000, startedAt: 1000, lastSeenAt: 1000 },
    ]);
    // a misses three periods (3000 ms): gone; b is still within.
    expect(r.list(3010).map((h) => h.id)).toEqual(['b']);
    expect(r.list(4000)).toEqual([]);
    r.expire(4000);
    expect(r.size).toBe(0);
  });

  it.each([
    ['a replay (same seq)', p('b', 5), 'replayed'],
    ['an older seq', p('b', 3), 'replayed'],
    ['a seq far ahead (1e15)', p('b', 1e15), 'implausible seq'],
    ['another incarnation while the current one is live', p('b', 0, { pid: 99 }), 'another incarnation is live'],
  ])('refuses %s, and keeps the real head', (_what, forged, reason) => {
    const r = roster();
    r.observe(p('b', 5), 0);
    expect(r.observe(forged, 100)).toEqual({ accepted: false, reason });
    expect(r.observe(p('b', 6), 1000)).toEqual({ accepted: true, joined: false });
    expect(r.list(1000)[0]).toMatchObject({ id: 'b', pid: 10, lastSeenAt: 1000 });
  });

  it('a restarted head (new incarnation) takes over its id once the old one went silent', () => {
    const r = roster();
    r.observe(p('b', 7), 0);
    expect(r.observe(p('b', 0, { pid: 11, startedAt: 2000 }), 2600)).toEqual({ accepted: true, joined: true });
    expect(r.list(2600)[0]).toMatchObject({ pid: 11, startedAt: 2000 });
  });

  it('ignores its own id (the head reports itself) and stays bounded, making room as heads expire', () => {
    const r = roster(2);
    expect(r.observe(p('me', 0, { role: 'leader' }), 0)).toEqual({ accepted: false, reason: 'self' });
    r.observe(p('a', 0), 0);
    r.observe(p('b', 0), 0);
    expect(r.observe(p('c', 0), 100)).toEqual({ accepted: false, reason: 'too many heads' });
    expect(r.size).toBe(2);
    r.observe(p('a', 1), 2000); // b silent from 0: expired at 3000
    expect(r.observe(p('c', 0), 3000)).toEqual({ accepted: true, joined: true });
    expect(r.list(3000).map((h) => h.id)).toEqual(['a', 'c']);
  });

  it('a role change is reported at the next presence', () => {
    const r = roster();
    r.observe(p('b', 0), 0);
    r.observe(p('b', 1, { role: 'leader', since: 900 }), 900);
    expect(r.list(900)[0]).toMatchObject({ role: 'leader', since: 900 });
  });
});
