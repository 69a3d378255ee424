// The head: control plane only. It keeps desired state (deployments) in JetStream KV, learns
// actual state from worker heartbeats, and reconciles the two by sending load/unload commands
// chosen by the placement policy. It never sees an inference request.
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { nuid } from '@nats-io/nats-core';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import {
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
  parseDeploySpec,
  subjects as makeSubjects,
  toFlotillaError,
  type ClusterStatus,
  type ControlOp,
  type DeploySpec,
  type DeploymentStatus,
  type EventMessage,
  type Heartbeat,
  type LoadResult,
  type PlacedReplica,
  type Subjects,
  type WireError,
  type WorkerStatus,
} from '@flotilla/protocol';
import { call, closeBus, connectBus, connectionTracker, createLogger, notReadyReason, errorReply, okReply, type Logger } from '@flotilla/bus';
import { parseHeadOptions, type CompiledHeadOptions, type HeadOptions } from './options.js';
import { place, type WorkerView } from './placement.js';
import { WorkerRegistry } from './registry.js';
import { Autoscaler, observe } from './autoscaler.js';
import { LeaderLease } from './lease.js';
import { Leadership } from './leadership.js';
import { ReadyWaiters } from './ready-waiters.js';
import { indexReplicas, workerViews, type IndexedReplica } from './cluster-view.js';
import { ensureEventStream, readEventHistory } from './event-history.js';

interface Deployment {
  spec: DeploySpec;
  createdAt: number;
  /** Load commands sent and not yet answered. */
  pending: Map<string, { workerId: string; device: string; bytes: number }>;
  pendingReason?: WireError;
  failures: number;
  retryAt: number;
  /** Footprint of one replica as profiled on a worker (largest seen), bytes. */
  measuredBytes?: number;
  /** Evicted: no replicas are added until a caller asks for the model (`ensure`) or it is scaled. */
  dormant: boolean;
  /** Present when minReplicas < maxReplicas. */
  autoscaler?: Autoscaler;
  /** Last sample of requests answered by the deployment's replicas (for the arrival rate). */
  answered?: { at: number; total: number };
  /**
   * Devices ("worker/device") that answered a load with NO_CAPACITY, until when (epoch ms), and
   * what they said: placement skips them for a while and tries another worker or device at once.
   */
  refused?: Map<string, { until: number; error: WireError }>;
}

/** How long a device that refused a replica (NO_CAPACITY) is skipped for that deployment, ms. */
export const REFUSAL_TTL_MS = 5000;

