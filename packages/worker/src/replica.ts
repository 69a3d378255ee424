// One model replica: an onnxruntime session plus the request path, readable top to bottom:
// caller → (queue group) → decode/validate → batcher queue → session.run → split → reply.
// The head is never on this path.
import type { Tensor as OrtTensor } from 'onnxruntime-node';
import { Tensor } from 'onnxruntime-node';
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/nats-core';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { Svcm, type NamedEndpointStats, type Service } from '@nats-io/services';
import {
  BadRequestError,
  DTYPES,
  HISTOGRAM_MAX_BATCH,
  DeadlineExceededError,
  InputMismatchError,
  elementCount,
  FlotillaError,
  InferReplyWriter,
  OverloadedError,
  PayloadTooLargeError,
  PROTOCOL_VERSION,
  isTraceparent,
  joinBody,
  mustStage,
  DIRECT_BLOBS,
  REPLICA_QUEUE,
  SERVICE_QUEUE,
  STREAMED_BLOBS_HEADER,
  directChunkBytes,
  readsStreamed,
  TRACEPARENT_HEADER,
  decode,
  encode,
  fromTypedArray,
  parseInferRequest,
  requestIdOf,
  toFlotillaError,
  toTypedArray,
  type BatchingOptions,
  type BlobName,
  type Body,
  type InferReply,
  type WireError,
  type ModelSignature as WireModelSignature,
  type ParsedInferRequest,
  type RequestId,
  type ReplicaProfileSummary,
  type ReplicaState,
  type ReplicaStateName,
  type SessionHost,
  type TypedArray,
  type WireTensors,
} from '@flotilla/protocol';
import {
  DirectBodies,
  connectionLink,
  decodeStaged,
  fitReply,
  maxPayload,
  respondSafely,
  stagedRef,
  takeStaged,
  type BlobStore,
  type ConnectionLink,
  type Logger,
  type PayloadPool,
  type Stager,
} from '@flotilla/bus';
import { Batcher, defaultMaxBatchSize, paddedRows, type BatchLimits, type Queued } from './batcher.js';
import { BatchTuner } from './batch-tuner.js';
import type { IntakeBudget } from './intake-budget.js';
import { LatencyWindow } from './latency-window.js';
import type { ShapeProfiler } from './background-profiler.js';
import type { ModelSession } from './session-thread.js';
import { concatBatch, firstRows, splitBatch, validateInputs, wireSignature, type ModelSignature } from './model-io.js';

/**
 * Defaults for a replica's batching before a profile chose (per deployment overridable): batches
 * of what queued while the previous batch ran, up to 8 (on a GPU 1: batcher.ts defaultMaxBatchSize),
 * with no waiting for company, so an unprofiled model never answers later than it would unbatched
 * (a request that finds the replica idle runs at once) and still batches under load.
 */
export const DEFAULT_MAX_BATCH_SIZE = 8;
export const DEFAULT_MAX_QUEUE_DELAY_MS = 0;
export const DEFAULT_MAX_QUEUE_LENGTH = 1024;
/** Room for keys, names, dims and msgpack headers around a staged request's tensor bytes. */
const STAGED_OVERHEAD_BYTES = 64 * 1024;
/** Deadline of a request that names none, ms. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export interface ReplicaContext {
  nc: NatsConnection;
  blobs: BlobStore;
  logger: Logger;
  workerId: string;
  /** Largest request/reply body accepted, staged or not. */
  maxMessageBytes: number;
  /** Extra delay per batch, ms: a chaos knob to emulate a slow device in tests and benchmarks. */
  slowdownMs?: number;
  /** Metrics sink (Prometheus in the worker). */
  metrics?: ReplicaMetrics;
  /** A direct body with no chunk for this long is dropped, ms (tests shorten it). Default DIRECT_STALL_MS. */
  directStallMs?: number;
  /** Where a request's payload buffer goes back once it is answered (the worker's; none: nothing is recycled). */
  payloads?: PayloadPool;
  /** Bytes of accepted, unanswered requests the worker holds across its replicas (none: unbounded but for the queue's length). */
  intake?: IntakeBudget;
}

export interface ReplicaMetrics {
  /** One answered request: `code` is 'OK' or the error code; latency from arrival to answer. */
  request(model: string, code: string, latencyMs: number): void;
  batch(model: string, items: number): void;
}

