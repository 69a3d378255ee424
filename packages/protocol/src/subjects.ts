// Every NATS subject, queue group and JetStream bucket name Flotilla uses. A cluster name
// prefixes all of them so several clusters can share one NATS deployment.
import { BadRequestError } from './errors.js';

/** Cluster, model and worker names: one NATS token, safe as a file name and a bucket suffix. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export const DEFAULT_CLUSTER = 'default';

export function isValidName(name: unknown): name is string {
  return typeof name === 'string' && NAME_RE.test(name);
}

export function assertValidName(kind: string, name: unknown): asserts name is string {
  if (!isValidName(name)) {
    throw new BadRequestError(
      `invalid ${kind} name ${JSON.stringify(name)}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit`,
    );
  }
}

export const CONTROL_OPS = ['deploy', 'undeploy', 'scale', 'list', 'status', 'describe', 'ensure', 'events'] as const;
export type ControlOp = (typeof CONTROL_OPS)[number];
export const WORKER_OPS = ['load', 'unload'] as const;
export type WorkerOp = (typeof WORKER_OPS)[number];

export interface Subjects {
  readonly cluster: string;
  /** Callers request here; replicas of the model answer (queue group `REPLICA_QUEUE`). */
  infer(model: string): string;
  /** One replica's own subject (least-loaded routing by the SDK). */
  inferReplica(model: string, replicaId: string): string;
  /** A replica's direct-body channel (direct-body.ts): `infer.<model>.<replica>~body` (`~` is in no replica id). */
  inferBody(model: string, replicaId: string): string;
  /** Head control plane, request/reply. */
  control(op: ControlOp): string;
  /** Wildcard the head subscribes to for all control ops. */
  controlAll: string;
  /** Worker → head advertisement. */
  heartbeat(workerId: string): string;
  heartbeatAll: string;
  /** Head → heads: each head's presence (leader or standby), so the leader can list the standbys. */
  headPresence(headId: string): string;
  headPresenceAll: string;
  /** Head → one worker, request/reply placement commands. */
  worker(workerId: string, op: WorkerOp): string;
  /** Events (loaded, unloaded, evicted, failed ...). */
  event(type: string): string;
  eventAll: string;
  /** JetStream KV bucket holding desired state (deployments). */
  stateBucket: string;
  /** Object store bucket of model artifacts, keyed by content digest. */
  modelBucket: string;
  /** Object store bucket for payloads larger than the server's max_payload. */
  blobBucket: string;
  /** KV bucket of model profiles, keyed by `profileKey(...)`. */
  profileBucket: string;
  /** KV bucket holding the heads' leadership lease (entries expire after the lease TTL). */
  leaseBucket: string;
  /** JetStream stream keeping the recent events (`eventAll`), so a new leading head has their history. */
  eventStream: string;
  /** KV bucket of batch job records (key: job id). */
  jobBucket: string;
  /** JetStream stream of batch job results (subjects `jobResultsAll`). */
  jobStream: string;
  /** Object store of job results too large for one message (object `<job id>.<line>`). */
  jobObjectBucket: string;
  /** Where one job's results are published. */
  jobResults(jobId: string): string;
  /** Every job's results: the job stream's subjects. */
  jobResultsAll: string;
}

/**
 * Profiles are shared per (model digest, device class, onnxruntime version), and for a model with
 * dynamic non-batch dims per input shape too (`shape`: `shapeKey(...)` of profile.ts): one more
 * token, `s<fnv-1a of the key>_<the key as a token, cut to 96 characters>`, so every shape of a
 * model stays under `<digest>.>` and a key stays short whatever the shape. Readers check the
 * stored profile's own shape (the cut key may be shared).
 */
export function profileKey(digest: string, deviceClass: string, ortVersion: string, shape?: string): string {
  const base = `${digest}.${toToken(deviceClass)}.${toToken(ortVersion)}`;
  return shape === undefined ? base : `${base}.s${fnv1a(shape)}_${toToken(shape).slice(0, 96)}`;
}

/** 32-bit FNV-1a of a string's UTF-16 code units, 8 hex digits. */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/** Any text as one NATS/KV token and safe file-name part (other characters become '_'). */
export function toToken(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, '_');
}

export const REPLICA_QUEUE = 'replicas';

export function subjects(cluster: string = DEFAULT_CLUSTER): Subjects {
  assertValidName('cluster', cluster);
  const p = `flotilla.${cluster}`;
  return {
    cluster,
    infer: (model) => `${p}.infer.${model}`,
    inferReplica: (model, replicaId) => `${p}.infer.${model}.${replicaId}`,
    inferBody: (model, replicaId) => `${p}.infer.${model}.${replicaId}~body`,
    control: (op) => `${p}.ctl.${op}`,
    controlAll: `${p}.ctl.*`,
    heartbeat: (id) => `${p}.hb.${id}`,
    heartbeatAll: `${p}.hb.*`,
    headPresence: (id) => `${p}.heads.${id}`,
    headPresenceAll: `${p}.heads.*`,
    worker: (id, op) => `${p}.worker.${id}.${op}`,
    event: (type) => `${p}.events.${type}`,
    eventAll: `${p}.events.>`,
    stateBucket: `flotilla_${cluster}_state`,
    modelBucket: `flotilla_${cluster}_models`,
    blobBucket: `flotilla_${cluster}_blobs`,
    profileBucket: `flotilla_${cluster}_profiles`,
    leaseBucket: `flotilla_${cluster}_lease`,
    eventStream: `flotilla_${cluster}_events`,
    jobBucket: `flotilla_${cluster}_jobs`,
    jobStream: `flotilla_${cluster}_jobresults`,
    jobObjectBucket: `flotilla_${cluster}_jobobjects`,
    jobResults: (jobId) => `${p}.jobs.${jobId}.results`,
    jobResultsAll: `${p}.jobs.*.results`,
  };
}

/** NATS header carrying W3C trace context (`00-<trace id>-<span id>-<flags>`) on inference requests and replies. */
export const TRACEPARENT_HEADER = 'traceparent';
/**
 * On an inference request: the caller reads streamed blob references (BlobName `nuid`), so a reply
 * over max_payload may be sent while it is still being staged. Value STREAMED_BLOBS.
 */
export const STREAMED_BLOBS_HEADER = 'Flotilla-Blobs';
export const STREAMED_BLOBS = 'stream';
/** STREAMED_BLOBS_HEADER value of a caller that also reads direct references (BlobName `direct`): streamed ones too. */
export const DIRECT_BLOBS = 'direct';
/** Whether a Flotilla-Blobs value lets a reply be streamed (`stream`, or `direct`, which implies it). */
export function readsStreamed(value: string | undefined): boolean {
  return value === STREAMED_BLOBS || value === DIRECT_BLOBS;
}
const TRACEPARENT_RE = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

export function isTraceparent(x: unknown): x is string {
  return typeof x === 'string' && TRACEPARENT_RE.test(x);
}
