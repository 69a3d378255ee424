// The deployment spec: what `deploy` sends and the head stores, with its defaults, as one zod
// schema (strict: unknown keys are refused), and `parseDeploySpec`, which never echoes unbounded input.
import { z } from 'zod';
import { BadRequestError, truncate } from './errors.js';
import { isValidName } from './subjects.js';

export const DevicePreference = z.enum(['gpu', 'cpu', 'any']);
export type DevicePreference = z.infer<typeof DevicePreference>;

export const BatchingOptions = z
  .object({
    /** Most items one session.run takes. Default: chosen by the replica (1 when the model has no batch axis). */
    maxBatchSize: z.number().int().min(1).max(4096).optional(),
    /** How long the first queued request may wait for others to join its batch, ms. Default 2. */
    maxQueueDelayMs: z.number().min(0).max(10_000).optional(),
    /** Requests queued per replica beyond which new ones get OVERLOADED. Default 1024. */
    maxQueueLength: z.number().int().min(1).max(1_000_000).optional(),
    /**
     * Run every batch padded to maxBatchSize rows (true), never (false). Default: as the profile
     * measured, i.e. where a change of input shape costs the device more than the padding does.
     */
    padBatches: z.boolean().optional(),
  })
  .strict();
export type BatchingOptions = z.infer<typeof BatchingOptions>;

/** Most shapes a deployment may name for profiling at load. */
export const MAX_SPEC_SHAPES = 8;

/** Dims of every input of one shape: `{ x: [1, 3, 64, 96] }` (a sample shape, or the shape a profile was measured at). */
export const ShapeDims = z
  .record(
    z.string().min(1).max(256),
    z
      .array(
        z
          .number()
          .int()
          .min(0)
          .max(2 ** 31),
      )
      .max(16),
  )
  .refine((r) => Object.keys(r).length >= 1 && Object.keys(r).length <= 256, { message: 'name 1 to 256 inputs' });

/** Most symbolic dims a deployment may bucket, and most bounds per dim. */
export const MAX_BUCKET_DIMS = 16;
export const MAX_BUCKETS_PER_DIM = 64;

/** Bucket upper bounds per symbolic dim: `{ seq: [16, 32, 64, 128] }` (strictly ascending, each ≥ 1). */
const ShapeBuckets = z
  .record(
    z.string().min(1).max(256),
    z
      .array(
        z
          .number()
          .int()
          .min(1)
          .max(2 ** 31),
      )
      .min(1)
      .max(MAX_BUCKETS_PER_DIM)
      .refine((b) => b.every((v, i) => i === 0 || v > b[i - 1]!), { message: 'bucket bounds must be strictly ascending' }),
  )
  .refine((r) => Object.keys(r).length >= 1 && Object.keys(r).length <= MAX_BUCKET_DIMS, {
    message: `bucket 1 to ${MAX_BUCKET_DIMS} dims`,
  });

export const ProfileOptions = z
  .object({
    /** Measure the model on first load (default true); off: defaults or the batching options apply. */
    enabled: z.boolean().optional(),
    /** Latency objective for one batch (p99), ms. Default 50. */
    latencySloMs: z.number().min(0.1).max(600_000).optional(),
    /** Time budget of one profile, ms. Default 3000. */
    budgetMs: z.number().int().min(100).max(120_000).optional(),
    /** Largest batch size tried. Default 64. */
    maxBatch: z.number().int().min(1).max(4096).optional(),
    /** Also measure onnxruntime thread settings on CPU and keep the best (default true). */
    tuneThreads: z.boolean().optional(),
    /**
     * Input shapes to profile at load, ahead of traffic (models with dynamic non-batch dims): each
     * maps every input to its dims as a request carries them, batch dim included (its value is
     * ignored); the profiler makes synthetic data of that shape. `deploy --sample-input` sets one.
     */
    shapes: z.array(ShapeDims).max(MAX_SPEC_SHAPES).optional(),
    /** Most input shapes one replica profiles in the background as traffic brings them (0: none). Default 8. */
    maxShapes: z.number().int().min(0).max(64).optional(),
    /**
     * Shape buckets per symbolic dim (models with dynamic non-batch dims): bucket upper bounds,
     * e.g. `{ seq: [16, 32, 64, 128] }`. A request whose dim falls in a bucket (≤ its bound, > the
     * one before) shares that bucket's profile and batching, profiled at the bound; requests still
     * run at their own shapes (no padding) and only identical shapes share a batch. A dim above the
     * largest bound, or not named here, is profiled at its exact value. Default: exact dims.
     * `deploy --shape-buckets seq=16,32,64` sets it.
     */
    buckets: ShapeBuckets.optional(),
  })
  .strict();
export type ProfileOptions = z.infer<typeof ProfileOptions>;

export const AutoscaleOptions = z
  .object({
    /** Outstanding requests (queued + in flight) one replica should carry. Default 4. */
    targetPerReplica: z.number().min(0.1).max(100_000).optional(),
    /** Load must persist this long before scaling up, ms. Default 1000. */
    upscaleStabilizationMs: z.number().int().min(0).max(3_600_000).optional(),
    /** Load must stay low this long before scaling down, ms. Default 10 000. */
    downscaleStabilizationMs: z.number().int().min(0).max(3_600_000).optional(),
    /** Pause between two steps in the same direction, ms. Default 2000. */
    cooldownMs: z.number().int().min(0).max(3_600_000).optional(),
  })
  .strict();