export interface ReplicaIdentity {
  id: string;
  model: string;
  digest: string;
  device: string;
  executionProvider: string;
  /** Where the session runs (default: the event loop). */
  sessionHost?: SessionHost;
  /** Bytes charged to the device. */
  bytes: number;
  /** The deployment fixed the charge (memoryBytes): profiles never change it. */
  fixedCharge?: boolean;
  profile?: ReplicaProfileSummary;
  pinned?: boolean;
  /**
   * The batch size is the replica's to choose (the deployment did not set maxBatchSize): on a CPU
   * it is then tuned on its own traffic below the profile's choice (batch-tuner.ts).
   */
  tuneBatches?: boolean;
}

/** What one micro-service endpoint (one subscribed subject) answered: `$SRV.STATS` reports these. */
interface EndpointCount {
  requests: number;
  errors: number;
  lastError?: string;
  processingNs: number;
}

interface Pending {
  msg: Msg;
  id?: RequestId;
  inputs: WireTensors;
  outputs?: string[];
  receivedAt: number;
}

/** While a replica drains, a reply held for its caller with no read for this long is released, ms. */
const DRAIN_HELD_REPLY_MS = 1000;

export class Replica {
  state: ReplicaStateName = 'ready';
  private service?: Service;
  /** Answered requests by the subject they came on. */
  private readonly served = new Map<string, EndpointCount>();
  /** The signature as heartbeats publish it (undefined when it does not fit the protocol's bounds). */
  private readonly wireSignature?: WireModelSignature;
  private readonly batcher: Batcher<Pending>;
  /** The batching a key runs with before tuning: its shape's profile's, else the replica's. */
  private readonly baseLimits: (key: string) => BatchLimits;
  /** Tunes each key's batch size on the traffic served (CPU replicas whose deployment left the size to them). */
  private readonly tuner?: BatchTuner;
  /** Successful replies, written straight into one buffer each (the constant meta encoded once). */
  private readonly replies: InferReplyWriter;
  private running = false;
  /** A background shape profile holds the session for its runs: batches wait (background-profiler.ts). */
  private profileHold = false;
  /** Each input's batch buffer, reused from batch to batch (model-io.ts concatBatch). */
  private readonly scratch = new Map<string, Uint8Array>();
  /** A pump waits for this loop iteration's reads (see `pump`). */
  private pumpQueued = false;
  private timer?: NodeJS.Timeout;
  private inFlight = 0;
  private processed = 0;
  /** Items (rows along the batch axis) in the requests answered successfully. */
  private itemsProcessed = 0;
  private failed = 0;
  private readonly histogram: Record<string, number> = {};
  /** Latencies (arrival → answer) of the recent successful requests: heartbeats report p50/p99. */
  private readonly latencies = new LatencyWindow();
  private idle?: () => void;
  /** Replies being encoded/staged/sent. */
  private sending = 0;
  /** Bytes of staged (or direct) requests being fetched now. */
  private fetchingBytes = 0;
  /** What each accepted, unanswered request took of the worker's intake budget, given back when it is answered. */
  private readonly holding = new Map<Msg, number>();
  /** Direct request bodies this replica expects and replies it holds for their callers (bus/direct-body.ts). */
  private readonly direct: DirectBodies;
  /** The body channel those chunks come on. */
  private bodySub?: Subscription;
  private stopWatchingConnection?: () => void;
  private readonly link: ConnectionLink;
  /** Largest staged request that can be valid for this model (fixed input shapes), else Infinity. */
  private readonly maxStagedBytes: number;
  readonly batching: Extract<ReplicaState, { batching: unknown }>['batching'];

  readonly id: string;
  readonly model: string;
  readonly digest: string;
  readonly device: string;
  readonly executionProvider: string;
  readonly sessionHost: SessionHost;
  /** Bytes charged to the device (grows with a dynamic-shape model's profiled footprint: `chargeFollowsProfiles`). */
  bytes: number;
  readonly fixedCharge: boolean;
  readonly profile?: ReplicaProfileSummary;
  readonly pinned: boolean;
  readonly loadedAt = Date.now();
  /** Epoch ms of the last accepted request (LRU). */
  lastUsedAt = this.loadedAt;
  /** Batches run (a background shape profile re-establishes its shape after one). */
  private batchesRun = 0;
  /** Requests accepted (LFU). */
  uses = 0;

