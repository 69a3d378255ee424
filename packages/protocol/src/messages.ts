// Message shapes of the data plane (inference) and control plane (head, workers), and the
// schema that validates deployment specs. Every message carries `v` (PROTOCOL_VERSION).
import { z } from 'zod';
import { BadRequestError, truncate, type WireError } from './errors.js';
import type { WireTensors } from './tensor.js';
import type { DeviceState, Inventory, ReplicaState, ReplicaStateName, WorkerStateName } from './control-schemas.js';

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
    // Paths and messages are cut short: a 600 KB unknown key must not come back in the error.
    const issues = r.error.issues.slice(0, 5).map((i) => truncate(`${i.path.map((p) => truncate(String(p), 64)).join('.') || '(spec)'}: ${i.message}`, 300));
    throw new BadRequestError(`invalid deployment: ${issues.join('; ')}`, { data: { issues } });
  }
  const spec = r.data;
  if (spec.minReplicas !== undefined && spec.maxReplicas !== undefined && spec.minReplicas > spec.maxReplicas) {
    throw new BadRequestError(`invalid deployment: minReplicas ${spec.minReplicas} > maxReplicas ${spec.maxReplicas}`);
  }
  return spec;
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
