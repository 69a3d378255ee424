// Prometheus metrics of a worker (prom-client): requests and latency per model and code, batch
// sizes, queue depth, memory used/budget per device, loads and evictions. Gauges are read from
// the worker's live state at scrape time; counters are bumped on the request path.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ReplicaMetrics } from './replica.js';

/** Label children kept per metric (models × codes; more are looked up each time). */
const MAX_CACHED_CHILDREN = 4096;

export interface WorkerMetricsSource {
  id: string;
  deviceStates(): Array<{ id: string; usedBytes: number; budgetBytes: number }>;
  replicaStates(): Array<{ model: string; id: string; queueDepth: number; inFlight: number }>;
}

export class WorkerMetrics implements ReplicaMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'model' | 'code'>;
  private readonly latency: Histogram<'model' | 'code'>;
  private readonly batches: Histogram<'model'>;
  readonly events: Counter<'type'>;

  constructor(source: WorkerMetricsSource) {
    this.registry.setDefaultLabels({ worker: source.id });
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'flotilla_requests_total',
      help: 'Answered inference requests by model and code (OK or the error code)',
      labelNames: ['model', 'code'],
      registers,
    });
    this.latency = new Histogram({
      name: 'flotilla_request_seconds',
      help: 'Time from a request reaching the replica to its answer, by model and code (fast refusals apart from served requests)',
      labelNames: ['model', 'code'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.batches = new Histogram({
      name: 'flotilla_batch_size',
      help: 'Items per session.run',
      labelNames: ['model'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers,
    });
    this.events = new Counter({
      name: 'flotilla_worker_events_total',
      help: 'Replica loads, unloads, evictions and load failures',
      labelNames: ['type'],
      registers,
    });
    new Gauge({
      name: 'flotilla_queue_depth',
      help: 'Requests queued per replica',
      labelNames: ['model', 'replica'],
      registers,
      collect() {
        this.reset();
        for (const r of source.replicaStates()) this.set({ model: r.model, replica: r.id }, r.queueDepth);
      },
    });
    new Gauge({
      name: 'flotilla_device_memory_used_bytes',
      help: 'Memory charged to replicas per device',
      labelNames: ['device'],
      registers,
      collect() {
        for (const d of source.deviceStates()) this.set({ device: d.id }, d.usedBytes);
      },
    });
    new Gauge({
      name: 'flotilla_device_memory_budget_bytes',
      help: 'Memory budget per device',
      labelNames: ['device'],
      registers,
      collect() {
        for (const d of source.deviceStates()) this.set({ device: d.id }, d.budgetBytes);
      },
    });
  }

  /** Label children by model and code: prom-client hashes and checks labels on every call otherwise. */
  private readonly requestChildren = new Map<string, { count: { inc(): void }; latency: { observe(v: number): void } }>();
  private readonly batchChildren = new Map<string, { observe(v: number): void }>();

  request(model: string, code: string, latencyMs: number): void {
    const key = `${model}\u0000${code}`;
    let c = this.requestChildren.get(key);
    if (!c) {
      c = { count: this.requests.labels({ model, code }), latency: this.latency.labels({ model, code }) };
      if (this.requestChildren.size < MAX_CACHED_CHILDREN) this.requestChildren.set(key, c);
    }
    c.count.inc();
    c.latency.observe(latencyMs / 1000);
  }

  batch(model: string, items: number): void {
    let c = this.batchChildren.get(model);
    if (!c) {
      c = this.batches.labels({ model });
      if (this.batchChildren.size < MAX_CACHED_CHILDREN) this.batchChildren.set(model, c);
    }
    c.observe(items);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