export type AutoscaleOptions = z.infer<typeof AutoscaleOptions>;

/** onnxruntime thread settings of a session (CPU execution provider). */
export const ThreadSettings = z
  .object({
    /** Threads one operator may use. */
    intraOp: z.number().int().min(1).max(1024),
    /** Operators run at once in `parallel` mode (ignored in `sequential`). Default 1. */
    interOp: z.number().int().min(1).max(1024).default(1),
    /** `sequential` runs one operator at a time; `parallel` runs independent branches at once. */
    mode: z.enum(['sequential', 'parallel']).default('sequential'),
  })
  .strict();
export type ThreadSettings = z.infer<typeof ThreadSettings>;

/**
 * Where a replica's onnxruntime session runs. `event-loop`: on the worker's JS thread, as
 * onnxruntime-node runs it (no crossing cost; the worker reads no request while a batch runs).
 * `thread`: on a thread of its own (tens of µs a batch to cross; the worker reads, batches and
 * answers while it runs, and replicas on one worker run at once). `auto`: a thread where runs are
 * long (1 ms or more at the chosen batch, from the profile) and the loop has a core of its own (a
 * GPU, or 4 or more usable cores), else the event loop.
 */
export const SessionHostChoice = z.enum(['auto', 'thread', 'event-loop']);
export type SessionHostChoice = z.infer<typeof SessionHostChoice>;
/** Where a replica's session does run: SessionHostChoice once `auto` is settled. */
export const SessionHost = SessionHostChoice.exclude(['auto']);
export type SessionHost = z.infer<typeof SessionHost>;

/** Cluster, model and worker names (subjects.ts `isValidName`: one NATS token, a safe file name). */
export const Name = z.string().refine(isValidName, { message: "use 1-64 letters, digits, '_' or '-', starting with a letter or digit" });

export const DeploySpec = z
  .object({
    name: Name,
    /** sha256 (hex) of the ONNX file; the artifact is stored under this name in the model bucket. */
    digest: z.string().regex(/^[0-9a-f]{64}$/),
    /** ONNX file size in bytes. */
    sizeBytes: z.number().int().min(1),
    /** Where replicas should run. `gpu` falls back to CPU when `allowFallback` (default true). */
    device: DevicePreference.default('any'),
    allowFallback: z.boolean().default(true),
    /** Replicas to run now; autoscaling keeps it within [minReplicas, maxReplicas]. */
    replicas: z.number().int().min(0).max(1000).default(1),
    minReplicas: z.number().int().min(0).max(1000).optional(),
    maxReplicas: z.number().int().min(1).max(1000).optional(),
    /** Memory one replica needs, bytes; default: estimated from the file size (later: the profile). */
    memoryBytes: z.number().int().min(1).optional(),
    batching: BatchingOptions.default({}),
    /** Pinned replicas are never evicted. */
    pin: z.boolean().default(false),
    /**
     * Cache onnxruntime's optimised graph per device class and reuse it on later loads. Default
     * (unset): on where it helps — the first load's profile times a create from the cache against
     * a plain one and later loads follow what it found. true / false: always / never.
     */
    compile: z.boolean().optional(),
    /** Autoscaling between minReplicas and maxReplicas on queue depth (when they differ). */
    autoscale: AutoscaleOptions.default({}),
    /** Profiling on first load per device class (drives batching, threads and the memory charge). */
    profile: ProfileOptions.default({}),
    /** onnxruntime thread settings for CPU replicas; default: chosen by the profile (or the worker's --threads). */
    threads: ThreadSettings.optional(),
    /** Run each new replica once on synthetic inputs before it serves (when it was not just profiled). Default true. */
    warmup: z.boolean().default(true),
    /** Where the session runs (see SessionHostChoice); default: the worker's `--session-host` (auto). */
    sessionHost: SessionHostChoice.optional(),
  })
  .strict();
export type DeploySpec = z.infer<typeof DeploySpec>;
export type DeploySpecInput = z.input<typeof DeploySpec>;

/** Validates a raw deploy spec; returns a new object with defaults filled in. */
export function parseDeploySpec(raw: unknown): DeploySpec {
  const r = DeploySpec.safeParse(raw);
  if (!r.success) {
    // Paths and messages are cut short: a 600 KB unknown key must not come back in the error.
    const issues = r.error.issues
      .slice(0, 5)
      .map((i) => truncate(`${i.path.map((p) => truncate(String(p), 64)).join('.') || '(spec)'}: ${i.message}`, 300));
    throw new BadRequestError(`invalid deployment: ${issues.join('; ')}`, { data: { issues } });
  }
  const spec = r.data;
  if (spec.minReplicas !== undefined && spec.maxReplicas !== undefined && spec.minReplicas > spec.maxReplicas) {
    throw new BadRequestError(`invalid deployment: minReplicas ${spec.minReplicas} > maxReplicas ${spec.maxReplicas}`);
  }
  return spec;
}
