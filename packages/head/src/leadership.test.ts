// The leadership step on a fake lease: a leader whose renewals only failed (a busy store) steps
// down at the TTL and takes the lease back in the same step when it is free or still its own; one
// that lost the lease to another head stays standing by.
import { silentLogger } from '@flotilla/bus';
import { Leadership } from './leadership.js';
import type { LeaderLease } from './lease.js';

function setup(renew: 'held' | 'lost' | 'error', acquirable: boolean) {
  const log: string[] = [];
  let leading = true;
  const lease = {
    ttlMs: 1000,
    renew: async () => renew,
    expired: () => renew !== 'held',
    tryAcquire: async () => acquirable,
  } as unknown as LeaderLease;
  const l = new Leadership(
    lease,
    {
      leading: () => leading,
      mayLead: () => true,
      lead: async () => {
        leading = true;
        log.push('lead');
      },
      stepDown: (reason) => {
        leading = false;
        log.push(`down: ${reason}`);
      },
    },
    silentLogger(),
  );
  return { l, log, leading: () => leading };
}

describe('Leadership.campaign', () => {
  it.each<[string, 'held' | 'lost' | 'error', boolean, string[], boolean]>([
    ['renewed: nothing changes', 'held', true, [], true],
    [
      'renewals timed out past the TTL, lease free again: down, then back at once',
      'error',
      true,
      ['down: lease not renewed within 1000 ms', 'lead'],
      true,
    ],
    ['renewals timed out, lease taken meanwhile: down, stays standby', 'error', false, ['down: lease not renewed within 1000 ms'], false],
    ['lost to another head: down, no retake in the same step', 'lost', true, ['down: another head holds the lease'], false],
  ])('%s', async (_name, renew, acquirable, expected, leadingAfter) => {
    const { l, log, leading } = setup(renew, acquirable);
    await l.campaign();
    expect(log).toEqual(expected);
    expect(leading()).toBe(leadingAfter);
  });
});
