// Trace ids drawn from a pooled random buffer: each one valid W3C and all of them distinct,
// across pool refills.
import { isTraceparent } from '@flotilla/protocol';
import { newTraceparent } from './client.js';

describe('newTraceparent', () => {
  it('gives valid, distinct traceparents across several pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const t = newTraceparent();
      expect(isTraceparent(t)).toBe(true);
      expect(t.slice(3, 35)).not.toBe('0'.repeat(32));
      seen.add(t.slice(3, 35));
      seen.add(t.slice(36, 52));
    }
    expect(seen.size).toBe(4000);
  });
});
