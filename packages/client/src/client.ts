// The TypeScript SDK: call models, deploy and manage them. Inference goes straight to a replica
// over NATS (the head is asked only when no replica answers, to bring the model back).
import { createHash, randomFillSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { MsgHdrs, NatsConnection } from '@nats-io/nats-core';
import { errors as natsErrors, headers as natsHeaders } from '@nats-io/nats-core';
import { jetstream } from '@nats-io/jetstream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  isFatalLoadCode,
  mustStage,
  replyBytesAtMost,
  DEFAULT_CLUSTER,
  DEFAULT_MAX_MESSAGE_BYTES,
  DeadlineExceededError,
  ALIGN_MIN_BYTES,
  ENSURE_REPLY_MARGIN_MS,
  encodeInferRequestParts,
  joinBody,
  ErrorCode,
  MAX_ENSURE_WAIT_MS,
  STREAMED_BLOBS,
  DIRECT_BLOBS,
  DIRECT_REPLICA_RE,
  directChunkBytes,
  STREAMED_BLOBS_HEADER,
  TRACEPARENT_HEADER,
  isTraceparent,
  FlotillaError,
  ForbiddenError,
  NoCapacityError,
  PROTOCOL_VERSION,
  PayloadTooLargeError,
  UnavailableError,
  assertValidName,
  checkWireTensor,
  decode,
  encode,
  fromTypedArray,
  fromWire,
  isDType,
  subjects as makeSubjects,
  toTypedArray,
  BadRequestError,
  type ClusterStatus,
  type BlobRef,
  type DeploySpecInput,
  type DeploymentStatus,
  type DType,
  type EventMessage,
  type ModelProfile,
  type ModelSignature,
  type InferMeta,
  type InferReply,
  type Subjects,
  type TypedArray,
  type WireTensor,
  type WireTensors,
} from '@flotilla/protocol';
import { ReplicaRouter } from './router.js';
import {
  BlobStore,
  DEFAULT_RETRY_POLICY,
  ProfileStore,
  call,
  closeBus,
  connectBus,
  isConnectionLost,
  isNoResponders,
  isTimeout,
  mapNatsError,
  objectChunkSize,
  objectStores,
  parseRetryPolicy,
  requesterFor,
  retry,
  type RetryPolicy,
  maxPayload,
  stageIfLarge,
  stagedRef,
  decodeStaged,
  directId,
  pullBody,
  pushBody,
  unstage,
  type BusOptions,
  type RetryEvent,
  type RetryVerdict,
} from '@flotilla/bus';

export const DEFAULT_INFER_TIMEOUT_MS = 30_000;

/** Direct transfers that failed in transport (UNAVAILABLE: replica gone, connection lost): the attempt is retried. */
const directFailures = new WeakSet<object>();
const directFailure = (err: unknown): never => {
  if (err instanceof UnavailableError) directFailures.add(err);
  throw err;
};

export interface ClientOptions extends BusOptions {
  /** Cluster name. Default `FLOTILLA_CLUSTER` or `default`. */
  cluster?: string;
  /** Use this connection instead of opening one (the client will not close it). */
  connection?: NatsConnection;
  /** Largest request/reply accepted, bytes. Default 256 MiB. */
  maxMessageBytes?: number;
  /** JetStream replicas for buckets the client creates (blobs). Default `FLOTILLA_STORE_REPLICAS` or 1. */
  storeReplicas?: number;
  /**
   * Bodies over max_payload are streamed (default true): a request's reference goes out as its
   * staging starts and the replica reads while it is written, and replies may come the same way.
   * false: staged first, then sent (what workers before streamed references understand).
   */
  streamBodies?: boolean;
  /**
   * A new W3C trace context on every request that names none (default false: a request carries
   * the caller's `traceparent` when it gives one, else no headers at all).
   */
  traceRequests?: boolean;
  /**
   * Bodies over max_payload go straight between this client and the replica it routed to, over
   * core NATS, with nothing stored (default true; needs streamBodies): requests to a replica the
   * client knows, and replies from any replica that can hold them (bus/direct-body.ts). false:
   * through the blob bucket (what workers before direct bodies understand).
   */
  directBodies?: boolean;
}

