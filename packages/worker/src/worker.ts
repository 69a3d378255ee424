// The worker process: measures its hardware, advertises it to the head by heartbeat, and hosts
// replicas the head places on it. Lifecycle: starting → running → draining → stopped (or failed).
import { gcMode, initialOldSpaceMb } from './gc-mode.js';
import { performance } from 'node:perf_hooks';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import {
  FlotillaError,
  ModelLoadFailedError,
  NoCapacityError,
  PROTOCOL_VERSION,
  encode,
  estimateReplicaBytes,
  subjects as makeSubjects,
  type DeviceState,
  type EventMessage,
  type Heartbeat,
  type Inventory,
  parseLoadCommand,
  parseUnloadCommand,
  type LoadCommandMsg,
  type LoadResult,
  type LoadingReplicaState,
  type ReplicaState,
  type Subjects,
  type UnloadCommandMsg,
  type WorkerStateName,
  type DeploySpec,
} from '@flotilla/protocol';
import {
  BlobStore,
  ProfileStore,
  closeBus,
  connectBus,
  connectionTracker,
  createLogger,
  maxPayload,
  notReadyReason,
  payloadPool,
  serve,
  type Logger,
  type PayloadPoolStats,
} from '@flotilla/bus';
import { ArtifactCache } from './artifact-cache.js';
import { fitHeartbeat, type FittedHeartbeat } from './heartbeat-fit.js';
import { IntakeBudget, defaultMaxQueuedBytes, type IntakeStats } from './intake-budget.js';
import { measureInventory } from './inventory.js';
import { MemoryLedger, workerDevices } from './memory-ledger.js';
import {
  observeUses,
  planEviction,
  resolveEvictionPolicy,
  usageRate,
  type EvictionCandidate,
  type EvictionPolicy,
  type UsageRate,
} from './eviction.js';
import { SessionLoader } from './session-loader.js';
import { replicaFootprint } from './session-plan.js';
import { parseWorkerOptions, type CompiledWorkerOptions, type WorkerOptions } from './options.js';
import { Replica } from './replica.js';
import { WorkerMetrics } from './metrics.js';

/** A `refused` event per model at most this often, ms (the refusals in between are counted in the next). */
export const REFUSAL_REPORT_MS = 10_000;

/** Models whose quickest load the worker remembers (the cost eviction policy). */
export const LOAD_TIMES_KEPT = 4096;

/** A replica being loaded: reserved memory, visible in heartbeats (as a LoadingReplicaState). */
interface Loading {
  id: string;
  model: string;
  digest: string;
  device: string;
  bytes: number;
  pinned: boolean;
  done: Promise<LoadResult>;
}

export class Worker {
  state: WorkerStateName = 'starting';
  readonly id: string;
  readonly subjects: Subjects;
  private readonly replicas = new Map<string, Replica>();
  private readonly loading = new Map<string, Loading>();
  /** Last `refused` event per model and the refusals since (see `refused`). */
  private readonly refusals = new Map<string, { at: number; suppressed: number }>();
  /** Per ready replica: its decayed request count (sampled from `uses` each heartbeat). */
  private readonly usage = new Map<string, UsageRate>();
  /**
   * Per model digest and device: the quickest load measured here (session create + warm-up), ms —
   * what a reload costs without contention; one load slowed by a busy machine would otherwise make
   * a cold model look too dear to evict.
   */
  private readonly loadTimes = new Map<string, number>();
  private readonly subs: Subscription[] = [];
  private heartbeatTimer?: NodeJS.Timeout;
  /** Per replica: a profiled footprint the device had no room for (logged once). */
  private readonly footprintRefused = new Map<string, number>();
  private seq = 0;
  /** What the last heartbeat left out to fit one message (`''`: nothing; `over`: it did not fit). */
  private heartbeatFit = '';
  private readonly startedAt = Date.now();
  private stopping?: Promise<void>;
  private admitting: Promise<void> = Promise.resolve();
  readonly metrics: WorkerMetrics;
  readonly policy: EvictionPolicy;
  private readonly loader: SessionLoader;
  private readonly link: { connected: () => boolean };
  /** Bytes of accepted, unanswered requests across the replicas, bounded (intake-budget.ts). */
  private readonly intake: IntakeBudget;