  constructor(
    private readonly ctx: ReplicaContext,
    identity: ReplicaIdentity,
    private readonly session: ModelSession,
    readonly signature: ModelSignature,
    options: BatchingOptions,
    /** A model with dynamic non-batch dims: per-shape profiles (run while this replica is idle) and per-shape batching. */
    private readonly shapes?: ShapeProfiler,
  ) {
    ({
      id: this.id,
      model: this.model,
      digest: this.digest,
      device: this.device,
      executionProvider: this.executionProvider,
      bytes: this.bytes,
      profile: this.profile,
    } = identity);
    this.pinned = identity.pinned ?? false;
    this.sessionHost = identity.sessionHost ?? 'event-loop';
    this.fixedCharge = identity.fixedCharge ?? false;
    this.link = connectionLink(ctx.nc);
    this.replies = new InferReplyWriter({ worker: ctx.workerId, replica: this.id, device: this.device });
    // Replies held for their callers to read: at most one largest body at a time (past it, replies are staged).
    this.direct = new DirectBodies({
      maxHeldBytes: ctx.maxMessageBytes,
      chunkBytes: () => directChunkBytes(maxPayload(ctx.nc)),
      ...(ctx.directStallMs !== undefined ? { stallMs: ctx.directStallMs } : {}),
    });
    const gpu = this.device.startsWith('gpu');
    const maxBatchSize = signature.batchAxis ? defaultMaxBatchSize(gpu, options, DEFAULT_MAX_BATCH_SIZE) : 1;
    this.batching = {
      maxBatchSize,
      maxQueueDelayMs: options.maxQueueDelayMs ?? DEFAULT_MAX_QUEUE_DELAY_MS,
      maxQueueLength: options.maxQueueLength ?? DEFAULT_MAX_QUEUE_LENGTH,
      batchAxis: signature.batchAxis,
      ...(options.padBatches && maxBatchSize > 1 ? { padTo: maxBatchSize } : {}),
    };
    // A dynamic-shape model's profiled shapes have their own batching; the others run on these defaults.
    this.baseLimits = (key) => shapes?.batchingFor(key, options) ?? this.batching;
    // Not on a GPU: a change of batch size there can rebuild kernels (batcher.ts defaultMaxBatchSize).
    if (identity.tuneBatches && signature.batchAxis && this.device === 'cpu') this.tuner = new BatchTuner();
    const tuner = this.tuner;
    this.batcher = new Batcher<Pending>(
      this.batching,
      tuner ? (key) => tuner.limits(key, this.baseLimits(key)) : shapes ? (key) => shapes.batchingFor(key, options) : undefined,
    );
    shapes?.attach(
      () => this.batcher.length === 0 && !this.running,
      () => this.batchesRun,
      (on) => {
        this.profileHold = on;
        if (!on) this.pump();
      },
    );
    this.wireSignature = wireSignature(signature);
    if (!this.wireSignature)
      ctx.logger.warn({ replica: this.id, model: this.model }, 'model signature exceeds protocol bounds: not published');
    // A model whose every input dim is fixed takes requests of one size: a staged body much larger
    // than that is refused before it is fetched.
    const fixed = signature.inputs.every((i) => i.shape.every((d) => d !== null));
    this.maxStagedBytes = fixed
      ? signature.inputs.reduce((n, i) => n + elementCount(i.shape as number[]) * DTYPES[i.dtype].bytes, 0) + STAGED_OVERHEAD_BYTES
      : Infinity;
  }

  /**
   * Starts taking requests, as two endpoints of one NATS micro service (so `$SRV.PING/INFO/STATS`
   * discover the replica and describe what it really subscribes): `infer` on this replica's own
   * subject (SDK least-loaded routing, alone in group `q`) and `infer-group` on the model's subject
   * (queue group shared with the other replicas, for callers that do not route). Beside them, a
   * plain subscription on `bodySubject`, the replica's body channel (direct bodies, answered by
   * DirectBodies), kept until a drain has answered everything.
   */
  async start(subject: string, ownSubject: string, cluster: string, bodySubject?: string): Promise<void> {
    if (bodySubject) {
      this.bodySub = this.ctx.nc.subscribe(bodySubject, {
        queue: SERVICE_QUEUE,
        callback: (err, msg) => {
          if (err) this.ctx.logger.warn({ err, replica: this.id }, 'body channel error');
          else this.direct.handle(msg);
        },
      });
      // Chunks in the socket are lost with the connection: the bodies it was bringing fail at once.
      this.stopWatchingConnection = this.link.onLost(() => this.direct.connectionLost());
    }
    // Total: whatever a message holds, nothing is thrown into the NATS client (see bus/serve.ts).
    const callback = (err: Error | null, msg: Msg) => {
      if (err) return this.ctx.logger.warn({ err, replica: this.id }, 'subscription error');
      try {
        this.accept(msg);
      } catch (e) {
        this.ctx.logger.error({ err: e, replica: this.id }, 'request not handled');
      }
    };
    // @nats-io/services (latest 3.0.0-25) is typed against an older nats-core; the connection is the same at run time.
    this.service = await new Svcm(this.ctx.nc as never).add({
      name: 'flotilla-replica',
      version: '0.1.0',
      // No default queue group (the library's is 'q'): each endpoint names its own.
      queue: '',
      statsHandler: (ep) => Promise.resolve(this.endpointStats(ep.subject, ep)),
      description: `Flotilla replica of model '${this.model}'`,
      metadata: {
        cluster,
        model: this.model,
        replica: this.id,
        worker: this.ctx.workerId,
        device: this.device,
        provider: this.executionProvider,
        digest: this.digest,
        // The body channel (direct bodies): a plain subscription beside the endpoints, so it outlives them in a drain.
        ...(bodySubject ? { body: bodySubject } : {}),
      },
    });
    // The own subject in the service library's group `q`: one subscriber either way, and a `worker`
    // seed may subscribe to `infer.*.*` only inside it (permissions.ts). With no group the server
    // refused the subscription and every routed request found no responders (the SDK fell back to
    // the queue group without a word).
    this.service.addEndpoint('infer', {
      subject: ownSubject,
      queue: SERVICE_QUEUE,
      handler: callback as never,
      metadata: { model: this.model },
    });
    this.service.addEndpoint('infer-group', {
      subject,
      queue: REPLICA_QUEUE,
      handler: callback as never,
      metadata: { model: this.model },
    });
  }

