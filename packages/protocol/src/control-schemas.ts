// Schemas of every message the head receives (control requests, heartbeats, events, load replies)
// and of what it keeps in JetStream (deployment records, the leadership lease), defined once: the
// TypeScript types are inferred from them. Everything is bounded (string lengths, numeric ranges,
// array lengths, hardware claims) and strict (unknown keys are refused), so one message from any
// client on the bus can neither crash the head nor mislead placement.
import { z } from 'zod';
import { BadRequestError, MAX_ERROR_MESSAGE_CHARS, truncate } from './errors.js';
import { encode } from './codec.js';
import { DeviceId, ReplicaId, parseStored, parseWith } from './data-schemas.js';
import { PROTOCOL_VERSION } from './version.js';
import { DTYPES, type DType } from './tensor.js';
import { CONTROL_OPS, type ControlOp } from './subjects.js';
import { DeploySpec, Name, SessionHost, ShapeDims, ThreadSettings } from './deploy-spec.js';
import type { ModelProfile } from './profile.js';

const KiB = 1024;
const TiB = 1024 ** 4;

// ---------- limits ----------

/** Most GPUs one worker may report. */
export const MAX_GPUS_PER_WORKER = 64;
/** Largest batch size a replica's histogram keys on its own; larger runs (one big request) share `>4096`. */
export const HISTOGRAM_MAX_BATCH = 4096;
/** Most replicas one heartbeat may report. */
export const MAX_REPLICAS_PER_HEARTBEAT = 4096;
/** Largest VRAM one GPU may claim, bytes (4 TiB; today's largest GPUs have < 300 GB). */
export const MAX_GPU_BYTES = 4 * TiB;
/** Largest host memory a worker may claim, bytes (64 TiB). */
export const MAX_HOST_BYTES = 64 * TiB;
/** Most logical CPU cores a worker may claim. */
export const MAX_CPU_CORES = 4096;
/** Longest event `reason`, characters. */
export const MAX_EVENT_REASON_CHARS = 1024;
/** Largest event `data`, msgpack-encoded, bytes. */
export const MAX_EVENT_DATA_BYTES = 8 * KiB;
/** Largest `data` of an error carried inside a heartbeat or load reply, msgpack-encoded, bytes. */
export const MAX_ERROR_DATA_BYTES = 8 * KiB;
/** Most events one `events` request may ask for. */
export const MAX_EVENTS_LIMIT = 100_000;
/** Longest `waitMs` of an `ensure` request (the head caps it further to MAX_ENSURE_WAIT_MS), ms. */
export const MAX_WAIT_MS = 86_400_000;

// ---------- building blocks ----------

const MAX_EPOCH_MS = 8.64e15; // the largest Date
const V = z.literal(PROTOCOL_VERSION);
/** Cluster, model, worker and head names: the pattern of `subjects.ts` (one NATS token). */

const Text = (max: number) => z.string().max(max);
const Count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const EpochMs = z.number().min(0).max(MAX_EPOCH_MS);
const Bytes = z.number().min(0).max(MAX_HOST_BYTES);
const Ms = z
  .number()
  .min(0)
  .max(MAX_WAIT_MS * 365);

/** Any plain value whose msgpack encoding is at most `max` bytes. */
const boundedData = (max: number) =>
  z.unknown().refine((v) => v === undefined || encode(v).byteLength <= max, { message: `larger than ${max} bytes encoded` });

export const WireErrorSchema = z
  .object({ code: Text(64), message: Text(MAX_ERROR_MESSAGE_CHARS + 64), data: boundedData(MAX_ERROR_DATA_BYTES).optional() })
  .strict();

// ---------- heartbeat ----------

export const GpuInfo = z
  .object({
    index: z
      .number()
      .int()
      .min(0)
      .max(MAX_GPUS_PER_WORKER - 1),
    vendor: Text(128),
    model: Text(256),
    vramTotalBytes: z.number().min(0).max(MAX_GPU_BYTES),
    vramFreeBytes: z.number().min(0).max(MAX_GPU_BYTES),
  })
  .strict();
export type GpuInfo = z.infer<typeof GpuInfo>;

