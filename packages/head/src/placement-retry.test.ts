import {
  DEFAULT_PLACEMENT_RETRY,
  loadsInFlight,
  retryDelay,
  settlePending,
  skipDeviceMs,
  type PendingPlacement,
} from './placement-retry.js';

describe('placement back-off', () => {
  it.each([
    [0, 0],
    [1, 250],
    [2, 500],
    [3, 1000],
    [8, 32_000],
    [9, 60_000],
    [50, 60_000],
    [1e6, 60_000],
  ])('after %i failures waits %i ms', (failures, ms) => {
    expect(retryDelay(failures)).toBe(ms);
  });

  it('skips a refusing device at least 5 s, and as long as the back-off beyond that', () => {
    expect(skipDeviceMs(1)).toBe(5000);
    expect(skipDeviceMs(6)).toBe(8000);
    expect(skipDeviceMs(20)).toBe(60_000);
  });

  it('scale 1000 on a cluster that refuses everything: a few dozen retries an hour, not one per round', () => {
    let now = 0;
    let attempts = 0;
    for (let failures = 1; now < 3_600_000; failures++) {
      attempts++;
      now += retryDelay(failures);
    }
    expect(attempts).toBeLessThan(70); // vs 7,200 rounds of 500 ms
    expect(DEFAULT_PLACEMENT_RETRY.maxLoadsInFlight).toBeLessThanOrEqual(32);
  });
});

describe('settlePending', () => {
  const p = (workerId: string, repliedAt?: number): PendingPlacement => ({ workerId, device: 'cpu', bytes: 1, sentAt: 0, repliedAt });
  const pending = new Map<string, PendingPlacement>([
    ['a-1', p('w1')], // in flight, not reported yet
    ['a-2', p('w1', 1000)], // answered, reported: seen
    ['a-3', p('fake', 1000)], // answered, never reported: failed after confirmMs
    ['a-4', p('fake', 5500)], // answered recently: still waiting
    ['a-5', p('w2')], // in flight and already reported as loading: seen
  ]);
  const reported = (w: string, id: string) => (w === 'w1' && id === 'a-2') || (w === 'w2' && id === 'a-5');

  it.each([
    [2000, { seen: ['a-2', 'a-5'], unconfirmed: [] }],
    [6000, { seen: ['a-2', 'a-5'], unconfirmed: ['a-3'] }],
    [10_500, { seen: ['a-2', 'a-5'], unconfirmed: ['a-3', 'a-4'] }],
  ])('at %i ms', (now, expected) => {
    expect(settlePending(pending, reported, now, 5000)).toEqual(expected);
  });

  it('counts loads awaiting their reply', () => {
    expect(loadsInFlight(pending)).toBe(2);
  });
});