  /**
   * The library counts a request when its handler returns and an error only when the handler throws;
   * here answers are asynchronous and errors are coded reply bodies, so the endpoint's counters are
   * set from what this replica answered on that subject (arrival to answer) before STATS reads them.
   */
  private endpointStats(subject: string, ep: object): { queueDepth: number; inFlight: number } {
    const c = this.served.get(subject) ?? { requests: 0, errors: 0, processingNs: 0 };
    const stats = (ep as { stats?: Partial<NamedEndpointStats> }).stats;
    if (stats) {
      stats.num_requests = c.requests;
      stats.num_errors = c.errors;
      stats.last_error = c.lastError;
      stats.processing_time = c.processingNs;
      stats.average_processing_time = c.requests ? Math.round(c.processingNs / c.requests) : 0;
    }
    return { queueDepth: this.batcher.length, inFlight: this.inFlight };
  }

  snapshot(): ReplicaState {
    const latency = this.latencies.summary(performance.now());
    const tuned = this.tuner?.report();
    return {
      id: this.id,
      model: this.model,
      digest: this.digest,
      device: this.device,
      state: this.state,
      bytes: this.bytes,
      queueDepth: this.batcher.length,
      inFlight: this.inFlight,
      processed: this.processed,
      itemsProcessed: this.itemsProcessed,
      failed: this.failed,
      executionProvider: this.executionProvider,
      sessionHost: this.sessionHost,
      batching: this.batching,
      batchHistogram: { ...this.histogram },
      pinned: this.pinned,
      loadedAt: this.loadedAt,
      lastUsedAt: this.lastUsedAt,
      ...(this.profile ? { profile: this.shapes ? this.shapes.summary(this.profile) : this.profile } : {}),
      ...(this.wireSignature ? { signature: this.wireSignature } : {}),
      ...(latency ? { latencyMs: { p50: round3(latency.p50), p99: round3(latency.p99), count: latency.count } } : {}),
      ...(tuned?.length ? { tunedBatches: tuned } : {}),
    };
  }

  /**
   * The charge a dynamic-shape model's profiles call for: the largest footprint of the shapes
   * profiled so far when that exceeds the current charge, else undefined (nothing to change).
   */
  footprintAbove(): number | undefined {
    if (this.fixedCharge || !this.shapes) return undefined;
    const f = this.shapes.book.footprint();
    return f > this.bytes ? f : undefined;
  }

  /** Stops taking new requests, answers everything already accepted, then releases the session. */
  async drain(): Promise<void> {
    if (this.state === 'draining') return;
    this.state = 'draining';
    // Unsubscribe first: messages NATS already delivered still reach `accept` and are answered.
    // (The service drains each endpoint's subscription.)
    await this.service?.stop().catch(() => undefined);
    // A reply held for a caller who gave up must not hold the drain (an eviction) for the whole stall time.
    this.direct.expedite(DRAIN_HELD_REPLY_MS);
    if (!this.isIdle()) await new Promise<void>((resolve) => (this.idle = resolve));
    // Replies held for their callers were read (or dropped after the stall time) before idle: the body channel goes.
    this.bodySub?.unsubscribe();
    this.stopWatchingConnection?.();
    this.direct.close();
    await this.shapes?.close(); // a background profile runs the session: it stops first
    await this.session.release().catch(() => undefined);
  }