export const Inventory = z
  .object({
    /** `cores`: logical cores of the host; `usableCores`: what this process may use (affinity, cgroup quota). */
    cpu: z
      .object({
        cores: z.number().int().min(1).max(MAX_CPU_CORES),
        model: Text(256),
        usableCores: z.number().min(0).max(MAX_CPU_CORES).optional(),
      })
      .strict(),
    /** `totalBytes` is the host's memory or the container's limit, whichever is smaller. */
    memory: z.object({ totalBytes: Bytes, availableBytes: Bytes, cgroupLimitBytes: Bytes.optional() }).strict(),
    gpus: z.array(GpuInfo).max(MAX_GPUS_PER_WORKER),
    /** `measured` when read from the host, `override` when (partly) set by config. */
    source: z.enum(['measured', 'override']),
    hostname: Text(255),
  })
  .strict();
export type Inventory = z.infer<typeof Inventory>;

export const DeviceKind = z.enum(['cpu', 'gpu']);
export type DeviceKind = z.infer<typeof DeviceKind>;

export const DeviceState = z
  .object({
    /** `cpu` or `gpu:<index>`. */
    id: DeviceId,
    kind: DeviceKind,
    /** Memory the device has, bytes (host RAM for cpu, VRAM for gpu). */
    capacityBytes: Bytes,
    /** Part of the capacity the worker may charge to replicas. */
    budgetBytes: Bytes,
    /** Sum of the charges of replicas on the device. */
    usedBytes: Bytes,
    /** Execution provider used for replicas on this device. */
    executionProvider: Text(64),
    /** Eviction policy of the device (`fifo`, `lru`, `lfu`, ...). */
    policy: Text(64),
  })
  .strict()
  .superRefine((d, ctx) => {
    if (d.kind !== (d.id === 'cpu' ? 'cpu' : 'gpu'))
      ctx.addIssue({ code: 'custom', path: ['kind'], message: `does not match the device id` });
    // A GPU's memory is VRAM: bounded by the largest plausible GPU (the 1 PB GPU is refused).
    if (d.kind === 'gpu') {
      for (const k of ['capacityBytes', 'budgetBytes', 'usedBytes'] as const) {
        if (d[k] > MAX_GPU_BYTES) ctx.addIssue({ code: 'custom', path: [k], message: `more than ${MAX_GPU_BYTES} bytes on one GPU` });
      }
    }
  });
export type DeviceState = z.infer<typeof DeviceState>;

export const ReplicaStateName = z.enum(['loading', 'ready', 'draining', 'failed']);
export type ReplicaStateName = z.infer<typeof ReplicaStateName>;

/** Most input shapes a replica reports profiles of (a model with dynamic non-batch dims). */
export const MAX_PROFILED_SHAPES = 64;
/** Longest batch key (input names and non-batch dims, `x:3x64x96`) a heartbeat names for a shape. */
export const MAX_SHAPE_KEY_CHARS = 1024;

/** A batch key as a heartbeat names it: cut to MAX_SHAPE_KEY_CHARS, ending in `…` (a model's input names, up to 256 of 256 characters, make keys of any length). */
export function shapeKeyText(key: string): string {
  return key.length > MAX_SHAPE_KEY_CHARS ? `${key.slice(0, MAX_SHAPE_KEY_CHARS - 1)}…` : key;
}

/** One input shape of a model with dynamic non-batch dims, as its replica profiles and batches it. */
export const ShapeProfileSummary = z
  .object({
    /** The batch key of the shape (`shapeKey`: `x:3x64x96`). */
    shape: Text(MAX_SHAPE_KEY_CHARS),
    /** `queued` for a background profile, `profiling` now, `measured` / `cache` (KV), `failed`, or `skipped` (over maxShapes). */
    state: z.enum(['queued', 'profiling', 'measured', 'cache', 'failed', 'skipped']),
    /** Requests of this shape since the load. */
    requests: Count,
    /** Batching this shape runs with (set once profiled). */
    maxBatchSize: z.number().int().min(1).max(4096).optional(),
    maxQueueDelayMs: z.number().min(0).max(10_000).optional(),
    /** Smaller batches of this shape run padded to this many rows (its profile measured a costly change of batch size). */
    padTo: z.number().int().min(1).max(4096).optional(),
    /** Bytes the shape's profile says a replica needs (0 until profiled). */
    replicaBytes: Bytes,
    /** Time its profile took, ms (0 unless measured by this replica). */
    tookMs: Ms,
    /** Why: the profile's choice, or why it failed or was skipped. */
    reason: Text(MAX_EVENT_REASON_CHARS),
  })
  .strict();
export type ShapeProfileSummary = z.infer<typeof ShapeProfileSummary>;