  private constructor(
    readonly options: CompiledWorkerOptions,
    readonly nc: NatsConnection,
    private readonly ownsConnection: boolean,
    readonly inventory: Inventory,
    readonly ledger: MemoryLedger,
    private readonly cache: ArtifactCache,
    private readonly blobs: BlobStore,
    readonly logger: Logger,
  ) {
    this.id = options.id;
    this.subjects = makeSubjects(options.cluster);
    this.link = connectionTracker(nc);
    this.loader = new SessionLoader(options, inventory, new ProfileStore(nc, this.subjects.profileBucket, options.storeReplicas), logger);
    this.policy = resolveEvictionPolicy(options.eviction);
    this.intake = new IntakeBudget(options.maxQueuedBytes ?? defaultMaxQueuedBytes(inventory.memory.totalBytes), () => this.replicas.size);
    this.metrics = new WorkerMetrics(this);
  }

  /** Null when ready to serve; otherwise why not (for /readyz). */
  notReady(): string | null {
    return notReadyReason('worker', this.state, this.link);
  }

  static async start(raw: WorkerOptions = {}): Promise<Worker> {
    const options = parseWorkerOptions(raw);
    const logger = (options.logger ?? createLogger('flotilla-worker')).child({ worker: options.id });
    const inventory = await measureInventory(options.inventory);
    const ledger = new MemoryLedger(workerDevices({ memoryTotalBytes: inventory.memory.totalBytes, gpus: inventory.gpus }, options));
    const nc = options.connection ?? (await connectBus({ name: `flotilla-worker-${options.id}`, ...options.bus }));
    const s = makeSubjects(options.cluster);
    const worker = new Worker(
      options,
      nc,
      !options.connection,
      inventory,
      ledger,
      new ArtifactCache(nc, s.modelBucket, options.cacheDir),
      new BlobStore(nc, s.blobBucket, undefined, options.storeReplicas),
      logger,
    );
    worker.listen();
    await nc.flush(); // the server has our subscriptions before the head hears of us
    worker.state = 'running';
    worker.heartbeat();
    // A timer: it fires between batches (onnxruntime-node runs a session on the event-loop thread).
    worker.heartbeatTimer = setInterval(() => worker.heartbeat(), options.heartbeatMs);
    logger.info(
      {
        inventory,
        devices: ledger.list(),
        maxQueuedBytes: worker.intakeStats().limitBytes,
        gc: gcMode(),
        initialOldSpaceMb: initialOldSpaceMb() ?? null,
      },
      'worker running',
    );
    return worker;
  }

  /** Load and unload commands from the head, through bus `serve`: parsed by their schemas, never throwing into NATS. */
  private listen(): void {
    const opts = { logger: this.logger, what: 'placement command rejected' };
    this.subs.push(
      serve(this.nc, this.subjects.worker(this.id, 'load'), { ...opts, parse: parseLoadCommand }, (cmd) => this.load(cmd)),
      serve(this.nc, this.subjects.worker(this.id, 'unload'), { ...opts, parse: parseUnloadCommand }, (cmd) => this.unload(cmd)),
    );
  }

  // ---------- placement commands ----------

