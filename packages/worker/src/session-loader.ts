// Opens the onnxruntime session of a new replica and settles how it runs: execution provider
// (GPU providers in order, CPU fallback), compile cache, thread settings and batching. Settings
// come from, in order: the deployment, the worker's flags, the model's stored profile for this
// device class, and otherwise a profile measured now (batch sweep, then thread settings on CPU)
// and stored for the next load. With a stored profile the session opens once, already tuned.
// What to do is decided in session-plan.ts (pure); this shell opens sessions, runs the profiler
// and reads and writes the profile store. A model with dynamic non-batch dims gets a
// ShapeProfiler instead (background-profiler.ts): the deployment's shapes are profiled here, at
// load, the others in the background as traffic brings them.
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type {
  BatchingOptions,
  DeploySpec,
  Inventory,
  ModelProfile,
  ProfileShape,
  ReplicaProfileSummary,
  SessionHost,
  ThreadSettings,
} from '@flotilla/protocol';
import type { Logger, ProfileStore } from '@flotilla/bus';
import { compiledPath, createCompiledSession } from './compile-cache.js';
import { describeModel, type ModelSignature } from './model-io.js';
import { DEFAULT_LATENCY_SLO_MS, deviceClass, ortVersion, profileSession, profileThreads, warmUp } from './profiler.js';
import { ShapeProfiler } from './background-profiler.js';
import { dynamicDims, sampleShape, unknownBucketDims } from './shape-profiles.js';
import type { CompiledWorkerOptions } from './options.js';
import { providerUnavailable } from './providers.js';
import type { ModelSession } from './session-thread.js';
import { readVram } from './inventory.js';
import { measuredFootprint, vramDelta } from './memory-ledger.js';
import {
  batchingFor,
  checkThreads,
  chooseSessionHost,
  chosenRunMs,
  chooseThreadPlan,
  cpuSessionOptions,
  judgeCompile,
  lookUpBeforeOpen,
  needsLookup,
  planMeasure,
  planProfile,
  shouldWarmUp,
  summarize,
  useCompileCache,
  type ProfileOutcome,
  type ThreadPlan,
} from './session-plan.js';

export interface OpenedSession {
  session: ModelSession;
  /** Where the session runs: on the worker's event loop or on a thread of its own. */
  sessionHost: SessionHost;
  executionProvider: string;
  /** Set when the requested provider failed and the session runs on CPU instead. */
  fallbackFrom?: string;
  /** Why that provider failed. */
  fallbackReason?: string;
  compile: 'hit' | 'miss' | 'off';
  createMs: number;
  signature: ModelSignature;
  profile: ReplicaProfileSummary;
  batching: BatchingOptions;
  /** The session's footprint on its device measured at load (see measuredFootprint), when readable. */
  measuredBytes?: number;
  /** `thread`: the profile behind `profile.replicaBytes` measured a session on a thread, whose memory its figures include. */
  profileSessionHost?: 'thread';
  /** Time of the warm-up run before serving, ms (absent when the profile just ran it, or warm-up is off). */
  warmupMs?: number;
  /** A model with dynamic non-batch dims: its per-shape profiles and batching (the replica feeds it its requests' shapes). */
  shapes?: ShapeProfiler;
}

type Created = {
  session: ModelSession;
  createMs: number;
  compile: 'hit' | 'miss' | 'off';
  executionProvider: string;
  fallbackFrom?: string;
  fallbackReason?: string;
};

/** One open in progress: what it was asked, and what opening the session found. */
interface Opening {
  path: string;
  spec: DeploySpec;
  deviceId: string;
  kind: 'cpu' | 'gpu';
  rssBaseline: number;
  slo: number;
  cpuClass: string;
  /** The stored profile read before the open (see lookUpBeforeOpen). */
  before: ModelProfile | undefined;
  compile: boolean;
  created: Created;
  onCpu: boolean;
  deviceClass: string;
  /** Growth of the session's device memory (RSS on CPU, VRAM on a GPU) from the create, bytes (0 unknown). */
  sessionBytes: number;
  /** On a GPU: VRAM used since before the create, for the profiler's peak readings. */
  deviceBytes?: () => Promise<number | undefined>;
}

/** The session open() holds (released when opening fails), its threads and its host; thread tuning and a change of host replace them. */
interface Held {
  session: ModelSession;
  threads: ThreadPlan;
  host: SessionHost;
}

