import { PROTOCOL_VERSION, type EventMessage } from '@flotilla/protocol';
import { EventLog, evictedModels } from './event-log.js';

const ev = (type: string, model = 'mlp', at = 0): EventMessage => ({ v: PROTOCOL_VERSION, type, model, at });

describe('EventLog', () => {
  it('keeps the last perType of each type: 2,000 refused do not push out one loaded', () => {
    const log = new EventLog({ perType: 1000, maxTypes: 64, maxBytes: 1e9 });
    log.push(ev('loaded'), 100);
    for (let i = 0; i < 2000; i++) log.push(ev('refused', 'mlp', i), 100);
    expect(log.size).toBe(1001);
    expect(log.bytes).toBe(1001 * 100);
    const all = log.query({ limit: 5000 });
    expect(all[0]!.type).toBe('loaded');
    expect(all.at(-1)).toMatchObject({ type: 'refused', at: 1999 });
    expect(log.query({ type: 'loaded', limit: 10 })).toHaveLength(1);
    expect(log.query({ limit: 3 }).map((e) => e.at)).toEqual([1997, 1998, 1999]);
  });

  it('filters by model, oldest first, and returns at most limit', () => {
    const log = new EventLog();
    log.push(ev('loaded', 'a', 1), 10);
    log.push(ev('loaded', 'b', 2), 10);
    log.push(ev('evicted', 'a', 3), 10);
    log.push(ev('unloaded', 'a', 4), 10);
    expect(log.query({ model: 'a', limit: 100 }).map((e) => e.at)).toEqual([1, 3, 4]);
    expect(log.query({ model: 'a', limit: 2 }).map((e) => e.at)).toEqual([3, 4]);
  });

  it('is bounded in types and bytes', () => {
    const log = new EventLog({ perType: 100, maxTypes: 2, maxBytes: 1000 });
    log.push(ev('a'), 100);
    log.push(ev('b'), 100);
    log.push(ev('a'), 100);
    log.push(ev('c'), 100); // b is the stalest type: dropped
    expect(log.query({ limit: 10 }).map((e) => e.type)).toEqual(['a', 'a', 'c']);
    for (let i = 0; i < 20; i++) log.push(ev('c', 'x', i), 100);
    expect(log.bytes).toBeLessThanOrEqual(1000);
    // The noisy type pays: the largest one loses its oldest events first.
    expect(log.query({ limit: 100 }).map((e) => e.type)).toEqual(['a', 'a', ...Array(8).fill('c')]);
  });
});

describe('evictedModels', () => {
  it('a model whose last load or eviction is an eviction is dormant again after a takeover', () => {
    const history = [
      ev('loaded', 'a', 1),
      ev('evicted', 'a', 2),
      ev('evicted', 'b', 3),
      ev('loaded', 'b', 4),
      ev('evicted', 'c', 5),
      ev('scaled', 'c', 6),
      ev('refused', 'd', 7),
    ];
    expect(evictedModels(history)).toEqual(['a', 'c']);
  });
});
