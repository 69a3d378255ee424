// One model replica: an onnxruntime session plus the request path, readable top to bottom:
// caller → (queue group) → decode/validate → batcher queue → session.run → split → reply.
// The head is never on this path.
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { Tensor } from 'onnxruntime-node';
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { Svcm, type Service } from '@nats-io/services';
import {
  BadRequestError,
  DeadlineExceededError,
  FlotillaError,
  OverloadedError,
  PROTOCOL_VERSION,
  REPLICA_QUEUE,
  TRACEPARENT_HEADER,
  checkWireTensor,
  decode,
  encode,
  fromTypedArray,
  mustStage,
  toFlotillaError,
  toTypedArray,
  type BatchingOptions,
  type BlobRef,
  type InferReply,
  type InferRequest,
  type ReplicaProfileSummary,
  type ReplicaState,
  type ReplicaStateName,
  type TypedArray,
  type WireTensors,
} from '@flotilla/protocol';
import type { BlobStore, Logger } from '@flotilla/bus';
import { Batcher, type Queued } from './batcher.js';
import { concatBatch, splitBatch, validateInputs, type ModelSignature } from './model-io.js';

/** Defaults for a replica's batching (per deployment overridable). */
export const DEFAULT_MAX_BATCH_SIZE = 8;
export const DEFAULT_MAX_QUEUE_DELAY_MS = 2;
export const DEFAULT_MAX_QUEUE_LENGTH = 1024;
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
  /** Bytes charged to the device. */
  bytes: number;
  profile?: ReplicaProfileSummary;
  pinned?: boolean;
}

interface Pending {
  msg: Msg;
  id?: string;
  inputs: WireTensors;
  outputs?: string[];
  receivedAt: number;
}

export class Replica {
  state: ReplicaStateName = 'ready';
  private subs: Subscription[] = [];
  private service?: Service;
  private readonly batcher: Batcher<Pending>;
  private running = false;
  private timer?: NodeJS.Timeout;
  private inFlight = 0;
  private processed = 0;
  /** Items (rows along the batch axis) in the requests answered successfully. */
  private itemsProcessed = 0;
  private failed = 0;
  private readonly histogram: Record<string, number> = {};
  private idle?: () => void;
  /** Replies being encoded/staged/sent. */
  private sending = 0;
  readonly batching: ReplicaState['batching'];

  readonly id: string;
  readonly model: string;
  readonly digest: string;
  readonly device: string;
  readonly executionProvider: string;
  readonly bytes: number;
  readonly profile?: ReplicaProfileSummary;
  readonly pinned: boolean;
  readonly loadedAt = Date.now();
  /** Epoch ms of the last accepted request (LRU). */
  lastUsedAt = this.loadedAt;
  /** Requests accepted (LFU). */
  uses = 0;

  constructor(
    private readonly ctx: ReplicaContext,
    identity: ReplicaIdentity,
    private readonly session: InferenceSession,
    readonly signature: ModelSignature,
    options: BatchingOptions,
  ) {
    ({ id: this.id, model: this.model, digest: this.digest, device: this.device, executionProvider: this.executionProvider, bytes: this.bytes, profile: this.profile } =
      identity);
    this.pinned = identity.pinned ?? false;
    this.batching = {
      maxBatchSize: signature.batchAxis ? (options.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE) : 1,
      maxQueueDelayMs: options.maxQueueDelayMs ?? DEFAULT_MAX_QUEUE_DELAY_MS,
      maxQueueLength: options.maxQueueLength ?? DEFAULT_MAX_QUEUE_LENGTH,
      batchAxis: signature.batchAxis,
    };
    this.batcher = new Batcher<Pending>(this.batching);
  }

  /**
   * Starts taking requests: on the model's subject (queue group shared with the other replicas,
   * for callers that do not route) and on this replica's own subject (SDK least-loaded routing),
   * the latter as a NATS micro service endpoint so `$SRV.PING/INFO/STATS` discover the replica.
   */
  async start(subject: string, ownSubject: string, cluster: string): Promise<void> {
    const callback = (err: Error | null, msg: Msg) => {
      if (err) return this.ctx.logger.warn({ err, replica: this.id }, 'subscription error');
      void this.accept(msg);
    };
    this.subs.push(this.ctx.nc.subscribe(subject, { queue: REPLICA_QUEUE, callback }));
    // @nats-io/services (latest 3.0.0-25) is typed against an older nats-core; the connection is the same at run time.
    this.service = await new Svcm(this.ctx.nc as never).add({
      name: 'flotilla-replica',
      version: '0.1.0',
      description: `Flotilla replica of model '${this.model}'`,
      metadata: { cluster, model: this.model, replica: this.id, worker: this.ctx.workerId, device: this.device, provider: this.executionProvider, digest: this.digest },
    });
    this.service.addEndpoint('infer', { subject: ownSubject, queue: '', handler: callback as never, metadata: { model: this.model } });
  }

