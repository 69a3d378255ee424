// Statistics counters on a synthetic trace (pure).
import { ModelStats } from './model-stats.js';

describe('model statistics', () => {
  it('counts successes, failures, items, queue and run time, per batch size', () => {
    const s = new ModelStats();
    s.record('m', { ok: true, at: 1000, totalMs: 3, items: 4, queueMs: 1, runMs: 2, batch: 8 });
    s.record('m', { ok: true, at: 2000, totalMs: 5, items: 1, queueMs: 0.5, runMs: 1.5, batch: 1 });
    s.record('m', { ok: false, at: 1500, totalMs: 7 });
    s.record('other', { ok: true, at: 9, totalMs: 1, items: 1, queueMs: 0, runMs: 1, batch: 1 });
    const got = s.get('m', '1');
    expect(got).toMatchObject({ name: 'm', version: '1', last_inference: 2000, inference_count: 5, execution_count: 2 });
    expect(got.inference_stats.success).toEqual({ count: 2, ns: 8_000_000 });
    expect(got.inference_stats.fail).toEqual({ count: 1, ns: 7_000_000 });
    expect(got.inference_stats.queue).toEqual({ count: 2, ns: 1_500_000 });
    expect(got.inference_stats.compute_infer).toEqual({ count: 2, ns: 3_500_000 });
    expect(got.batch_stats.map((b) => [b.batch_size, b.compute_infer])).toEqual([
      [1, { count: 1, ns: 1_500_000 }],
      [8, { count: 1, ns: 2_000_000 }],
    ]);
  });

  it('is all zero for a model with no requests, and copies (a snapshot does not change later)', () => {
    const s = new ModelStats();
    const before = s.get('m', '1');
    expect(before).toMatchObject({ last_inference: 0, inference_count: 0, execution_count: 0, batch_stats: [] });
    s.record('m', { ok: true, at: 1, totalMs: 1, items: 1, queueMs: 0, runMs: 1, batch: 1 });
    expect(before.inference_stats.success.count).toBe(0);
    expect(s.get('m', '1').inference_stats.success.count).toBe(1);
  });

  it('keeps at most maxModels models, forgetting the oldest', () => {
    const s = new ModelStats(2);
    for (const m of ['a', 'b', 'c']) s.record(m, { ok: false, at: 1, totalMs: 1 });
    expect(s.get('a', '1').inference_stats.fail.count).toBe(0);
    expect(s.get('c', '1').inference_stats.fail.count).toBe(1);
  });
});