  // ---------- the request path ----------

  /**
   * A request arrived: decoded and checked at once, then queued. Plain requests take no promise
   * (the common case: a microtask and a closure per request add up at tens of thousands a second);
   * a staged one is fetched first, asynchronously.
   */
  private accept(msg: Msg): void {
    const receivedAt = performance.now();
    this.inFlight++;
    this.uses++;
    this.lastUsedAt = Date.now();
    let id: RequestId | undefined;
    try {
      const raw = decode(msg.data);
      id = requestIdOf(raw);
      const ref = stagedRef(raw);
      if (!ref) {
        const req = parseInferRequest(raw);
        this.hold(msg, msg.data.byteLength);
        return this.admit(msg, req, receivedAt);
      }
      this.readStaged(msg, ref, receivedAt)
        .then(
          (req) => this.admit(msg, req, receivedAt),
          (err: unknown) => this.finish(msg, id, receivedAt, toFlotillaError(err)),
        )
        .catch((e: unknown) => this.ctx.logger.error({ err: e, replica: this.id }, 'staged request not handled'));
    } catch (err) {
      this.finish(msg, id, receivedAt, toFlotillaError(err));
    }
  }

  /** Validates a parsed request against the model and queues it; never throws. */
  private admit(msg: Msg, req: ParsedInferRequest, receivedAt: number): void {
    let key: string;
    let items: number;
    try {
      ({ key, items } = validateInputs(this.signature, req.inputs));
      this.shapes?.observe(key, req.inputs);
      if (req.outputs !== undefined) this.checkOutputNames(req.outputs);
    } catch (err) {
      return this.finish(msg, req.id, receivedAt, toFlotillaError(err));
    }
    const entry: Queued<Pending> = {
      key,
      items,
      enqueuedAt: receivedAt,
      deadline: receivedAt + (req.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS),
      payload: { msg, id: req.id, inputs: req.inputs, outputs: req.outputs, receivedAt },
    };
    if (!this.batcher.push(entry)) return this.finish(msg, req.id, receivedAt, this.overloaded());
    this.pump(true);
  }

  private overloaded(): OverloadedError {
    return new OverloadedError(`replica ${this.id} of '${this.model}' has ${this.batcher.length} requests queued`, {
      data: { queueLength: this.batcher.length, replica: this.id },
    });
  }

  /**
   * A request staged in the blob bucket. Checked before anything is fetched: the reference (by
   * its schema), the queue's room, the bytes this replica is already fetching (at most
   * maxMessageBytes at once) and the worker's budget of unanswered request bytes (the announced
   * size is held from here), so a flood of large references cannot exhaust the worker's memory.
   */
  private async readStaged(msg: Msg, ref: BlobName, receivedAt: number): Promise<ParsedInferRequest> {
    if (this.batcher.length >= this.batching.maxQueueLength) throw this.overloaded();
    if (ref.size > this.ctx.maxMessageBytes) {
      throw new PayloadTooLargeError(`staged request of ${ref.size} bytes exceeds the limit of ${this.ctx.maxMessageBytes}`, {
        data: { limitBytes: this.ctx.maxMessageBytes, sizeBytes: ref.size },
      });
    }
    if (ref.size > this.maxStagedBytes) {
      throw new InputMismatchError(
        `a staged request of ${ref.size} bytes cannot match '${this.model}', whose inputs take ${this.maxStagedBytes - STAGED_OVERHEAD_BYTES} bytes`,
        {
          data: { expected: this.signature.inputs, sizeBytes: ref.size },
        },
      );
    }
    if (this.fetchingBytes + ref.size > this.ctx.maxMessageBytes) {
      throw new OverloadedError(`replica ${this.id} is already fetching ${this.fetchingBytes} bytes of staged requests`, {
        data: { fetchingBytes: this.fetchingBytes, limitBytes: this.ctx.maxMessageBytes, replica: this.id },
      });
    }
    this.hold(msg, ref.size);
    if (ref.direct !== undefined) {
      if (ref.direct !== this.id) throw new BadRequestError(`a direct body for replica '${ref.direct}' reached replica '${this.id}'`);
      if (!this.bodySub) throw new BadRequestError(`replica '${this.id}' has no body channel: stage the body`);
    }
    this.fetchingBytes += ref.size;
    try {
      const body = ref.direct
        ? decodeStaged(await this.direct.expect(ref.name, ref.size))
        : await takeStaged(this.ctx.blobs, ref, this.ctx.maxMessageBytes);
      const req = parseInferRequest(body);
      if (performance.now() - receivedAt > (req.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS)) {
        throw new DeadlineExceededError('the staged request took longer to fetch than its deadline');
      }
      return req;
    } finally {
      this.fetchingBytes -= ref.size;
    }
  }