  /** Loads a replica; idempotent per replica id. */
  load(cmd: LoadCommandMsg): Promise<LoadResult> {
    if (this.state !== 'running') return Promise.reject(new NoCapacityError(`worker ${this.id} is ${this.state}`));
    const existing = this.replicas.get(cmd.replicaId);
    if (existing) {
      return Promise.resolve({
        replicaId: existing.id,
        device: existing.device,
        bytes: existing.bytes,
        loadMs: 0,
        executionProvider: existing.executionProvider,
      });
    }
    const pending = this.loading.get(cmd.replicaId);
    if (pending) return pending.done;
    const spec = cmd.spec;
    const device = this.ledger.device(cmd.device);
    if (!device)
      return Promise.reject(
        this.refused(spec.name, cmd.replicaId, String(cmd.device), new NoCapacityError(`worker ${this.id} has no device ${cmd.device}`)),
      );
    if (this.replicas.size + this.loading.size >= this.options.maxReplicas) {
      return Promise.reject(
        this.refused(
          spec.name,
          cmd.replicaId,
          device.id,
          new NoCapacityError(
            `worker ${this.id} already hosts ${this.replicas.size + this.loading.size} replicas (limit ${this.options.maxReplicas})`,
            {
              data: { worker: this.id, limit: this.options.maxReplicas },
            },
          ),
        ),
      );
    }
    const bytes = spec.memoryBytes ?? (typeof cmd.bytes === 'number' && cmd.bytes > 0 ? cmd.bytes : estimateReplicaBytes(spec));
    const entry: Loading = {
      id: cmd.replicaId,
      model: spec.name,
      digest: spec.digest,
      device: device.id,
      bytes,
      pinned: spec.pin,
      done: (async () => {
        const evicted = await this.admit(cmd.replicaId, spec, device.id, bytes).catch((e: unknown) => {
          throw e instanceof NoCapacityError ? this.refused(spec.name, cmd.replicaId, device.id, e) : e;
        });
        const result = await this.create(cmd.replicaId, spec, device.id, device.kind, bytes);
        return evicted.length ? { ...result, evicted } : result;
      })().finally(() => this.loading.delete(cmd.replicaId)),
    };
    this.loading.set(cmd.replicaId, entry);
    return entry.done;
  }

  /**
   * Charges the device for a new replica, evicting loaded replicas by the eviction policy when it
   * does not fit (each drained first: nothing accepted is dropped). Admissions run one at a time
   * so concurrent loads cannot both count the same free bytes. Throws NO_CAPACITY when even
   * evicting every unpinned replica would not make room.
   */
  private admit(replicaId: string, spec: DeploySpec, deviceId: string, bytes: number): Promise<LoadResult['evicted'] & object> {
    const turn = this.admitting.then(async () => {
      const charge = { owner: replicaId, model: spec.name, bytes, at: Date.now() };
      if (this.ledger.tryCharge(deviceId, charge)) {
        this.heartbeat();
        return [];
      }
      const now = Date.now();
      const candidates: EvictionCandidate[] = this.ledger.chargesOn(deviceId).flatMap((c) => {
        const r = this.replicas.get(c.owner);
        // Replicas still loading are not candidates: they are not serving yet and hold a reservation.
        return r
          ? [
              {
                owner: r.id,
                model: r.model,
                bytes: c.bytes,
                loadedAt: r.loadedAt,
                lastUsedAt: r.lastUsedAt,
                uses: r.uses,
                pinned: r.pinned,
                rate: usageRate(this.observe(r, now), now),
                ...this.reloadCost(r),
              },
            ]
          : [];
      });
      const plan = planEviction(this.policy, candidates, bytes, this.ledger.free(deviceId));
      if (!plan.fits) {
        const device = this.ledger.device(deviceId)!;
        throw new NoCapacityError(
          `'${spec.name}' needs ${bytes} bytes on ${this.id}/${deviceId}: ${this.ledger.free(deviceId)} of ${device.budgetBytes} free, ` +
            `${candidates.filter((c) => !c.pinned).reduce((n, c) => n + c.bytes, 0)} more evictable`,
          { data: { worker: this.id, device: deviceId, neededBytes: bytes, freeBytes: this.ledger.free(deviceId) } },
        );
      }
      const evicted: Array<{ replica: string; model: string; bytes: number }> = [];
      for (const victim of plan.evict) {
        const freed = await this.release(victim.owner, 'evicted', `${this.policy.name}: make room for '${spec.name}' (${bytes} bytes)`);
        evicted.push({ replica: victim.owner, model: victim.model, bytes: freed });
      }
      if (!this.ledger.tryCharge(deviceId, charge)) {
        throw new NoCapacityError(
          `'${spec.name}' still does not fit on ${this.id}/${deviceId} after evicting ${evicted.length} replica(s)`,
        );
      }
      this.heartbeat();
      return evicted;
    });
    this.admitting = turn.then(
      () => undefined,
      () => undefined,
    );
    return turn;
  }

