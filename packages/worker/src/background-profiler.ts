// Profiles a dynamic-shape model's input shapes in the background while its replica serves: the
// first request of a new shape queues it (shape-profiles.ts decides which runs next, one at a
// time per worker), and each profile run waits until the replica is idle, then holds the replica's
// batches back until its next pass: a timed run follows its untimed one (on a GPU a served batch
// of another size between them would make the timed run pay a plan rebuild), and further timed
// runs of known length follow within the same hold while they add up to at most one run's cap
// (BACKGROUND_MAX_RUN_MS), so serving waits for at most the hold's first run pair and that cap.
// With `profile.buckets`, a request's shape is first mapped to its bucket's (profiled at the bound).
// A profile is stored per (digest, device class, onnxruntime version, shape) for the next replica.
import type { ModelSession } from './session-thread.js';
import {
  shapeKey,
  type BatchingOptions,
  type DeploySpec,
  type ModelProfile,
  type ProfileShape,
  type ReplicaProfileSummary,
} from '@flotilla/protocol';
import type { Logger, ProfileStore } from '@flotilla/bus';
import type { ModelSignature } from './model-io.js';
import { BACKGROUND_MAX_RUN_MS, DEFAULT_MAX_PROFILE_BATCH, GATE_STOPPED, profileSession, storable } from './profiler.js';
import { summarizeShapes } from './session-plan.js';
import {
  BACKGROUND_WALL_FACTOR,
  DEFAULT_MAX_SHAPES,
  DEFAULT_SHAPE_BUDGET_MS,
  ShapeBook,
  bucketShape,
  keepHolding,
  itemBytes,
  maxProfileBatch,
  shapeOf,
} from './shape-profiles.js';

/** How often a waiting profile run checks whether its replica is idle, ms. */
const IDLE_POLL_MS = 1;
/**
 * Most of its replica's time a background profile may take: it runs only when the replica is idle,
 * and only while its runs add up to at most this share of the time since it began (under constant
 * load its budget is spent in budget / share of wall time, within the BACKGROUND_WALL_FACTOR cap).
 */
export const MAX_PROFILE_SHARE = 0.15;

export interface ShapeProfilerDeps {
  session: ModelSession;
  signature: ModelSignature;
  spec: DeploySpec;
  deviceClass: string;
  ortVersion: string;
  latencySloMs: number;
  store: ProfileStore;
  logger: Logger;
  /** Whether the replica runs on a GPU (a profile without a measured change of batch size pads there). */
  onGpu: boolean;
  /** The worker's profiling turn: profiles run one at a time per worker. */
  oneAtATime: <T>(f: () => Promise<T>) => Promise<T>;
  /** What profileSession needs of the session's memory. */
  memory: { sessionBytes: number; rssBaseline: number; fileBytes: number; deviceBytes?: () => Promise<number | undefined> };
}

export class ShapeProfiler {
  readonly book: ShapeBook;
  /** Whether the replica is idle (nothing queued or running); set by the replica. */
  private quiet: () => boolean = () => true;
  /** Batches the replica has run (the profile's own runs are not batches). */
  private batches: () => number = () => 0;
  /** Holds the replica's batches back (true) or lets them go (false); set by the replica. */
  private hold: (on: boolean) => void = () => {};
  private holding = false;
  private running?: Promise<void>;
  private closed = false;
  /** The session profiles run on (replaced once if thread tuning at load opened a better one). */
  private session: ModelSession;

  constructor(private readonly deps: ShapeProfilerDeps) {
    this.book = new ShapeBook({ maxShapes: deps.spec.profile.maxShapes ?? DEFAULT_MAX_SHAPES, onGpu: deps.onGpu });
    this.session = deps.session;
  }

  /** After thread tuning at load (before serving): later profiles run on the tuned session. */
  useSession(session: ModelSession): void {
    this.session = session;
  }

  /** The first of `samples` (as profiled: its bucket's) with a profile, and the batch size it chose. */
  chosenFor(samples: ProfileShape[]): { shape: ProfileShape; batch: number } | undefined {
    for (const sample of samples) {
      const shape = this.profiled(sample);
      const p = this.book.get(shapeKey(shape))?.profile;
      if (p) return { shape, batch: p.chosen.maxBatchSize };
    }
    return undefined;
  }

  /** The shape whose profile requests of `shape` share: its bucket's, or itself without buckets. */
  private profiled(shape: ProfileShape): ProfileShape {
    const buckets = this.deps.spec.profile.buckets;
    return buckets ? bucketShape(this.deps.signature, shape, buckets) : shape;
  }

