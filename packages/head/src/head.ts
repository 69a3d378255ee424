// The head: control plane only. It keeps desired state (deployments) in JetStream KV, learns
// actual state from worker heartbeats, and reconciles the two (reconciler.ts carries out the plans
// of reconcile-plan.ts). It never sees an inference request. This file is the process shell:
// stores, leadership, subscriptions; what the head knows is in cluster-state.ts, control requests
// are answered by control.ts, and every decision lives in a pure module.
import { hostname } from 'node:os';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import {
  BadRequestError,
  MAX_HOST_CHARS,
  PROTOCOL_VERSION,
  encode,
  parseControlRequest,
  parseEventMessage,
  parseHeadPresence,
  parseHeartbeat,
  subjects as makeSubjects,
} from '@flotilla/protocol';
import type { ClusterStatus, DeploymentStatus, EventMessage, HeadPresence, HeadStatus, Heartbeat, Subjects } from '@flotilla/protocol';
import {
  BlobStore,
  ThrottledLog,
  closeBus,
  connectBus,
  connectionTracker,
  createLogger,
  listen,
  notReadyReason,
  objectStores,
  serve,
  type Logger,
} from '@flotilla/bus';
import { parseHeadOptions, type CompiledHeadOptions, type HeadOptions } from './options.js';
import type { WorkerRegistry } from './registry.js';
import { LeaderLease } from './lease.js';
import { Leadership } from './leadership.js';
import { ReadyWaiters } from './ready-waiters.js';
import { ensureEventStream, readEventHistory } from './event-history.js';
import { DEFAULT_EVENT_LOG_LIMITS, evictedModels } from './event-log.js';
import { DEFAULT_PLACEMENT_RETRY } from './placement-retry.js';
import { newDeployment } from './deployment.js';
import { workerStatuses } from './status-view.js';
import { ClusterState } from './cluster-state.js';
import { ControlPlane } from './control.js';
import { DeploymentStore } from './deployment-store.js';
import { Reconciler } from './reconciler.js';
import { HEAD_PRESENCE_MISSES, HeadRoster } from './head-roster.js';
import { heardDuringHold, takeoverHold, type TakeoverHold } from './takeover.js';

/** Shortest time a device that refused a replica (NO_CAPACITY) is skipped for that deployment, ms. */
export const REFUSAL_TTL_MS = DEFAULT_PLACEMENT_RETRY.refusalMs;

/** Events kept for `flotilla events`, per event type. */
export const EVENT_HISTORY = DEFAULT_EVENT_LOG_LIMITS.perType;

/** `running`: leading (reconciling, answering control requests); `standby`: waiting for the lease. */
type HeadState = 'starting' | 'standby' | 'running' | 'stopping' | 'stopped';

export class Head {
  state: HeadState = 'starting';
  readonly subjects: Subjects;
  readonly registry: WorkerRegistry;
  private readonly cluster: ClusterState;
  private readonly reconciler: Reconciler;
  private readonly control: ControlPlane;
  private readonly subs: Subscription[] = [];
  private readonly refusedBeats: ThrottledLog;
  /** Callers of `ensure` waiting for a ready replica, by model. */
  private readonly readyWaiters = new ReadyWaiters();
  private timer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  private stopping?: Promise<void>;
  private readonly link: { connected: () => boolean };
  private readonly leadership: Leadership;
  private leadingWaiters: Array<() => void> = [];
  /** The other heads heard lately (their presence); listed by `status`. */
  private readonly roster: HeadRoster;
  private readonly refusedPresence: ThrottledLog;
  private presenceTimer?: NodeJS.Timeout;
  private presenceSub?: Subscription;
  private presenceSeq = 0;
  /** When this head took its current role (leader or standby), epoch ms. */
  private roleSince = Date.now();
  /** Workers alive when this head last stopped leading (awaited when it leads again: takeover.ts). */
  private knownBefore: string[] = [];
  /** The placement hold of the current takeover. */
  private hold?: TakeoverHold;

