import { DRIFT_FLAG, driftBetween, driftFlagged, driftText, hostDrift, hostDriftLine } from './host-drift.js';

describe('hostDrift', () => {
  // conv-classifier at batch 16: sweep 7,336 items/s; the host slowed during the cluster's runs, recovered for the peers.
  const d = hostDrift(16, 7336.5, {
    cluster: { before: 6500, after: 5700 },
    raw: { before: 5700, after: 6100 },
    moleculer: { before: 7200, after: 7400 },
    triton: { before: 7000 },
    rayServe: {},
  });

  test('each phase: the mean of its probes and its speed against the sweep; a phase without probes has neither', () => {
    expect(d.batch).toBe(16);
    expect(d.sweepItemsPerSec).toBe(7336.5);
    expect(d.phases.cluster).toEqual({ before: 6500, after: 5700, itemsPerSec: 6100, vsSweep: -0.169 });
    expect(d.phases.triton).toEqual({ before: 7000, itemsPerSec: 7000, vsSweep: -0.046 });
    expect(d.phases.rayServe).toEqual({});
  });

  test.each([
    ['cluster', 'sweep', -0.169],
    ['moleculer', 'cluster', 0.197], // the peer ran on a faster host than the cluster: the ratio flatters the peer
    ['cluster', 'raw', 0.034],
    ['rayServe', 'cluster', undefined],
    ['nope', 'cluster', undefined],
  ])('driftBetween(%s, %s) = %p', (a, b, want) => expect(driftBetween(d, a, b)).toBe(want));

  test('probes that failed (0, NaN, negative) count as missing; no sweep rate leaves vsSweep out', () => {
    const bad = hostDrift(8, undefined, { cluster: { before: 0, after: Number.NaN }, raw: { before: -1, after: 500 } });
    expect(bad.sweepItemsPerSec).toBeNull();
    expect(bad.phases.cluster).toEqual({});
    expect(bad.phases.raw).toEqual({ after: 500, itemsPerSec: 500 });
    expect(driftBetween(bad, 'raw', 'sweep')).toBeUndefined();
  });

  test.each([
    [undefined, false],
    [0, false],
    [DRIFT_FLAG, false],
    [DRIFT_FLAG + 0.001, true],
    [-DRIFT_FLAG - 0.001, true],
  ])('driftFlagged(%p) = %p', (x, want) => expect(driftFlagged(x)).toBe(want));

  test('text', () => {
    expect(driftText(0.123)).toBe('host +12 %');
    expect(driftText(-0.169)).toBe('host −17 %');
    expect(hostDriftLine(d)).toBe(
      'host speed (the model in-process at batch 16, items/s, before and after each phase): sweep 7337; cluster 6100 (−17 %); raw 5900 (−20 %); moleculer 7300 (0 %); triton 7000 (−5 %); rayServe -',
    );
  });
});