export class SessionLoader {
  /** Profiles run one at a time per worker so two loads do not skew each other's timings. */
  private profiling: Promise<void> = Promise.resolve();
  /** Profiles this worker has read or measured, by digest and device class (bounded by the models it has loaded). */
  private readonly known = new Map<string, ModelProfile>();

  constructor(
    private readonly options: CompiledWorkerOptions,
    private readonly inventory: Inventory,
    private readonly profiles: ProfileStore,
    private readonly logger: Logger,
  ) {}

  /** Cores a CPU session may use on this worker. */
  get usableCores(): number {
    return this.inventory.cpu.usableCores ?? this.inventory.cpu.cores;
  }

  deviceClassOf(kind: 'cpu' | 'gpu', deviceId: string, provider: string): string {
    return deviceClass(
      kind,
      kind === 'gpu' ? this.gpuModel(deviceId) : this.inventory.cpu.model,
      this.usableCores,
      this.options.threads,
      provider,
    );
  }

  private gpuModel(deviceId: string): string {
    const index = Number(deviceId.split(':')[1]);
    return this.inventory.gpus.find((g) => g.index === index)?.model ?? 'gpu';
  }

  async open(path: string, spec: DeploySpec, deviceId: string, kind: 'cpu' | 'gpu', mem: { rssBaseline: number }): Promise<OpenedSession> {
    // Thread pools beyond this worker's cores are refused before anything opens (BAD_REQUEST).
    checkThreads(spec, this.options.threads, this.usableCores);
    const slo = spec.profile.latencySloMs ?? DEFAULT_LATENCY_SLO_MS;
    const cpuClass = this.deviceClassOf('cpu', deviceId, 'cpu');
    const before = lookUpBeforeOpen(spec, kind) ? await this.storedProfile(spec.digest, cpuClass, slo) : undefined;
    const threads = chooseThreadPlan({
      deployment: spec.threads,
      workerThreads: this.options.threads,
      stored: before?.threads,
      usableCores: this.usableCores,
    });
    const compile = useCompileCache(spec.compile, before);
    // With a stored profile the host is settled before the open; otherwise once the profile says how long a run takes.
    const hostFor = (k: 'cpu' | 'gpu', runMs: number | undefined) =>
      chooseSessionHost({ deployment: spec.sessionHost, worker: this.options.sessionHost, kind: k, usableCores: this.usableCores, runMs });
    const host = hostFor(kind, chosenRunMs(before));
    const o = await this.openMeasured(
      { path, spec, deviceId, kind, rssBaseline: mem.rssBaseline, slo, cpuClass, before, compile },
      threads.settings,
      host,
    );
    const held: Held = { session: o.created.session, threads, host };
    try {
      const signature = describeModel(held.session.inputMetadata, held.session.outputMetadata);
      const dims = dynamicDims(signature);
      const step = planProfile({
        enabled: spec.profile.enabled !== false,
        batchAxis: signature.batchAxis,
        dynamicDims: dims,
        ...(spec.profile.buckets ? { buckets: spec.profile.buckets } : {}),
      });
      const shapes = step.source === 'per-shape' ? await this.shapeProfiler(o, held, signature) : undefined;
      const outcome: ProfileOutcome =
        step.source === 'profile' ? await this.oneAtATime(() => this.storedOrMeasured(o, held, signature)) : step;
      if ('profile' in outcome) {
        const p = outcome.profile;
        this.logger.info(
          {
            model: spec.name,
            deviceClass: o.deviceClass,
            source: outcome.source,
            chosen: p.chosen,
            threads: held.threads.settings,
            tookMs: p.tookMs,
          },
          'profile',
        );
      }
      const moved =
        !shapes && 'profile' in outcome && (await this.moveHost(o, held, hostFor(o.onCpu ? 'cpu' : 'gpu', chosenRunMs(outcome.profile))));
      // Batch 1: a caller may be waiting for this replica (a reload after eviction), so the warm-up is the cheapest run.
      const warmupMs =
        (moved && spec.warmup) || shouldWarmUp(outcome.source, spec.warmup, dims) ? await warmUp(held.session, signature, 1) : undefined;
      const summary = summarize(outcome, { deviceClass: o.deviceClass, onCpu: o.onCpu, threads: held.threads });
      return {
        ...o.created,
        session: held.session,
        sessionHost: held.host,
        signature,
        profile: shapes ? shapes.summary(summary) : summary,
        ...(shapes ? { shapes } : {}),
        batching: batchingFor(outcome, spec.batching, o.kind === 'gpu'),
        ...(o.measuredBytes !== undefined ? { measuredBytes: o.measuredBytes } : {}),
        ...(!shapes && 'profile' in outcome && outcome.profile.sessionHost === 'thread' ? { profileSessionHost: 'thread' as const } : {}),
        ...(warmupMs !== undefined ? { warmupMs: +warmupMs.toFixed(1) } : {}),
      };
    } catch (e) {
      await held.session.release();
      throw e;
    }
  }