/** A tensor as the SDK takes and returns it: data as a typed array of the dtype. */
export interface Tensor {
  dtype: DType;
  dims: number[];
  data: TypedArray;
}

export interface InferOptions {
  /** Whole-call deadline, ms (queueing, reload of an evicted model, run, transfer). Default 30 000. */
  timeoutMs?: number;
  /** Output names to return (default all). */
  outputs?: string[];
  /** One attempt's timeout before retrying on another replica, ms. Default max(1000, timeoutMs / 3). */
  attemptTimeoutMs?: number;
  /**
   * W3C trace context to propagate (`00-<trace>-<span>-<flags>`): sent to the replica in the
   * `traceparent` header, logged with its failures and echoed on its reply. None when absent (or
   * malformed), unless the client was made with `traceRequests`.
   */
  traceparent?: string;
  /**
   * Extra attempts after a retryable failure: an error reply that says so (OVERLOADED,
   * UNAVAILABLE, NO_CAPACITY) or no reply within the attempt timeout. Default unlimited: retried
   * until `timeoutMs`. Re-routing a request nobody received (the replica it was routed to is gone;
   * no replica is up and the head brings the model back) is not a retry. When they run out, the
   * last failure is thrown (its own code); when the deadline comes first, DEADLINE_EXCEEDED.
   */
  retries?: number;
  /** Called before each retry (not for re-routing), e.g. to count them. */
  onRetry?: (e: RetryEvent) => void;
}

/** Back-off between attempts of an inference (after a retryable error reply): 50 ms doubling to 500 ms, ± 20 %. */
export const INFER_RETRY_POLICY = DEFAULT_RETRY_POLICY;

export interface DeployOptions extends Omit<DeploySpecInput, 'name' | 'digest' | 'sizeBytes'> {
  /** Wait until all replicas are ready (default true). */
  wait?: boolean;
  /** How long to wait, ms. Default 120 000. */
  waitTimeoutMs?: number;
}

export class FlotillaClient {
  readonly subjects: Subjects;
  private conn?: Promise<NatsConnection>;
  private blobs?: BlobStore;
  private readonly maxMessageBytes: number;
  private readonly router = new ReplicaRouter();
  private readonly refreshing = new Set<string>();
  /** Each model's signature, as the head last described it: whether its replies can need staging. */
  private readonly signatures = new Map<string, ModelSignature>();

  constructor(private readonly options: ClientOptions = {}) {
    this.subjects = makeSubjects(options.cluster ?? process.env.FLOTILLA_CLUSTER ?? DEFAULT_CLUSTER);
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (options.connection) this.conn = Promise.resolve(options.connection);
  }

  connection(): Promise<NatsConnection> {
    this.conn ??= connectBus({ name: 'flotilla-client', ...this.options }).catch((err: unknown) => {
      this.conn = undefined;
      // The server refused the credentials (none, unknown or expired): FORBIDDEN, not a transient failure.
      if (err instanceof natsErrors.AuthorizationError || err instanceof natsErrors.UserAuthenticationExpiredError) {
        throw new ForbiddenError(
          `the NATS server refused this connection's credentials (${(err as Error).message}): pass the role's nkey seed (--nkey) or creds file`,
          { cause: err },
        );
      }
      throw new UnavailableError(
        `cannot connect to NATS at ${String(this.options.servers ?? process.env.FLOTILLA_NATS ?? 'nats://127.0.0.1:4222')}: ${(err as Error).message}`,
        { cause: err },
      );
    });
    return this.conn;
  }

  private async blobStore(): Promise<BlobStore> {
    this.blobs ??= new BlobStore(
      await this.connection(),
      this.subjects.blobBucket,
      undefined,
      this.options.storeReplicas ?? Number(process.env.FLOTILLA_STORE_REPLICAS ?? 1),
    );
    return this.blobs;
  }

  // ---------- inference ----------