  private constructor(
    readonly options: CompiledHeadOptions,
    readonly nc: NatsConnection,
    private readonly ownsConnection: boolean,
    private readonly store: DeploymentStore,
    readonly lease: LeaderLease,
    readonly logger: Logger,
    /** Where control replies too large for one message are staged (the cluster's blob bucket). */
    private readonly blobs: BlobStore,
  ) {
    this.subjects = makeSubjects(options.cluster);
    this.cluster = new ClusterState(options.workerTimeoutMs, options.maxWorkers);
    this.registry = this.cluster.registry;
    this.refusedBeats = new ThrottledLog(logger, 'heartbeat not believed');
    this.refusedPresence = new ThrottledLog(logger, 'head presence not believed');
    this.roster = new HeadRoster({ selfId: options.id, expireMs: HEAD_PRESENCE_MISSES * options.presenceMs });
    this.link = connectionTracker(nc);
    const leading = () => this.state === 'running';
    this.leadership = new Leadership(
      lease,
      {
        leading,
        mayLead: () => this.state === 'standby' && !this.stopping && this.link.connected(),
        lead: () => this.lead(),
        stepDown: (reason) => this.stepDown(reason),
      },
      logger,
    );
    const { subjects, readyWaiters } = this;
    const connected = () => this.link.connected();
    const r = (this.reconciler = new Reconciler(this.cluster, { nc, subjects, options, logger, store, readyWaiters, leading, connected }));
    this.control = new ControlPlane({
      cluster: this.cluster,
      store,
      readyWaiters,
      logger,
      artifactSize: async (digest) => (await (await (await objectStores(jetstream(nc))).open(subjects.modelBucket)).info(digest))?.size,
      leading,
      status: () => this.status(),
      reconcile: (name) => r.reconcile(name),
      reconcileOrphans: () => r.reconcileOrphans(),
    });
  }

  /** Time the last reconcile round over all deployments took, ms (metric `flotilla_head_tick_seconds`). */
  get lastTickMs(): number {
    return this.reconciler.lastTickMs;
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
    await (await objectStores(js)).create(s.modelBucket, { replicas: options.storeReplicas });
    // Lease writes get a short timeout: one stuck through an outage must not hold off the renewals
    // after it until the lease has run out.
    const leaseJs = jetstream(nc, { timeout: Math.min(2000, Math.max(250, Math.floor(options.leaseTtlMs / 4))) });
    const leaseKv = await new Kvm(leaseJs).create(s.leaseBucket, { history: 1, ttl: options.leaseTtlMs, replicas: options.storeReplicas });
    // The bucket's TTL is the one the first head created it with: renew and expire by that one.
    const ttl = (await leaseKv.status()).ttl || options.leaseTtlMs;
    if (ttl !== options.leaseTtlMs)
      logger.warn({ asked: options.leaseTtlMs, bucket: ttl }, 'lease TTL set by the bucket differs from --lease-ttl-ms; using the bucket');
    await ensureEventStream(nc, s.eventStream, s.eventAll, DEFAULT_EVENT_LOG_LIMITS, options.storeReplicas);
    const blobs = new BlobStore(nc, s.blobBucket, undefined, options.storeReplicas);
    const store = new DeploymentStore(kv, s.stateBucket);
    const head = new Head(options, nc, !options.connection, store, new LeaderLease(leaseKv, options.id, ttl), logger, blobs);
    head.state = 'standby';
    head.roleSince = Date.now();
    // Every head listens to the others' presence, so a new leader lists the standbys at once.
    head.listenPresence();
    await head.leadership.start();
    head.startPresence();
    if (head.state === 'standby') logger.info({ cluster: options.cluster, leader: (await head.lease.holder())?.id }, 'head standing by');
    return head;
  }

  /** Takes over: desired state from KV, actual state from the heartbeats that follow. */
  private async lead(): Promise<void> {
    this.cluster.deployments.clear();
    this.cluster.forgetWorkers();
    await this.recover();
    await this.recoverEvents();
    if (this.stopping) return;
    this.subscribe();
    await this.nc.flush(); // the server has our subscriptions before anyone is told we run
    this.state = 'running';
    this.roleSince = Date.now();
    this.publishPresence();
    this.timer = setInterval(() => this.reconciler.tick(), this.options.reconcileMs);
    this.logger.info({ cluster: this.options.cluster, head: this.options.id, deployments: this.cluster.deployments.size }, 'head leading');
    for (const resolve of this.leadingWaiters.splice(0)) resolve();
  }