export const ReplicaProfileSummary = z
  .object({
    /**
     * `measured` on this load, `cache` (KV), `skipped` (with reason), `disabled`, or `per-shape`:
     * dynamic non-batch dims, profiled per input shape (`shapes`).
     */
    source: z.enum(['measured', 'cache', 'skipped', 'disabled', 'per-shape']),
    deviceClass: Text(256),
    reason: Text(MAX_EVENT_REASON_CHARS),
    /** Bytes the profile says a replica needs (0 when not profiled). */
    replicaBytes: Bytes,
    /** Items/s at the chosen batch size (0 when not profiled). */
    itemsPerSec: z.number().min(0).max(1e12),
    tookMs: Ms,
    /** Thread settings the session runs with (CPU provider), and where they came from. */
    threads: ThreadSettings.extend({ source: z.enum(['profile', 'deployment', 'worker', 'default']) })
      .strict()
      .optional(),
    /** The model's dynamic non-batch dims by name (`H`, `W`; `x[2]` when unnamed). */
    dynamicDims: z.array(Text(128)).max(64).optional(),
    /** Per input shape (source `per-shape`): state, batching and footprint. */
    shapes: z.array(ShapeProfileSummary).max(MAX_PROFILED_SHAPES).optional(),
  })
  .strict();
export type ReplicaProfileSummary = z.infer<typeof ReplicaProfileSummary>;

/**
 * What a heartbeat says of every replica, loading or loaded. A loading replica has taken no
 * requests yet (its counters are 0) and has no profile yet.
 */
const replicaCommon = {
  id: ReplicaId,
  model: Name,
  digest: Text(128),
  device: DeviceId,
  /** Bytes charged to the device for this replica (while loading: the reservation). */
  bytes: Bytes,
  queueDepth: Count,
  inFlight: Count,
  /** Requests answered successfully, and with an error. */
  processed: Count,
  failed: Count,
  /** Items (rows along the batch axis) in the requests answered successfully. */
  itemsProcessed: Count.optional(),
  /** Never evicted. */
  pinned: z.boolean(),
  /** Where the batching settings came from (absent while loading). */
  profile: ReplicaProfileSummary.optional(),
  error: WireErrorSchema.optional(),
};

/** A replica whose session is being opened (and profiled): no provider, batching or history yet. */
export const LoadingReplicaState = z.object({ ...replicaCommon, state: z.literal('loading') }).strict();
export type LoadingReplicaState = z.infer<typeof LoadingReplicaState>;

/** One input or output of a model: name, element type, dims (a number, a symbolic name such as `batch`, or null when unnamed and dynamic). */
export const TensorSignature = z
  .object({
    name: Text(256),
    dtype: z.enum(Object.keys(DTYPES) as [DType, ...DType[]]),
    shape: z
      .array(
        z.union([
          z
            .number()
            .int()
            .min(0)
            .max(2 ** 31),
          Text(64),
          z.null(),
        ]),
      )
      .max(16),
  })
  .strict();
export type TensorSignature = z.infer<typeof TensorSignature>;

/** What a model takes and returns, as its replica read it from the loaded session. */
export const ModelSignature = z
  .object({ inputs: z.array(TensorSignature).max(256), outputs: z.array(TensorSignature).max(256), batchAxis: z.boolean() })
  .strict();
export type ModelSignature = z.infer<typeof ModelSignature>;

/** Most latencies one replica's `latencyMs` may summarise (the worker keeps the last 1,024). */
export const MAX_LATENCY_WINDOW_COUNT = 1_000_000;

/**
 * p50 and p99 (nearest rank), ms, over a replica's recent successful requests (the worker: the last
 * 1,024 answered within 10 s), and how many requests that was.
 */
export const LatencyWindowSummary = z
  .object({
    p50: z.number().min(0).max(MAX_WAIT_MS),
    p99: z.number().min(0).max(MAX_WAIT_MS),
    count: z.number().int().min(1).max(MAX_LATENCY_WINDOW_COUNT),
  })
  .strict()
  .refine((l) => l.p50 <= l.p99, { message: 'p50 above p99', path: ['p50'] });
export type LatencyWindowSummary = z.infer<typeof LatencyWindowSummary>;

/** Most batch keys (input shapes) one replica reports batch-size tuning for; the tuner forgets the oldest past it. */
export const MAX_TUNED_BATCH_KEYS = 64;