  /**
   * Holds a request's bytes in the worker's intake budget until it is answered (`finish` gives them
   * back); a request that would take the worker past the budget is refused OVERLOADED before it is
   * queued (or fetched, when staged).
   */
  private hold(msg: Msg, bytes: number): void {
    const intake = this.ctx.intake;
    if (!intake) return;
    const refused = intake.take(this.id, bytes);
    if (refused) {
      const { reason, heldBytes, replicaBytes, limitBytes, shareBytes } = refused;
      throw new OverloadedError(
        reason === 'limit'
          ? `worker ${this.ctx.workerId} holds ${heldBytes} bytes of unanswered requests: this one's ${bytes} would pass its limit of ${limitBytes}`
          : `replica ${this.id} holds ${replicaBytes} bytes of unanswered requests: this one's ${bytes} would pass its share of its worker's limit, ${shareBytes} of ${limitBytes}`,
        { data: { heldBytes, replicaBytes, limitBytes, shareBytes, sizeBytes: bytes, replica: this.id } },
      );
    }
    this.holding.set(msg, bytes);
  }

  private checkOutputNames(names: string[]): void {
    const known = this.signature.outputs.map((o) => o.name);
    const bad = names.filter((n) => !known.includes(n));
    if (bad.length) throw new BadRequestError(`unknown output(s) ${bad.join(', ')}; the model has ${known.join(', ')}`);
  }

  /**
   * Decides on the next batch once the event loop has read what the socket holds. A session run
   * holds the event-loop thread, so the requests that arrived meanwhile are still unread when it
   * ends, and a request is parsed (and pumps) one at a time as a read is dispatched: deciding at
   * once would start a batch with the few read so far, the rest waiting a whole run for the next.
   * A setImmediate callback runs after this loop iteration's poll phase has dispatched its reads.
   * A request that finds the replica idle with nothing queued (`arrival`) is decided in a microtask
   * instead, once the read that brought it is dispatched (the other requests in it are queued by
   * then): an idle replica has no backlog to wait for, and the loop iteration it saves is 10–20 µs
   * of a lone request's latency here (bench:overhead, mlp at concurrency 1).
   */
  private pump(arrival = false): void {
    if (this.running || this.profileHold || this.pumpQueued) return;
    this.pumpQueued = true;
    if (arrival && this.batcher.length === 1) queueMicrotask(this.pumpNow);
    else setImmediate(this.pumpNow);
  }

  /** Runs the next batch when the batcher says so; re-arms a timer when it says wait. */
  private readonly pumpNow = (): void => {
    this.pumpQueued = false;
    if (this.running || this.profileHold) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const d = this.batcher.next(performance.now());
    for (const q of d.expired) {
      const ms = Math.round(performance.now() - q.payload.receivedAt);
      this.finish(
        q.payload.msg,
        q.payload.id,
        q.payload.receivedAt,
        new DeadlineExceededError(`request waited ${ms} ms in the queue, past its deadline`),
      );
    }
    if (d.kind === 'wait') this.timer = setTimeout(this.pumpNow, d.waitMs);
    else if (d.kind === 'run') {
      this.running = true;
      let done = false;
      const release = () => {
        if (!done) this.running = false;
        done = true;
      };
      // On a thread, the next batch goes to onnxruntime as soon as this one's outputs are back, and
      // these replies are written while it runs (what arrived during this run has been read).
      const ran = this.sessionHost === 'thread' ? () => (release(), this.pumpNow()) : undefined;
      void this.runBatch(d.batch, d.items, d.rows, ran).finally(() => {
        this.batcher.answered(d.batch);
        release();
        this.pump();
        this.checkIdle();
      });
    }
  };

