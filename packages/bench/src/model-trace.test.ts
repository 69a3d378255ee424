import { zipfWeights } from '@flotilla/loadgen';
import { modelTrace, rankings, scanModels } from './model-trace.js';

const base = { models: 32, rate: 30, callers: 64, durationMs: 60_000, zipf: 1.1, seed: 7 };

describe('modelTrace', () => {
  it('is the same for the same options, and in time order', () => {
    const a = modelTrace(base);
    expect(modelTrace(base)).toEqual(a);
    expect(modelTrace({ ...base, seed: 8 })).not.toEqual(a);
    for (let i = 1; i < a.length; i++) expect(a[i]!.at).toBeGreaterThanOrEqual(a[i - 1]!.at);
  });

  it('sends about rate × duration requests, from every caller, within the duration', () => {
    const a = modelTrace(base);
    expect(a.length).toBeGreaterThan(1800 * 0.9);
    expect(a.length).toBeLessThan(1800 * 1.1);
    expect(new Set(a.map((r) => r.caller)).size).toBe(64);
    for (const r of a) expect(r.at >= 0 && r.at < 60_000).toBe(true);
  });

  it('follows Zipf over ranks, and maps ranks to models by the ranking of the half it falls in', () => {
    const a = modelTrace({ ...base, rate: 200 });
    const w = zipfWeights(32, 1.1);
    const top = a.filter((r) => r.rank === 0).length / a.length;
    expect(Math.abs(top - w[0]!)).toBeLessThan(0.02);
    const [before, after] = rankings(32, 7);
    expect(before).not.toEqual(after);
    for (const r of a) expect(r.model).toBe((r.at < 30_000 ? before : after)[r.rank]);
  });

  it('scans the cold half of the ranking in force', () => {
    const [before, after] = rankings(32, 7);
    expect(scanModels(32, 7, 10_000, 30_000)).toEqual(before.slice(16));
    expect(scanModels(32, 7, 40_000, 30_000)).toEqual(after.slice(16));
  });
});