  /**
   * Reopens the held session on `host` when the profile settled on another one than it opened on
   * (a first load, before any profile was stored): same settings, the old session released. True
   * when it moved; a failed move keeps the session it has.
   */
  private async moveHost(o: Opening, held: Held, host: SessionHost): Promise<boolean> {
    if (host === held.host) return false;
    let created: Created;
    try {
      created = await this.createSession(
        o.path,
        o.onCpu ? 'cpu' : o.kind,
        o.deviceId,
        o.spec.digest,
        o.compile,
        held.threads.settings,
        host,
      );
    } catch (err) {
      // The session it has serves as well: the move is only worth it, never needed.
      this.logger.warn(
        { model: o.spec.name, sessionHost: host, err: (err as Error).message },
        'session not moved to the host its profile chose',
      );
      return false;
    }
    const old = held.session;
    held.session = created.session;
    held.host = host;
    await old.release();
    this.logger.info({ model: o.spec.name, sessionHost: host }, 'session moved to the host its profile chose');
    return true;
  }

  /**
   * Creates the session and measures what it took on its own device (host RAM on CPU, VRAM on a
   * GPU: this process's, read from nvidia-smi before and after, memory-ledger.ts vramDelta), and
   * the device class it ended up on.
   */
  private async openMeasured(
    o: Omit<Opening, 'created' | 'onCpu' | 'deviceClass' | 'sessionBytes' | 'deviceBytes'>,
    threads: ThreadSettings,
    host: SessionHost,
  ): Promise<Opening & { measuredBytes?: number }> {
    const gpuIndex = o.kind === 'gpu' ? Number(o.deviceId.split(':')[1]) : -1;
    // undefined without nvidia-smi (a stand-in GPU): no VRAM readings at all.
    const vram = async () => (gpuIndex >= 0 ? readVram(gpuIndex) : undefined);
    const vramBefore = await vram();
    const nativeBefore = nativeRss();
    const created = await this.createSession(o.path, o.kind, o.deviceId, o.spec.digest, o.compile, threads, host);
    const onCpu = created.executionProvider === 'cpu';
    const vramAfter = onCpu ? undefined : await vram();
    const rssDeltaBytes = nativeRss() - nativeBefore;
    const vramDeltaBytes = vramBefore && vramAfter ? vramDelta(vramBefore, vramAfter) : undefined;
    const measuredBytes = measuredFootprint({ onGpu: !onCpu, rssDeltaBytes, vramDeltaBytes, fileBytes: o.spec.sizeBytes });
    return {
      ...o,
      created,
      onCpu,
      deviceClass: this.deviceClassOf(onCpu ? 'cpu' : o.kind, o.deviceId, created.executionProvider),
      sessionBytes: Math.max(0, (onCpu ? rssDeltaBytes : vramDeltaBytes) ?? 0),
      ...(!onCpu && vramBefore
        ? {
            deviceBytes: async () => {
              const now = await vram();
              return now ? vramDelta(vramBefore, now) : undefined;
            },
          }
        : {}),
      ...(measuredBytes !== undefined ? { measuredBytes } : {}),
    };
  }

  /**
   * The per-shape profiler of a dynamic-shape model, loaded in the profiling turn with the shapes
   * stored for its device class and the deployment's shapes (`profile.shapes`, measured now when
   * not stored; a shape that does not fit the model is logged and left out).
   */
  private async shapeProfiler(o: Opening, held: Held, signature: ModelSignature): Promise<ShapeProfiler> {
    const { spec } = o;
    const profiler = new ShapeProfiler({
      session: held.session,
      signature,
      spec,
      deviceClass: o.deviceClass,
      ortVersion: ortVersion(),
      latencySloMs: o.slo,
      onGpu: o.kind === 'gpu',
      store: this.profiles,
      logger: this.logger,
      oneAtATime: (f) => this.oneAtATime(f),
      memory: {
        sessionBytes: o.sessionBytes,
        rssBaseline: o.rssBaseline,
        fileBytes: spec.sizeBytes,
        ...(o.deviceBytes ? { deviceBytes: o.deviceBytes } : {}),
      },
    });
    const unknown = unknownBucketDims(signature, spec.profile.buckets ?? {});
    if (unknown.length)
      this.logger.warn({ model: spec.name, dims: unknown }, 'profile.buckets names dims the model does not have: ignored');
    const wanted = (spec.profile.shapes ?? []).flatMap((full) => {
      const s = sampleShape(signature, full);
      if (typeof s === 'string') this.logger.warn({ model: spec.name, reason: s }, 'profile shape does not fit the model: left out');
      return typeof s === 'string' ? [] : [s];
    });
    await this.oneAtATime(async () => {
      await profiler.preload(wanted);
      await this.tuneShapeThreads(o, held, signature, profiler, wanted);
    });
    return profiler;
  }

