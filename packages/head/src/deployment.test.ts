import { parseDeploySpec } from '@flotilla/protocol';
import { activeRefusals, newDeployment, recordFailure, resetRetry } from './deployment.js';

const spec = parseDeploySpec({ name: 'mlp', digest: 'a'.repeat(64), sizeBytes: 10 });
const noRoom = { code: 'NO_CAPACITY', message: 'no room' };

describe('deployment retry transitions', () => {
  it('a round of 32 refusals is one failure; the next rounds double the wait up to 60 s', () => {
    const d = newDeployment(spec, 0, 0, 0);
    const logged = Array.from({ length: 32 }, (_, i) => recordFailure(d, noRoom, 1000, 0, `w/${i}`));
    expect(logged.filter(Boolean)).toHaveLength(1); // reported once
    expect(d).toMatchObject({ failures: 1, retryAt: 1250, pendingReason: noRoom });
    expect(activeRefusals(d, 1000).size).toBe(32);
    const waits: number[] = [];
    for (let k = 2; k <= 12; k++) {
      const at = d.retryAt;
      recordFailure(d, noRoom, at, 0);
      waits.push(d.retryAt - at);
    }
    expect(d.failures).toBe(12);
    expect(waits).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]);
    expect(activeRefusals(d, 6001).size).toBe(0); // the round's refusals lasted 5 s
  });

  it('another failure code is reported once too; a change resets everything', () => {
    const d = newDeployment(spec, 0, 0, 0);
    expect(recordFailure(d, noRoom, 0, 0, 'w/cpu')).toBe(true);
    expect(recordFailure(d, { code: 'UNAVAILABLE', message: 'never reported' }, 300, 0, 'fake/cpu')).toBe(true);
    expect(recordFailure(d, noRoom, 900, 0)).toBe(false);
    resetRetry(d, 7);
    expect(d).toMatchObject({ failures: 0, retryAt: 0, epoch: 7 });
    expect(activeRefusals(d, 0).size).toBe(0);
    expect(recordFailure(d, noRoom, 1000, 7)).toBe(true);
  });
});
