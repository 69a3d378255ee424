// Message shapes of the data plane (inference) and control plane (head, workers), and the
// schema that validates deployment specs. Every message carries `v` (PROTOCOL_VERSION).
import { z } from 'zod';
import { BadRequestError, type WireError } from './errors.js';
import type { WireTensors } from './tensor.js';

// ---------- data plane ----------

export interface InferRequest {
  v: number;
  /** Caller's correlation id (a string of at most 256 characters, or an integer), echoed in the reply. */
  id?: string | number;
  inputs: WireTensors;
  /** Output names to return; all outputs when absent. */
  outputs?: string[];
  /** Relative deadline in ms: a request still queued after this long is answered DEADLINE_EXCEEDED. */
  timeoutMs?: number;
}

/** A message whose real body (an InferRequest or InferReply) was staged in the blob bucket. */
export interface BlobRef {
  v: number;
  blob: { name: string; size: number };
}

export interface InferMeta {
  worker: string;
  replica: string;
  device: string;
  /** Items in the batch this request ran in. */
  batch: number;
  queueMs: number;
  runMs: number;
  /** Requests waiting in this replica's queue when the reply was sent (for least-loaded routing). */
  queueDepth: number;
}

export type InferReply =
  | { v: number; ok: true; id?: string | number; outputs: WireTensors; meta: InferMeta }
  | { v: number; ok: false; id?: string | number; error: WireError };

// ---------- control plane ----------

export type ControlReply<T = unknown> = { v: number; ok: true; result: T } | { v: number; ok: false; error: WireError };

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
  })
  .strict();
export type BatchingOptions = z.infer<typeof BatchingOptions>;

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

const NAME = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'use 1-64 letters, digits, _ or -');

export const DeploySpec = z
  .object({
    name: NAME,
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
  })
  .strict();
export type DeploySpec = z.infer<typeof DeploySpec>;
export type DeploySpecInput = z.input<typeof DeploySpec>;

/** Validates a raw deploy spec; returns a new object with defaults filled in. */
export function parseDeploySpec(raw: unknown): DeploySpec {
  const r = DeploySpec.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(spec)'}: ${i.message}`);
    throw new BadRequestError(`invalid deployment: ${issues.join('; ')}`, { data: { issues } });
  }
  const spec = r.data;
  if (spec.minReplicas !== undefined && spec.maxReplicas !== undefined && spec.minReplicas > spec.maxReplicas) {
    throw new BadRequestError(`invalid deployment: minReplicas ${spec.minReplicas} > maxReplicas ${spec.maxReplicas}`);
  }
  return spec;
}

export interface GpuInfo {
  index: number;
  vendor: string;
  model: string;
  vramTotalBytes: number;
  vramFreeBytes: number;
}

export interface Inventory {
  /** `cores`: logical cores of the host; `usableCores`: what this process may use (affinity, cgroup quota). */
  cpu: { cores: number; model: string; usableCores?: number };
  /** `totalBytes` is the host's memory or the container's limit, whichever is smaller. */
  memory: { totalBytes: number; availableBytes: number; cgroupLimitBytes?: number };
  gpus: GpuInfo[];
  /** `measured` when read from the host, `override` when (partly) set by config. */
  source: 'measured' | 'override';
  hostname: string;
}

export type DeviceKind = 'cpu' | 'gpu';

export interface DeviceState {
  /** `cpu` or `gpu:<index>`. */
  id: string;
  kind: DeviceKind;
  /** Memory the device has, bytes (host RAM for cpu, VRAM for gpu). */
  capacityBytes: number;
  /** Part of the capacity the worker may charge to replicas. */
  budgetBytes: number;
  /** Sum of the charges of replicas on the device. */
  usedBytes: number;
  /** Execution provider used for replicas on this device. */
  executionProvider: string;
  /** Eviction policy of the device (`fifo`, `lru`, `lfu`, ...). */
  policy: string;
}

export type ReplicaStateName = 'loading' | 'ready' | 'draining' | 'failed';

export interface ReplicaState {
  id: string;
  model: string;
  digest: string;
  device: string;
  state: ReplicaStateName;
  /** Bytes charged to the device for this replica. */
  bytes: number;
  queueDepth: number;
  inFlight: number;
  /** Requests answered successfully, and with an error. */
  processed: number;
  failed: number;
  /** Items (rows along the batch axis) in the requests answered successfully. */
  itemsProcessed?: number;
  executionProvider: string;
  batching: { maxBatchSize: number; maxQueueDelayMs: number; maxQueueLength: number; batchAxis: boolean };
  /** Batch sizes run so far → count. */
  batchHistogram: Record<string, number>;
  /** Never evicted. */
  pinned: boolean;
  /** Epoch ms of the load and of the last request (eviction policies use them). */
  loadedAt: number;
  lastUsedAt: number;
  /** Where the batching settings came from. */
  profile?: ReplicaProfileSummary;
  error?: WireError;
}

