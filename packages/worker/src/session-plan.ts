// How a new replica's session opens, pure: the decisions SessionLoader.open carries out, over plain
// data (the deployment, the worker's flags, the stored profile, what opening the session found).
// In the order open() meets them: refuse oversized thread pools, look the profile up before
// opening?, thread settings, compile cache, where the profile comes from, what else to measure,
// and once settled: the profile summary, the batching and whether to warm up.
import {
  BadRequestError,
  type BatchingOptions,
  type DeploySpec,
  type ModelProfile,
  type ReplicaProfileSummary,
  type SessionHost,
  type SessionHostChoice,
  type ShapeProfileSummary,
  type ThreadSettings,
} from '@flotilla/protocol';
import { profilePadTo } from './batch-size.js';
import { DEFAULT_PROFILE_BUDGET_MS } from './profiler.js';
import { assertThreadsFit, sameThreads } from './thread-choice.js';

export type ThreadSource = NonNullable<ReplicaProfileSummary['threads']>['source'];

/** The onnxruntime options of a CPU session (what onnxruntime-node's SessionOptions takes). */
export interface CpuSessionOptions {
  intraOpNumThreads: number;
  executionMode: 'sequential' | 'parallel';
  interOpNumThreads?: number;
  extra?: { session: { intra_op: { allow_spinning: '0' }; inter_op: { allow_spinning: '0' } } };
}

/**
 * A CPU session's options from its thread settings. Unless `spinning`, the thread pools sleep
 * instead of spinning between parallel sections: onnxruntime spins by default, which wins alone
 * on a machine but takes the CPU that a serving worker's NATS client, event loop and broker need
 * on shared cores (`pnpm bench`, worker at 2 threads unpinned on 2 cores: wide-mlp 5,549 / 5,652
 * items/s spinning vs 6,027 / 5,918 not; convnet 1,350 / 1,425 vs 1,395 / 1,559). A single
 * thread has no pool to spin.
 */
export function cpuSessionOptions(threads: ThreadSettings, spinning: boolean): CpuSessionOptions {
  const pooled = threads.intraOp > 1 || (threads.mode === 'parallel' && threads.interOp > 1);
  return {
    intraOpNumThreads: threads.intraOp,
    executionMode: threads.mode,
    ...(threads.mode === 'parallel' ? { interOpNumThreads: threads.interOp } : {}),
    ...(!spinning && pooled ? { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } } : {}),
  };
}

/** Thread settings a session opens with, and where they came from. */
export interface ThreadPlan {
  settings: ThreadSettings;
  source: ThreadSource;
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
    throw new BadRequestError(`the worker's --threads ${workerThreads} exceeds its ${cores} usable core${cores === 1 ? '' : 's'}`, {
      data: { threads: workerThreads, usableCores: cores },
    });
  }
}

/**
 * Whether the stored profile is looked up before the session opens: on a CPU replica with
 * profiling on, whose stored thread settings and compile finding shape the session it opens
 * (so with a stored profile it opens once, already tuned). A GPU replica looks it up once open.
 */
export function lookUpBeforeOpen(spec: Pick<DeploySpec, 'profile'>, kind: 'cpu' | 'gpu'): boolean {
  return spec.profile.enabled !== false && kind === 'cpu';
}

/**
 * Thread settings to open with: the deployment's, the worker's `--threads` (0: unset), the stored
 * profile's, else every usable core (the profile may tune them down later).
 */
export function chooseThreadPlan(f: {
  deployment?: ThreadSettings;
  workerThreads: number;
  stored?: ModelProfile['threads'];
  usableCores: number;
}): ThreadPlan {
  if (f.deployment) return { settings: f.deployment, source: 'deployment' };
  if (f.workerThreads > 0) return { settings: { intraOp: f.workerThreads, interOp: 1, mode: 'sequential' }, source: 'worker' };
  const t = f.stored;
  if (t) return { settings: { intraOp: t.intraOp, interOp: t.interOp, mode: t.mode }, source: 'profile' };
  return { settings: { intraOp: f.usableCores, interOp: 1, mode: 'sequential' }, source: 'default' };
}

/** Usable cores from which `auto` may host a CPU session on a thread (below it the loop and the run share them). */
export const THREAD_HOST_MIN_CORES = 4;
/**
 * Run time at the chosen batch from which `auto` hosts a session on a thread, ms. Crossing to the
 * thread and back costs ≈ 0.17 ms a request at concurrency 1 here (`OVERHEAD_SESSION_HOST`, mlp:
 * p50 0.44–0.49 → 0.61–0.66 ms): worth it only where a run would hold the loop several times that.
 */