  /** Longest a background profile may hold its serving replica, ms: one run, or one hold of several. */
  private get maxRunMs(): number {
    return Math.min(BACKGROUND_MAX_RUN_MS, this.deps.latencySloMs);
  }

  private get budgetMs(): number {
    return this.deps.spec.profile.budgetMs ?? DEFAULT_SHAPE_BUDGET_MS;
  }

  /** The stored profile of one shape (with this deployment's objective), if any. */
  async stored(key: string): Promise<ModelProfile | undefined> {
    const { spec, deviceClass, ortVersion, latencySloMs } = this.deps;
    const p = await this.deps.store.get(spec.digest, deviceClass, ortVersion, key).catch(() => undefined);
    return p && p.latencySloMs === latencySloMs ? p : undefined;
  }

  /**
   * At load, before serving (inside the worker's profiling turn): the shapes stored for this
   * model and device class (with buckets, only those that are a bucket's), then each shape the
   * deployment names (its bucket's), from the store or measured now.
   */
  async preload(samples: ProfileShape[]): Promise<void> {
    const { spec, deviceClass, ortVersion, latencySloMs } = this.deps;
    const known = await this.deps.store.shapes(spec.digest, deviceClass, ortVersion, this.book.size + 64).catch(() => []);
    for (const p of known) {
      if (p.shape && p.latencySloMs === latencySloMs && this.profiled(p.shape) === p.shape)
        this.book.add({ ...p, shape: p.shape }, 'cache', Date.now());
    }
    for (const shape of samples.map((s) => this.profiled(s))) {
      const key = shapeKey(shape);
      if (this.book.get(key)) continue;
      const p = await this.measure(shape);
      if (p.rows.length) {
        this.book.add({ ...p, shape }, 'measured', Date.now());
        await this.put(p);
      }
    }
  }

  /**
   * Called by the replica once it exists: how to tell that it is idle, how many batches it has run,
   * and how to hold its batches back while a profile run pair is under way.
   */
  attach(quiet: () => boolean, batches: () => number = () => 0, hold: (on: boolean) => void = () => {}): void {
    this.quiet = quiet;
    this.batches = batches;
    this.hold = hold;
  }

  private setHold(on: boolean): void {
    if (on === this.holding) return;
    this.holding = on;
    this.hold(on);
  }

  /** A request of batch key `key` was accepted: counts it and starts a background profile when one is due. */
  observe(key: string, inputs: Readonly<Record<string, { dims: readonly number[] }>>): void {
    if (this.closed) return;
    const shape = this.profiled(shapeOf(this.deps.signature, inputs));
    this.book.see(shapeKey(shape), shape, Date.now(), key);
    this.kick();
  }

  /** Batching for requests of `key` (undefined: the replica's defaults). */
  batchingFor(key: string, deployment: BatchingOptions): { maxBatchSize: number; maxQueueDelayMs: number; padTo?: number } | undefined {
    return this.book.batchingFor(key, deployment);
  }

  summary(base: ReplicaProfileSummary): ReplicaProfileSummary {
    return summarizeShapes(base, {
      summaries: this.book.summaries(),
      footprint: this.book.footprint(),
      itemsPerSec: this.book.itemsPerSec(),
    });
  }

  /** Stops profiling: the running profile stops at its next run; resolves once it has (before the session is released). */
  async close(): Promise<void> {
    this.closed = true;
    await this.running;
  }

  private kick(): void {
    if (this.running || this.closed) return;
    const key = this.book.next();
    if (key === null) return;
    this.book.start(key);
    this.running = this.deps
      .oneAtATime(() => this.profileInBackground(key))
      .catch((err: unknown) => {
        this.book.fail(key, `profile failed: ${(err as Error).message}`);
        this.deps.logger.warn({ err: (err as Error).message, model: this.deps.spec.name, shape: key }, 'shape profile failed');
      })
      .finally(() => {
        this.running = undefined;
        this.kick();
      });
  }