/** Events kept for `flotilla events`. */
export const EVENT_HISTORY = 1000;

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
  /** Time the last reconcile round over all deployments took, ms (metric `flotilla_head_tick_seconds`). */
  lastTickMs = 0;
  /** Callers of `ensure` waiting for a ready replica, by model. */
  private readonly readyWaiters = new ReadyWaiters();
  private readonly events: EventMessage[] = [];
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
  ) {
    this.subjects = makeSubjects(options.cluster);
    this.registry = new WorkerRegistry(options.workerTimeoutMs);
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
    await ensureEventStream(nc, s.eventStream, s.eventAll, EVENT_HISTORY, options.storeReplicas);
    const head = new Head(options, nc, !options.connection, kv, new LeaderLease(leaseKv, options.id, ttl), logger);
    head.state = 'standby';
    await head.leadership.start();
    if (head.state === 'standby') logger.info({ cluster: options.cluster, leader: (await head.lease.holder())?.id }, 'head standing by');
    return head;
  }

  /** Takes over: desired state from KV, actual state from the heartbeats that follow. */
  private async lead(): Promise<void> {
    this.deployments.clear();
    this.registry.clear();
    this.replicaIndex = undefined;
    await this.recover();
    await this.recoverEvents();
    if (this.stopping) return;
    this.listen();
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
    this.replicaIndex = undefined;
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
        const { spec, createdAt } = decode<{ spec: DeploySpec; createdAt: number }>(e.value);
        const parsed = parseDeploySpec(spec);
        // No placement until the workers' heartbeats had time to arrive: replicas that exist but
        // were not heard of yet must not be placed twice (ensure still places at once).
        const retryAt = Date.now() + this.options.settleMs;
        this.deployments.set(spec.name, { spec: parsed, createdAt, pending: new Map(), failures: 0, retryAt, dormant: false, autoscaler: this.autoscalerFor(parsed) });
      } catch (err) {
        this.logger.error({ key, err }, 'skipping unreadable deployment record');
      }
    }
  }

  /**
   * The event history from its stream; a model whose last load/eviction event is an eviction is
   * dormant again (the previous leader would not have re-placed it either).
   */
  private async recoverEvents(): Promise<void> {
    this.events.length = 0;
    let history: EventMessage[] = [];
    try {
      history = await readEventHistory(this.nc, this.subjects.eventStream);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'event history not read: starting without it');
    }
    const last = new Map<string, string>();
    for (const e of history) {
      this.events.push(e);
      if (e.model && (e.type === 'evicted' || e.type === 'loaded')) last.set(e.model, e.type);
    }
    this.events.splice(0, Math.max(0, this.events.length - EVENT_HISTORY));
    for (const [model, type] of last) if (type === 'evicted') this.markDormant(model);
  }

  /** A subscription whose messages are decoded and handled; a bad one is logged and skipped. */
  private subscribeDecoded<T>(subject: string, what: string, handle: (m: T) => void): Subscription {
    return this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) return;
        try {
          handle(decode<T>(msg.data));
        } catch (e) {
          this.logger.warn({ err: (e as Error).message, subject: msg.subject }, what);
        }
      },
    });
  }

  private listen(): void {
    this.subs.push(
      this.subscribeDecoded<Heartbeat>(this.subjects.heartbeatAll, 'bad heartbeat', (hb) => this.onHeartbeat(hb)),
      this.subscribeDecoded<EventMessage>(this.subjects.eventAll, 'bad event', (e) => this.onEvent(e)),
      this.nc.subscribe(this.subjects.controlAll, {
        queue: 'head',
        callback: (err, msg) => {
          if (err) return;
          const op = msg.subject.split('.').pop() as ControlOp;
          this.control(op, msg.data).then(
            (result) => msg.respond(okReply(result)),
            (e) => msg.respond(errorReply(toFlotillaError(e))),
          );
        },
      }),
    );
  }

  private onHeartbeat(hb: Heartbeat): void {
    if (typeof hb.workerId !== 'string' || !Array.isArray(hb.replicas) || !Array.isArray(hb.devices)) {
      throw new BadRequestError('heartbeat misses workerId/replicas/devices');
    }
    for (const r of hb.replicas) {
      const d = this.deployments.get(r.model);
      const b = r.profile?.replicaBytes ?? 0;
      if (d && r.digest === d.spec.digest && b > (d.measuredBytes ?? 0)) d.measuredBytes = b;
    }
    const joined = this.registry.upsert(hb, Date.now());
    this.replicaIndex = undefined;
    if (joined) {
      this.logger.info({ worker: hb.workerId, devices: hb.devices.map((d) => d.id) }, 'worker joined');
      this.tick();
    }
    if (this.readyWaiters.size > 0) for (const r of hb.replicas) if (r.state === 'ready') this.readyWaiters.wake(r.model);
  }

  private onEvent(e: EventMessage): void {
    this.events.push(e);
    if (this.events.length > EVENT_HISTORY) this.events.splice(0, this.events.length - EVENT_HISTORY);
    if (e.type === 'evicted' && e.model) this.markDormant(e.model);
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

  private async control(op: ControlOp, data: Uint8Array): Promise<unknown> {
    const body = decode<Record<string, unknown>>(data);
    switch (op) {
      case 'deploy':
        return this.deploy(body.spec);
      case 'undeploy':
        return this.undeploy(this.name(body));
      case 'scale':
        return this.scale(this.name(body), body.replicas);
      case 'list':
        return [...this.deployments.keys()].sort().map((n) => this.describe(n));
      case 'describe':
        return this.describe(this.name(body));
      case 'ensure':
        return this.ensure(this.name(body), body.waitMs);
      case 'events': {
        const limit = typeof body.limit === 'number' && body.limit > 0 ? Math.min(body.limit, EVENT_HISTORY) : 100;
        const model = typeof body.model === 'string' ? body.model : undefined;
        return this.events.filter((e) => !model || e.model === model).slice(-limit);
      }
      case 'status':
        return this.status();
      default:
        throw new BadRequestError(`unknown control operation '${String(op)}'`);
    }
  }

  /**
   * A caller found no replica of `name`: bring one back (evicted, scaled to zero, or lost). With
   * `waitMs` the reply waits until a replica is ready (or its load failed, or the wait ran out),
   * so the caller's retry goes straight to it instead of polling.
   */
  private async ensure(name: string, waitMs: unknown): Promise<DeploymentStatus> {
    this.describe(name); // throws UNKNOWN_MODEL
    const d = this.deployments.get(name)!;
    if (d.dormant || this.liveReplicas(d).length === 0) d.retryAt = 0;
    d.dormant = false;
    if (d.spec.replicas === 0) d.spec = { ...d.spec, replicas: 1 }; // scaled to zero: a request brings one back
    this.reconcile(name);
    const wait = typeof waitMs === 'number' && Number.isFinite(waitMs) ? Math.min(Math.max(0, waitMs), MAX_ENSURE_WAIT_MS) : 0;
    const settled = (s: DeploymentStatus) => s.ready > 0 || s.pendingReason?.code === ErrorCode.MODEL_LOAD_FAILED;
    const now = this.describe(name);
    if (wait === 0 || settled(now)) return now;
    await this.readyWaiters.wait(name, wait, () => this.state !== 'running' || !this.deployments.has(name) || settled(this.describe(name)));
    return this.describe(name);
  }

  private name(body: Record<string, unknown>): string {
    if (typeof body.name !== 'string' || !body.name) throw new BadRequestError('`name` is required');
    return body.name;
  }

  async deploy(raw: unknown): Promise<DeploymentStatus> {
    const spec = parseDeploySpec(raw);
    const info = await (await new Objm(jetstream(this.nc)).open(this.subjects.modelBucket)).info(spec.digest);
    if (!info) throw new BadRequestError(`artifact ${spec.digest} is not in the model store: upload it first (the client's deploy does)`);
    if (info.size !== spec.sizeBytes) throw new BadRequestError(`artifact ${spec.digest} has ${info.size} bytes, the spec says ${spec.sizeBytes}`);
    const prev = this.deployments.get(spec.name);
    const createdAt = Date.now();
    await this.store(`deployments.${spec.name}`, encode({ v: PROTOCOL_VERSION, spec, createdAt }));
    this.deployments.set(spec.name, { spec, createdAt, pending: prev?.pending ?? new Map(), failures: 0, retryAt: 0, dormant: false, autoscaler: this.autoscalerFor(spec) });
    this.logger.info({ model: spec.name, replicas: spec.replicas, device: spec.device }, prev ? 'redeploy' : 'deploy');
    this.reconcile(spec.name);
    return this.describe(spec.name);
  }

  async undeploy(name: string): Promise<{ name: string; removed: boolean }> {
    if (!this.deployments.has(name)) throw new UnknownModelError(`no deployment named '${name}'`);
    await this.store(`deployments.${name}`);
    this.deployments.delete(name);
    this.reconcileOrphans();
    return { name, removed: true };
  }

  async scale(name: string, replicas: unknown): Promise<DeploymentStatus> {
    const d = this.deployments.get(name);
    if (!d) throw new UnknownModelError(`no deployment named '${name}'`);
    const spec = parseDeploySpec({ ...d.spec, replicas });
    await this.store(`deployments.${name}`, encode({ v: PROTOCOL_VERSION, spec, createdAt: d.createdAt }));
    d.spec = spec;
    d.retryAt = 0;
    d.dormant = false;
    this.reconcile(name);
    return this.describe(name);
  }

  describe(name: string): DeploymentStatus {
    const d = this.deployments.get(name);
    if (!d) throw new UnknownModelError(`no deployment named '${name}'`, { data: { model: name } });
    const replicas: PlacedReplica[] = [];
    for (const w of this.registry.all()) {
      if (!w.alive) continue;
      for (const r of w.hb.replicas) {
        if (r.model === name) replicas.push({ id: r.id, workerId: w.hb.workerId, device: r.device, state: r.state, queueDepth: r.queueDepth, error: r.error });
      }
    }
    for (const [id, p] of d.pending) if (!replicas.some((r) => r.id === id)) replicas.push({ id, workerId: p.workerId, device: p.device, state: 'pending' });
    return {
      spec: d.spec,
      createdAt: d.createdAt,
      replicas,
      ready: replicas.filter((r) => r.state === 'ready').length,
      ...(d.dormant ? { dormant: true } : {}),
      ...(d.pendingReason ? { pendingReason: d.pendingReason } : {}),
    };
  }

  status(): ClusterStatus {
    const now = Date.now();
    const workers: WorkerStatus[] = this.registry.all().map((w) => ({
      id: w.hb.workerId,
      pid: w.hb.pid,
      alive: w.alive,
      state: w.alive ? w.hb.state : 'stopped',
      lastSeenMs: now - w.lastSeen,
      inventory: w.hb.inventory,
      devices: w.hb.devices.map((dev) => ({
        ...dev,
        models: w.hb.replicas.filter((r) => r.device === dev.id).map((r) => ({ name: r.model, replica: r.id, bytes: r.bytes })),
      })),
      replicas: w.hb.replicas,
    }));
    return {
      cluster: this.options.cluster,
      head: { id: this.options.id, pid: process.pid, startedAt: this.startedAt },
      workers,
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
    this.registry.prune(Date.now(), 10 * 60_000);
    this.replicaIndex = undefined; // liveness may have changed
    const t0 = performance.now();
    for (const [name, d] of this.deployments) {
      this.autoscale(name, d);
      this.reconcile(name);
    }
    this.reconcileOrphans();
    this.lastTickMs = performance.now() - t0;
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
    const live = this.liveReplicas(d);
    const want = d.spec.replicas;
    if (live.length < want && !d.dormant && Date.now() >= d.retryAt) {
      const bytes = this.replicaBytes(d);
      const refusals = this.activeRefusals(d);
      const view = refusals.size === 0 ? this.view() : this.view().map((w) => ({ ...w, devices: w.devices.filter((dev) => !refusals.has(`${w.id}/${dev.id}`)) }));
      const result = place(
        { model: name, bytes, device: d.spec.device, allowFallback: d.spec.allowFallback, count: want - live.length, allowEviction: true },
        view,
      );
      for (const p of result.placements) this.sendLoad(d, p.workerId, p.device, bytes);
      if (result.unplaced > 0) {
        // When devices were skipped for refusing, their own words say more than "does not fit".
        const refused = [...refusals.values()].pop();
        d.pendingReason = refused?.error ?? { code: 'NO_CAPACITY', message: `${result.unplaced} replica(s) of '${name}' cannot be placed: ${result.reason}` };
        this.backoff(d);
      } else if (d.pendingReason?.code === 'NO_CAPACITY') {
        d.pendingReason = undefined;
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
      if (d.pendingReason?.code === 'NO_CAPACITY') d.pendingReason = undefined;
      // Replicas of an older digest go once the new ones are there.
      for (const { r, workerId } of this.replicasOf(name)) if (r.digest !== d.spec.digest) this.sendUnload(workerId, r.id);
    }
  }

  /** Refusals still in force for a deployment (expired ones are dropped). */
  private activeRefusals(d: Deployment): Map<string, { until: number; error: WireError }> {
    if (!d.refused) return new Map();
    const now = Date.now();
    for (const [key, r] of d.refused) if (r.until <= now) d.refused.delete(key);
    return d.refused;
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

  private backoff(d: Deployment): void {
    d.failures++;
    d.retryAt = Date.now() + Math.min(10_000, 250 * 2 ** Math.min(d.failures, 6));
  }

  private sendLoad(d: Deployment, workerId: string, device: string, bytes: number): void {
    const replicaId = `${d.spec.name}-${nuid.next().slice(-10).toLowerCase()}`;
    d.pending.set(replicaId, { workerId, device, bytes });
    const spec = d.spec;
    this.logger.info({ model: spec.name, replica: replicaId, worker: workerId, device }, 'placing replica');
    call<LoadResult>(this.nc, this.subjects.worker(workerId, 'load'), { replicaId, device, spec, bytes }, this.options.loadTimeoutMs)
      .then((r) => {
        d.failures = 0;
        if (d.pendingReason && d.pendingReason.code !== 'NO_CAPACITY') d.pendingReason = undefined;
        if (r.fallbackFrom) this.logger.warn({ replica: replicaId, from: r.fallbackFrom }, 'replica fell back to CPU');
        for (const e of r.evicted ?? []) this.markDormant(e.model);
      })
      .catch((err: unknown) => {
        const e = err instanceof FlotillaError ? err : toFlotillaError(err);
        d.pendingReason = e.toWire();
        if (e.code === ErrorCode.NO_CAPACITY) {
          // Its view of that worker was stale (or the worker has limits the head cannot see): try
          // the next best device now; backing off happens when none is left.
          (d.refused ??= new Map()).set(`${workerId}/${device}`, { until: Date.now() + REFUSAL_TTL_MS, error: e.toWire() });
        } else {
          this.backoff(d);
        }
        this.logger.warn({ model: spec.name, replica: replicaId, worker: workerId, code: e.code, err: e.message }, 'placement failed');
      })
      .finally(() => {
        d.pending.delete(replicaId);
        // A stale deployment object (undeployed/redeployed meanwhile) is reconciled by the orphan sweep.
        if (this.deployments.get(spec.name) === d) this.reconcile(spec.name);
        this.readyWaiters.wake(spec.name);
      });
  }

  private sendUnload(workerId: string, replicaId: string): void {
    if (this.unloading.has(replicaId)) return;
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