export const THREAD_HOST_MIN_RUN_MS = 1;

/** The median run time at the profile's chosen batch size, ms (undefined without a profile row for it). */
export function chosenRunMs(p: Pick<ModelProfile, 'rows' | 'chosen'> | undefined): number | undefined {
  return p?.rows.find((r) => r.batch === p.chosen.maxBatchSize)?.p50Ms;
}

/**
 * Where the session runs: the deployment's choice, else the worker's; `auto` puts it on a thread
 * where the event loop would otherwise wait on long runs and has a core of its own meanwhile: a
 * GPU, or a CPU worker with THREAD_HOST_MIN_CORES or more usable cores, and a model whose run at
 * its chosen batch takes THREAD_HOST_MIN_RUN_MS or more (`runMs`, from its profile). Without a
 * run time (no profile yet, profiling off, a dynamic-shape model) it stays on the event loop.
 */
export function chooseSessionHost(f: {
  deployment?: SessionHostChoice;
  worker: SessionHostChoice;
  kind: 'cpu' | 'gpu';
  usableCores: number;
  runMs?: number;
}): SessionHost {
  const choice = f.deployment ?? f.worker;
  if (choice !== 'auto') return choice;
  const spareCore = f.kind === 'gpu' || f.usableCores >= THREAD_HOST_MIN_CORES;
  return spareCore && f.runMs !== undefined && f.runMs >= THREAD_HOST_MIN_RUN_MS ? 'thread' : 'event-loop';
}

/**
 * Host memory a CPU session on a thread of its own takes beyond one on the event loop: the
 * thread's V8 isolate and its copy of onnxruntime's binding (RSS after a create, this VM,
 * 2026-11-30: mlp 25.9 → 36.2 MiB, convnet 107.1 → 117.2 MiB).
 */
export const THREAD_SESSION_BYTES = 10 * 1024 * 1024;

/**
 * The footprint a replica is charged and where it comes from (undefined: nothing measured): its
 * profile's, else what its open measured. A profile is measured on the session's first host, the
 * event loop unless the worker or the deployment said `thread`, so a CPU session that runs on a
 * thread (moved once profiled, or opened there from a stored profile) adds the thread's own memory
 * to it, unless the profile says it measured a session on a thread (`profileHost`: its figures
 * include the thread already; profiles stored before 2026-12-01 do not say, and are taken as the
 * event loop's, 10 MiB too many the safe way); an open measured on the thread includes it already.
 */
export function replicaFootprint(f: {
  profileBytes: number;
  measuredBytes?: number;
  host: SessionHost;
  onCpu: boolean;
  /** Where the profile's session ran (absent: the event loop). */
  profileHost?: 'thread';
}): { bytes: number; by: 'profile' | 'measured' } | undefined {
  const addThread = f.host === 'thread' && f.onCpu && f.profileHost !== 'thread';
  if (f.profileBytes > 0) return { bytes: f.profileBytes + (addThread ? THREAD_SESSION_BYTES : 0), by: 'profile' };
  return f.measuredBytes === undefined ? undefined : { bytes: f.measuredBytes, by: 'measured' };
}

/** Compile cache: the deployment's `compile` when set, else what the stored profile found, else on. */
export function useCompileCache(deployment: boolean | undefined, stored: Pick<ModelProfile, 'compile'> | undefined): boolean {
  return deployment ?? stored?.compile?.helps ?? true;
}

/** Where a replica's profile came from, and what it says. */
export type ProfileOutcome =
  | { source: 'disabled'; reason: string }
  /** `unbatched`: the model has no batch axis, so it runs one item at a time. */
  | { source: 'skipped'; reason: string; unbatched: boolean }
  | { source: 'cache' | 'measured'; profile: ModelProfile }
  /** Dynamic non-batch dims (`dims`): profiled per input shape (ShapeBook), at load for the deployment's shapes, then as traffic brings them. */
  | { source: 'per-shape'; dims: string[]; reason: string };

/**
 * Where the profile comes from, once the session is open and its signature known: settled now
 * (profiling disabled, a model without a batch axis), per input shape (dynamic non-batch dims),
 * or `profile`: the stored profile of its device class, else one measured now, in the worker's
 * profiling turn.
 */
