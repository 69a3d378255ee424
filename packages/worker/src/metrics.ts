// Prometheus metrics of a worker (prom-client): requests and latency per model and code, batch
// sizes, queue depth, memory used/budget per device, loads and evictions, request buffers reused.
// Gauges are read from the worker's live state at scrape time; counters are bumped on the request
// path (the payload pool's are read from it at scrape time).
import { Counter, Gauge, Registry, type MetricValue } from 'prom-client';
import type { ReplicaMetrics } from './replica.js';

const LATENCY_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128];

/** One label set's counts: observations, their sum, and per bucket (not cumulative). */
interface TallyRow {
  labels: Record<string, string>;
  count: number;
  sum: number;
  buckets: Float64Array;
}

/** What prom-client's registry reads of a metric: its name, and its values when scraped. */
interface ScrapedMetric {
  name: string;
  help: string;
  type: 'histogram' | 'counter';
  aggregator: 'sum';
  get(): Promise<Omit<ScrapedMetric, 'get' | 'reset'> & { values: MetricValue<string>[] }>;
  reset(): void;
}

/**
 * A histogram (and the counter of its observations) kept in plain numbers on the request path and
 * written out in Prometheus' form only when scraped. prom-client's own `observe` converts,
 * validates and hashes its labels on every call, a label child included: with its counter that
 * was ≈ 5 % of a worker's CPU at 19k requests/s (`bench:overhead`, mlp, c=128, `--cpu-prof`).
 * Registered in the registry as a metric of its own (prom-client reads `get()`).
 */
class Tally {
  private readonly rows = new Map<string, TallyRow>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
  ) {}

  /** Counts `value` under the label set known as `key`; false (nothing counted) when that set is new: see `first`. */
  observe(key: string, value: number): boolean {
    const r = this.rows.get(key);
    if (!r) return false;
    r.count++;
    r.sum += value;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (value <= b[i]!) {
        r.buckets[i]!++;
        break;
      }
    }
    return true;
  }

  /** Counts the first `value` of a new label set (the labels' object is made only then, off the common path). */
  first(key: string, labels: Record<string, string>, value: number): void {
    this.rows.set(key, { labels, count: 0, sum: 0, buckets: new Float64Array(this.bounds.length) });
    this.observe(key, value);
  }

  /** The histogram as prom-client hands it to its registry: cumulative buckets, +Inf, sum, count. */
  histogram(): ScrapedMetric {
    return this.metric('histogram', this.name, this.help, () => {
      const out: MetricValue<string>[] = [];
      for (const r of this.rows.values()) {
        let cumulative = 0;
        this.bounds.forEach((le, i) => {
          cumulative += r.buckets[i]!;
          out.push({ metricName: `${this.name}_bucket`, labels: { le, ...r.labels }, value: cumulative } as MetricValue<string>);
        });
        out.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...r.labels }, value: r.count } as MetricValue<string>);
        out.push({ metricName: `${this.name}_sum`, labels: r.labels, value: r.sum } as MetricValue<string>);
        out.push({ metricName: `${this.name}_count`, labels: r.labels, value: r.count } as MetricValue<string>);
      }
      return out;
    });
  }

  /** The observations' count as a counter of its own name. */
  counter(name: string, help: string): ScrapedMetric {
    return this.metric('counter', name, help, () => [...this.rows.values()].map((r) => ({ labels: r.labels, value: r.count })));
  }

  private metric(type: ScrapedMetric['type'], name: string, help: string, values: () => MetricValue<string>[]): ScrapedMetric {
    return scraped(type, name, help, values, () => this.rows.clear());
  }
}

/** A metric whose values are read when scraped, as prom-client's registry reads it. */
function scraped(
  type: ScrapedMetric['type'],
  name: string,
  help: string,
  values: () => MetricValue<string>[],
  reset: () => void = () => undefined,
): ScrapedMetric {
  const shape = { name, help, type, aggregator: 'sum' as const };
  return { ...shape, get: () => Promise.resolve({ ...shape, values: values() }), reset };
}

export interface WorkerMetricsSource {
  id: string;
  deviceStates(): Array<{ id: string; usedBytes: number; budgetBytes: number }>;
  replicaStates(): Array<{ model: string; id: string; queueDepth: number; inFlight: number }>;
  /** The payload pool's counts (bus payload-pool.ts), where the worker gathers requests in it. */
  payloadStats?(): { reused: number; allocated: number; recycled: number; freeBytes: number };
  /** Bytes of accepted, unanswered requests held across the replicas, and their limit (intake-budget.ts). */
  intakeStats?(): { heldBytes: number; limitBytes: number };
}

export class WorkerMetrics implements ReplicaMetrics {
  readonly registry = new Registry();
  /** Requests by model and code: their count (flotilla_requests_total) and latency. */
  private readonly latency = new Tally(
    'flotilla_request_seconds',
    'Time from a request reaching the replica to its answer, by model and code (fast refusals apart from served requests)',
    LATENCY_BUCKETS_S,
  );
  private readonly batches = new Tally('flotilla_batch_size', 'Items per session.run', BATCH_BUCKETS);
  readonly events: Counter<'type'>;

  constructor(source: WorkerMetricsSource) {
    this.registry.setDefaultLabels({ worker: source.id });
    const registers = [this.registry];
    this.registry.registerMetric(
      this.latency.counter('flotilla_requests_total', 'Answered inference requests by model and code (OK or the error code)') as never,
    );
    this.registry.registerMetric(this.latency.histogram() as never);
    this.registry.registerMetric(this.batches.histogram() as never);
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
    /** A gauge without labels, set from the worker's state each time it is scraped. */
    const readAtScrape = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    const payloads = source.payloadStats?.bind(source);
    if (payloads) {
      this.registry.registerMetric(
        // The pool keeps its own counts: read when scraped, never reset here.
        scraped(
          'counter',
          'flotilla_payload_buffers_total',
          'Buffers requests spanning socket reads were gathered in: reused from the pool, or allocated because none was free',
          () => {
            const p = payloads();
            return [
              { labels: { outcome: 'reused' }, value: p.reused },
              { labels: { outcome: 'allocated' }, value: p.allocated },
            ];
          },
        ) as never,
      );
      readAtScrape(
        'flotilla_payload_pool_free_bytes',
        'Bytes of request buffers the payload pool holds free for reuse',
        () => payloads().freeBytes,
      );
    }
    const intake = source.intakeStats?.bind(source);
    if (intake) {
      readAtScrape(
        'flotilla_queued_request_bytes',
        'Bytes of accepted, unanswered requests the worker holds across its replicas',
        () => intake().heldBytes,
      );
      readAtScrape(
        'flotilla_queued_request_bytes_limit',
        'Most bytes of unanswered requests the worker holds; a request past it is answered OVERLOADED',
        () => intake().limitBytes,
      );
    }
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

  request(model: string, code: string, latencyMs: number): void {
    const key = `${model}\u0000${code}`;
    if (!this.latency.observe(key, latencyMs / 1000)) this.latency.first(key, { model, code }, latencyMs / 1000);
  }

  batch(model: string, items: number): void {
    if (!this.batches.observe(model, items)) this.batches.first(model, { model }, items);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
