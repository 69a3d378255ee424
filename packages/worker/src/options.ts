// Worker options: raw (documented) → defaults added → validated. `parseWorkerOptions` never
// mutates its input.
import { availableParallelism, cpus, homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import {
  BadRequestError,
  DEFAULT_CLUSTER,
  DEFAULT_MAX_MESSAGE_BYTES,
  DIRECT_STALL_MS,
  Name,
  SessionHostChoice,
  type GpuInfo,
} from '@flotilla/protocol';
import type { BusOptions, Logger, NatsConnection } from '@flotilla/bus';
import { usableCores, type InventoryOverride } from './inventory.js';
import { readCgroupLimits } from './cgroup-limits.js';
import { resolveEvictionPolicy } from './eviction.js';

export const DEFAULT_HEARTBEAT_MS = 1000;
export const DEFAULT_HEADROOM = 0.1;
export const DEFAULT_GPU_PROVIDERS = ['cuda'];
/**
 * Eviction policy by default: `cost` had the highest hit ratio (0.659 against LRU's 0.562 and
 * FIFO's 0.530) and the fewest reloads on `pnpm bench:models` (README, "Many models").
 */
export const DEFAULT_EVICTION = 'cost';

export interface WorkerOptions {
  /** NATS connection settings (ignored when `connection` is given). */
  bus?: BusOptions;
  /** Use this connection instead of opening one (the worker will not close it). */
  connection?: NatsConnection;
  /** Cluster name. Default `FLOTILLA_CLUSTER` or `default`. */
  cluster?: string;
  /** Worker id, one NATS token. Default `<hostname>-<pid>`. */
  id?: string;
  /** Heartbeat period, ms. Default 1000. */
  heartbeatMs?: number;
  /** Local model cache. Default `FLOTILLA_CACHE_DIR` or ~/.cache/flotilla. */
  cacheDir?: string;
  /** Replace parts of the measured inventory (tests, GPU-less machines). */
  inventory?: InventoryOverride;
  /** Memory budget of each device, bytes. Default: capacity × (1 − headroom). */
  memoryBudgetBytes?: number;
  /** Fraction of each device's capacity kept free. Default 0.1. */
  headroom?: number;
  /**
   * Share of each GPU's VRAM this worker charges its replicas against, where several worker
   * processes share the GPUs of one host (e.g. 0.5 for two). Default 1.
   */
  gpuShare?: number;
  /**
   * onnxruntime intra-op threads per session; 0 lets onnxruntime choose. Default 0. At most the
   * worker's usable cores (`inventoryUsableCores`): more is BAD_REQUEST at start.
   */
  threads?: number;
  /** Execution providers tried, in order, for replicas placed on a GPU; CPU is the fallback. Default ['cuda']. */
  gpuProviders?: string[];
  /**
   * Let onnxruntime's CPU thread pools spin while waiting for work (onnxruntime's own default).
   * Default false: a serving worker shares its cores with its NATS client and the broker, whose
   * CPU spinning threads take (session-plan.ts `cpuSessionOptions`).
   */
  ortSpinning?: boolean;
  /**
   * Where replicas' sessions run (protocol `SessionHostChoice`): `auto` (default: a thread for runs
   * of 1 ms or more on a GPU or with 4+ usable cores), `thread` or `event-loop`. A deployment's
   * `sessionHost` overrides it.
   */
  sessionHost?: SessionHostChoice;
  /** Largest request/reply body, bytes. Default 256 MiB. */
  maxMessageBytes?: number;
  /** JetStream replicas for the blob and profile buckets it creates. Default `FLOTILLA_STORE_REPLICAS` or 1. */
  storeReplicas?: number;
  /** Most replicas this worker hosts at once; a load beyond it gets NO_CAPACITY. Default 64. */
  maxReplicas?: number;
  /**
   * Most bytes of accepted, unanswered requests the worker holds across its replicas; a request past
   * it is answered OVERLOADED (intake-budget.ts). Default 1/16 of the worker's memory, at most 1 GiB.
   */
  maxQueuedBytes?: number;
  /** Extra delay per batch on every replica, ms (chaos knob for tests and benchmarks). Default 0. */
  slowdownMs?: number;
  /** A direct body (bus/direct-body.ts) with no chunk for this long is dropped, ms. Default DIRECT_STALL_MS (10 s). */
  directStallMs?: number;
  /**
   * Eviction policy when a model must load and does not fit: cost (default, DEFAULT_EVICTION:
   * expected reload cost per byte freed, reload time × decayed request rate / bytes), fifo, lru or
   * lfu. An unknown name is BAD_REQUEST at start.
   */
  eviction?: string;
  logger?: Logger;
}

export interface CompiledWorkerOptions extends Required<
  Omit<WorkerOptions, 'connection' | 'memoryBudgetBytes' | 'maxQueuedBytes' | 'logger' | 'bus'>
> {
  bus: BusOptions;
  connection?: NatsConnection;
  memoryBudgetBytes?: number;
  /** Undefined: the default for the measured memory (intake-budget.ts defaultMaxQueuedBytes). */
  maxQueuedBytes?: number;
  logger?: Logger;
}

const Gpu = z.object({
  index: z.number().int().min(0),
  vendor: z.string(),
  model: z.string(),
  vramTotalBytes: z.number().min(0),
  vramFreeBytes: z.number().min(0),
}) satisfies z.ZodType<GpuInfo>;

const Schema = z.object({
  cluster: Name,
  id: Name,
  heartbeatMs: z.number().int().min(50).max(60_000),
  cacheDir: z.string().min(1),
  memoryBudgetBytes: z.number().int().min(1).optional(),
  headroom: z.number().min(0).max(0.9),
  gpuShare: z.number().gt(0).max(1),
  threads: z.number().int().min(0).max(1024),
  gpuProviders: z.array(z.string().min(1)),
  ortSpinning: z.boolean(),
  sessionHost: SessionHostChoice,
  maxMessageBytes: z.number().int().min(1024),
  eviction: z.string().min(1),
  slowdownMs: z.number().min(0).max(60_000),
  directStallMs: z.number().int().min(1).max(600_000),
  maxReplicas: z.number().int().min(1).max(10_000),
  maxQueuedBytes: z.number().int().min(1).optional(),
  storeReplicas: z.number().int().min(1).max(5),
  inventory: z
    .object({
      cpu: z
        .object({
          cores: z.number().int().min(1).optional(),
          usableCores: z.number().int().min(1).optional(),
          model: z.string().optional(),
        })
        .optional(),
      memory: z.object({ totalBytes: z.number().min(0).optional(), availableBytes: z.number().min(0).optional() }).optional(),
      gpus: z.array(Gpu).optional(),
    })
    .default({}),
});

function defaultId(): string {
  const host = (process.env.HOSTNAME ?? 'worker').replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 40) || 'worker';
  return `${host}-${process.pid}`.replace(/^[^A-Za-z0-9]+/, 'w');
}