/**
 * A CPU replica's batch size for one batch key as tuned on its own traffic (the deployment left
 * `maxBatchSize` unset): `from` is the profile's (or the replica's default) size, `maxBatchSize` the
 * size its batches now run at (≤ `from`). `waiting`: for full batches to compare; `comparing`: batches
 * of the size and of its half in turn; `settled`: for good (until its profile changes).
 */
export const TunedBatch = z
  .object({
    /** The batch key (input names and non-batch dims: `x:3x64x64`). */
    shape: Text(MAX_SHAPE_KEY_CHARS),
    from: z.number().int().min(1).max(4096),
    maxBatchSize: z.number().int().min(1).max(4096),
    state: z.enum(['waiting', 'comparing', 'settled']),
  })
  .strict()
  .refine((t) => t.maxBatchSize <= t.from, { message: 'tuned above the size it started from', path: ['maxBatchSize'] });
export type TunedBatch = z.infer<typeof TunedBatch>;

/** The sizes a replica's batch keys run at where its tuner moved them below where they started, distinct, smallest first. */
export function tunedBelow(tuned: ReadonlyArray<Pick<TunedBatch, 'from' | 'maxBatchSize'>> | undefined): number[] {
  return [...new Set((tuned ?? []).filter((t) => t.maxBatchSize < t.from).map((t) => t.maxBatchSize))].sort((a, b) => a - b);
}

/** A replica with an open session: serving (`ready`), finishing what it accepted (`draining`), or `failed`. */
export const LoadedReplicaState = z
  .object({
    ...replicaCommon,
    state: z.enum(['ready', 'draining', 'failed']),
    executionProvider: Text(64).min(1),
    /** Where the session runs: on the worker's event loop or on a thread of its own. */
    sessionHost: SessionHost.optional(),
    batching: z
      .object({
        maxBatchSize: z.number().int().min(1).max(4096),
        maxQueueDelayMs: z.number().min(0).max(10_000),
        maxQueueLength: z.number().int().min(1).max(1_000_000),
        batchAxis: z.boolean(),
        /** Smaller batches run padded to this many rows (a profile or the deployment said so). */
        padTo: z.number().int().min(1).max(4096).optional(),
      })
      .strict(),
    /** Batch sizes run so far → count; sizes above HISTOGRAM_MAX_BATCH share the key `>4096`. */
    batchHistogram: z
      .record(z.string().regex(/^(\d{1,4}|>4096)$/), Count)
      .refine((h) => Object.keys(h).length <= HISTOGRAM_MAX_BATCH + 1, { message: `at most ${HISTOGRAM_MAX_BATCH + 1} batch sizes` }),
    /** Epoch ms of the load and of the last request (eviction policies use them). */
    loadedAt: EpochMs,
    lastUsedAt: EpochMs,
    /** Expected requests per second (the worker's decayed count) and the time its reload would take, ms: what evicting it costs (placement). */
    rate: z.number().min(0).max(1e9).optional(),
    reloadMs: z.number().min(0).max(1e7).optional(),
    /** The model's inputs and outputs as the session reports them (absent from older workers). */
    signature: ModelSignature.optional(),
    /** Latency (arrival → answer) of the recent successful requests; absent when there were none (or from older workers). */
    latencyMs: LatencyWindowSummary.optional(),
    /** Batch sizes tuned on this replica's traffic, per batch key; absent when it tunes none (or from older workers). */
    tunedBatches: z.array(TunedBatch).max(MAX_TUNED_BATCH_KEYS).optional(),
  })
  .strict();
export type LoadedReplicaState = z.infer<typeof LoadedReplicaState>;

/** A replica in a heartbeat, by its `state`: loading, or loaded (ready, draining, failed). */
export const ReplicaState = z.discriminatedUnion('state', [LoadingReplicaState, LoadedReplicaState]);
export type ReplicaState = z.infer<typeof ReplicaState>;

/** A process id as a worker or head reports it. */
const Pid = z
  .number()
  .int()
  .min(0)
  .max(2 ** 32);

export const WorkerStateName = z.enum(['starting', 'running', 'draining', 'stopped', 'failed']);
export type WorkerStateName = z.infer<typeof WorkerStateName>;