  /** Stops acting as leader (another head may lead already): no reconciling, no control answers. */
  private stepDown(reason: string): void {
    this.logger.warn({ head: this.options.id, reason }, 'head stepping down');
    this.state = 'standby';
    this.roleSince = Date.now();
    this.publishPresence();
    clearInterval(this.timer);
    for (const sub of this.subs.splice(0)) sub.unsubscribe();
    this.readyWaiters.wakeAll();
    this.knownBefore = this.cluster.registry.running().map((w) => w.hb.workerId);
    this.cluster.forgetWorkers();
  }

  /** Desired state survives a head restart: read it back from KV. */
  private async recover(): Promise<void> {
    const records = await this.store.load((key, why) =>
      this.logger.error({ key: key.slice(0, 200), err: why.slice(0, 300) }, 'skipping unreadable deployment record'),
    );
    // No placement until the workers' heartbeats had time to arrive: replicas that exist but were
    // not heard of yet must not be placed twice (ensure still places at once). A head leading
    // again also waits (bounded) for the workers it knew before (takeover.ts).
    this.hold = takeoverHold(Date.now(), this.options.settleMs, this.options.workerTimeoutMs, this.knownBefore);
    this.knownBefore = [];
    if (this.hold.awaiting.size > 0)
      this.logger.info(
        { awaiting: this.hold.awaiting.size, untilMs: this.hold.until - Date.now() },
        'placement held for the workers known before',
      );
    for (const { spec, createdAt } of records)
      this.cluster.deployments.set(spec.name, newDeployment(spec, createdAt, this.hold.until, this.cluster.capacityEpoch));
  }

  /** The event history from its stream; models evicted last are dormant again. */
  private async recoverEvents(): Promise<void> {
    this.cluster.events.clear();
    const history = await readEventHistory(this.nc, this.subjects.eventStream).catch((err: Error) => {
      this.logger.warn({ err: err.message }, 'event history not read: starting without it');
      return [];
    });
    history.sort((a, b) => a.e.at - b.e.at); // the stream keeps each type's own history: replay in time order
    for (const { e, size } of history) this.cluster.events.push(e, size);
    for (const model of evictedModels(history.map((h) => h.e))) this.reconciler.markDormant(model);
  }