  snapshot(): ReplicaState {
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
      batching: this.batching,
      batchHistogram: { ...this.histogram },
      pinned: this.pinned,
      loadedAt: this.loadedAt,
      lastUsedAt: this.lastUsedAt,
      ...(this.profile ? { profile: this.profile } : {}),
    };
  }

  /** Stops taking new requests, answers everything already accepted, then releases the session. */
  async drain(): Promise<void> {
    if (this.state === 'draining') return;
    this.state = 'draining';
    // Unsubscribe first: messages NATS already delivered still reach `accept` and are answered.
    await Promise.all([...this.subs.map((s) => s.drain().catch(() => undefined)), this.service?.stop().catch(() => undefined)]);
    if (!this.isIdle()) await new Promise<void>((resolve) => (this.idle = resolve));
    await this.session.release().catch(() => undefined);
  }

  // ---------- the request path ----------

  private async accept(msg: Msg): Promise<void> {
    const receivedAt = performance.now();
    this.inFlight++;
    this.uses++;
    this.lastUsedAt = Date.now();
    let req: InferRequest;
    let deadline: number;
    let key: string;
    let items: number;
    try {
      req = await this.readRequest(msg.data);
      const timeoutMs = req.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
      if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) throw new BadRequestError('timeoutMs must be a positive number');
      deadline = receivedAt + timeoutMs;
      ({ key, items } = validateInputs(this.signature, req.inputs));
      if (req.outputs !== undefined) this.checkOutputNames(req.outputs);
    } catch (err) {
      return this.finish(msg, undefined, receivedAt, toFlotillaError(err));
    }
    const entry: Queued<Pending> = {
      key,
      items,
      enqueuedAt: receivedAt,
      deadline,
      payload: { msg, id: req.id, inputs: req.inputs, outputs: req.outputs, receivedAt },
    };
    if (!this.batcher.push(entry)) {
      return this.finish(msg, req.id, receivedAt, new OverloadedError(`replica ${this.id} of '${this.model}' has ${this.batcher.length} requests queued`, {
        data: { queueLength: this.batcher.length, replica: this.id },
      }));
    }
    this.pump();
  }

  /** Decodes a request, fetching it from the blob bucket when it was staged. */
  private async readRequest(data: Uint8Array): Promise<InferRequest> {
    let body = decode<InferRequest & Partial<BlobRef>>(data);
    if (body.blob) {
      const bytes = await this.ctx.blobs.take(body.blob, this.ctx.maxMessageBytes);
      body = decode<InferRequest>(bytes);
    }
    if (body.inputs === null || typeof body.inputs !== 'object' || Array.isArray(body.inputs)) {
      throw new BadRequestError('request must have an `inputs` map of tensors');
    }
    for (const [name, t] of Object.entries(body.inputs)) body.inputs[name] = checkWireTensor(name, t);
    if (body.outputs !== undefined && !(Array.isArray(body.outputs) && body.outputs.every((o) => typeof o === 'string'))) {
      throw new BadRequestError('`outputs` must be a list of output names');
    }
    return body;
  }

  private checkOutputNames(names: string[]): void {
    const known = this.signature.outputs.map((o) => o.name);
    const bad = names.filter((n) => !known.includes(n));
    if (bad.length) throw new BadRequestError(`unknown output(s) ${bad.join(', ')}; the model has ${known.join(', ')}`);
  }

  /** Runs the next batch when the batcher says so; re-arms a timer when it says wait. */
  private pump(): void {
    if (this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const d = this.batcher.next(performance.now());
    for (const q of d.expired) {
      const ms = Math.round(performance.now() - q.payload.receivedAt);
      this.finish(q.payload.msg, q.payload.id, q.payload.receivedAt, new DeadlineExceededError(`request waited ${ms} ms in the queue, past its deadline`));
    }
    if (d.kind === 'wait') this.timer = setTimeout(() => this.pump(), d.waitMs);
    else if (d.kind === 'run') {
      this.running = true;
      void this.runBatch(d.batch, d.items).finally(() => {
        this.running = false;
        this.pump();
        this.checkIdle();
      });
    }
  }

  private async runBatch(batch: Queued<Pending>[], items: number): Promise<void> {
    const started = performance.now();
    let parts: WireTensors[];
    try {
      parts = await this.execute(batch.map((q) => q.payload.inputs), batch.map((q) => q.items), items);
    } catch (err) {
      if (batch.length > 1) {
        // Isolate the bad request: one request must never fail the others in its batch.
        for (const q of batch) await this.runBatch([q], q.items);
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
    this.histogram[String(items)] = (this.histogram[String(items)] ?? 0) + 1;
    this.itemsProcessed += items;
    this.ctx.metrics?.batch(this.model, items);
    batch.forEach((q, i) => {
      const wanted = q.payload.outputs;
      const outputs = wanted ? Object.fromEntries(wanted.map((n) => [n, parts[i]![n]!])) : parts[i]!;
      this.finish(q.payload.msg, q.payload.id, q.payload.receivedAt, undefined, {
        v: PROTOCOL_VERSION,
        ok: true,
        id: q.payload.id,
        outputs,
        meta: {
          worker: this.ctx.workerId,
          replica: this.id,
          device: this.device,
          batch: items,
          queueMs: +(started - q.payload.receivedAt).toFixed(3),
          runMs: +runMs.toFixed(3),
          queueDepth: this.batcher.length,
        },
      });
    });
  }

  private async execute(requests: WireTensors[], counts: number[], items: number): Promise<WireTensors[]> {
    if (this.ctx.slowdownMs) await new Promise((r) => setTimeout(r, this.ctx.slowdownMs));
    const merged = concatBatch(this.signature, requests, items);
    const feeds: Record<string, OrtTensor> = {};
    for (const [name, t] of Object.entries(merged)) feeds[name] = new Tensor(t.dtype, toTypedArray(t) as never, t.dims);
    const results = await this.session.run(feeds);
    const outputs: WireTensors = {};
    for (const s of this.signature.outputs) {
      const r = results[s.name]!;
      outputs[s.name] = fromTypedArray(s.dtype, r.dims as number[], r.data as TypedArray);
    }
    return this.signature.batchAxis ? splitBatch(outputs, counts) : [outputs];
  }

  /** Answers one request (result or coded error), staging large replies; never throws. */
  private finish(msg: Msg, id: string | undefined, receivedAt: number, error?: FlotillaError, reply?: InferReply): void {
    this.inFlight--;
    this.ctx.metrics?.request(this.model, error ? error.code : 'OK', performance.now() - receivedAt);
    if (error) this.failed++;
    else this.processed++;
    const body: InferReply = error ? { v: PROTOCOL_VERSION, ok: false, id, error: error.toWire() } : reply!;
    this.sending++;
    void this.send(msg, body).finally(() => {
      this.sending--;
      this.checkIdle();
    });
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

  private async send(msg: Msg, body: InferReply): Promise<void> {
    if (!msg.reply) {
      this.ctx.logger.warn({ replica: this.id }, 'request without a reply subject: result cannot be delivered');
      return;
    }
    try {
      let data = encode(body);
      if (data.byteLength > this.ctx.maxMessageBytes) {
        data = encode({
          v: PROTOCOL_VERSION,
          ok: false,
          id: body.id,
          error: { code: 'PAYLOAD_TOO_LARGE', message: `reply of ${data.byteLength} bytes exceeds the limit of ${this.ctx.maxMessageBytes}` },
        });
      } else if (mustStage(data.byteLength, this.ctx.nc.info?.max_payload ?? 1024 * 1024)) {
        const blob = await this.ctx.blobs.put(data);
        data = encode({ v: PROTOCOL_VERSION, blob } satisfies BlobRef);
      }
      // Trace context comes back with the reply so callers can join their spans to ours.
      const trace = msg.headers?.get(TRACEPARENT_HEADER);
      if (trace) {
        const h = natsHeaders();
        h.set(TRACEPARENT_HEADER, trace);
        msg.respond(data, { headers: h });
      } else msg.respond(data);
    } catch (err) {
      this.ctx.logger.error({ err, replica: this.id }, 'failed to send reply');
      try {
        msg.respond(encode({ v: PROTOCOL_VERSION, ok: false, id: body.id, error: toFlotillaError(err).toWire() }));
      } catch {
        // connection gone: the caller's timeout answers it
      }
    }
  }
}
