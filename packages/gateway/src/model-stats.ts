// Counters for the statistics extension (`GET /v2/models/{m}/stats`, Triton's shape), kept by this
// gateway for the requests it forwarded, HTTP and gRPC alike. Durations come from the replica's
// reply (`meta.queueMs`, `meta.runMs`) and the gateway's own clock (whole request). No timers, no
// I/O: the caller hands in what happened and when.

/** `{ count, ns }` as Triton writes each duration statistic. */
export interface Duration {
  count: number;
  ns: number;
}

/** One model's statistics, as `model_stats[]` entries of the statistics extension. */
export interface ModelStatistics {
  name: string;
  version: string;
  /** Epoch ms of the last request answered (0: none yet). */
  last_inference: number;
  /** Items inferred: the leading dim of the first input of each successful request. */
  inference_count: number;
  /** Successful requests (each ran once on a replica, possibly batched with others). */
  execution_count: number;
  inference_stats: {
    success: Duration;
    fail: Duration;
    queue: Duration;
    compute_input: Duration;
    compute_infer: Duration;
    compute_output: Duration;
    cache_hit: Duration;
    cache_miss: Duration;
  };
  /** Per replica batch size the requests ran in: how many, and their run time. */
  batch_stats: Array<{ batch_size: number; compute_input: Duration; compute_infer: Duration; compute_output: Duration }>;
}

/** What one request did: failed (`ok: false`) or ran, with the replica's timings. */
export type InferOutcome =
  | { ok: true; at: number; totalMs: number; items: number; queueMs: number; runMs: number; batch: number }
  | { ok: false; at: number; totalMs: number };

const zero = (): Duration => ({ count: 0, ns: 0 });
const add = (d: Duration, ms: number) => {
  d.count++;
  d.ns += Math.round(ms * 1e6);
};

interface Counters {
  last: number;
  items: number;
  executions: number;
  success: Duration;
  fail: Duration;
  queue: Duration;
  infer: Duration;
  batches: Map<number, Duration>;
}

export class ModelStats {
  private readonly models = new Map<string, Counters>();

  constructor(private readonly maxModels = 4096) {}

  record(model: string, outcome: InferOutcome): void {
    let c = this.models.get(model);
    if (!c) {
      if (this.models.size >= this.maxModels) this.models.delete(this.models.keys().next().value!);
      c = { last: 0, items: 0, executions: 0, success: zero(), fail: zero(), queue: zero(), infer: zero(), batches: new Map() };
      this.models.set(model, c);
    }
    c.last = Math.max(c.last, outcome.at);
    if (!outcome.ok) return add(c.fail, outcome.totalMs);
    add(c.success, outcome.totalMs);
    add(c.queue, outcome.queueMs);
    add(c.infer, outcome.runMs);
    c.items += outcome.items;
    c.executions++;
    let b = c.batches.get(outcome.batch);
    if (!b) c.batches.set(outcome.batch, (b = zero()));
    add(b, outcome.runMs);
  }

  /** The model's statistics; all zero when it has had no request through this gateway. */
  get(model: string, version: string): ModelStatistics {
    const c = this.models.get(model);
    return {
      name: model,
      version,
      last_inference: c?.last ?? 0,
      inference_count: c?.items ?? 0,
      execution_count: c?.executions ?? 0,
      inference_stats: {
        success: { ...(c?.success ?? zero()) },
        fail: { ...(c?.fail ?? zero()) },
        queue: { ...(c?.queue ?? zero()) },
        compute_input: zero(),
        compute_infer: { ...(c?.infer ?? zero()) },
        compute_output: zero(),
        cache_hit: zero(),
        cache_miss: zero(),
      },
      batch_stats: [...(c?.batches ?? new Map<number, Duration>())]
        .sort(([a], [b]) => a - b)
        .map(([batch_size, d]) => ({ batch_size, compute_input: zero(), compute_infer: { ...d }, compute_output: zero() })),
    };
  }
}
