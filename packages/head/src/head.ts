// The head: control plane only. It keeps desired state (deployments) in JetStream KV, learns
// actual state from worker heartbeats, and reconciles the two by sending load/unload commands
// chosen by the placement policy. It never sees an inference request.
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { nuid } from '@nats-io/nats-core';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import {
  isFatalLoadCode,
  BadRequestError,
  ErrorCode,
  FlotillaError,
  MAX_ENSURE_WAIT_MS,
  PROTOCOL_VERSION,
  UnknownModelError,
  UnavailableError,
  decode,
  encode,
  estimateReplicaBytes,
  parseControlRequest,
  parseDeploySpec,
  parseDeploymentRecord,
  parseEventMessage,
  parseHeartbeat,
  parseLoadResult,
  subjects as makeSubjects,
  toFlotillaError,
  type ClusterStatus,
  type ControlRequest,
  type DeploySpec,
  type DeploymentStatus,
  type EventMessage,
  type Heartbeat,
  type Subjects,
  type WireError,
} from '@flotilla/protocol';
import { BlobStore, ThrottledLog, call, closeBus, connectBus, connectionTracker, createLogger, listen, notReadyReason, serve, type Logger } from '@flotilla/bus';
import { parseHeadOptions, type CompiledHeadOptions, type HeadOptions } from './options.js';
import { place, type WorkerView } from './placement.js';
import { WorkerRegistry } from './registry.js';
import { Autoscaler, observe } from './autoscaler.js';
import { LeaderLease } from './lease.js';
import { Leadership } from './leadership.js';
import { ReadyWaiters } from './ready-waiters.js';
import { indexReplicas, workerViews, type IndexedReplica } from './cluster-view.js';
import { ensureEventStream, readEventHistory } from './event-history.js';
import { DEFAULT_EVENT_LOG_LIMITS, EventLog } from './event-log.js';
import { DEFAULT_PLACEMENT_RETRY, loadsInFlight, settlePending, type PendingPlacement } from './placement-retry.js';
import { activeRefusals, newDeployment, recordFailure, resetRetry, type Deployment } from './deployment.js';
import { deploymentStatus, workerStatuses } from './status-view.js';

/** Shortest time a device that refused a replica (NO_CAPACITY) is skipped for that deployment, ms. */
export const REFUSAL_TTL_MS = DEFAULT_PLACEMENT_RETRY.refusalMs;

/** Most unload commands awaiting their reply (or their dedupe window) at once. */
export const MAX_UNLOADS_IN_FLIGHT = 256;

/** Events kept for `flotilla events`, per event type. */
export const EVENT_HISTORY = DEFAULT_EVENT_LOG_LIMITS.perType;

/** `running`: leading (reconciling, answering control requests); `standby`: waiting for the lease. */
type HeadState = 'starting' | 'standby' | 'running' | 'stopping' | 'stopped';

export class Head {
  state: HeadState = 'starting';
  readonly subjects: Subjects;
  readonly registry: WorkerRegistry;
  private readonly deployments = new Map<string, Deployment>();
  private readonly subs: Subscription[] = [];
  private readonly unloading = new Set<string>();
  /** See replicasOf(); undefined when it must be rebuilt. */
  private replicaIndex?: Map<string, IndexedReplica[]>;
  /** Replicas on alive workers (any state) by model, for describe/list/status; undefined when stale. */
  private aliveIndex?: Map<string, IndexedReplica[]>;
  /** Bumped when capacity may have been freed (a worker joined, a replica unloaded or evicted, an undeploy). */
  private capacityEpoch = 0;
  private tickScheduled = false;
  private readonly refusedBeats: ThrottledLog;
  /** Time the last reconcile round over all deployments took, ms (metric `flotilla_head_tick_seconds`). */
  lastTickMs = 0;
  /** Callers of `ensure` waiting for a ready replica, by model. */
  private readonly readyWaiters = new ReadyWaiters();
  private readonly events = new EventLog();
  private wasCutOff = false;
  private timer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  private stopping?: Promise<void>;
  private readonly link: { connected: () => boolean };

