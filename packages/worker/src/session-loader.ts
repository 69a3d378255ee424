// Opens the onnxruntime session of a new replica and settles how it runs: execution provider
// (GPU providers in order, CPU fallback), compile cache, thread settings and batching. Settings
// come from, in order: the deployment, the worker's flags, the model's stored profile for this
// device class, and otherwise a profile measured now (batch sweep, then thread settings on CPU)
// and stored for the next load. With a stored profile the session opens once, already tuned.
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { BadRequestError, type BatchingOptions, type DeploySpec, type Inventory, type ModelProfile, type ReplicaProfileSummary, type ThreadSettings } from '@flotilla/protocol';
import type { Logger, ProfileStore } from '@flotilla/bus';
import { compiledPath, createCompiledSession } from './compile-cache.js';
import { describeModel, type ModelSignature } from './model-io.js';
import { DEFAULT_LATENCY_SLO_MS, DEFAULT_PROFILE_BUDGET_MS, deviceClass, ortVersion, profileSession, profileThreads, unprofilable, warmUp } from './profiler.js';
import type { CompiledWorkerOptions } from './options.js';
import { providerUnavailable } from './providers.js';
import { readNvidiaSmi } from './inventory.js';
import { assertThreadsFit, sameThreads } from './thread-choice.js';
import { measuredFootprint } from './memory-ledger.js';

export interface OpenedSession {
  session: ort.InferenceSession;
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
  /** Time of the warm-up run before serving, ms (absent when the profile just ran it, or warm-up is off). */
  warmupMs?: number;
}

type ThreadSource = NonNullable<ReplicaProfileSummary['threads']>['source'];

/**
 * Items/s a replica serves at the profile's chosen batch size: as measured with the thread
 * setting it runs with, when the profile's thread rows have it, else from the batch sweep.
 */
function servedRate(p: ModelProfile, threads: ThreadSettings | undefined): number {
  const tuned = threads && p.threads?.rows.find((r) => sameThreads(r, threads));
  return tuned?.itemsPerSec ?? p.rows.find((r) => r.batch === p.chosen.maxBatchSize)?.itemsPerSec ?? 0;
}

/**
 * Refuses a load whose thread settings exceed the worker's usable cores: the deployment's
 * `threads` (intraOp and interOp each), and the worker's own `threads` option (checked at start
 * too, against an inventory estimate; this is the measured one). BAD_REQUEST, e.g.
 * "threads.intraOp 1024 exceeds this worker's 2 usable cores".
 */
