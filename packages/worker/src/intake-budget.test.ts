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
  type Step = ['take' | 'give', number, boolean?];
  it.each<[string, number, Step[], { heldBytes: number; peakBytes: number; refused: number }]>([
    [
      'takes while the requests fit, refuses the one that would pass the limit',
      10,
      [
        ['take', 4, true],
        ['take', 6, true],
        ['take', 1, false],
      ],
      { heldBytes: 10, peakBytes: 10, refused: 1 },
    ],
    [
      'an answered request makes room again',
      10,
      [
        ['take', 8, true],
        ['take', 4, false],
        ['give', 8],
        ['take', 4, true],
      ],
      { heldBytes: 4, peakBytes: 8, refused: 1 },
    ],
    [
      'a request larger than the whole budget is taken when nothing is held, and refused beside another',
      10,
      [
        ['take', 25, true],
        ['take', 1, false],
        ['give', 25],
        ['take', 1, true],
        ['take', 25, false],
      ],
      { heldBytes: 1, peakBytes: 25, refused: 2 },
    ],
    [
      'empty requests always fit; giving back more than held stops at zero',
      10,
      [
        ['take', 10, true],
        ['take', 0, true],
        ['give', 30],
        ['take', 10, true],
      ],
      { heldBytes: 10, peakBytes: 10, refused: 0 },
    ],
  ])('%s', (_what, limit, steps, expected) => {
    const b = new IntakeBudget(limit);
    for (const [op, bytes, ok] of steps) {
      if (op === 'take') expect(b.take(bytes)).toBe(ok);
      else b.give(bytes);
    }
    expect(b.stats()).toEqual({ ...expected, limitBytes: limit });
  });

  it('needs a limit of at least one byte', () => {
    expect(() => new IntakeBudget(0)).toThrow(RangeError);
    expect(() => new IntakeBudget(Number.NaN)).toThrow(RangeError);
  });
});
