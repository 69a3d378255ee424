import { DEFAULT_MAX_QUEUED_BYTES, IntakeBudget, MIN_DEFAULT_QUEUED_BYTES, defaultMaxQueuedBytes } from './intake-budget.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('defaultMaxQueuedBytes', () => {
  it.each([
    ['a 24 GiB VM: capped', 24 * GiB, DEFAULT_MAX_QUEUED_BYTES],
    ['a 4 GiB container: a sixteenth', 4 * GiB, 256 * MiB],
    ['a 256 MiB container: the floor', 256 * MiB, MIN_DEFAULT_QUEUED_BYTES],
    ['memory unknown (0)', 0, MIN_DEFAULT_QUEUED_BYTES],
    ['memory unreadable (NaN)', Number.NaN, MIN_DEFAULT_QUEUED_BYTES],
  ])('%s', (_what, memory, expected) => {
    expect(defaultMaxQueuedBytes(memory)).toBe(expected);
  });
});

describe('IntakeBudget', () => {
  // [replica, op, bytes, expected: undefined (taken) or the refusal's reason]
  type Step = [string, 'take' | 'give', number, ('limit' | 'share' | undefined)?];
  it.each<[string, number, number, Step[], { heldBytes: number; peakBytes: number; refused: number }]>([
    [
      'one replica: takes while the requests fit, refuses the one that would pass the limit',
      10,
      1,
      [
        ['a', 'take', 4],
        ['a', 'take', 6],
        ['a', 'take', 1, 'limit'],
      ],
      { heldBytes: 10, peakBytes: 10, refused: 1 },
    ],
    [
      'an answered request makes room again',
      10,
      1,
      [
        ['a', 'take', 8],
        ['a', 'take', 4, 'limit'],
        ['a', 'give', 8],
        ['a', 'take', 4],
      ],
      { heldBytes: 4, peakBytes: 8, refused: 1 },
    ],
    [
      'a request larger than the whole budget is taken when nothing is held, and refused beside another',
      10,
      1,
      [
        ['a', 'take', 25],
        ['a', 'take', 1, 'limit'],
        ['a', 'give', 25],
        ['a', 'take', 1],
        ['a', 'take', 25, 'limit'],
      ],
      { heldBytes: 1, peakBytes: 25, refused: 2 },
    ],
    [
      'empty requests always fit; giving back more than held stops at zero',
      10,
      1,
      [
        ['a', 'take', 10],
        ['a', 'take', 0],
        ['a', 'give', 30],
        ['a', 'take', 10],
      ],
      { heldBytes: 10, peakBytes: 10, refused: 0 },
    ],
    [
      'two replicas: neither holds more than half, so the other still finds room',
      10,
      2,
      [
        ['a', 'take', 3],
        ['a', 'take', 2],
        ['a', 'take', 1, 'share'],
        ['b', 'take', 5],
        ['b', 'take', 1, 'limit'],
        ['a', 'give', 3],
        ['b', 'take', 1, 'share'],
        ['a', 'take', 3],
      ],
      { heldBytes: 10, peakBytes: 10, refused: 3 },
    ],
    [
      'a replica’s only request is never refused by its share, only by the limit',
      10,
      2,
      [
        ['a', 'take', 8],
        ['b', 'take', 3, 'limit'],
        ['b', 'take', 2],
        ['a', 'take', 1, 'limit'],
        ['a', 'give', 8],
        ['a', 'take', 6],
      ],
      { heldBytes: 8, peakBytes: 10, refused: 2 },
    ],
  ])('%s', (_what, limit, replicas, steps, expected) => {
    const b = new IntakeBudget(limit, () => replicas);
    for (const [replica, op, bytes, refused] of steps) {
      if (op === 'take') expect(b.take(replica, bytes)?.reason).toBe(refused);
      else b.give(replica, bytes);
    }
    expect(b.stats()).toEqual({ ...expected, limitBytes: limit });
  });

  it('says what the worker and the replica hold when it refuses', () => {
    let replicas = 1;
    const b = new IntakeBudget(100, () => replicas);
    expect(b.take('a', 60)).toBeUndefined();
    expect(b.take('a', 30)).toBeUndefined(); // alone, a replica may use the whole budget
    replicas = 2; // another replica loaded: from now on a holds at most half
    expect(b.take('a', 5)).toEqual({ reason: 'share', heldBytes: 90, replicaBytes: 90, limitBytes: 100, shareBytes: 50 });
    expect(b.take('b', 20)).toEqual({ reason: 'limit', heldBytes: 90, replicaBytes: 0, limitBytes: 100, shareBytes: 50 });
    b.give('a', 60);
    expect(b.heldBy('a')).toBe(30);
    expect(b.take('b', 20)).toBeUndefined();
    expect(b.heldBy('b')).toBe(20);
  });

  it('needs a limit of at least one byte', () => {
    expect(() => new IntakeBudget(0)).toThrow(RangeError);
    expect(() => new IntakeBudget(Number.NaN)).toThrow(RangeError);
  });
});