export const Heartbeat = z
  .object({
    v: V,
    workerId: Name,
    pid: Pid,
    state: WorkerStateName,
    /** Counts heartbeats of this incarnation (startedAt, pid) from 0. */
    seq: Count,
    startedAt: EpochMs,
    sentAt: EpochMs,
    inventory: Inventory,
    devices: z.array(DeviceState).max(MAX_GPUS_PER_WORKER + 1),
    replicas: z.array(ReplicaState).max(MAX_REPLICAS_PER_HEARTBEAT),
  })
  .strict();
export type Heartbeat = z.infer<typeof Heartbeat>;

// ---------- head presence ----------

/** Longest host name a head may report, characters (DNS names are at most 253). */
export const MAX_HOST_CHARS = 255;

export const HeadRole = z.enum(['leader', 'standby']);
export type HeadRole = z.infer<typeof HeadRole>;

/**
 * `heads.<id>`: every head (leader and standbys) publishes one about every second, so the leader
 * can list the standbys in `status`. An incarnation is (startedAt, pid); `seq` counts from 0 and
 * is judged like a worker's heartbeat seq (replays and implausible jumps are refused).
 */
export const HeadPresence = z
  .object({
    v: V,
    id: Name,
    pid: Pid,
    host: Text(MAX_HOST_CHARS),
    startedAt: EpochMs,
    role: HeadRole,
    /** When the head took its current role (its own clock), epoch ms. */
    since: EpochMs,
    seq: Count,
  })
  .strict();
export type HeadPresence = z.infer<typeof HeadPresence>;

// ---------- events ----------

export const EventMessage = z
  .object({
    v: V,
    /** One subject token: `loaded`, `unloaded`, `evicted`, `load_failed`, `refused`, `scaled`, ... */
    type: Name,
    model: Name.optional(),
    worker: Name.optional(),
    device: DeviceId.optional(),
    replica: ReplicaId.optional(),
    bytes: Bytes.optional(),
    reason: Text(MAX_EVENT_REASON_CHARS).optional(),
    at: EpochMs,
    data: boundedData(MAX_EVENT_DATA_BYTES).optional(),
  })
  .strict();
export type EventMessage = z.infer<typeof EventMessage>;

// ---------- worker replies the head reads ----------

export const LoadResult = z
  .object({
    /** Replicas unloaded to make room (eviction), if any. */
    evicted: z
      .array(z.object({ replica: ReplicaId, model: Name, bytes: Bytes }).strict())
      .max(MAX_REPLICAS_PER_HEARTBEAT)
      .optional(),
    replicaId: ReplicaId,
    device: DeviceId,
    bytes: Bytes,
    loadMs: Ms,
    /** Time to create the onnxruntime session, ms (part of loadMs). */
    sessionCreateMs: Ms.optional(),
    /** Compilation cache: `hit` (cached optimised graph), `miss` (optimised and saved now), `off`. */
    compile: z.enum(['hit', 'miss', 'off']).optional(),
    executionProvider: Text(64),
    /** Set when the requested provider failed and the replica runs on CPU instead. */
    fallbackFrom: Text(64).optional(),
  })
  .strict();
export type LoadResult = z.infer<typeof LoadResult>;

export const UnloadResult = z.object({ replicaId: ReplicaId, bytes: Bytes }).strict();
export type UnloadResult = z.infer<typeof UnloadResult>;

// ---------- what the head keeps in JetStream ----------

/** `deployments.<name>` in the state bucket: the desired state. */
export const DeploymentRecord = z.object({ v: V, spec: DeploySpec, createdAt: EpochMs }).strict();
export type DeploymentRecord = z.infer<typeof DeploymentRecord>;

/** `leader` in the lease bucket: the leading head. */
export const LeaseHolder = z
  .object({
    v: V,
    id: Name,
    pid: Pid,
    since: EpochMs,
  })
  .strict();
export type LeaseHolder = z.infer<typeof LeaseHolder>;

