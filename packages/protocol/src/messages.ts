// Message shapes of the data plane (inference) and the control plane's replies. Every message
// carries `v` (PROTOCOL_VERSION). Inbound messages are parsed by the schemas in data-schemas.ts
// and control-schemas.ts; deploy specs by deploy-spec.ts.
import type { WireError } from './errors.js';
import type { WireTensors } from './tensor.js';
import type { DeploySpec } from './deploy-spec.js';
import type { HeadRole, ModelSignature } from './control-schemas.js';
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
  /** `nuid`: a streamed body's chunks; `direct`: a direct body's replica (data-schemas.ts BlobName). */
  blob: { name: string; size: number; nuid?: string; direct?: string };
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
  /** The model's inputs and outputs, from a loaded replica's session (absent until one has loaded). */
  signature?: ModelSignature;
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

/** One head as the leader knows it: itself, and every head whose presence it heard lately. */
export interface HeadStatus {
  id: string;
  pid: number;
  host: string;
  role: HeadRole;
  /** When the head took this role (its own clock), epoch ms. */
  since: number;
  startedAt: number;
  /** When the answering head last heard from it (its own clock; now for itself), epoch ms. */
  lastSeenAt: number;
}

export interface ClusterStatus {
  cluster: string;
  /**
   * The head that answered (the leader) and since when it runs. While it holds placement back after
   * taking the lead (its view of the workers is only the heartbeats since), `settlingUntil` (epoch
   * ms, its clock) and the workers it knew before and has not heard again (`awaitingWorkers`, at most 64).
   */
  head: { id?: string; pid: number; startedAt: number; settlingUntil?: number; awaitingWorkers?: string[] };
  /**
   * Every head the leader knows of: itself first, then the heads whose presence it heard within
   * the expiry (standbys; a former leader until it expires). Absent from heads older than this field.
   */
  heads?: HeadStatus[];
  workers: WorkerStatus[];
  deployments: DeploymentStatus[];
}