export interface ReplicaProfileSummary {
  /** `measured` on this load, `cache` (KV), `skipped` (with reason), `disabled`, or `override` (user set both knobs). */
  source: 'measured' | 'cache' | 'skipped' | 'disabled';
  deviceClass: string;
  reason: string;
  /** Bytes the profile says a replica needs (0 when not profiled). */
  replicaBytes: number;
  /** Items/s at the chosen batch size (0 when not profiled). */
  itemsPerSec: number;
  tookMs: number;
  /** Thread settings the session runs with (CPU provider), and where they came from. */
  threads?: ThreadSettings & { source: 'profile' | 'deployment' | 'worker' | 'default' };
}

export type WorkerStateName = 'starting' | 'running' | 'draining' | 'stopped' | 'failed';

export interface Heartbeat {
  v: number;
  workerId: string;
  pid: number;
  state: WorkerStateName;
  seq: number;
  startedAt: number;
  sentAt: number;
  inventory: Inventory;
  devices: DeviceState[];
  replicas: ReplicaState[];
}


export interface LoadResult {
  /** Replicas unloaded to make room (eviction), if any. */
  evicted?: Array<{ replica: string; model: string; bytes: number }>;
  replicaId: string;
  device: string;
  bytes: number;
  loadMs: number;
  /** Time to create the onnxruntime session, ms (part of loadMs). */
  sessionCreateMs?: number;
  /** Compilation cache: `hit` (cached optimised graph), `miss` (optimised and saved now), `off`. */
  compile?: 'hit' | 'miss' | 'off';
  executionProvider: string;
  /** Set when the requested provider failed and the replica runs on CPU instead. */
  fallbackFrom?: string;
}


export interface PlacedReplica {
  id: string;
  workerId: string;
  device: string;
  state: ReplicaStateName | 'pending';
  queueDepth?: number;
  error?: WireError;
}

export interface DeploymentStatus {
  spec: DeploySpec;
  createdAt: number;
  replicas: PlacedReplica[];
  ready: number;
  /** Evicted and waiting for a request to bring it back (no replicas are added until then). */
  dormant?: boolean;
  /** Why the desired replica count is not met, if it is not. */
  pendingReason?: WireError;
}

export interface WorkerStatus {
  id: string;
  pid: number;
  alive: boolean;
  state: WorkerStateName;
  lastSeenMs: number;
  inventory: Inventory;
  devices: Array<DeviceState & { models: Array<{ name: string; replica: string; bytes: number }> }>;
  replicas: ReplicaState[];
}

export interface ClusterStatus {
  cluster: string;
  /** The head that answered (the leader) and since when it runs. */
  head: { id?: string; pid: number; startedAt: number };
  workers: WorkerStatus[];
  deployments: DeploymentStatus[];
}

export interface EventMessage {
  v: number;
  type: string;
  model?: string;
  worker?: string;
  device?: string;
  replica?: string;
  bytes?: number;
  reason?: string;
  at: number;
  data?: unknown;
}

// ---------- profiles ----------

export interface ProfileRow {
  batch: number;
  runs: number;
  p50Ms: number;
  p99Ms: number;
  itemsPerSec: number;
  /** Process RSS above the pre-load baseline at its peak during these runs, bytes. */
  peakBytes: number;
}

export interface BatchChoice {
  maxBatchSize: number;
  maxQueueDelayMs: number;
  reason: string;
}

/** One thread setting measured at the chosen batch size. */
export interface ThreadRow extends ThreadSettings {
  batch: number;
  runs: number;
  p50Ms: number;
  p99Ms: number;
  itemsPerSec: number;
}

export interface ThreadChoice extends ThreadSettings {
  reason: string;
}

/** A model measured on one device class (stored in the profiles KV bucket). */
export interface ModelProfile {
  v: number;
  digest: string;
  deviceClass: string;
  ortVersion: string;
  createdAt: number;
  latencySloMs: number;
  budgetMs: number;
  /** Wall time the profile took, ms. */
  tookMs: number;
  rows: ProfileRow[];
  /** Why the sweep ended where it did. */
  stoppedBecause: string;
  /** Set when the model could not be profiled (and defaults apply). */
  skipped?: string;
  chosen: BatchChoice;
  /** Session create from the compile cache vs plain (best of two each), and whether the cache helps. */
  compile?: { plainCreateMs: number; compiledCreateMs: number; helps: boolean; reason: string };
  /** Thread settings measured at the chosen batch size and the one chosen (CPU provider, when tuned). */
  threads?: ThreadChoice & { rows: ThreadRow[]; tookMs: number };
  memory: {
    /** RSS growth from creating the session, bytes. */
    sessionBytes: number;
    /** Peak RSS growth while running the chosen batch size, bytes. */
    peakBytes: number;
    /** What a replica should be charged: max(session, peak at the chosen batch, file size). */
    replicaBytes: number;
  };
}