  /** Runs the model on `inputs` and returns its outputs. Errors are typed (`err.code`). */
  async infer(model: string, inputs: Record<string, Tensor | WireTensor>, opts: InferOptions = {}): Promise<Record<string, Tensor>> {
    return (await this.inferWithMeta(model, inputs, opts)).outputs;
  }

  /** Like `infer`, plus where and how it ran (worker, replica, batch size, queue and run time). */
  async inferWithMeta(
    model: string,
    inputs: Record<string, Tensor | WireTensor>,
    opts: InferOptions = {},
  ): Promise<{ outputs: Record<string, Tensor>; meta: InferMeta; attempts: number }> {
    const wire: WireTensors = {};
    for (const [name, t] of Object.entries(inputs)) wire[name] = toWire(name, t);
    const reply = await this.inferWire(model, wire, opts);
    const outputs: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(reply.outputs)) {
      const w = checkWireTensor(name, t);
      outputs[name] = { dtype: w.dtype, dims: w.dims, data: toTypedArray(w) };
    }
    return { outputs, meta: reply.meta, attempts: reply.attempts };
  }

  /**
   * The wire-level call: tensors as raw bytes in and out. The request goes to the least-loaded
   * known replica (its own subject), else to the model's queue group. Within the deadline it is
   * retried on another replica when one does not answer (attempt timeout, at once) or answers a
   * retryable error (OVERLOADED & co, after a back-off: INFER_RETRY_POLICY), up to
   * `opts.retries` times. A request nobody received is re-routed at once and is no retry: the
   * replica it was routed to is gone (the queue group next), or no replica is up (the head is
   * asked to bring the model back).
   */
  async inferWire(
    model: string,
    inputs: WireTensors,
    opts: InferOptions = {},
  ): Promise<{ outputs: WireTensors; meta: InferMeta; attempts: number }> {
    assertValidName('model', model);
    if (opts.retries !== undefined && !(Number.isInteger(opts.retries) && opts.retries >= 0)) {
      throw new BadRequestError(`retries must be a non-negative integer, got ${opts.retries}`);
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_INFER_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const nc = await this.connection();
    const req = { inputs, timeoutMs, ...(opts.outputs ? { outputs: opts.outputs } : {}) };
    // Large inputs start 8-byte aligned (a replica reading a staged request runs it without a copy),
    // and those of REF_MIN_BYTES or more are staged straight from the caller's arrays, not copied
    // into the body first (body.ts): they must not change until infer settles.
    const large = Object.values(inputs).some((t) => t.data.byteLength >= ALIGN_MIN_BYTES);
    const plain = large ? encodeInferRequestParts(req) : encode({ v: PROTOCOL_VERSION, ...req });
    if (plain.byteLength > this.maxMessageBytes) {
      throw new PayloadTooLargeError(`request of ${plain.byteLength} bytes exceeds the limit of ${this.maxMessageBytes}`, {
        data: { limitBytes: this.maxMessageBytes, sizeBytes: plain.byteLength },
      });
    }
    // The blob store only for bodies that need it: the common request takes no extra await.
    // A staged request is streamed: its reference goes out once the first chunk is stored and the replica
    // reads the chunks while they are written (`staging` settles when the writing is done; its
    // failure fails the attempt). The replica that receives the reference takes (deletes) the
    // staged body, so an attempt after one that may have reached a replica stages it again. Its
    // attempts are not cut short (moving it twice costs more than waiting): one attempt takes the
    // whole deadline.
    const staged = mustStage(plain.byteLength, maxPayload(nc));
    const direct = this.options.streamBodies !== false && this.options.directBodies !== false;
    let staging: Promise<void> | undefined;
    const stage = async (): Promise<Uint8Array> => {
      if (this.options.streamBodies === false) return stageIfLarge(nc, await this.blobStore(), plain);
      const s = await (await this.blobStore()).stream(plain);
      staging = s.done;
      return encode({ v: PROTOCOL_VERSION, blob: s.ref } satisfies BlobRef);
    };
    // A staged body is staged when an attempt first needs it (one sent direct does not).
    let body: Uint8Array | undefined = staged ? undefined : joinBody(plain);
    let taken = false;
    const attemptMs = opts.attemptTimeoutMs ?? (staged ? timeoutMs : Math.max(1000, Math.round(timeoutMs / 3)));
    if (this.router.stale(model, Date.now())) void this.refreshReplicas(model);
    const requester = requesterFor(nc);
    const hdrs = this.requestHeaders(model, inputs, opts, nc, direct);
    let sent = 0;
    // What the retry loop may do with a failed attempt; anything else is thrown as is.
    const verdicts = new WeakMap<object, RetryVerdict>();
    const retryWith = <E extends Error>(e: E, verdict: RetryVerdict): E => (verdicts.set(e, verdict), e);

    const attempt = async (): Promise<InferReply & { ok: true }> => {
      // Re-routing, not retrying: a request nobody received goes out again at once.
      for (;;) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw retryWith(new DeadlineExceededError(`'${model}' did not answer within ${timeoutMs} ms`), 'immediately');
        const target = this.router.pick(model);
        // A large body goes straight to the replica routed to, as a new transfer each attempt.
        const directTo = staged && direct && target && DIRECT_REPLICA_RE.test(target) ? target : undefined;
        const transfer = directTo ? directId() : undefined;
        if (staged && !directTo && (taken || body === undefined)) {
          body = await stage();
          taken = false;
        }
        const payload = transfer
          ? encode({ v: PROTOCOL_VERSION, blob: { name: transfer, size: plain.byteLength, direct: directTo } } satisfies BlobRef)
          : body!;
        sent++;
        const subject = target ? this.subjects.inferReplica(model, target) : this.subjects.infer(model);
        if (target) this.router.started(model, target);
        let reply: InferReply;
        try {
          const request = requester.request(subject, payload, { timeout: Math.min(remaining, attemptMs), headers: hdrs });
          // The chunks follow the reference on the replica's body channel (after it: one connection keeps the order).
          const pushing = transfer
            ? pushBody(nc, this.subjects.inferBody(model, directTo!), transfer, plain, {
                chunkBytes: directChunkBytes(maxPayload(nc)),
              }).catch(directFailure)
            : staging;
          // A push or staging that fails fails the attempt at once (the replica would only hear no more chunks).
          if (pushing) request.catch(() => undefined);
          const msg = await (pushing ? Promise.race([request, pushing.then(() => request)]) : request);
          const raw = decode<Record<string, unknown>>(msg.data);
          reply = (raw.blob === undefined ? raw : await this.readStagedReply(nc, model, raw)) as unknown as InferReply;
        } catch (err) {
          if (target) this.router.finished(model, target);
          if (directFailures.has(err as object)) {
            // A direct transfer lost its replica or connection: again at once (a new transfer);
            // elsewhere unless only this client's connection was lost (the replica is still there).
            if (target && !isConnectionLost(err)) this.router.forget(model, target);
            throw retryWith(err as Error, 'immediately');
          }
          if (isConnectionLost(err)) {
            // The request or its reply may be gone with the socket: again at once, on the new connection.
            taken = true; // a replica may have taken the staged body
            const e = new UnavailableError(`the connection to NATS was lost while '${model}' had the request`, { cause: err });
            throw retryWith(e, 'immediately');
          }
          if (isNoResponders(err)) {
            if (target) {
              this.router.forget(model, target); // that replica is gone: try the queue group at once
              continue;
            }
            // The head answers once a replica is ready: go to it at once, no back-off.
            if (await this.bringBack(model, deadline)) continue;
            throw retryWith(new UnavailableError(`no replica of '${model}' is ready yet`, { cause: err }), true);
          }
          if (isTimeout(err)) {
            taken = true; // a replica may have taken the staged body
            if (target) this.router.forget(model, target); // unresponsive: another replica next
            const e = new DeadlineExceededError(`'${model}' did not answer on ${subject} within ${Math.min(remaining, attemptMs)} ms`, {
              cause: err,
            });
            throw retryWith(e, 'immediately');
          }
          throw err instanceof FlotillaError ? err : mapNatsError(err, subject, timeoutMs);
        }
        if (target) this.router.finished(model, target, reply.ok ? reply.meta?.queueDepth : undefined);
        if (reply.ok) return reply;
        taken = true;
        const e = fromWire(reply.error);
        throw e.retryable ? retryWith(e, true) : e; // OVERLOADED & co: back off, then another replica
      }
    };

    const reply = await retry(attempt, {
      policy: opts.retries === undefined ? INFER_RETRY_POLICY : inferRetryPolicy(opts.retries),
      deadline,
      isRetryable: (err) => verdicts.get(err as object) ?? false,
      onRetry: opts.onRetry,
      onExhausted: (err, { reason }) =>
        reason === 'attempts'
          ? err
          : new DeadlineExceededError(`'${model}' did not answer within ${timeoutMs} ms (${sent} attempts)`, { cause: err }),
    });
    return { outputs: reply.outputs, meta: reply.meta, attempts: sent };
  }

  /** A reply over max_payload: read from the replica that holds it (direct), else from the blob bucket. */
  private async readStagedReply(nc: NatsConnection, model: string, raw: Record<string, unknown>): Promise<Record<string, unknown>> {
    const ref = stagedRef(raw)!;
    if (ref.direct === undefined) return unstage(await this.blobStore(), raw, { maxBytes: this.maxMessageBytes });
    if (ref.size > this.maxMessageBytes) {
      throw new PayloadTooLargeError(`reply of ${ref.size} bytes exceeds the limit of ${this.maxMessageBytes}`, {
        data: { limitBytes: this.maxMessageBytes, sizeBytes: ref.size },
      });
    }
    const chunkBytes = directChunkBytes(maxPayload(nc));
    return decodeStaged(
      await pullBody(nc, this.subjects.inferBody(model, ref.direct), ref.name, ref.size, { chunkBytes }).catch(directFailure),
    );
  }

  /**
   * No replica is subscribed: ask the head to (re)place the model and wait (within the deadline)
   * until one is ready; unknown models fail here. True when a replica is ready now.
   */
  private async bringBack(model: string, deadline: number): Promise<boolean> {
    const remaining = deadline - Date.now();
    // Leave the head's reply time to arrive before our own timeout fires.
    const waitMs = Math.max(0, Math.min(MAX_ENSURE_WAIT_MS, remaining - ENSURE_REPLY_MARGIN_MS));
    const status = await this.control<DeploymentStatus>('ensure', { name: model, waitMs }, Math.max(1, remaining));
    if (isFatalLoadCode(status.pendingReason?.code) && status.ready === 0) throw fromWire(status.pendingReason!);
    this.learn(model, status);
    return status.ready > 0;
  }

  /**
   * A request's NATS headers, or none, the common case (headers cost a lone request 10–15 µs more
   * and the replica's CPU per request a quarter more on the MLP: bench:overhead, 2026-11-30): the
   * caller's trace context when it gave one (a new one per request with `traceRequests`), and
   * that this client reads streamed (or direct) replies, unless every reply the model can give
   * this request fits one message (by its signature, once the head has described the model).
   */
  private requestHeaders(model: string, inputs: WireTensors, opts: InferOptions, nc: NatsConnection, direct: boolean): MsgHdrs | undefined {
    const trace = isTraceparent(opts.traceparent) ? opts.traceparent : this.options.traceRequests ? newTraceparent() : undefined;
    const flag = this.options.streamBodies !== false && !this.repliesFit(model, inputs, nc);
    if (trace === undefined && !flag) return undefined;
    const hdrs = natsHeaders();
    if (trace !== undefined) hdrs.set(TRACEPARENT_HEADER, trace);
    // A reply over max_payload may then be sent as its staging starts (or held for this client to read).
    if (flag) hdrs.set(STREAMED_BLOBS_HEADER, direct ? DIRECT_BLOBS : STREAMED_BLOBS);
    return hdrs;
  }

  /** Whether every reply `model` can give these inputs fits one message (false while its signature is unknown). */
  private repliesFit(model: string, inputs: WireTensors, nc: NatsConnection): boolean {
    const signature = this.signatures.get(model);
    if (!signature) return false;
    let items = 1;
    for (const name in inputs) {
      items = inputs[name]!.dims[0] ?? 1;
      break;
    }
    return !mustStage(replyBytesAtMost(signature, items), maxPayload(nc));
  }

  /** What the head said of a model: its ready replicas (routing) and its signature (request headers). */
  private learn(model: string, status: DeploymentStatus): void {
    this.router.update(model, readyReplicas(status), Date.now());
    if (status.signature) this.signatures.set(model, status.signature);
    else this.signatures.delete(model);
  }

  /** Refreshes the routing table from the head; without a head, routing falls back to the queue group. */
  private async refreshReplicas(model: string): Promise<void> {
    if (this.refreshing.has(model)) return;
    this.refreshing.add(model);
    try {
      this.learn(model, await this.describe(model));
    } catch {
      // No head or unknown model: keep what we know (the request path reports what matters).
      this.router.touch(model, Date.now());
    } finally {
      this.refreshing.delete(model);
    }
  }

  // ---------- control plane ----------

  private async control<T>(op: Parameters<Subjects['control']>[0], body: object, timeoutMs = 10_000): Promise<T> {
    const nc = await this.connection();
    try {
      // status/list/events of a large cluster come back staged in the blob bucket, and take longer.
      const large = op === 'status' || op === 'list' || op === 'events';
      return await call<T>(nc, this.subjects.control(op), body, timeoutMs, {
        blobs: await this.blobStore(),
        attemptMs: large ? timeoutMs : undefined,
      });
    } catch (err) {
      if (err instanceof UnavailableError) {
        throw new UnavailableError(`no head is answering for cluster '${this.subjects.cluster}' (is it running?)`, { cause: err });
      }
      throw err;
    }
  }

  /** Uploads the ONNX file (by content digest, once) and deploys it under `name`. */
  async deploy(file: string | Uint8Array, name: string, opts: DeployOptions = {}): Promise<DeploymentStatus> {
    assertValidName('model', name);
    const bytes = typeof file === 'string' ? await readFileCoded(file) : file;
    const digest = createHash('sha256').update(bytes).digest('hex');
    const nc = await this.connection();
    try {
      const os = await (await objectStores(jetstream(nc))).create(this.subjects.modelBucket);
      const info = await os.info(digest);
      if (!info || info.size !== bytes.byteLength) {
        await os.putBlob({ name: digest, options: { max_chunk_size: objectChunkSize(nc) } }, bytes);
      }
    } catch (err) {
      // A role without the model store (a caller's credentials) is FORBIDDEN, not a raw NATS error.
      throw err instanceof FlotillaError ? err : mapNatsError(err, this.subjects.modelBucket, 0);
    }
    const { wait = true, waitTimeoutMs = 120_000, ...rest } = opts;
    const status = await this.control<DeploymentStatus>('deploy', { spec: { ...rest, name, digest, sizeBytes: bytes.byteLength } });
    if (!wait) return status;
    return this.waitReady(name, waitTimeoutMs, status);
  }

  /** Waits until the deployment has all its replicas ready; throws the reason if it cannot. */
  async waitReady(name: string, timeoutMs = 120_000, first?: DeploymentStatus): Promise<DeploymentStatus> {
    const deadline = Date.now() + timeoutMs;
    let status = first ?? (await this.describe(name));
    for (;;) {
      if (status.ready >= status.spec.replicas) return status;
      if (isFatalLoadCode(status.pendingReason?.code) && status.ready === 0) throw fromWire(status.pendingReason!);
      if (Date.now() > deadline) {
        const why = status.pendingReason ? `: ${status.pendingReason.message}` : '';
        const E = status.pendingReason?.code === ErrorCode.NO_CAPACITY ? NoCapacityError : DeadlineExceededError;
        throw new E(`'${name}' has ${status.ready}/${status.spec.replicas} replicas ready after ${timeoutMs} ms${why}`, { data: status });
      }
      await sleep(100);
      status = await this.describe(name);
    }
  }

  undeploy(name: string): Promise<{ name: string; removed: boolean }> {
    return this.control('undeploy', { name });
  }

  async scale(name: string, replicas: number, opts: { wait?: boolean; waitTimeoutMs?: number } = {}): Promise<DeploymentStatus> {
    const status = await this.control<DeploymentStatus>('scale', { name, replicas });
    return opts.wait ? this.waitReady(name, opts.waitTimeoutMs, status) : status;
  }

  list(): Promise<DeploymentStatus[]> {
    return this.control('list', {});
  }

  describe(name: string): Promise<DeploymentStatus> {
    return this.control('describe', { name });
  }

  /** Stored profiles of a deployed model, one per device class it has run on. */
  async profiles(model: string): Promise<ModelProfile[]> {
    const { spec } = await this.describe(model);
    return new ProfileStore(await this.connection(), this.subjects.profileBucket).forDigest(spec.digest);
  }

  /** Recent cluster events (loaded, unloaded, evicted, load_failed), oldest first. */
  events(opts: { model?: string; limit?: number } = {}): Promise<EventMessage[]> {
    return this.control('events', opts);
  }

  status(): Promise<ClusterStatus> {
    return this.control('status', {});
  }

  /** Closes the connection if the client opened it. Safe to call twice. */
  async close(): Promise<void> {
    if (this.options.connection || !this.conn) return;
    const c = this.conn;
    this.conn = undefined;
    const nc = await c.catch(() => undefined);
    if (nc) await closeBus(nc);
  }
}