/**
 * Usable cores the inventory will report, known before it is measured (same rule as
 * `measureInventory`: host cores bounded by CPU affinity and the cgroup quota, then by the override).
 */
export function inventoryUsableCores(override: InventoryOverride = {}): number {
  const host = cpus().length || 1;
  const measured = usableCores(host, availableParallelism(), readCgroupLimits());
  return Math.min(override.cpu?.cores ?? host, override.cpu?.usableCores ?? measured);
}

export function parseWorkerOptions(raw: WorkerOptions = {}): CompiledWorkerOptions {
  const withDefaults = {
    cluster: raw.cluster ?? process.env.FLOTILLA_CLUSTER ?? DEFAULT_CLUSTER,
    id: raw.id ?? defaultId(),
    heartbeatMs: raw.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    cacheDir: raw.cacheDir ?? process.env.FLOTILLA_CACHE_DIR ?? join(homedir(), '.cache', 'flotilla'),
    memoryBudgetBytes: raw.memoryBudgetBytes,
    headroom: raw.headroom ?? DEFAULT_HEADROOM,
    gpuShare: raw.gpuShare ?? 1,
    threads: raw.threads ?? 0,
    gpuProviders: raw.gpuProviders ?? DEFAULT_GPU_PROVIDERS,
    ortSpinning: raw.ortSpinning ?? false,
    sessionHost: raw.sessionHost ?? 'auto',
    maxMessageBytes: raw.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    eviction: raw.eviction ?? DEFAULT_EVICTION,
    slowdownMs: raw.slowdownMs ?? 0,
    directStallMs: raw.directStallMs ?? DIRECT_STALL_MS,
    maxReplicas: raw.maxReplicas ?? 64,
    maxQueuedBytes: raw.maxQueuedBytes,
    storeReplicas: raw.storeReplicas ?? Number(process.env.FLOTILLA_STORE_REPLICAS ?? 1),
    inventory: raw.inventory ?? {},
  };
  const r = Schema.safeParse(withDefaults);
  if (!r.success) {
    throw new BadRequestError(`invalid worker options: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  resolveEvictionPolicy(r.data.eviction); // unknown name → BAD_REQUEST before anything starts
  const cores = inventoryUsableCores(r.data.inventory as InventoryOverride);
  if (r.data.threads > cores) {
    throw new BadRequestError(
      `invalid worker options: threads ${r.data.threads} exceeds this worker's ${cores} usable core${cores === 1 ? '' : 's'} (use 1-${cores}, or 0 to let onnxruntime choose)`,
      {
        data: { threads: r.data.threads, usableCores: cores },
      },
    );
  }
  return {
    ...r.data,
    inventory: r.data.inventory as InventoryOverride,
    bus: { ...raw.bus },
    connection: raw.connection,
    logger: raw.logger,
  };
}