  /**
   * A load this worker will not take (NO_CAPACITY): the error goes back to the head; an event says
   * so, at most once per model every REFUSAL_REPORT_MS (with the count of refusals it stands for),
   * so a deployment asking for far more than fits cannot flood the events history.
   */
  private refused(model: string, replicaId: string, device: string, e: NoCapacityError): NoCapacityError {
    const now = Date.now();
    const last = this.refusals.get(model);
    if (last && now - last.at < REFUSAL_REPORT_MS) {
      last.suppressed++;
      return e;
    }
    if (this.refusals.size >= 4096) this.refusals.clear();
    this.refusals.set(model, { at: now, suppressed: 0 });
    const data = last?.suppressed ? { alsoRefused: last.suppressed } : undefined;
    this.event({ type: 'refused', model, device, replica: replicaId, reason: e.message, ...(data ? { data } : {}) });
    this.logger.info({ model, replica: replicaId, device, reason: e.message, ...data }, 'refused');
    return e;
  }

  /** Drains a replica (answers what it accepted), frees its memory, publishes the event. */
  private async release(replicaId: string, type: 'evicted' | 'unloaded', reason: string): Promise<number> {
    const replica = this.replicas.get(replicaId);
    if (!replica) return 0;
    this.replicas.delete(replicaId);
    this.usage.delete(replicaId);
    await replica.drain();
    const bytes = this.ledger.release(replicaId);
    this.footprintRefused.delete(replicaId);
    this.event({ type, model: replica.model, device: replica.device, replica: replica.id, bytes, reason });
    this.logger.info({ replica: replicaId, model: replica.model, bytes, reason }, type);
    this.heartbeat();
    return bytes;
  }

  private async create(replicaId: string, spec: DeploySpec, deviceId: string, kind: 'cpu' | 'gpu', charged: number): Promise<LoadResult> {
    const t0 = performance.now();
    try {
      const path = await this.cache.path(spec.digest);
      const {
        session,
        sessionHost,
        executionProvider,
        fallbackFrom,
        fallbackReason,
        compile,
        createMs,
        signature,
        profile,
        batching,
        measuredBytes,
        profileSessionHost,
        warmupMs,
        shapes,
      } = await this.loader.open(path, spec, deviceId, kind, { rssBaseline: process.memoryUsage().rss });
      // The footprint replaces the estimate when it fits: the profile's, else the one measured at
      // load (a deployment's memoryBytes wins over both).
      const footprint = replicaFootprint({
        profileBytes: profile.replicaBytes,
        measuredBytes,
        host: sessionHost,
        onCpu: kind === 'cpu' && executionProvider === 'cpu',
        ...(profileSessionHost ? { profileHost: profileSessionHost } : {}),
      });
      let bytes = charged;
      let chargedBy: 'deployment' | 'profile' | 'measured' | 'estimate' = spec.memoryBytes !== undefined ? 'deployment' : 'estimate';
      if (spec.memoryBytes === undefined && footprint !== undefined && this.ledger.resize(replicaId, footprint.bytes)) {
        bytes = footprint.bytes;
        chargedBy = footprint.by;
      }
      const replica = new Replica(
        {
          nc: this.nc,
          blobs: this.blobs,
          logger: this.logger,
          workerId: this.id,
          maxMessageBytes: this.options.maxMessageBytes,
          slowdownMs: this.options.slowdownMs,
          directStallMs: this.options.directStallMs,
          metrics: this.metrics,
          payloads: payloadPool(),
          intake: this.intake,
        },
        {
          id: replicaId,
          model: spec.name,
          digest: spec.digest,
          device: deviceId,
          executionProvider,
          sessionHost,
          bytes,
          fixedCharge: chargedBy === 'deployment',
          profile,
          pinned: spec.pin,
          tuneBatches: spec.batching.maxBatchSize === undefined,
        },
        session,
        signature,
        batching,
        shapes,
      );
      if (this.state !== 'running') {
        await session.release();
        throw new NoCapacityError(`worker ${this.id} stopped while loading`);
      }
      this.replicas.set(replicaId, replica);
      // What bringing it back would cost (the cost policy): a reload reuses the stored profile, so no profiling.
      const key = `${spec.digest}/${deviceId}`;
      const took = createMs + (warmupMs ?? 0);
      if (!this.loadTimes.has(key) && this.loadTimes.size >= LOAD_TIMES_KEPT) this.loadTimes.delete(this.loadTimes.keys().next().value!);
      this.loadTimes.set(key, Math.min(this.loadTimes.get(key) ?? Infinity, took));
      await replica.start(
        this.subjects.infer(spec.name),
        this.subjects.inferReplica(spec.name, replicaId),
        this.subjects.cluster,
        this.subjects.inferBody(spec.name, replicaId),
      );
      await this.nc.flush(); // subscribed at the server before anyone is told the replica is ready
      const loadMs = +(performance.now() - t0).toFixed(1);
      this.event({
        type: 'loaded',
        model: spec.name,
        device: deviceId,
        replica: replicaId,
        bytes,
        data: {
          loadMs,
          sessionCreateMs: +createMs.toFixed(1),
          compile,
          warmupMs,
          executionProvider,
          fallbackFrom,
          fallbackReason,
          chargedBy,
          batchAxis: signature.batchAxis,
          batching: replica.batching,
          profile,
        },
      });
      this.heartbeat();
      return {
        replicaId,
        device: deviceId,
        bytes,
        loadMs,
        sessionCreateMs: +createMs.toFixed(1),
        compile,
        executionProvider,
        ...(fallbackFrom ? { fallbackFrom } : {}),
      };
    } catch (err) {
      this.ledger.release(replicaId);
      const e =
        err instanceof FlotillaError
          ? err
          : new ModelLoadFailedError(`loading '${spec.name}' failed: ${(err as Error).message}`, { cause: err });
      this.event({ type: 'load_failed', model: spec.name, device: deviceId, replica: replicaId, reason: e.message });
      this.logger.warn({ err: e.message, model: spec.name, replica: replicaId }, 'load failed');
      this.heartbeat();
      throw e;
    }
  }