export function planProfile(f: {
  enabled: boolean;
  batchAxis: boolean;
  /** The model's dynamic non-batch dims by name (shape-profiles.ts dynamicDims). */
  dynamicDims: string[];
  /** The deployment's `profile.buckets` (bucket upper bounds per dim name). */
  buckets?: Readonly<Record<string, readonly number[]>>;
}): Extract<ProfileOutcome, { source: 'disabled' | 'skipped' | 'per-shape' }> | { source: 'profile' } {
  if (!f.enabled) return { source: 'disabled', reason: 'profiling disabled by the deployment' };
  if (!f.batchAxis) return { source: 'skipped', reason: 'model has no batch axis: runs unbatched', unbatched: true };
  if (f.dynamicDims.length) {
    const named = Object.entries(f.buckets ?? {});
    const used = named.filter(([n]) => f.dynamicDims.includes(n)).map(([n, b]) => `${n} ≤ ${b.join('/')}`);
    const unknown = named.filter(([n]) => !f.dynamicDims.includes(n)).map(([n]) => n);
    const how = used.length ? `per bucket (${used.join(', ')}) and per shape above` : 'per shape';
    return {
      source: 'per-shape',
      dims: f.dynamicDims,
      reason:
        `dynamic dims ${f.dynamicDims.join(', ')}: profiled ${how} as traffic arrives` +
        (unknown.length ? `; buckets for ${unknown.join(', ')} ignored: not a dynamic dim of the model` : ''),
    };
  }
  return { source: 'profile' };
}

/**
 * Whether the profiling turn looks the stored profile up (again): the one read before the open
 * still applies when the session opened on the CPU class it was read for (a GPU replica that fell
 * back to CPU, or one read before another load stored it, reads again).
 */
export function needsLookup(deviceClass: string, cpuClass: string, before: ModelProfile | undefined): boolean {
  return deviceClass !== cpuClass || !before;
}

/** What else a replica measures beside its batch sweep. */
export interface MeasurePlan {
  /** Batch size to measure thread settings at (CPU, settings not chosen by anyone), or null: keep them. */
  tuneThreadsAt: number | null;
  /** Time creates from the compile cache against plain ones (first load, `compile` unset, cheap enough). */
  compareCompile: boolean;
}

/**
 * Thread settings are tuned on CPU when nobody chose them (not the deployment, the worker's flag
 * or a stored profile) and the deployment allows it, at the batch size the replica will run. The
 * compile cache is compared when the deployment leaves `compile` unset, this load wrote the cache
 * (a miss) and four creates fit in the profile's budget.
 */
export function planMeasure(f: {
  onCpu: boolean;
  threadSource: ThreadSource;
  spec: Pick<DeploySpec, 'profile' | 'compile' | 'batching'>;
  opened: { compile: 'hit' | 'miss' | 'off'; createMs: number };
  chosenBatch: number;
}): MeasurePlan {
  const tune = f.onCpu && f.threadSource === 'default' && f.spec.profile.tuneThreads !== false;
  return {
    tuneThreadsAt: tune ? (f.spec.batching.maxBatchSize ?? f.chosenBatch) : null,
    compareCompile:
      f.spec.compile === undefined &&
      f.opened.compile === 'miss' &&
      f.opened.createMs * 4 <= (f.spec.profile.budgetMs ?? DEFAULT_PROFILE_BUDGET_MS),
  };
}

/** Share of a plain create's time the compile cache must save to be kept (5 %). */
export const COMPILE_MIN_SAVING = 0.05;

/** Whether the compile cache helps, from the best plain and best cached create times, ms. */
export function judgeCompile(plainMs: number, compiledMs: number): NonNullable<ModelProfile['compile']> {
  // Judged on the times as stored, so that the verdict always follows from the record.
  const plain = +plainMs.toFixed(1);
  const compiled = +compiledMs.toFixed(1);
  const helps = compiled < plain * (1 - COMPILE_MIN_SAVING);
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  return {
    plainCreateMs: plain,
    compiledCreateMs: compiled,
    helps,
    reason: helps
      ? `the cached graph opens in ${ms(compiledMs)} vs ${ms(plainMs)} plain: compile on`
      : `the cached graph opens in ${ms(compiledMs)} vs ${ms(plainMs)} plain (< ${COMPILE_MIN_SAVING * 100} % saved): compile off`,
  };
}

/**
 * Items/s a replica serves at the profile's chosen batch size: as measured with the thread
 * setting it runs with, when the profile's thread rows have it, else from the batch sweep.
 */