/** A model's profile in the profiles bucket (written by workers, read by workers and the SDK). */
const Finite = z.number().min(-MAX_HOST_BYTES).max(MAX_HOST_BYTES);
/** What one measured setting (a batch size, a thread setting) yields. */
const Measured = {
  batch: z
    .number()
    .int()
    .min(1)
    .max(1 << 20),
  runs: Count,
  p50Ms: Ms,
  p99Ms: Ms,
  itemsPerSec: z.number().min(0).max(1e12),
};
const ProfileRowSchema = z.object({ ...Measured, peakBytes: Finite }).strict();
const ThreadRowSchema = ThreadSettings.extend(Measured).strict();
export const ModelProfileSchema = z
  .object({
    v: V,
    digest: Text(128),
    deviceClass: Text(256),
    ortVersion: Text(64),
    createdAt: EpochMs,
    latencySloMs: Ms,
    budgetMs: Ms,
    tookMs: Ms,
    rows: z.array(ProfileRowSchema).max(64),
    stoppedBecause: Text(MAX_EVENT_REASON_CHARS),
    skipped: Text(MAX_EVENT_REASON_CHARS).optional(),
    shape: ShapeDims.optional(),
    chosen: z
      .object({
        maxBatchSize: z
          .number()
          .int()
          .min(1)
          .max(1 << 20),
        maxQueueDelayMs: Ms,
        reason: Text(MAX_EVENT_REASON_CHARS),
        shapeChangeMs: Ms.optional(),
        resumeMs: Ms.optional(),
        padTo: z
          .number()
          .int()
          .min(1)
          .max(1 << 20)
          .optional(),
      })
      .strict(),
    compile: z
      .object({ plainCreateMs: Ms, compiledCreateMs: Ms, helps: z.boolean(), reason: Text(MAX_EVENT_REASON_CHARS) })
      .strict()
      .optional(),
    threads: ThreadSettings.extend({ reason: Text(MAX_EVENT_REASON_CHARS), rows: z.array(ThreadRowSchema).max(256), tookMs: Ms })
      .strict()
      .optional(),
    memory: z.object({ sessionBytes: Finite, peakBytes: Finite, replicaBytes: Bytes }).strict(),
    sessionHost: z.literal('thread').optional(),
  })
  .strict();

// ---------- control requests ----------

const NameRequest = z.object({ v: V, name: Name }).strict();
export const ControlRequests = {
  deploy: z.object({ v: V, spec: DeploySpec }).strict(),
  undeploy: NameRequest,
  describe: NameRequest,
  ensure: z.object({ v: V, name: Name, waitMs: z.number().min(0).max(MAX_WAIT_MS).optional() }).strict(),
  scale: z.object({ v: V, name: Name, replicas: z.number().int().min(0).max(1000) }).strict(),
  list: z.object({ v: V }).strict(),
  status: z.object({ v: V }).strict(),
  events: z
    .object({ v: V, limit: z.number().int().min(1).max(MAX_EVENTS_LIMIT).optional(), model: Name.optional(), type: Name.optional() })
    .strict(),
} satisfies Record<ControlOp, z.ZodType>;

/** A parsed control request, tagged with its operation. */
export type ControlRequest = { [K in ControlOp]: { op: K } & z.infer<(typeof ControlRequests)[K]> }[ControlOp];

// ---------- parsing (BAD_REQUEST naming the path of the first problem: `parseWith`) ----------

export const parseHeartbeat = (raw: unknown): Heartbeat => parseWith(Heartbeat, raw, 'heartbeat');
export const parseEventMessage = (raw: unknown): EventMessage => parseWith(EventMessage, raw, 'event');
export const parseLoadResult = (raw: unknown): LoadResult => parseWith(LoadResult, raw, 'load reply');
export const parseUnloadResult = (raw: unknown): UnloadResult => parseWith(UnloadResult, raw, 'unload reply');
export const parseDeploymentRecord = (raw: unknown): DeploymentRecord => parseWith(DeploymentRecord, raw, 'deployment record');
export const parseHeadPresence = (raw: unknown): HeadPresence => parseWith(HeadPresence, raw, 'head presence');
export const parseLeaseHolder = (raw: unknown): LeaseHolder => parseWith(LeaseHolder, raw, 'lease value');
/** A profile read from the profiles bucket: keys a newer worker added are dropped (`parseStored`), everything known validated. */
export const parseModelProfile = (raw: unknown): ModelProfile => parseStored(ModelProfileSchema, raw, 'model profile') as ModelProfile;

/** A control request on `ctl.<op>`: an unknown operation or a malformed body is BAD_REQUEST. */
export function parseControlRequest(op: string, raw: unknown): ControlRequest {
  if (!(CONTROL_OPS as readonly string[]).includes(op)) {
    throw new BadRequestError(`unknown control operation '${truncate(op, 64)}'`, { data: { supported: [...CONTROL_OPS] } });
  }
  const k = op as ControlOp;
  return { op: k, ...(parseWith(ControlRequests[k], raw, `${k} request`) as object) } as ControlRequest;
}