/** INFER_RETRY_POLICY with `retries + 1` attempts, built and checked once per value. */
const retryPolicies = new Map<number, RetryPolicy>();
function inferRetryPolicy(retries: number): RetryPolicy {
  let p = retryPolicies.get(retries);
  if (!p) {
    p = parseRetryPolicy({ ...INFER_RETRY_POLICY, maximumAttempts: retries + 1 });
    if (retryPolicies.size < 64) retryPolicies.set(retries, p);
  }
  return p;
}

/** Random bytes for trace ids, drawn 4 KiB at a time (one getrandom call per ~170 requests, not two per request). */
const TRACE_POOL = Buffer.allocUnsafe(24 * 170);
let tracePoolAt = TRACE_POOL.length;

/** A new W3C traceparent: version 00, random 16-byte trace id and 8-byte parent id, sampled. */
export function newTraceparent(): string {
  if (tracePoolAt + 24 > TRACE_POOL.length) {
    randomFillSync(TRACE_POOL);
    tracePoolAt = 0;
  }
  const at = tracePoolAt;
  tracePoolAt += 24;
  // An all-zero id is invalid (W3C): so unlikely that one fixed bit is the cheapest guard.
  if (TRACE_POOL.readUInt32BE(at) === 0) TRACE_POOL[at] = 1;
  if (TRACE_POOL.readUInt32BE(at + 16) === 0) TRACE_POOL[at + 16] = 1;
  return `00-${TRACE_POOL.toString('hex', at, at + 16)}-${TRACE_POOL.toString('hex', at + 16, at + 24)}-01`;
}

function readyReplicas(status: DeploymentStatus): string[] {
  return status.replicas.filter((r) => r.state === 'ready').map((r) => r.id);
}

function toWire(name: string, t: Tensor | WireTensor): WireTensor {
  if (!t || typeof t !== 'object' || !isDType((t as Tensor).dtype))
    throw new BadRequestError(`input '${name}': unsupported or missing dtype`);
  // Uint8Array data is raw bytes already (for uint8/bool the bytes are the values too).
  if (t.data instanceof Uint8Array) return checkWireTensor(name, t);
  return checkWireTensor(name, fromTypedArray(t.dtype, t.dims, t.data));
}

async function readFileCoded(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new BadRequestError(`cannot read model file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      cause: err,
    });
  }
}