  /**
   * Every subscription goes through bus `serve`/`listen`: each message is parsed by its schema
   * from protocol before anything else touches it, and nothing escapes into the NATS client.
   */
  private subscribe(): void {
    const { logger, subjects: s } = this;
    this.subs.push(
      listen(
        this.nc,
        s.heartbeatAll,
        { logger, what: 'bad heartbeat', parse: (raw, msg) => this.parseOn(msg.subject, parseHeartbeat(raw), s.heartbeat) },
        (hb) => this.onHeartbeat(hb),
      ),
      listen(
        this.nc,
        s.eventAll,
        { logger, what: 'bad event', parse: (raw, msg) => this.parseOn(msg.subject, parseEventMessage(raw), s.event) },
        (e, msg) => this.onEvent(e, msg.data.byteLength),
      ),
      serve(
        this.nc,
        s.controlAll,
        {
          queue: 'head',
          logger,
          what: 'control request failed',
          parse: (raw, msg) => parseControlRequest(msg.subject.slice(msg.subject.lastIndexOf('.') + 1), raw),
          // status/list/events of a large cluster exceed max_payload: staged, `call` fetches them.
          stage: (data) => this.blobs.put(data),
        },
        (req) => this.control.handle(req),
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
    const r = this.cluster.heartbeat(hb, now);
    if (!r.accepted) return this.refusedBeats.warn({ worker: hb.workerId, seq: hb.seq, reason: r.reason });
    const held = this.hold?.until;
    const until = this.hold ? heardDuringHold(this.hold, hb.workerId, now) : undefined;
    if (until !== undefined) {
      // Every worker known before is back: deployments still in the takeover hold end it sooner.
      for (const d of this.cluster.deployments.values()) if (d.failures === 0 && d.retryAt === held) d.retryAt = until;
      this.reconciler.scheduleTick();
    }
    if (r.joined) {
      this.logger.info(
        { worker: hb.workerId, devices: hb.devices.map((d) => d.id) },
        r.kind === 'restart' ? 'worker restarted' : 'worker joined',
      );
      this.reconciler.scheduleTick();
    }
    if (this.readyWaiters.size > 0) for (const rep of hb.replicas) if (rep.state === 'ready') this.readyWaiters.wake(rep.model);
  }

  /** Presence of other heads, parsed by its schema and judged by the roster (hostile input is refused, never thrown). */
  private listenPresence(): void {
    const { logger, subjects: s } = this;
    this.presenceSub = listen(
      this.nc,
      s.headPresenceAll,
      {
        logger,
        what: 'bad head presence',
        parse: (raw, msg) => {
          const p = parseHeadPresence(raw);
          if (msg.subject !== s.headPresence(p.id)) throw new BadRequestError(`presence of head '${p.id}' published on another subject`);
          return p;
        },
      },
      (p) => {
        const r = this.roster.observe(p, Date.now());
        if (!r.accepted && r.reason !== 'self') this.refusedPresence.warn({ head: p.id, seq: p.seq, reason: r.reason });
        else if (r.accepted && r.joined) logger.info({ head: p.id, role: p.role, host: p.host }, 'head seen');
      },
    );
  }

  private startPresence(): void {
    if (this.stopping) return;
    this.publishPresence();
    this.presenceTimer = setInterval(() => this.publishPresence(), this.options.presenceMs);
  }

  /** This head's own entry of `status`'s heads (and of its presence message). */
  private selfStatus(now: number): HeadStatus {
    return {
      id: this.options.id,
      pid: process.pid,
      host: hostname().slice(0, MAX_HOST_CHARS),
      role: this.state === 'running' ? 'leader' : 'standby',
      since: this.roleSince,
      startedAt: this.startedAt,
      lastSeenAt: now,
    };
  }

  /** Publishes this head's presence (leader or standby); nothing while starting or stopping, or cut off. */
  private publishPresence(): void {
    if ((this.state !== 'running' && this.state !== 'standby') || this.stopping || !this.link.connected()) return;
    const { id, pid, host, role, since, startedAt } = this.selfStatus(Date.now());
    const msg: HeadPresence = { v: PROTOCOL_VERSION, id, pid, host, startedAt, role, since, seq: this.presenceSeq++ };
    try {
      this.nc.publish(this.subjects.headPresence(id), encode(msg));
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'head presence not published');
    }
  }

  private onEvent(e: EventMessage, size: number): void {
    if (this.cluster.event(e, size, Date.now())) this.logger.info({ model: e.model }, 'evicted: dormant until requested');
  }

  describe(name: string): DeploymentStatus {
    return this.cluster.describe(name);
  }

  status(): ClusterStatus {
    const now = Date.now();
    const held = this.hold && now < this.hold.until ? this.hold : undefined;
    return {
      cluster: this.options.cluster,
      head: {
        id: this.options.id,
        pid: process.pid,
        startedAt: this.startedAt,
        ...(held ? { settlingUntil: held.until, awaitingWorkers: [...held.awaiting].slice(0, 64) } : {}),
      },
      heads: [this.selfStatus(Date.now()), ...this.roster.list(Date.now())],
      workers: workerStatuses(this.registry.all(), Date.now()),
      deployments: [...this.cluster.deployments.keys()].sort().map((n) => this.describe(n)),
    };
  }

  /** Stops reconciling and answering control requests; deployments stay in KV. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.state = 'stopping';
      clearInterval(this.timer);
      clearInterval(this.presenceTimer);
      this.presenceSub?.unsubscribe();
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