  private async profileInBackground(key: string): Promise<void> {
    const entry = this.book.get(key)!;
    if (this.closed) return this.book.fail(key, 'replica closed before its profile ran');
    const stored = await this.stored(key);
    if (stored) return this.book.settle(key, stored, 'cache', 0);
    const began = performance.now();
    const wallCap = began + this.budgetMs * BACKGROUND_WALL_FACTOR;
    // Under load the queue empties between batches: each run also waits until profiling has had at
    // most its share of the time since it began (MAX_PROFILE_SHARE), so it takes at most that share
    // of a busy replica's time, and a request waits for at most one hold. A replica that served
    // nothing since the profile's last hold (no traffic: nobody waited) keeps no share.
    // longest: the longest stretch of runs between two passes (what a served request may have waited).
    const duty = { inRuns: 0, passedAt: undefined as number | undefined, granted: 0, longest: 0, servedAtHold: -1 };
    const capMs = this.maxRunMs;
    const p = await this.measure(entry.shape, async (nextRunMs) => {
      const t0 = performance.now();
      if (duty.passedAt !== undefined) {
        duty.inRuns += t0 - duty.passedAt; // the run since the last pass
        duty.longest = Math.max(duty.longest, t0 - duty.passedAt);
      }
      // Timed runs of known length follow the hold's first run while they add up to at most one
      // run's cap (on a GPU a whole batch size, with one plan rebuild instead of one per run).
      if (this.holding && !this.closed && t0 <= wallCap && nextRunMs !== undefined && keepHolding(duty.granted, nextRunMs, capMs)) {
        duty.granted += nextRunMs;
        duty.passedAt = t0;
        return 0;
      }
      this.setHold(false); // the replica serves what queued meanwhile before the next pass
      // After the loop's poll phase: what arrived during the hold is read (and queued) first.
      await new Promise((r) => setImmediate(r));
      for (;;) {
        const now = performance.now();
        if (this.closed || now > wallCap) return null;
        const alone = this.batches() === duty.servedAtHold;
        if (this.quiet() && (alone || duty.inRuns <= MAX_PROFILE_SHARE * (now - began))) break;
        await new Promise((r) => setTimeout(r, IDLE_POLL_MS));
      }
      // Held from here (synchronously after seeing it idle) until the next pass or the profile's end.
      this.setHold(true);
      duty.servedAtHold = this.batches();
      duty.granted = 0;
      duty.passedAt = performance.now();
      return duty.passedAt - t0;
    }).finally(() => this.setHold(false));
    const gaveUp = p.stoppedBecause.startsWith(GATE_STOPPED);
    if (!p.rows.length) return this.book.fail(key, `no run measured: ${this.closed ? 'replica closed' : 'the replica stayed busy'}`);
    this.book.settle(key, p, 'measured', p.tookMs);
    this.deps.logger.info(
      {
        model: this.deps.spec.name,
        shape: key,
        chosen: p.chosen,
        tookMs: p.tookMs,
        wallMs: Math.round(performance.now() - began),
        inRunsMs: Math.round(duty.inRuns),
        longestRunMs: Math.round(duty.longest),
        gaveUp,
        stoppedBecause: p.stoppedBecause,
        rows: p.rows.map((r) => ({ batch: r.batch, runs: r.runs, p50Ms: r.p50Ms, p99Ms: r.p99Ms })),
      },
      'shape profile',
    );
    // A sweep cut short by a busy replica serves this replica, but is not stored as the shape's profile.
    if (storable(p.stoppedBecause)) await this.put(p);
  }

  private measure(shape: ProfileShape, gate?: (nextRunMs?: number) => Promise<number | null>): Promise<ModelProfile> {
    const { spec, signature } = this.deps;
    const maxBatch = maxProfileBatch(
      itemBytes(signature, shape),
      spec.profile.maxBatch ?? spec.batching.maxBatchSize ?? DEFAULT_MAX_PROFILE_BATCH,
    );
    // Serving runs between the profile's runs: each timed run after one is preceded by an untimed one.
    let seen = this.batches();
    const othersRan = () => {
      const n = this.batches();
      const ran = n !== seen;
      seen = n;
      return ran;
    };
    return profileSession(
      this.session,
      signature,
      { digest: spec.digest, deviceClass: this.deps.deviceClass, ...this.deps.memory },
      {
        budgetMs: this.budgetMs,
        latencySloMs: this.deps.latencySloMs,
        maxBatch,
        shape,
        // While serving, no single run may hold the replica longer than this (at load, nothing waits).
        ...(gate ? { gate, othersRan, maxRunMs: this.maxRunMs } : {}),
      },
    );
  }

  private async put(p: ModelProfile): Promise<void> {
    await this.deps.store
      .put(p)
      .catch((err: unknown) => this.deps.logger.warn({ err: (err as Error).message }, 'shape profile not stored'));
  }
}