  private readonly leadership: Leadership;
  private leadingWaiters: Array<() => void> = [];

  private constructor(
    readonly options: CompiledHeadOptions,
    readonly nc: NatsConnection,
    private readonly ownsConnection: boolean,
    private readonly kv: KV,
    readonly lease: LeaderLease,
    readonly logger: Logger,
    /** Where control replies too large for one message are staged (the cluster's blob bucket). */
    private readonly blobs: BlobStore,
  ) {
    this.subjects = makeSubjects(options.cluster);
    this.registry = new WorkerRegistry(options.workerTimeoutMs, { maxWorkers: options.maxWorkers });
    this.refusedBeats = new ThrottledLog(logger, 'heartbeat not believed');
    this.link = connectionTracker(nc);
    this.leadership = new Leadership(
      lease,
      {
        leading: () => this.state === 'running',
        mayLead: () => this.state === 'standby' && !this.stopping && this.link.connected(),
        lead: () => this.lead(),
        stepDown: (reason) => this.stepDown(reason),
      },
      logger,
    );
  }

  /** Null when ready to serve; otherwise why not (for /readyz). A standby is ready: it is there to take over. */
  notReady(): string | null {
    return notReadyReason('head', this.state === 'standby' ? 'running' : this.state, this.link);
  }

  /** Resolves once this head leads (at once if it does). */
  leading(): Promise<void> {
    if (this.state === 'running') return Promise.resolve();
    return new Promise((resolve) => this.leadingWaiters.push(resolve));
  }

  static async start(raw: HeadOptions = {}): Promise<Head> {
    const options = parseHeadOptions(raw);
    const logger = options.logger ?? createLogger('flotilla-head');
    const nc = options.connection ?? (await connectBus({ name: 'flotilla-head', ...options.bus }));
    const s = makeSubjects(options.cluster);
    const js = jetstream(nc);
    const kv = await new Kvm(js).create(s.stateBucket, { history: 1, replicas: options.storeReplicas });
    // The model store is created here so `deploy` can upload before any worker exists.
    await new Objm(js).create(s.modelBucket, { replicas: options.storeReplicas });
    // Lease writes get a short timeout: one stuck through an outage must not hold off the renewals
    // after it until the lease has run out.
    const leaseJs = jetstream(nc, { timeout: Math.min(2000, Math.max(250, Math.floor(options.leaseTtlMs / 4))) });
    const leaseKv = await new Kvm(leaseJs).create(s.leaseBucket, { history: 1, ttl: options.leaseTtlMs, replicas: options.storeReplicas });
    // The bucket's TTL is the one the first head created it with: renew and expire by that one.
    const ttl = (await leaseKv.status()).ttl || options.leaseTtlMs;
    if (ttl !== options.leaseTtlMs) logger.warn({ asked: options.leaseTtlMs, bucket: ttl }, 'lease TTL set by the bucket differs from --lease-ttl-ms; using the bucket');
    await ensureEventStream(nc, s.eventStream, s.eventAll, DEFAULT_EVENT_LOG_LIMITS, options.storeReplicas);
    const blobs = new BlobStore(nc, s.blobBucket, undefined, options.storeReplicas);
    const head = new Head(options, nc, !options.connection, kv, new LeaderLease(leaseKv, options.id, ttl), logger, blobs);
    head.state = 'standby';
    await head.leadership.start();
    if (head.state === 'standby') logger.info({ cluster: options.cluster, leader: (await head.lease.holder())?.id }, 'head standing by');
    return head;
  }

  /** Takes over: desired state from KV, actual state from the heartbeats that follow. */
  private async lead(): Promise<void> {
    this.deployments.clear();
    this.registry.clear();
    this.invalidate();
    await this.recover();
    await this.recoverEvents();
    if (this.stopping) return;
    this.subscribe();
    await this.nc.flush(); // the server has our subscriptions before anyone is told we run
    this.state = 'running';
    this.timer = setInterval(() => this.tick(), this.options.reconcileMs);
    this.logger.info({ cluster: this.options.cluster, head: this.options.id, deployments: this.deployments.size }, 'head leading');
    for (const resolve of this.leadingWaiters.splice(0)) resolve();
  }