  async unload(cmd: UnloadCommandMsg): Promise<{ replicaId: string; bytes: number }> {
    const pending = this.loading.get(cmd.replicaId);
    if (pending) await pending.done.catch(() => undefined);
    const bytes = await this.release(cmd.replicaId, 'unloaded', 'unload');
    return { replicaId: cmd.replicaId, bytes };
  }

  // ---------- advertising ----------

  /** How often requests were gathered in reused buffers (the worker's payload pool, for its metrics). */
  payloadStats(): PayloadPoolStats {
    return payloadPool().stats();
  }

  /** Bytes of accepted, unanswered requests held across the replicas, and the limit (for its metrics and tests). */
  intakeStats(): IntakeStats {
    return this.intake.stats();
  }

  deviceStates(): DeviceState[] {
    return this.ledger.list().map((d) => ({
      id: d.id,
      kind: d.kind,
      capacityBytes: d.capacityBytes,
      budgetBytes: d.budgetBytes,
      usedBytes: this.ledger.used(d.id),
      executionProvider: d.kind === 'gpu' ? (this.options.gpuProviders[0] ?? 'cpu') : 'cpu',
      policy: this.policy.name,
    }));
  }

  replicaStates(): ReplicaState[] {
    const now = Date.now();
    const ready = [...this.replicas.values()].map((r): ReplicaState => {
      const usage = this.usage.get(r.id);
      const cost = { ...(usage ? { rate: +usageRate(usage, now).toFixed(3) } : {}), ...this.reloadCost(r) };
      const snap = r.snapshot();
      return snap.state === 'loading' ? snap : { ...snap, ...cost };
    });
    const loading = [...this.loading.values()]
      .filter((l) => !this.replicas.has(l.id))
      .map((l): LoadingReplicaState => ({
        id: l.id,
        model: l.model,
        digest: l.digest,
        device: l.device,
        state: 'loading',
        bytes: l.bytes,
        queueDepth: 0,
        inFlight: 0,
        processed: 0,
        failed: 0,
        pinned: l.pinned,
      }));
    return [...ready, ...loading];
  }

  /** The quickest load of the replica's model measured here, if any, ms. */
  private reloadCost(r: Replica): { reloadMs?: number } {
    const ms = this.loadTimes.get(`${r.digest}/${r.device}`);
    return ms === undefined ? {} : { reloadMs: +ms.toFixed(1) };
  }

