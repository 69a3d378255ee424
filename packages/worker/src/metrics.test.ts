// The worker's Prometheus registry: each family is exported with the labels the Grafana dashboard
// (deploy/grafana) queries, and moves when the request path reports to it.
import { WorkerMetrics } from './metrics.js';

const sample = (text: string, name: string, labels: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((kv) => l.includes(kv)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
};

describe('worker metrics', () => {
  it('observes latency per model and code, apart for served and refused requests', async () => {
    const m = new WorkerMetrics({ id: 'w9', deviceStates: () => [], replicaStates: () => [] });
    m.request('mlp', 'OK', 20);
    m.request('mlp', 'OK', 30);
    m.request('mlp', 'OVERLOADED', 0.1);
    const text = await m.text();
    expect(sample(text, 'flotilla_request_seconds_count', 'model="mlp",code="OK",worker="w9"')).toBe(2);
    expect(sample(text, 'flotilla_request_seconds_count', 'model="mlp",code="OVERLOADED",worker="w9"')).toBe(1);
    expect(sample(text, 'flotilla_request_seconds_sum', 'model="mlp",code="OK"')).toBeCloseTo(0.05, 6);
    // The refusal lands in the first bucket, the served ones above 10 ms only.
    expect(sample(text, 'flotilla_request_seconds_bucket', 'le="0.0005",model="mlp",code="OVERLOADED"')).toBe(1);
    expect(sample(text, 'flotilla_request_seconds_bucket', 'le="0.01",model="mlp",code="OK"')).toBe(0);
    expect(sample(text, 'flotilla_request_seconds_bucket', 'le="0.05",model="mlp",code="OK"')).toBe(2);
    expect(sample(text, 'flotilla_requests_total', 'model="mlp",code="OK"')).toBe(2);
  });

  it('writes each histogram as Prometheus does: cumulative buckets ending at +Inf = count, sum and count', async () => {
    const m = new WorkerMetrics({ id: 'w9', deviceStates: () => [], replicaStates: () => [] });
    for (const items of [1, 3, 8, 8, 200]) m.batch('mlp', items);
    const text = await m.text();
    const buckets = text.split('\n').filter((l) => l.startsWith('flotilla_batch_size_bucket{'));
    expect(buckets.map((l) => /le="([^"]+)"/.exec(l)![1])).toEqual(['1', '2', '4', '8', '16', '32', '64', '128', '+Inf']);
    expect(buckets.map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)))).toEqual([1, 1, 2, 4, 4, 4, 4, 4, 5]);
    expect(sample(text, 'flotilla_batch_size_count', 'model="mlp"')).toBe(5);
    expect(sample(text, 'flotilla_batch_size_sum', 'model="mlp"')).toBe(220);
    expect(text).toContain('# TYPE flotilla_batch_size histogram');
    expect(text).toContain('# TYPE flotilla_requests_total counter');
  });

  it('reads queue depth and device memory from the worker at scrape time', async () => {
    let queue = 3;
    const m = new WorkerMetrics({
      id: 'w9',
      deviceStates: () => [{ id: 'cpu', usedBytes: 100, budgetBytes: 1000 }],
      replicaStates: () => [{ model: 'mlp', id: 'mlp-1', queueDepth: queue, inFlight: 0 }],
    });
    expect(sample(await m.text(), 'flotilla_queue_depth', 'model="mlp",replica="mlp-1"')).toBe(3);
    queue = 7;
    expect(sample(await m.text(), 'flotilla_queue_depth', 'model="mlp",replica="mlp-1"')).toBe(7);
    expect(sample(await m.text(), 'flotilla_device_memory_budget_bytes', 'device="cpu",worker="w9"')).toBe(1000);
  });

  it('reads the payload pool’s counts at scrape time, and has none where the worker gives none', async () => {
    const stats = { reused: 5, allocated: 2, recycled: 6, freeBytes: 8192 };
    const m = new WorkerMetrics({ id: 'w9', deviceStates: () => [], replicaStates: () => [], payloadStats: () => stats });
    let text = await m.text();
    expect(sample(text, 'flotilla_payload_buffers_total', 'outcome="reused",worker="w9"')).toBe(5);
    expect(sample(text, 'flotilla_payload_buffers_total', 'outcome="allocated"')).toBe(2);
    expect(text).toContain('# TYPE flotilla_payload_buffers_total counter');
    stats.reused = 40;
    stats.freeBytes = 0;
    text = await m.text();
    expect(sample(text, 'flotilla_payload_buffers_total', 'outcome="reused"')).toBe(40);
    expect(text).toMatch(/^flotilla_payload_pool_free_bytes\{worker="w9"\} 0$/m);
    const none = await new WorkerMetrics({ id: 'w9', deviceStates: () => [], replicaStates: () => [] }).text();
    expect(none).not.toContain('flotilla_payload');
  });

  it('reads the bytes of unanswered requests and their limit at scrape time', async () => {
    const intake = { heldBytes: 4096, limitBytes: 1 << 20 };
    const m = new WorkerMetrics({ id: 'w9', deviceStates: () => [], replicaStates: () => [], intakeStats: () => intake });
    expect(sample(await m.text(), 'flotilla_queued_request_bytes', 'worker="w9"')).toBe(4096);
    intake.heldBytes = 0;
    const text = await m.text();
    expect(text).toMatch(/^flotilla_queued_request_bytes\{worker="w9"\} 0$/m);
    expect(text).toMatch(/^flotilla_queued_request_bytes_limit\{worker="w9"\} 1048576$/m);
    const none = await new WorkerMetrics({ id: 'w9', deviceStates: () => [], replicaStates: () => [] }).text();
    expect(none).not.toContain('flotilla_queued_request');
  });
});