  /** Stops acting as leader (another head may lead already): no reconciling, no control answers. */
  private stepDown(reason: string): void {
    this.logger.warn({ head: this.options.id, reason }, 'head stepping down');
    this.state = 'standby';
    clearInterval(this.timer);
    for (const sub of this.subs.splice(0)) sub.unsubscribe();
    this.readyWaiters.wakeAll();
    this.registry.clear();
    this.invalidate();
  }

  /** The heartbeat-derived indexes are stale. */
  private invalidate(): void {
    this.replicaIndex = undefined;
    this.aliveIndex = undefined;
  }

  /**
   * Writes desired state, retrying through a JetStream leader election (a few seconds on a
   * clustered NATS), then failing with a retryable UNAVAILABLE.
   */
  private async store(key: string, value?: Uint8Array): Promise<void> {
    const deadline = Date.now() + 8000;
    for (let wait = 100; ; wait = Math.min(wait * 2, 1000)) {
      try {
        if (value) await this.kv.put(key, value);
        else await this.kv.delete(key);
        return;
      } catch (err) {
        if (Date.now() + wait > deadline) {
          throw new UnavailableError(`cannot write ${key} to ${this.subjects.stateBucket}: ${(err as Error).message}`, { cause: err });
        }
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /** Desired state survives a head restart: read it back from KV. */
  private async recover(): Promise<void> {
    const keys = await this.kv.keys('deployments.>');
    for await (const key of keys) {
      const e = await this.kv.get(key);
      if (!e || e.operation !== 'PUT') continue;
      try {
        const { spec: raw, createdAt } = parseDeploymentRecord(decode(e.value));
        const spec = parseDeploySpec(raw);
        if (key !== `deployments.${spec.name}`) throw new BadRequestError(`record of '${spec.name}' stored under another key`);
        // No placement until the workers' heartbeats had time to arrive: replicas that exist but
        // were not heard of yet must not be placed twice (ensure still places at once).
        this.deployments.set(spec.name, this.newDeployment(spec, createdAt, Date.now() + this.options.settleMs));
      } catch (err) {
        this.logger.error({ key: key.slice(0, 200), err: toFlotillaError(err).message.slice(0, 300) }, 'skipping unreadable deployment record');
      }
    }
  }

  /**
   * The event history from its stream; a model whose last load/eviction event is an eviction is
   * dormant again (the previous leader would not have re-placed it either).
   */
  private async recoverEvents(): Promise<void> {
    this.events.clear();
    let history: Array<{ e: EventMessage; size: number }> = [];
    try {
      history = await readEventHistory(this.nc, this.subjects.eventStream);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'event history not read: starting without it');
    }
    // The stream keeps each type's own history: replay in time order.
    history.sort((a, b) => a.e.at - b.e.at);
    const last = new Map<string, string>();
    for (const { e, size } of history) {
      this.events.push(e, size);
      if (e.model && (e.type === 'evicted' || e.type === 'loaded')) last.set(e.model, e.type);
    }
    for (const [model, type] of last) if (type === 'evicted') this.markDormant(model);
  }

  /**
   * Every subscription goes through bus `serve`/`listen`: each message is parsed by its schema
   * from protocol before anything else touches it, and nothing escapes into the NATS client.
   */
  private subscribe(): void {
    const { logger } = this;
    this.subs.push(
      listen(this.nc, this.subjects.heartbeatAll, { logger, what: 'bad heartbeat', parse: (raw, msg) => this.parseOn(msg.subject, parseHeartbeat(raw), this.subjects.heartbeat) }, (hb) =>
        this.onHeartbeat(hb),
      ),
      listen(this.nc, this.subjects.eventAll, { logger, what: 'bad event', parse: (raw, msg) => this.parseOn(msg.subject, parseEventMessage(raw), this.subjects.event) }, (e, msg) =>
        this.onEvent(e, msg.data.byteLength),
      ),
      serve(
        this.nc,
        this.subjects.controlAll,
        {
          queue: 'head',
          logger,
          what: 'control request failed',
          parse: (raw, msg) => parseControlRequest(msg.subject.slice(msg.subject.lastIndexOf('.') + 1), raw),
          // status/list/events of a large cluster exceed max_payload: staged, `call` fetches them.
          stage: (data) => this.blobs.put(data),
        },
        (req) => this.control(req),
      ),
    );
  }

  /** A heartbeat or event must arrive on its own subject (`hb.<workerId>`, `events.<type>`). */
  private parseOn<T extends { workerId: string } | { type: string }>(subject: string, m: T, expected: (token: string) => string): T {
    const token = 'workerId' in m ? m.workerId : m.type;
    if (subject !== expected(token)) throw new BadRequestError(`message for '${token}' published on another subject`);
    return m;
  }

  private onHeartbeat(hb: Heartbeat): void {
    const now = Date.now();
    const r = this.registry.upsert(hb, now);
    if (!r.accepted) {
      this.refusedBeats.warn({ worker: hb.workerId, seq: hb.seq, reason: r.reason });
      return;
    }
    for (const rep of hb.replicas) {
      const d = this.deployments.get(rep.model);
      const b = rep.profile?.replicaBytes ?? 0;
      if (d && rep.digest === d.spec.digest && b > (d.measuredBytes ?? 0)) d.measuredBytes = b;
    }
    this.invalidate();
    if (r.joined) {
      this.logger.info({ worker: hb.workerId, devices: hb.devices.map((d) => d.id) }, r.kind === 'restart' ? 'worker restarted' : 'worker joined');
      this.capacityEpoch++;
      this.scheduleTick();
    }
    if (this.readyWaiters.size > 0) for (const rep of hb.replicas) if (rep.state === 'ready') this.readyWaiters.wake(rep.model);
  }

  private onEvent(e: EventMessage, size: number): void {
    this.events.push(e, size);
    if (e.type === 'evicted' && e.model) this.markDormant(e.model);
    if (e.type === 'evicted' || e.type === 'unloaded') {
      this.capacityEpoch++;
      // Gone before a heartbeat reported it: settled, not a placement that was never confirmed.
      if (e.model && e.replica) this.deployments.get(e.model)?.pending.delete(e.replica);
    }
  }

  /** An evicted model is not re-placed by the reconcile loop (that would thrash); a request brings it back. */
  private markDormant(model: string): void {
    const d = this.deployments.get(model);
    if (d && !d.dormant) {
      d.dormant = true;
      this.logger.info({ model }, 'evicted: dormant until requested');
    }
  }

  // ---------- control plane ----------

  private async control(req: ControlRequest): Promise<unknown> {
    switch (req.op) {
      case 'deploy':
        return this.deploy(req.spec);
      case 'undeploy':
        return this.undeploy(req.name);
      case 'scale':
        return this.scale(req.name, req.replicas);
      case 'list':
        return [...this.deployments.keys()].sort().map((n) => this.describe(n));
      case 'describe':
        return this.describe(req.name);
      case 'ensure':
        return this.ensure(req.name, req.waitMs ?? 0);
      case 'events':
        return this.events.query({ model: req.model, type: req.type, limit: req.limit ?? 100 });
      case 'status':
        return this.status();
    }
  }

  /**
   * A caller found no replica of `name`: bring one back (evicted, scaled to zero, or lost). With
   * `waitMs` the reply waits until a replica is ready (or its load failed, or the wait ran out),
   * so the caller's retry goes straight to it instead of polling.
   */
  private async ensure(name: string, waitMs: number): Promise<DeploymentStatus> {
    this.describe(name); // throws UNKNOWN_MODEL
    const d = this.deployments.get(name)!;
    if (d.dormant || this.liveReplicas(d).length === 0) this.resetRetry(d);
    d.dormant = false;
    if (d.spec.replicas === 0) d.spec = { ...d.spec, replicas: 1 }; // scaled to zero: a request brings one back
    this.reconcile(name);
    const wait = Math.min(waitMs, MAX_ENSURE_WAIT_MS);
    const settled = (s: DeploymentStatus) => s.ready > 0 || isFatalLoadCode(s.pendingReason?.code);
    const now = this.describe(name);
    if (wait === 0 || settled(now)) return now;
    await this.readyWaiters.wait(name, wait, () => this.state !== 'running' || !this.deployments.has(name) || settled(this.describe(name)));
    return this.describe(name);
  }

  async deploy(raw: unknown): Promise<DeploymentStatus> {
    const spec = parseDeploySpec(raw);
    const info = await (await new Objm(jetstream(this.nc)).open(this.subjects.modelBucket)).info(spec.digest);
    if (!info) throw new BadRequestError(`artifact ${spec.digest} is not in the model store: upload it first (the client's deploy does)`);
    if (info.size !== spec.sizeBytes) throw new BadRequestError(`artifact ${spec.digest} has ${info.size} bytes, the spec says ${spec.sizeBytes}`);
    const prev = this.deployments.get(spec.name);
    const createdAt = Date.now();
    await this.store(`deployments.${spec.name}`, encode({ v: PROTOCOL_VERSION, spec, createdAt }));
    this.deployments.set(spec.name, this.newDeployment(spec, createdAt, 0, prev?.pending));
    this.logger.info({ model: spec.name, replicas: spec.replicas, device: spec.device }, prev ? 'redeploy' : 'deploy');
    this.reconcile(spec.name);
    return this.describe(spec.name);
  }

  async undeploy(name: string): Promise<{ name: string; removed: boolean }> {
    if (!this.deployments.has(name)) throw new UnknownModelError(`no deployment named '${name}'`);
    await this.store(`deployments.${name}`);
    this.deployments.delete(name);
    this.capacityEpoch++;
    this.reconcileOrphans();
    return { name, removed: true };
  }

  async scale(name: string, replicas: number): Promise<DeploymentStatus> {
    const d = this.deployments.get(name);
    if (!d) throw new UnknownModelError(`no deployment named '${name}'`);
    const spec = parseDeploySpec({ ...d.spec, replicas });
    await this.store(`deployments.${name}`, encode({ v: PROTOCOL_VERSION, spec, createdAt: d.createdAt }));
    d.spec = spec;
    this.resetRetry(d);
    d.dormant = false;
    this.reconcile(name);
    return this.describe(name);
  }

  private newDeployment(spec: DeploySpec, createdAt: number, retryAt: number, pending?: Map<string, PendingPlacement>): Deployment {
    return newDeployment(spec, createdAt, retryAt, this.capacityEpoch, this.autoscalerFor(spec), pending);
  }

  /** Something changed (scale, redeploy, a caller asks, capacity freed): place again now, report failures afresh. */
  private resetRetry(d: Deployment): void {
    resetRetry(d, this.capacityEpoch);
  }

  describe(name: string): DeploymentStatus {
    const d = this.deployments.get(name);
    if (!d) throw new UnknownModelError(`no deployment named '${name}'`, { data: { model: name } });
    this.aliveIndex ??= indexReplicas(this.registry.all().filter((w) => w.alive));
    return deploymentStatus(d, this.aliveIndex.get(name) ?? []);
  }

  status(): ClusterStatus {
    return {
      cluster: this.options.cluster,
      head: { id: this.options.id, pid: process.pid, startedAt: this.startedAt },
      workers: workerStatuses(this.registry.all(), Date.now()),
      deployments: [...this.deployments.keys()].sort().map((n) => this.describe(n)),
    };
  }

  // ---------- reconciliation ----------

  private tick(): void {
    if (this.state !== 'running') return;
    // Cut off from NATS, the head hears no heartbeats: that says nothing about the workers.
    if (!this.link.connected()) {
      this.wasCutOff = true;
      return;
    }
    if (this.wasCutOff) {
      this.wasCutOff = false;
      this.registry.touchAll(Date.now());
    }
    for (const id of this.registry.sweep(Date.now())) {
      this.logger.warn({ worker: id }, 'worker timed out: marked dead, its replicas will be placed elsewhere');
    }
    this.registry.prune(Date.now());
    this.invalidate(); // liveness may have changed
    const t0 = performance.now();
    for (const [name, d] of this.deployments) {
      this.settle(d);
      this.autoscale(name, d);
      this.reconcile(name);
    }
    this.reconcileOrphans();
    this.lastTickMs = performance.now() - t0;
  }

  /** One tick soon (coalesced: 10,000 workers joining at once cause one round, not 10,000). */
  private scheduleTick(): void {
    if (this.tickScheduled) return;
    this.tickScheduled = true;
    setImmediate(() => {
      this.tickScheduled = false;
      this.tick();
    });
  }

  /**
   * Pending loads against the heartbeats: a replica its worker reports counts from there on; one
   * the worker answered as loaded but never reported within `confirmMs` is a failed placement (a
   * load reply alone is not believed), its device skipped and the deployment backing off.
   */
  private settle(d: Deployment): void {
    if (d.pending.size === 0) return;
    const now = Date.now();
    const v = settlePending(d.pending, (w, id) => this.registry.get(w)?.hb.replicas.some((r) => r.id === id) ?? false, now, this.options.confirmMs);
    for (const id of v.seen) d.pending.delete(id);
    for (const id of v.unconfirmed) {
      const p = d.pending.get(id)!;
      d.pending.delete(id);
      const error: WireError = {
        code: ErrorCode.UNAVAILABLE,
        message: `worker ${p.workerId} answered the load of ${id} but has not reported it in its heartbeats for ${this.options.confirmMs} ms`,
      };
      this.failed(d, error, `${p.workerId}/${p.device}`);
      this.sendUnload(p.workerId, id);
    }
  }

  /**
   * Replicas on running workers, by model, in each worker's load order. Built once and reused until
   * a heartbeat or a liveness change alters what it was built from: a tick over D deployments then
   * costs O(replicas + D), not O(replicas × D) (`pnpm bench:scale` measures it).
   */
  private replicasOf(model: string): readonly IndexedReplica[] {
    this.replicaIndex ??= indexReplicas(this.registry.running());
    return this.replicaIndex.get(model) ?? [];
  }

  /** Replicas that count for a deployment: on running workers, current digest, not failed or draining. */
  private liveReplicas(d: Deployment): Array<{ id: string; workerId: string; createdOrder: number }> {
    const out = new Map<string, { id: string; workerId: string; createdOrder: number }>();
    for (const { r, workerId, order } of this.replicasOf(d.spec.name)) {
      if (r.digest === d.spec.digest && (r.state === 'ready' || r.state === 'loading')) out.set(r.id, { id: r.id, workerId, createdOrder: order });
    }
    for (const [id, p] of d.pending) out.set(id, { id, workerId: p.workerId, createdOrder: Number.MAX_SAFE_INTEGER });
    return [...out.values()];
  }

  private view(): WorkerView[] {
    const pending = [...this.deployments.values()].flatMap((d) =>
      [...d.pending].map(([replicaId, p]) => ({ replicaId, workerId: p.workerId, device: p.device, bytes: p.bytes, model: d.spec.name })),
    );
    return workerViews(this.registry.all(), pending);
  }

  reconcile(name: string): void {
    const d = this.deployments.get(name);
    if (!d || this.state !== 'running') return;
    if (d.failures > 0 && d.epoch !== this.capacityEpoch) this.resetRetry(d); // capacity may have been freed
    const live = this.liveReplicas(d);
    const want = d.spec.replicas;
    if (live.length < want && !d.dormant && Date.now() >= d.retryAt) {
      // At most maxLoadsInFlight loads of one deployment await their reply: a cluster that fits far
      // fewer replicas than asked is not sent hundreds of loads at once.
      const count = Math.min(want - live.length, DEFAULT_PLACEMENT_RETRY.maxLoadsInFlight - loadsInFlight(d.pending));
      if (count <= 0) return;
      const bytes = this.replicaBytes(d);
      const refusals = activeRefusals(d, Date.now());
      const view = refusals.size === 0 ? this.view() : this.view().map((w) => ({ ...w, devices: w.devices.filter((dev) => !refusals.has(`${w.id}/${dev.id}`)) }));
      const result = place({ model: name, bytes, device: d.spec.device, allowFallback: d.spec.allowFallback, count, allowEviction: true }, view);
      for (const p of result.placements) this.sendLoad(d, p.workerId, p.device, bytes);
      if (result.unplaced > 0 && result.placements.length === 0) {
        // When devices were skipped for refusing, their own words say more than "does not fit".
        const refused = [...refusals.values()].pop();
        this.failed(d, refused?.error ?? { code: ErrorCode.NO_CAPACITY, message: `${want - live.length} replica(s) of '${name}' cannot be placed: ${result.reason}` });
      }
    } else if (live.length > want) {
      // Remove the newest replicas first (they are the least warmed up); never a pending one.
      const extra = live
        .filter((r) => !d.pending.has(r.id))
        .sort((a, b) => b.createdOrder - a.createdOrder)
        .slice(0, live.length - want);
      for (const r of extra) this.sendUnload(r.workerId, r.id);
    }
    if (live.length >= want) {
      if (d.pendingReason?.code === ErrorCode.NO_CAPACITY) d.pendingReason = undefined;
      // Replicas of an older digest go once the new ones are there.
      for (const { r, workerId } of this.replicasOf(name)) if (r.digest !== d.spec.digest) this.sendUnload(workerId, r.id);
    }
  }

  /** A placement failed: back off (deployment.ts); the reason is logged once per code until something changes. */
  private failed(d: Deployment, error: WireError, device?: string): void {
    if (recordFailure(d, error, Date.now(), this.capacityEpoch, device)) {
      this.logger.warn({ model: d.spec.name, code: error.code, err: error.message.slice(0, 300), retryInMs: d.retryAt - Date.now() }, 'replicas not placed (reported once until something changes)');
    }
  }

  /** An autoscaler for deployments whose replica range is open (minReplicas < maxReplicas). */
  private autoscalerFor(spec: DeploySpec): Autoscaler | undefined {
    const min = spec.minReplicas ?? Math.min(spec.replicas, spec.maxReplicas ?? spec.replicas);
    const max = spec.maxReplicas ?? Math.max(spec.replicas, min);
    if (max <= min) return undefined;
    return new Autoscaler({ minReplicas: min, maxReplicas: max, ...spec.autoscale });
  }

  /** One autoscaling step: queue depth of the live replicas → desired replica count. */
  private autoscale(name: string, d: Deployment): void {
    if (!d.autoscaler || d.dormant) return;
    const live = new Set(this.liveReplicas(d).map((r) => r.id));
    const states = this.replicasOf(name).flatMap(({ r }) => (live.has(r.id) ? [r] : []));
    const capacity = states.map((r) => r.profile?.itemsPerSec ?? 0).find((c) => c > 0);
    d.autoscaler.setCapacity(capacity);
    // Answered items per second across replicas (capacity is in items too; a request may carry
    // many): a lower bound of the arrival rate. Failed requests count as one item each.
    const now = Date.now();
    const total = states.reduce((n, r) => n + (r.itemsProcessed ?? r.processed) + r.failed, 0);
    const prev = d.answered;
    d.answered = { at: now, total };
    const arrivalRate = prev && now > prev.at && total >= prev.total ? ((total - prev.total) * 1000) / (now - prev.at) : undefined;
    const decision = d.autoscaler.decide({
      now,
      current: live.size,
      outstanding: observe(states),
      arrivalRate,
      unplaceable: d.pendingReason?.code === 'NO_CAPACITY',
    });
    if (decision.desired === d.spec.replicas) return;
    const from = d.spec.replicas;
    d.spec = { ...d.spec, replicas: decision.desired };
    void this.store(`deployments.${name}`, encode({ v: PROTOCOL_VERSION, spec: d.spec, createdAt: d.createdAt })).catch(() => undefined);
    this.logger.info({ model: name, from, to: decision.desired, reason: decision.reason, capacity }, 'autoscale');
    try {
      // The head hears its own event back on eventAll and records it like the workers' events.
      this.nc.publish(this.subjects.event('scaled'), encode({ v: PROTOCOL_VERSION, type: 'scaled', model: name, at: Date.now(), reason: decision.reason, data: { from, to: decision.desired } }));
    } catch {
      // best effort
    }
  }

  /** Memory one replica needs: the user's figure, else the profiled one, else the file-size estimate. */
  private replicaBytes(d: Deployment): number {
    return d.spec.memoryBytes ?? d.measuredBytes ?? estimateReplicaBytes(d.spec);
  }

  /** Replicas of models no longer deployed are unloaded. */
  private reconcileOrphans(): void {
    for (const w of this.registry.running()) {
      for (const r of w.hb.replicas) if (!this.deployments.has(r.model) && r.state !== 'draining') this.sendUnload(w.hb.workerId, r.id);
    }
  }

  private sendLoad(d: Deployment, workerId: string, device: string, bytes: number): void {
    const replicaId = `${d.spec.name}-${nuid.next().slice(-10).toLowerCase()}`;
    const pending: PendingPlacement = { workerId, device, bytes, sentAt: Date.now() };
    d.pending.set(replicaId, pending);
    const spec = d.spec;
    this.logger.debug({ model: spec.name, replica: replicaId, worker: workerId, device }, 'placing replica');
    call(this.nc, this.subjects.worker(workerId, 'load'), { replicaId, device, spec, bytes }, this.options.loadTimeoutMs, { parse: parseLoadResult })
      .then((r) => {
        if (r.replicaId !== replicaId) throw new BadRequestError(`load reply names replica ${r.replicaId}, not ${replicaId}`);
        // Not yet counted: the replica counts once the worker's heartbeats report it (settle()).
        pending.repliedAt = Date.now();
        if (d.pendingReason && d.pendingReason.code !== ErrorCode.NO_CAPACITY) d.pendingReason = undefined;
        if (r.fallbackFrom) this.logger.warn({ replica: replicaId, from: r.fallbackFrom }, 'replica fell back to CPU');
        for (const e of r.evicted ?? []) {
          this.markDormant(e.model);
          this.deployments.get(e.model)?.pending.delete(e.replica);
        }
      })
      .catch((err: unknown) => {
        d.pending.delete(replicaId);
        const e = err instanceof FlotillaError ? err : toFlotillaError(err);
        // NO_CAPACITY: the head's view of that device was stale (or the worker has limits the head
        // cannot see): the device is skipped and the next best one tried when the back-off allows.
        // Other failures (an artifact store mid-election, a timeout) back off and try the best
        // device again, so one transient error does not stack replicas on another worker.
        this.failed(d, e.toWire(), e.code === ErrorCode.NO_CAPACITY ? `${workerId}/${device}` : undefined);
      })
      .finally(() => {
        // A stale deployment object (undeployed/redeployed meanwhile) is reconciled by the orphan sweep.
        if (this.deployments.get(spec.name) === d) this.reconcile(spec.name);
        this.readyWaiters.wake(spec.name);
      });
  }

  private sendUnload(workerId: string, replicaId: string): void {
    // Bounded: heartbeats claiming thousands of unknown replicas must not turn into thousands of requests.
    if (this.unloading.has(replicaId) || this.unloading.size >= MAX_UNLOADS_IN_FLIGHT) return;
    this.unloading.add(replicaId);
    this.logger.info({ replica: replicaId, worker: workerId }, 'unloading replica');
    call(this.nc, this.subjects.worker(workerId, 'unload'), { replicaId }, this.options.loadTimeoutMs)
      .catch((err: unknown) => this.logger.warn({ replica: replicaId, err: (err as Error).message }, 'unload failed'))
      .finally(() => setTimeout(() => this.unloading.delete(replicaId), this.options.reconcileMs * 4).unref());
  }

  /** Stops reconciling and answering control requests; deployments stay in KV. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.state = 'stopping';
      clearInterval(this.timer);
      this.readyWaiters.wakeAll();
      for (const s of this.subs.splice(0)) s.unsubscribe();
      // Hand over at once: a standby need not wait for the lease to expire.
      await this.leadership.stop();
      if (this.ownsConnection) await closeBus(this.nc);
      this.state = 'stopped';
    })();
    return this.stopping;
  }
}