  /**
   * Thread settings for a dynamic-shape model, at load: measured like a fixed-shape model's, at the
   * first sample shape's chosen batch (a deployment's `profile.shapes`), when the session opened
   * with the default (every usable core) on a CPU. The tuned session replaces the held one, for
   * serving and for the later shape profiles. Without sample shapes the default stays (a session
   * cannot be swapped under a serving replica).
   */
  private async tuneShapeThreads(o: Opening, held: Held, signature: ModelSignature, profiler: ShapeProfiler, samples: ProfileShape[]) {
    const at = profiler.chosenFor(samples);
    if (!at) return;
    const plan = planMeasure({ onCpu: o.onCpu, threadSource: held.threads.source, spec: o.spec, opened: o.created, chosenBatch: at.batch });
    if (plan.tuneThreadsAt === null) return;
    const tuned = await profileThreads(
      { session: held.session, settings: held.threads.settings },
      async (t) => (await this.createSession(o.path, 'cpu', o.deviceId, o.spec.digest, o.compile, t, held.host)).session,
      signature,
      { batch: plan.tuneThreadsAt, usableCores: this.usableCores, budgetMs: o.spec.profile.budgetMs, latencySloMs: o.slo, shape: at.shape },
    );
    held.session = tuned.session;
    held.threads = { settings: tuned.settings, source: 'profile' };
    profiler.useSession(tuned.session);
    this.logger.info({ model: o.spec.name, shape: at.shape, threads: tuned.profile }, 'thread settings for the sample shape');
  }

  /** Runs `f` after every profile this worker started before it (see `profiling`). */
  private oneAtATime<T>(f: () => Promise<T>): Promise<T> {
    const turn = this.profiling.then(f);
    this.profiling = turn.then(
      () => undefined,
      () => undefined,
    );
    return turn;
  }