export function checkThreads(spec: Pick<DeploySpec, 'threads'>, workerThreads: number, usableCores: number): void {
  if (spec.threads) assertThreadsFit(spec.threads, usableCores, 'threads');
  const cores = Math.max(1, Math.floor(usableCores));
  if (workerThreads > cores) {
    throw new BadRequestError(`the worker's --threads ${workerThreads} exceeds its ${cores} usable core${cores === 1 ? '' : 's'}`, { data: { threads: workerThreads, usableCores: cores } });
  }
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
    return deviceClass(kind, kind === 'gpu' ? this.gpuModel(deviceId) : this.inventory.cpu.model, this.usableCores, this.options.threads, provider);
  }

  private gpuModel(deviceId: string): string {
    const index = Number(deviceId.split(':')[1]);
    return this.inventory.gpus.find((g) => g.index === index)?.model ?? 'gpu';
  }

  async open(path: string, spec: DeploySpec, deviceId: string, kind: 'cpu' | 'gpu', mem: { rssBaseline: number }): Promise<OpenedSession> {
    // Thread pools beyond this worker's cores are refused before anything opens (BAD_REQUEST).
    checkThreads(spec, this.options.threads, this.usableCores);
    const slo = spec.profile.latencySloMs ?? DEFAULT_LATENCY_SLO_MS;
    const profiling = spec.profile.enabled !== false;
    const cpuClass = this.deviceClassOf('cpu', deviceId, 'cpu');
    // A CPU replica looks its profile up first: stored thread settings shape the session it opens.
    let stored = profiling && kind === 'cpu' ? await this.storedProfile(spec.digest, cpuClass, slo) : undefined;
    const threads = this.threadsFor(spec, stored);
    // Compile unless told not to or the stored profile found the cache does not help here.
    const compile = spec.compile ?? stored?.compile?.helps ?? true;
    const gpuIndex = kind === 'gpu' ? Number(deviceId.split(':')[1]) : -1;
    const vramFree = async () => (gpuIndex >= 0 ? (await readNvidiaSmi()).find((g) => g.index === gpuIndex)?.vramFreeBytes : undefined);
    const vramBefore = await vramFree();
    const opened = await this.createSession(path, kind, deviceId, spec.digest, compile, threads.settings);
    let { session } = opened;
    const onCpu = opened.executionProvider === 'cpu';
    const vramAfter = onCpu ? undefined : await vramFree();
    const rssDeltaBytes = process.memoryUsage().rss - mem.rssBaseline;
    const vramDeltaBytes = vramBefore !== undefined && vramAfter !== undefined ? vramBefore - vramAfter : undefined;
    // What the session took on its own device (host RAM on CPU, VRAM on a GPU), as measured.
    const measuredBytes = measuredFootprint({ onGpu: !onCpu, rssDeltaBytes, vramDeltaBytes, fileBytes: spec.sizeBytes });
    const sessionBytes = Math.max(0, (onCpu ? rssDeltaBytes : vramDeltaBytes) ?? 0);
    const devClass = this.deviceClassOf(onCpu ? 'cpu' : kind, deviceId, opened.executionProvider);
    try {
      const signature = describeModel(session.inputMetadata, session.outputMetadata);
      const user = spec.batching;
      const summary = (source: ReplicaProfileSummary['source'], reason: string, p?: ModelProfile): ReplicaProfileSummary => ({
        source,
        deviceClass: devClass,
        reason,
        replicaBytes: p?.memory.replicaBytes ?? 0,
        itemsPerSec: p ? servedRate(p, threads.source === 'profile' ? threads.settings : undefined) : 0,
        tookMs: source === 'measured' ? +((p?.tookMs ?? 0) + (p?.threads?.tookMs ?? 0)).toFixed(1) : 0,
        ...(onCpu ? { threads: { ...threads.settings, source: threads.source } } : {}),
      });
      // A session that was not just profiled runs once before it serves (Triton's model warm-up),
      // so the first request does not pay the first run's one-off costs. Batch 1: a caller may be
      // waiting for this replica (a reload after eviction), so the warm-up is the cheapest run.
      const result = async (profile: ReplicaProfileSummary, batching: BatchingOptions): Promise<OpenedSession> => {
        const warm = profile.source !== 'measured' && spec.warmup && !unprofilable(signature);
        const warmupMs = warm ? await warmUp(session, signature, 1) : undefined;
        return {
          ...opened,
          session,
          signature,
          profile,
          batching,
          ...(measuredBytes !== undefined ? { measuredBytes } : {}),
          ...(warmupMs !== undefined ? { warmupMs: +warmupMs.toFixed(1) } : {}),
        };
      };
      if (!profiling) return await result(summary('disabled', 'profiling disabled by the deployment'), user);
      if (!signature.batchAxis) return await result(summary('skipped', 'model has no batch axis: runs unbatched'), { ...user, maxBatchSize: 1 });
      const why = unprofilable(signature);
      if (why) return await result(summary('skipped', why), user);

      const turn = this.profiling.then(async () => {
        if (devClass !== cpuClass || !stored) stored = await this.storedProfile(spec.digest, devClass, slo);
        if (stored) return { p: stored, source: 'cache' as const };
        const p = await profileSession(
          session,
          signature,
          {
            digest: spec.digest,
            deviceClass: devClass,
            sessionBytes,
            rssBaseline: mem.rssBaseline,
            fileBytes: spec.sizeBytes,
            // On a GPU the footprint is VRAM: nvidia-smi's used-memory growth since before the create.
            ...(!onCpu && vramBefore !== undefined ? { deviceBytes: async () => ((v) => (v === undefined ? undefined : vramBefore - v))(await vramFree()) } : {}),
          },
          { budgetMs: spec.profile.budgetMs, latencySloMs: slo, maxBatch: spec.profile.maxBatch },
        );
        if (onCpu && threads.source === 'default' && spec.profile.tuneThreads !== false) {
          const tuned = await profileThreads(
            { session, settings: threads.settings },
            async (t) => (await this.createSession(path, 'cpu', deviceId, spec.digest, compile, t)).session,
            signature,
            { batch: spec.batching.maxBatchSize ?? p.chosen.maxBatchSize, usableCores: this.usableCores, budgetMs: spec.profile.budgetMs, latencySloMs: slo },
          );
          session = tuned.session;
          threads.settings = tuned.settings;
          threads.source = 'profile';
          p.threads = tuned.profile;
        }
        if (spec.compile === undefined && opened.compile === 'miss' && opened.createMs * 4 <= (spec.profile.budgetMs ?? DEFAULT_PROFILE_BUDGET_MS)) {
          p.compile = await this.compareCompile((c) => this.createSession(path, kind, deviceId, spec.digest, c, threads.settings));
        }
        this.known.set(`${spec.digest}/${devClass}`, p);
        await this.profiles.put(p).catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, 'profile not stored'));
        return { p, source: 'measured' as const };
      });
      this.profiling = turn.then(() => undefined, () => undefined);
      const { p, source } = await turn;
      this.logger.info({ model: spec.name, deviceClass: devClass, source, chosen: p.chosen, threads: threads.settings, tookMs: p.tookMs }, 'profile');
      return await result(summary(source, p.chosen.reason, p), {
        ...user,
        maxBatchSize: user.maxBatchSize ?? p.chosen.maxBatchSize,
        maxQueueDelayMs: user.maxQueueDelayMs ?? p.chosen.maxQueueDelayMs,
      });
    } catch (e) {
      await session.release();
      throw e;
    }
  }

  /**
   * Does the compile cache help on this device class? Times two plain creates and two from the
   * cache (the first load has just written it), alternating, and compares the best of each: the
   * cache must save 5 % to be kept. Costs four creates, once per model and device class.
   */
  private async compareCompile(open: (compile: boolean) => Promise<{ session: ort.InferenceSession; createMs: number }>) {
    const best = { plain: Infinity, compiled: Infinity };
    for (let i = 0; i < 2; i++) {
      for (const compiled of [false, true]) {
        const s = await open(compiled);
        await s.session.release();
        best[compiled ? 'compiled' : 'plain'] = Math.min(best[compiled ? 'compiled' : 'plain'], s.createMs);
      }
    }
    const helps = best.compiled < best.plain * 0.95;
    const ms = (x: number) => `${x.toFixed(1)} ms`;
    return {
      plainCreateMs: +best.plain.toFixed(1),
      compiledCreateMs: +best.compiled.toFixed(1),
      helps,
      reason: helps
        ? `the cached graph opens in ${ms(best.compiled)} vs ${ms(best.plain)} plain: compile on`
        : `the cached graph opens in ${ms(best.compiled)} vs ${ms(best.plain)} plain (< 5 % saved): compile off`,
    };
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

  /** Thread settings to open with: the deployment's, the worker's flag, the stored profile's, else all usable cores. */
  private threadsFor(spec: DeploySpec, stored: ModelProfile | undefined): { settings: ThreadSettings; source: ThreadSource } {
    if (spec.threads) return { settings: spec.threads, source: 'deployment' };
    if (this.options.threads > 0) return { settings: { intraOp: this.options.threads, interOp: 1, mode: 'sequential' }, source: 'worker' };
    const t = stored?.threads;
    if (t) return { settings: { intraOp: t.intraOp, interOp: t.interOp, mode: t.mode }, source: 'profile' };
    return { settings: { intraOp: this.usableCores, interOp: 1, mode: 'sequential' }, source: 'default' };
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
  ): Promise<{ session: ort.InferenceSession; createMs: number; compile: 'hit' | 'miss' | 'off'; executionProvider: string; fallbackFrom?: string; fallbackReason?: string }> {
    const cpuThreads: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: threads.intraOp,
      executionMode: threads.mode,
      ...(threads.mode === 'parallel' ? { interOpNumThreads: threads.interOp } : {}),
    };
    const cacheFor = (provider: string, k: 'cpu' | 'gpu') =>
      compile
        ? { path: compiledPath(join(this.options.cacheDir, 'compiled'), digest, provider, this.deviceClassOf(k, deviceId, provider), ortVersion()) }
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
          const c = await createCompiledSession(path, { ...base, executionProviders: [{ name, deviceId: deviceIndex } as never] }, cacheFor(name, 'gpu'));
          return { ...c, executionProvider: name, fallbackFrom: undefined };
        } catch (err) {
          fallbackFrom ??= name;
          fallbackReason ??= (err as Error).message;
          this.logger.warn({ provider: name, err: (err as Error).message }, 'GPU execution provider unavailable; trying the next');
        }
      }
    }
    const c = await createCompiledSession(path, { ...cpuThreads, executionProviders: ['cpu'] }, cacheFor('cpu', 'cpu'));
    return { ...c, executionProvider: 'cpu', fallbackFrom, fallbackReason };
  }
}
