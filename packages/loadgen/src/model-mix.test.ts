import { WeightedSampler, parseMix, seededRandom, shuffled, zipfWeights } from './model-mix.js';

describe('seededRandom', () => {
  it('is deterministic per seed and different across seeds', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const c = seededRandom(8);
    const xs = Array.from({ length: 5 }, () => a());
    expect(Array.from({ length: 5 }, () => b())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c())).not.toEqual(xs);
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
  });
});

describe('zipfWeights', () => {
  it.each([
    [1, 1.1, [1]],
    [3, 0, [1 / 3, 1 / 3, 1 / 3]],
    [3, 1, [6 / 11, 3 / 11, 2 / 11]],
  ] as [number, number, number[]][])('n=%d, s=%d → %j', (n, s, expected) => {
    const w = zipfWeights(n, s);
    expect(w).toHaveLength(n);
    w.forEach((x, i) => expect(x).toBeCloseTo(expected[i]!, 10));
  });

  it('at s=1.1 over 32 models the top model takes ≈ 28 % and the top 4 about half', () => {
    const w = zipfWeights(32, 1.1);
    expect(w[0]).toBeCloseTo(0.2837, 3);
    expect(w.slice(0, 4).reduce((a, b) => a + b, 0)).toBeGreaterThan(0.5);
    expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });

  it.each([
    [0, 1],
    [2.5, 1],
    [3, -1],
    [3, NaN],
  ])('refuses n=%d, s=%d with BAD_REQUEST', (n, s) => {
    expect(() => zipfWeights(n, s)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});

describe('WeightedSampler', () => {
  it.each([
    // [weights, draws, picks]
    [
      [1, 1],
      [0, 0.49, 0.5, 0.99],
      [0, 0, 1, 1],
    ],
    [
      [1, 0, 3],
      [0, 0.24, 0.25, 0.999],
      [0, 0, 2, 2],
    ], // a zero weight is never picked
    [
      [0, 5],
      [0, 0.5],
      [1, 1],
    ],
    [[2], [0, 0.7, 1, -3, 7], [0, 0, 0, 0, 0]], // out-of-range draws are clamped
  ] as [number[], number[], number[]][])('weights %j: draws %j → %j', (weights, draws, picks) => {
    const s = new WeightedSampler(weights);
    expect(draws.map((u) => s.pick(u))).toEqual(picks);
  });

  it('follows the weights over many seeded draws', () => {
    const s = new WeightedSampler(zipfWeights(8, 1.1));
    const rand = seededRandom(42);
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 100_000; i++) counts[s.pick(rand())]!++;
    zipfWeights(8, 1.1).forEach((w, i) => expect(Math.abs(counts[i]! / 100_000 - w)).toBeLessThan(0.01));
  });

  it.each([[[]], [[0, 0]], [[1, -1]], [[1, NaN]]])('refuses %j with BAD_REQUEST', (weights) => {
    expect(() => new WeightedSampler(weights)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});

describe('shuffled', () => {
  it('is a permutation, the same for the same seed', () => {
    const p = shuffled(32, seededRandom(3));
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, i) => i));
    expect(shuffled(32, seededRandom(3))).toEqual(p);
    expect(shuffled(32, seededRandom(4))).not.toEqual(p);
  });
});

describe('parseMix', () => {
  it.each([
    [
      'lines, spaces and commas, comments, default weight',
      'a in/a.json 3\n# comment\n\nb, in/b.json, 0.5 # tail\nc c.json\n',
      [
        { model: 'a', input: 'in/a.json', weight: 3 },
        { model: 'b', input: 'in/b.json', weight: 0.5 },
        { model: 'c', input: 'c.json', weight: 1 },
      ],
    ],
    [
      'JSON',
      '[{"model":"a","input":"a.json","weight":2},{"model":"b","input":"b.json"}]',
      [
        { model: 'a', input: 'a.json', weight: 2 },
        { model: 'b', input: 'b.json', weight: 1 },
      ],
    ],
    [
      'a zero weight kept (never sent)',
      'a a.json 0\nb b.json 1',
      [
        { model: 'a', input: 'a.json', weight: 0 },
        { model: 'b', input: 'b.json', weight: 1 },
      ],
    ],
  ])('%s', (_, text, expected) => {
    expect(parseMix(text)).toEqual(expected);
  });

  it.each([
    ['empty', '# nothing\n', /no entries/],
    ['no input', 'a\n', /line 1: no input file for 'a'/],
    ['bad weight', 'a a.json x\n', /line 1: weight/],
    ['negative weight', 'a a.json -1\n', /line 1: weight/],
    ['too many fields', 'a a.json 1 2\n', /line 1: expected/],
    ['all zero', 'a a.json 0\n', /positive weight/],
    ['bad JSON', '[{"model":', /not valid JSON/],
    ['JSON without input', '[{"model":"a"}]', /entry 0 needs/],
  ])('refuses %s with BAD_REQUEST', (_, text, message) => {
    expect(() => parseMix(text)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST', message: expect.stringMatching(message) }));
  });
});