export function servedRate(p: Pick<ModelProfile, 'rows' | 'chosen' | 'threads'>, threads: ThreadSettings | undefined): number {
  const tuned = threads && p.threads?.rows.find((r) => sameThreads(r, threads));
  return tuned?.itemsPerSec ?? p.rows.find((r) => r.batch === p.chosen.maxBatchSize)?.itemsPerSec ?? 0;
}

/**
 * The replica's profile summary (heartbeats, the `loaded` event): zeros when not profiled; the
 * time spent only when measured now (batch sweep plus thread tuning); thread settings on CPU.
 */
export function summarize(outcome: ProfileOutcome, f: { deviceClass: string; onCpu: boolean; threads: ThreadPlan }): ReplicaProfileSummary {
  const p = 'profile' in outcome ? outcome.profile : undefined;
  return {
    source: outcome.source,
    deviceClass: f.deviceClass,
    reason: 'profile' in outcome ? outcome.profile.chosen.reason : outcome.reason,
    replicaBytes: p?.memory.replicaBytes ?? 0,
    itemsPerSec: p ? servedRate(p, f.threads.source === 'profile' ? f.threads.settings : undefined) : 0,
    tookMs: p && outcome.source === 'measured' ? +(p.tookMs + (p.threads?.tookMs ?? 0)).toFixed(1) : 0,
    ...(f.onCpu ? { threads: { ...f.threads.settings, source: f.threads.source } } : {}),
    ...(outcome.source === 'per-shape' ? { dynamicDims: outcome.dims } : {}),
  };
}

/**
 * The summary of a replica profiled per shape, as its shapes settle: the footprint is the largest
 * any profiled shape needs (what placement and the memory charge use), the rate that of the most
 * requested profiled shape, the time what this replica spent profiling.
 */
export function summarizeShapes(
  base: ReplicaProfileSummary,
  shapes: { summaries: ShapeProfileSummary[]; footprint: number; itemsPerSec: number },
): ReplicaProfileSummary {
  const profiled = shapes.summaries.filter((s) => s.state === 'measured' || s.state === 'cache').length;
  const why = base.reason.replace(/ \(\d+ of \d+ shapes? profiled\)$/, '');
  return {
    ...base,
    reason: `${why} (${profiled} of ${shapes.summaries.length} shape${shapes.summaries.length === 1 ? '' : 's'} profiled)`,
    replicaBytes: Math.max(base.replicaBytes, shapes.footprint),
    itemsPerSec: shapes.itemsPerSec,
    tookMs: +shapes.summaries.reduce((n, s) => n + s.tookMs, 0).toFixed(1),
    shapes: shapes.summaries,
  };
}

/**
 * Batching the replica runs with: the deployment's settings, each unset one from the profile's
 * choice; one item at a time for a model without a batch axis; the deployment's alone otherwise
 * (the replica's defaults fill the rest).
 */
export function batchingFor(outcome: ProfileOutcome, deployment: BatchingOptions, onGpu = false): BatchingOptions {
  switch (outcome.source) {
    case 'cache':
    case 'measured': {
      const { chosen } = outcome.profile;
      return {
        ...deployment,
        maxBatchSize: deployment.maxBatchSize ?? chosen.maxBatchSize,
        maxQueueDelayMs: deployment.maxQueueDelayMs ?? chosen.maxQueueDelayMs,
        // Padding as the profile found (profilePadTo) unless the deployment says otherwise.
        ...(deployment.padBatches === undefined && profilePadTo(chosen, onGpu) !== undefined ? { padBatches: true } : {}),
      };
    }
    case 'skipped':
      return outcome.unbatched ? { ...deployment, maxBatchSize: 1 } : { ...deployment };
    case 'disabled':
    case 'per-shape': // per shape: the replica asks its ShapeBook (batchingFor) for each batch's key
      return { ...deployment };
  }
}

/**
 * A session that was not just profiled runs once before it serves (Triton's model warm-up), so
 * the first request does not pay the first run's one-off costs; not when the deployment turns it
 * off, nor for a model with dynamic dims (no shape to run it at; shapes given at load were just
 * profiled, which warmed it).
 */
export function shouldWarmUp(source: ProfileOutcome['source'], warmup: boolean, dynamicDims: readonly string[]): boolean {
  return source !== 'measured' && warmup && dynamicDims.length === 0;
}
