import { chooseBatch, choosePadding, MIN_PAD_SHAPE_CHANGE_MS, type ProfileRow } from './batch-size.js';

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

describe('choosePadding: pad smaller batches when a change of shape costs more than the padding', () => {
  // The H200 run of convnet (onnxruntime 1.30, CUDA): batch 1 p50 0.27 ms, batch 128 0.85 ms;
  // a batch of another size between two 128s cost ≈ 45 ms (cuDNN graph rebuilt per new shape).
  const gpuConv = [row(1, 3680, 0.34, 0.27), row(64, 87526, 0.83, 0.73), row(128, 150157, 1.09, 0.85)];
  const chosen = chooseBatch(gpuConv, 50);

  it.each([
    ['cuDNN rebuilding its plan per shape (45 ms)', gpuConv, 45, 128],
    ['a change costing less than the padding (0.4 ms < 0.58 ms)', gpuConv, 0.4, undefined],
    [
      'under the noise floor even where padding is cheap',
      [row(1, 1000, 0.1, 0.1), row(8, 7000, 0.2, 0.11)],
      MIN_PAD_SHAPE_CHANGE_MS - 0.1,
      undefined,
    ],
    ['a cheap pad and a 2 ms change', [row(1, 1000, 0.1, 0.1), row(8, 7000, 0.2, 0.11)], 2, 8],
    ['a change that costs nothing (CPU)', gpuConv, -0.2, undefined],
  ] as const)('%s', (_what, rows, change, padTo) => {
    const c = choosePadding(rows, chooseBatch(rows, 50), change);
    expect(c.padTo).toBe(padTo);
    expect(c.shapeChangeMs).toBe(+Math.max(0, change).toFixed(3));
    if (padTo) expect(c.reason).toMatch(new RegExp(`smaller batches run padded to ${padTo}$`));
    else expect(c.reason).toBe(chooseBatch(rows, 50).reason);
  });

  it('never pads batch 1 (nothing smaller to pad)', () => {
    const c = choosePadding([row(1, 300, 4), row(2, 290, 8)], chooseBatch([row(1, 300, 4), row(2, 290, 8)], 50), 100);
    expect(c).toMatchObject({ maxBatchSize: 1, shapeChangeMs: 100 });
    expect(c.padTo).toBeUndefined();
    expect(chosen.maxBatchSize).toBe(128);
  });
});