  /**
   * In the profiling turn: the stored profile of the session's device class, else a profile
   * measured now on the held session (batch sweep, then what planMeasure adds), stored for the
   * next load. Thread tuning may replace the held session and its threads.
   */
  private async storedOrMeasured(
    o: Opening,
    held: Held,
    signature: ModelSignature,
  ): Promise<ProfileOutcome & { source: 'cache' | 'measured' }> {
    const { spec } = o;
    const stored = needsLookup(o.deviceClass, o.cpuClass, o.before)
      ? await this.storedProfile(spec.digest, o.deviceClass, o.slo)
      : o.before;
    if (stored) return { source: 'cache', profile: stored };
    const p = await profileSession(
      held.session,
      signature,
      {
        digest: spec.digest,
        deviceClass: o.deviceClass,
        sessionBytes: o.sessionBytes,
        rssBaseline: o.rssBaseline,
        fileBytes: spec.sizeBytes,
        ...(o.deviceBytes ? { deviceBytes: o.deviceBytes } : {}),
      },
      { budgetMs: spec.profile.budgetMs, latencySloMs: o.slo, maxBatch: spec.profile.maxBatch },
    );
    // Its memory figures include the thread's own when the session runs on one (replicaFootprint).
    if (held.host === 'thread') p.sessionHost = 'thread';
    const plan = planMeasure({
      onCpu: o.onCpu,
      threadSource: held.threads.source,
      spec,
      opened: o.created,
      chosenBatch: p.chosen.maxBatchSize,
    });
    if (plan.tuneThreadsAt !== null) {
      const tuned = await profileThreads(
        { session: held.session, settings: held.threads.settings },
        async (t) => (await this.createSession(o.path, 'cpu', o.deviceId, spec.digest, o.compile, t, held.host)).session,
        signature,
        { batch: plan.tuneThreadsAt, usableCores: this.usableCores, budgetMs: spec.profile.budgetMs, latencySloMs: o.slo },
      );
      held.session = tuned.session;
      held.threads = { settings: tuned.settings, source: 'profile' };
      p.threads = tuned.profile;
    }
    if (plan.compareCompile) {
      p.compile = await this.compareCompile((c) =>
        this.createSession(o.path, o.kind, o.deviceId, spec.digest, c, held.threads.settings, held.host),
      );
    }
    this.known.set(`${spec.digest}/${o.deviceClass}`, p);
    await this.profiles.put(p).catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, 'profile not stored'));
    return { source: 'measured', profile: p };
  }

  /**
   * Does the compile cache help on this device class? Times two plain creates and two from the
   * cache (the first load has just written it), alternating; judgeCompile compares the best of
   * each. Costs four creates, once per model and device class.
   */
  private async compareCompile(
    open: (compile: boolean) => Promise<{ session: ModelSession; createMs: number }>,
  ): Promise<NonNullable<ModelProfile['compile']>> {
    const best = { plain: Infinity, compiled: Infinity };
    for (let i = 0; i < 2; i++) {
      for (const compiled of [false, true]) {
        const s = await open(compiled);
        await s.session.release();
        best[compiled ? 'compiled' : 'plain'] = Math.min(best[compiled ? 'compiled' : 'plain'], s.createMs);
      }
    }
    return judgeCompile(best.plain, best.compiled);
  }

  /**
   * The stored profile of a model on a device class. Profiles are written once per key, so the
   * worker keeps those it has read or measured: a reload after eviction skips the KV round trip.
   */
  private async storedProfile(digest: string, devClass: string, slo: number): Promise<ModelProfile | undefined> {
    const key = `${digest}/${devClass}`;
    const p = this.known.get(key) ?? (await this.profiles.get(digest, devClass, ortVersion()).catch(() => undefined));
    if (p) this.known.set(key, p);
    return p && p.latencySloMs === slo ? p : undefined;
  }

  /**
   * GPU replicas try each configured provider, then fall back to CPU (and say so). With
   * compilation on, the optimised graph is cached per (digest, provider, device class, ORT version).
   */
  private async createSession(
    path: string,
    kind: 'cpu' | 'gpu',
    deviceId: string,
    digest: string,
    compile: boolean,
    threads: ThreadSettings,
    host: SessionHost,
  ): Promise<Created> {
    const cpuThreads: ort.InferenceSession.SessionOptions = cpuSessionOptions(threads, this.options.ortSpinning);
    const cacheFor = (provider: string, k: 'cpu' | 'gpu') =>
      compile
        ? {
            path: compiledPath(
              join(this.options.cacheDir, 'compiled'),
              digest,
              provider,
              this.deviceClassOf(k, deviceId, provider),
              ortVersion(),
            ),
          }
        : undefined;
    let fallbackFrom: string | undefined;
    let fallbackReason: string | undefined;
    if (kind === 'gpu') {
      const deviceIndex = Number(deviceId.split(':')[1]);
      // GPU sessions keep onnxruntime's thread defaults unless the worker's flag says otherwise.
      const base: ort.InferenceSession.SessionOptions = this.options.threads > 0 ? { intraOpNumThreads: this.options.threads } : {};
      for (const name of this.options.gpuProviders) {
        const why = providerUnavailable(name);
        if (why) {
          fallbackFrom ??= name;
          fallbackReason ??= why;
          this.logger.warn({ provider: name, reason: why }, 'GPU execution provider not installed; trying the next');
          continue;
        }
        try {
          const c = await createCompiledSession(
            path,
            { ...base, executionProviders: [{ name, deviceId: deviceIndex } as never] },
            cacheFor(name, 'gpu'),
            host,
          );
          return { ...c, executionProvider: name, fallbackFrom: undefined };
        } catch (err) {
          fallbackFrom ??= name;
          fallbackReason ??= (err as Error).message;
          this.logger.warn({ provider: name, err: (err as Error).message }, 'GPU execution provider unavailable; trying the next');
        }
      }
    }
    const c = await createCompiledSession(path, { ...cpuThreads, executionProviders: ['cpu'] }, cacheFor('cpu', 'cpu'), host);
    return { ...c, executionProvider: 'cpu', fallbackFrom, fallbackReason };
  }
}

/**
 * The process's resident memory outside V8's heap and its array buffers: what a session create
 * grows. Raw RSS also moves with whatever the garbage collector frees or the heap grows meanwhile,
 * and in a busy process that hid the session: a worker in the same process as a cluster's head
 * (devkit's LocalCluster under Jest) read wide-mlp's 77 MB session as a shrink.
 */
function nativeRss(): number {
  const m = process.memoryUsage();
  return m.rss - m.heapTotal - m.arrayBuffers;
}