  /** Runs one batch and answers its requests; `ran` is called once the session has returned its outputs. */
  private async runBatch(batch: Queued<Pending>[], items: number, rows = items, ran?: () => void): Promise<void> {
    const started = performance.now();
    let parts: WireTensors[];
    try {
      parts = await this.execute(
        batch.map((q) => q.payload.inputs),
        batch.map((q) => q.items),
        items,
        rows,
      );
    } catch (err) {
      if (batch.length > 1) {
        // Isolate the bad request: one request must never fail the others in its batch (padded alike).
        for (const q of batch) await this.runBatch([q], q.items, paddedRows(q.items, rows > items ? rows : undefined));
        return;
      }
      this.ctx.logger.warn(
        { err, replica: this.id, model: this.model, traceparent: batch[0]!.payload.msg.headers?.get(TRACEPARENT_HEADER) },
        'session.run failed',
      );
      const e = new FlotillaError('INTERNAL', `model '${this.model}' failed to run: ${(err as Error).message}`);
      for (const q of batch) this.finish(q.payload.msg, q.payload.id, q.payload.receivedAt, e);
      return;
    }
    const runMs = performance.now() - started;
    ran?.();
    const bucket = items <= HISTOGRAM_MAX_BATCH ? String(items) : `>${HISTOGRAM_MAX_BATCH}`;
    this.histogram[bucket] = (this.histogram[bucket] ?? 0) + 1;
    this.itemsProcessed += items;
    this.ctx.metrics?.batch(this.model, items);
    const run = Math.round(runMs * 1000) / 1000;
    const queueDepth = this.batcher.length;
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!.payload;
      const wanted = p.outputs;
      const outputs = wanted ? Object.fromEntries(wanted.map((n) => [n, parts[i]![n]!])) : parts[i]!;
      let data: Body;
      try {
        const queueMs = Math.round((started - p.receivedAt) * 1000) / 1000;
        // Outputs of REF_MIN_BYTES or more stay where onnxruntime put them (a reply that large is staged from them).
        data = this.replies.encodeParts(p.id, outputs, { batch: items, queueMs, runMs: run, queueDepth });
      } catch (err) {
        this.finish(p.msg, p.id, p.receivedAt, toFlotillaError(err));
        continue;
      }
      this.finish(p.msg, p.id, p.receivedAt, undefined, data);
    }
    // A padded batch (rows > items) is never tuned: the tuner's recordBatch knows it from the key's limits.
    if (this.tuner) this.tune(batch[0]!.key, items, performance.now() - started);
  }

  /** Tells the tuner what a batch cost (its run and replies); logs where it settles or moves. */
  private tune(key: string, items: number, ms: number): void {
    const step = this.tuner!.recordBatch(key, this.baseLimits(key), items, ms);
    if (!step) return;
    const perItemUs = step.perItemMs.map((x) => Math.round(x * 1000));
    this.ctx.logger.info(
      { replica: this.id, model: this.model, key, from: step.from, to: step.to, perItemUs },
      step.to === step.from
        ? `batch size ${step.from} kept on this replica's traffic (${perItemUs[0]} µs per item against ${perItemUs[1]} at ${step.half})`
        : `batch size tuned on this replica's traffic: ${step.from} → ${step.to} (${perItemUs[0]} → ${perItemUs[1]} µs per item)`,
    );
  }

  private async execute(requests: WireTensors[], counts: number[], items: number, rows: number): Promise<WireTensors[]> {
    if (this.ctx.slowdownMs) await new Promise((r) => setTimeout(r, this.ctx.slowdownMs));
    const merged = concatBatch(this.signature, requests, items, this.scratch, rows);
    this.batchesRun++;
    const feeds: Record<string, OrtTensor> = {};
    for (const [name, t] of Object.entries(merged)) feeds[name] = new Tensor(t.dtype, toTypedArray(t) as never, t.dims);
    const results = await this.session.run(feeds);
    let outputs: WireTensors = {};
    for (const s of this.signature.outputs) {
      const r = results[s.name]!;
      outputs[s.name] = fromTypedArray(s.dtype, r.dims as number[], r.data as TypedArray);
    }
    if (rows > items) outputs = firstRows(outputs, items);
    return this.signature.batchAxis ? splitBatch(outputs, counts) : [outputs];
  }

  /** Answers one request (result or coded error), staging large replies; never throws. */
  private finish(msg: Msg, id: RequestId | undefined, receivedAt: number, error?: FlotillaError, reply?: Body): void {
    this.inFlight--;
    const held = this.holding.get(msg);
    if (held !== undefined) {
      this.holding.delete(msg);
      this.ctx.intake?.give(this.id, held);
    }
    const now = performance.now();
    const ms = now - receivedAt;
    this.ctx.metrics?.request(this.model, error ? error.code : 'OK', ms);
    let c = this.served.get(msg.subject);
    if (!c) this.served.set(msg.subject, (c = { requests: 0, errors: 0, processingNs: 0 }));
    c.requests++;
    c.processingNs += Math.round(ms * 1e6);
    if (error) {
      this.failed++;
      c.errors++;
      c.lastError = `${error.code}: ${error.message}`;
      this.send(msg, id, encodeReply({ v: PROTOCOL_VERSION, ok: false, id, error: error.toWire() }, id));
    } else {
      this.processed++;
      this.latencies.record(ms, now);
      this.send(msg, id, reply!);
    }
    this.checkIdle();
  }

  private isIdle(): boolean {
    return this.inFlight === 0 && this.batcher.length === 0 && !this.running && this.sending === 0;
  }

  /** Wakes a pending drain once nothing is queued, running or being sent. */
  private checkIdle(): void {
    if (this.idle && this.isIdle()) {
      const wake = this.idle;
      this.idle = undefined;
      wake();
    }
  }

  /**
   * Answers with an encoded reply; never throws. A reply that fits one message is sent at once; a larger one
   * is staged (or refused as PAYLOAD_TOO_LARGE over the body limit) asynchronously, counted in
   * `sending` so a drain waits for it.
   */
  private send(msg: Msg, id: RequestId | undefined, data: Body): void {
    if (!msg.reply) {
      this.ctx.logger.debug({ replica: this.id }, 'request without a reply subject: result dropped');
      this.ctx.payloads?.recycle(msg.data);
      return;
    }
    if (!mustStage(data.byteLength, maxPayload(this.ctx.nc))) {
      this.respond(msg, joinBody(data));
      // Answered: nothing reads the request any more (its headers were read by respond).
      this.ctx.payloads?.recycle(msg.data);
      return;
    }
    this.sending++;
    // A caller that reads direct replies reads this one from the replica itself (held until it is
    // read, or for the stall time), unless that would hold more than the replica's budget. One that
    // reads streamed replies gets the reference once the first chunk is stored and reads while the
    // rest is written. Either way the reply counts in `sending` until it is read or staged.
    let streaming: Promise<void> | undefined;
    const reads = msg.headers?.get(STREAMED_BLOBS_HEADER);
    const stream: Stager = async (d: Body) => {
      const s = await this.ctx.blobs.stream(d);
      streaming = s.done.catch((err: unknown) =>
        this.ctx.logger.warn({ err: (err as Error).message, replica: this.id }, 'streamed reply not staged'),
      );
      return s.ref;
    };
    const held: Stager = async (d: Body) => {
      const offered = this.bodySub ? this.direct.offer(d) : undefined;
      if (!offered) return stream(d);
      streaming = offered.done;
      return { name: offered.id, size: offered.size, direct: this.id };
    };
    const stage: Stager = reads === DIRECT_BLOBS ? held : readsStreamed(reads) ? stream : (d: Body) => this.ctx.blobs.put(d);
    void fitReply(this.ctx.nc, data, stage, (error) => ({ v: PROTOCOL_VERSION, ok: false, id, error }), this.ctx.maxMessageBytes)
      .then((staged) => this.respond(msg, staged))
      .then(() => streaming)
      .finally(() => {
        this.ctx.payloads?.recycle(msg.data);
        this.sending--;
        this.checkIdle();
      });
  }

  /** Sends the reply, with the request's trace context (callers join their spans to ours). */
  private respond(msg: Msg, data: Uint8Array): void {
    const received = msg.headers;
    const trace = received?.get(TRACEPARENT_HEADER);
    let h: MsgHdrs | undefined;
    if (trace && isTraceparent(trace)) {
      // The SDK's requests carry the trace context (and the streamed-replies flag) alone: those headers go back as they are.
      if (received!.code === 0 && received!.keys().every((k) => k === TRACEPARENT_HEADER || k === STREAMED_BLOBS_HEADER)) h = received;
      else {
        h = natsHeaders();
        h.set(TRACEPARENT_HEADER, trace);
      }
    }
    // Sent once the connection is back if it is down (nats.js would drop it); a closed connection
    // loses the reply, and the caller's timeout answers it.
    if (this.link.up) respondSafely(msg, data, h);
    else this.link.whenUp(() => respondSafely(msg, data, h));
  }
}

/** Ms to the microsecond: heartbeats need no more. */
function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** An error reply's bytes; one that cannot be encoded (it never should) becomes an INTERNAL error reply. */
function encodeReply(body: InferReply & { ok: false }, id: RequestId | undefined): Uint8Array {
  try {
    return encode(body);
  } catch (err) {
    const error: WireError = toFlotillaError(err).toWire();
    return encode({ v: PROTOCOL_VERSION, ok: false, id, error });
  }
}