  /** Folds a replica's request counter into its decayed count (eviction by cost). */
  private observe(r: Replica, now: number): UsageRate {
    const u = observeUses(this.usage.get(r.id), r.uses, now, r.loadedAt);
    this.usage.set(r.id, u);
    return u;
  }

  /**
   * A dynamic-shape replica's charge grows to the largest footprint its shape profiles measured,
   * so the ledger (and eviction) sees what placement sees. When the device has no room for the
   * growth, the charge stays and the shortfall is logged once per size.
   */
  private followFootprint(r: Replica): void {
    const f = r.footprintAbove();
    if (f === undefined || this.footprintRefused.get(r.id) === f) return;
    if (this.ledger.resize(r.id, f)) {
      this.footprintRefused.delete(r.id);
      r.bytes = f;
      return;
    }
    this.footprintRefused.set(r.id, f);
    this.logger.warn(
      { replica: r.id, model: r.model, chargedBytes: r.bytes, footprintBytes: f, device: r.device },
      'profiled footprint exceeds the free device budget: charge kept',
    );
  }

  heartbeat(): void {
    if (this.nc.isClosed()) return;
    const now = Date.now();
    for (const r of this.replicas.values()) {
      this.observe(r, now);
      this.followFootprint(r);
    }
    const hb: Heartbeat = {
      v: PROTOCOL_VERSION,
      workerId: this.id,
      pid: process.pid,
      state: this.state,
      seq: this.seq++,
      startedAt: this.startedAt,
      sentAt: Date.now(),
      inventory: this.inventory,
      devices: this.deviceStates(),
      replicas: this.replicaStates(),
    };
    const fit = fitHeartbeat(hb, maxPayload(this.nc), encode);
    this.reportHeartbeatFit(fit, hb.replicas.length);
    try {
      this.nc.publish(this.subjects.heartbeat(this.id), fit.bytes);
    } catch (err) {
      this.logger.debug({ err }, 'heartbeat not sent');
    }
  }

  /** Says when heartbeats start or stop leaving details out to fit one message, or cannot fit (once per change). */
  private reportHeartbeatFit(fit: FittedHeartbeat, replicas: number): void {
    const now = fit.fits ? fit.trimmed.join(',') : 'over';
    if (now === this.heartbeatFit) return;
    this.heartbeatFit = now;
    const facts = { bytes: fit.bytes.byteLength, maxPayload: maxPayload(this.nc), replicas, leftOut: fit.trimmed };
    if (!fit.fits) {
      this.logger.error(
        facts,
        'heartbeat over max_payload even without its details: it is not sent, and the head will take this worker for gone',
      );
    } else if (fit.trimmed.length) {
      this.logger.warn(facts, `heartbeats leave out ${fit.trimmed.join(', ')} to fit one message`);
    } else {
      this.logger.info(facts, 'heartbeats fit one message again, with every detail');
    }
  }

  private event(e: Omit<EventMessage, 'v' | 'at' | 'worker'>): void {
    this.metrics.events.inc({ type: e.type });
    try {
      this.nc.publish(this.subjects.event(e.type), encode({ v: PROTOCOL_VERSION, at: Date.now(), worker: this.id, ...e }));
    } catch {
      // events are best effort; the heartbeat carries the state
    }
  }

  /**
   * Graceful stop: advertise `draining` (the head stops placing here and moves replicas), answer
   * everything already accepted, advertise `stopped`, close. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.state = 'draining';
      this.heartbeat();
      for (const s of this.subs) s.unsubscribe();
      await Promise.allSettled([...this.loading.values()].map((l) => l.done));
      await Promise.allSettled([...this.replicas.values()].map((r) => r.drain()));
      for (const id of this.replicas.keys()) this.ledger.release(id);
      this.replicas.clear();
      this.usage.clear();
      clearInterval(this.heartbeatTimer);
      this.state = 'stopped';
      this.heartbeat();
      if (this.ownsConnection) await closeBus(this.nc);
      else await this.nc.flush().catch(() => undefined);
    })();
    return this.stopping;
  }
}
