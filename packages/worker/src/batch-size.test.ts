import { chooseBatch, type ProfileRow } from './batch-size.js';

const row = (batch: number, itemsPerSec: number, p99Ms: number, p50Ms = p99Ms * 0.8): ProfileRow => ({
  batch,
  runs: 10,
  p50Ms,
  p99Ms,
  itemsPerSec,
  peakBytes: 0,
});

describe('chooseBatch', () => {
  it('picks the throughput maximum within the latency objective', () => {
    const c = chooseBatch([row(1, 1000, 1.2, 1), row(2, 1900, 1.3), row(4, 3500, 1.5), row(8, 5000, 2), row(16, 6000, 60)], 50);
    expect(c.maxBatchSize).toBe(8);
    expect(c.maxQueueDelayMs).toBe(0.5);
    expect(c.reason).toMatch(/^batch 8: 5000 items\/s = 5.00× batch 1/);
  });

  it('chooses batch 1 when larger batches are slower per item (compute-bound conv on a small CPU)', () => {
    const c = chooseBatch([row(1, 300, 4), row(2, 290, 8), row(4, 280, 16)], 50);
    expect(c).toMatchObject({ maxBatchSize: 1, maxQueueDelayMs: 0 });
    expect(c.reason).toMatch(/no larger batch is 5% faster per item/);
  });

  it('ignores gains below the minimum and prefers the smaller batch', () => {
    expect(chooseBatch([row(1, 1000, 1), row(2, 1040, 2), row(4, 1045, 3)], 50).maxBatchSize).toBe(1);
    expect(chooseBatch([row(1, 1000, 1), row(2, 2000, 2), row(4, 2050, 3)], 50).maxBatchSize).toBe(2);
  });

  it('respects the objective even when a larger batch is much faster', () => {
    const c = chooseBatch([row(1, 100, 20), row(2, 190, 40), row(4, 380, 80)], 50);
    expect(c.maxBatchSize).toBe(2);
    const none = chooseBatch([row(1, 100, 60), row(2, 190, 120)], 50);
    expect(none.maxBatchSize).toBe(1);
    expect(none.reason).toMatch(/every larger batch breaks the p99 objective of 50 ms/);
  });

  it('caps the queue delay and handles an empty or partial profile', () => {
    expect(chooseBatch([row(1, 10, 100, 100), row(2, 40, 120)], 500).maxQueueDelayMs).toBe(5);
    expect(chooseBatch([], 50)).toMatchObject({ maxBatchSize: 1, maxQueueDelayMs: 0 });
    expect(chooseBatch([row(1, 10, 1)], 50).reason).toMatch(/no larger batch was measured/);
  });
});
