// Per-shape profiling of a model with dynamic non-batch dims (an OCR recogniser's width, a
// detector's H and W, a transformer's sequence length), pure: which input shapes a replica has
// seen, which one to profile next (one at a time, the most requested first, a bounded number per
// replica), the bucket a shape falls in when the deployment sets buckets (`profile.buckets`), the
// batching each shape's requests run with, and the footprint the replica is charged.
// No timers and no I/O: background-profiler.ts runs the profiles and tells the book what they found.
import {
  DTYPES,
  MAX_PROFILED_SHAPES,
  elementCount,
  shapeKey,
  shapeKeyText,
  type BatchingOptions,
  type ModelProfile,
  type ProfileShape,
  type ShapeProfileSummary,
} from '@flotilla/protocol';
import { profilePadTo } from './batch-size.js';
import type { ModelSignature } from './model-io.js';

/** Shapes one replica profiles in the background (deployment `profile.maxShapes`). */
export const DEFAULT_MAX_SHAPES = 8;
/** Time budget of one shape's profile, ms, when the deployment sets no `profile.budgetMs`. */
export const DEFAULT_SHAPE_BUDGET_MS = 1000;
/**
 * A background profile only runs while its replica is idle, so its wall time may exceed its
 * budget; past this multiple of the budget it stops with what it has (the replica stayed busy).
 */
export const BACKGROUND_WALL_FACTOR = 10;
/** Largest synthetic input one profile run feeds the session, bytes (64 MiB): bounds the batch sizes tried on large shapes. */
export const MAX_PROFILE_FEED_BYTES = 64 * 1024 * 1024;
/** Exact request shapes a book remembers the bucket of (beyond: their requests run on the defaults). */
export const MAX_BUCKET_ALIASES = 4096;

/** Bucket upper bounds per symbolic dim (deployment `profile.buckets`): `{ seq: [16, 32, 64] }`, ascending. */
export type ShapeBuckets = Readonly<Record<string, readonly number[]>>;

export type ShapeState = ShapeProfileSummary['state'];

export interface ShapeEntry {
  key: string;
  shape: ProfileShape;
  state: ShapeState;
  /** Requests of this shape seen since the load. */
  requests: number;
  firstSeenAt: number;
  profile?: ModelProfile;
  /** Time its profile took on this replica, ms (0: read from the store). */
  tookMs: number;
  reason: string;
}

/**
 * The model's dynamic non-batch dims by their declared names (`['H', 'W']`, `['seq']`); an
 * unnamed one is `input[axis]`.
 */
export function dynamicDims(sig: ModelSignature): string[] {
  const out: string[] = [];
  for (const s of sig.inputs) {
    s.declared.forEach((d, i) => {
      if ((sig.batchAxis && i === 0) || typeof d === 'number') return;
      const name = d ?? `${s.name}[${i}]`;
      if (!out.includes(name)) out.push(name);
    });
  }
  return out;
}

/** The name of one non-batch dim as dynamicDims and `profile.buckets` spell it. */
function dimName(sig: ModelSignature, input: string, axis: number): string | undefined {
  const d = sig.inputs.find((s) => s.name === input)?.declared[axis];
  return typeof d === 'number' ? undefined : (d ?? `${input}[${axis}]`);
}

/**
 * The shape whose profile and batching requests of `shape` use: every dim named in `buckets`
 * raised to the smallest bound ≥ it; a dim above the largest bound, and dims not named, stay
 * exact. Returns `shape` itself when nothing changes.
 */
export function bucketShape(sig: ModelSignature, shape: ProfileShape, buckets: ShapeBuckets): ProfileShape {
  const lead = sig.batchAxis ? 1 : 0;
  let changed = false;
  const out: ProfileShape = {};
  for (const [input, dims] of Object.entries(shape)) {
    out[input] = dims.map((d, i) => {
      const name = dimName(sig, input, i + lead);
      const bound = name === undefined ? undefined : buckets[name]?.find((b) => b >= d);
      if (bound === undefined || bound === d) return d;
      changed = true;
      return bound;
    });
  }
  return changed ? out : shape;
}

/** The names in `buckets` that are not dynamic non-batch dims of the model (they bucket nothing). */
export function unknownBucketDims(sig: ModelSignature, buckets: ShapeBuckets): string[] {
  const dims = dynamicDims(sig);
  return Object.keys(buckets).filter((n) => !dims.includes(n));
}

/** A request's shape: every input's dims past the batch axis, in the model's input order (its key is the batcher's). */
export function shapeOf(sig: ModelSignature, dims: Readonly<Record<string, { dims: readonly number[] }>>): ProfileShape {
  const shape: ProfileShape = {};
  for (const s of sig.inputs) shape[s.name] = [...(dims[s.name]?.dims ?? []).slice(sig.batchAxis ? 1 : 0)];
  return shape;
}

/**
 * A shape given with full dims (`deploy --sample-input`: batch dim included) checked against the
 * signature: its non-batch dims, or why it does not fit the model.
 */
export function sampleShape(sig: ModelSignature, full: Readonly<Record<string, readonly number[]>>): ProfileShape | string {
  const names = sig.inputs.map((s) => s.name);
  const extra = Object.keys(full).filter((n) => !names.includes(n));
  if (extra.length) return `unknown input(s) ${extra.join(', ')} (the model has ${names.join(', ')})`;
  const shape: ProfileShape = {};
  for (const s of sig.inputs) {
    const dims = full[s.name];
    if (!dims) return `no dims for input '${s.name}'`;
    if (dims.length !== s.shape.length) return `input '${s.name}' has rank ${s.shape.length}, the sample ${dims.length}`;
    const bad = s.shape.findIndex((d, i) => (d !== null && d !== dims[i] && !(sig.batchAxis && i === 0)) || (dims[i]! < 1 && i > 0));
    if (bad >= 0) return `input '${s.name}' dim ${bad} must be ${s.shape[bad] ?? '≥ 1'}, the sample has ${dims[bad]}`;
    shape[s.name] = dims.slice(sig.batchAxis ? 1 : 0);
  }
  return shape;
}

/** Bytes of one item (one row along the batch axis) of every input at `shape`. */
export function itemBytes(sig: ModelSignature, shape: ProfileShape): number {
  return sig.inputs.reduce((n, s) => n + elementCount(shape[s.name] ?? []) * DTYPES[s.dtype].bytes, 0);
}

/** Largest batch size a profile of a shape tries: `maxBatch`, halved until a run's input fits `maxFeedBytes` (at least 1). */
export function maxProfileBatch(bytesPerItem: number, maxBatch: number, maxFeedBytes = MAX_PROFILE_FEED_BYTES): number {
  let b = Math.max(1, maxBatch);
  while (b > 1 && b * bytesPerItem > maxFeedBytes) b = Math.floor(b / 2);
  return b;
}

/**
 * Whether a background profile that holds its replica's batches keeps the hold for one more timed
 * run of `nextRunMs`: only while the runs granted so far in this hold plus that one stay within
 * `capMs` (a run's cap, the longest a request should wait for profiling, beyond the hold's first run).
 */
export function keepHolding(grantedMs: number, nextRunMs: number, capMs: number): boolean {
  return grantedMs + nextRunMs <= capMs;
}

export interface ShapeBookOptions {
  /** Shapes profiled per replica (beyond: `skipped`, they run on the defaults). */
  maxShapes: number;
  /** Whether the replica runs on a GPU (profilePadTo: padding where a profile did not measure a change of batch size). */
  onGpu?: boolean;
  /** Shapes tracked at all (a flood of distinct shapes must not grow the replica's memory). */
  maxTracked?: number;
}

/** The shapes one replica has seen and what is known of each. */
export class ShapeBook {
  private readonly entries = new Map<string, ShapeEntry>();
  /** Exact request shapes (batch keys) → the bucket's key they share a profile with. */
  private readonly aliases = new Map<string, string>();
  private readonly maxTracked: number;

  private readonly onGpu: boolean;

  constructor(private readonly options: ShapeBookOptions) {
    this.maxTracked = options.maxTracked ?? MAX_PROFILED_SHAPES;
    this.onGpu = options.onGpu ?? false;
  }

  get(key: string): ShapeEntry | undefined {
    return this.entries.get(key);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Shapes profiled or being profiled (what counts against maxShapes). */
  private get profiledCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.state !== 'skipped') n++;
    return n;
  }

  /**
   * A request of `key` arrived: counts it; a new shape is queued for a profile while fewer than
   * maxShapes are, else `skipped` (served on the defaults); past maxTracked, not tracked at all.
   * With buckets, `key`/`shape` are the bucket's and `batchKey` the request's exact shape, which
   * from then on takes the bucket's batching (at most MAX_BUCKET_ALIASES exact shapes).
   */
  see(key: string, shape: ProfileShape, now: number, batchKey = key): ShapeEntry | undefined {
    const known = this.entries.get(key);
    if (known) {
      known.requests++;
      this.alias(batchKey, key);
      return known;
    }
    if (this.entries.size >= this.maxTracked) return undefined;
    this.alias(batchKey, key);
    const room = this.profiledCount < this.options.maxShapes;
    const e: ShapeEntry = {
      key,
      shape,
      state: room ? 'queued' : 'skipped',
      requests: 1,
      firstSeenAt: now,
      tookMs: 0,
      reason: room
        ? 'waiting for a background profile'
        : `over the limit of ${this.options.maxShapes} shapes profiled per replica: defaults apply`,
    };
    this.entries.set(key, e);
    return e;
  }

  private alias(batchKey: string, key: string): void {
    if (batchKey !== key && !this.aliases.has(batchKey) && this.aliases.size < MAX_BUCKET_ALIASES) this.aliases.set(batchKey, key);
  }

  /** Adds a shape profiled before traffic (a stored profile, or `--sample-input` at load). */
  add(profile: ModelProfile & { shape: ProfileShape }, source: 'measured' | 'cache', now: number): void {
    const key = shapeKey(profile.shape);
    if (this.entries.has(key) || this.entries.size >= this.maxTracked) return;
    this.entries.set(key, { key, shape: profile.shape, state: 'queued', requests: 0, firstSeenAt: now, tookMs: 0, reason: '' });
    this.settle(key, profile, source, source === 'measured' ? profile.tookMs : 0);
  }

  /**
   * The shape to profile next, or null: none while one is being profiled (one at a time), else
   * the queued shape with the most requests (the oldest first among equals).
   */
  next(): string | null {
    let best: ShapeEntry | undefined;
    for (const e of this.entries.values()) {
      if (e.state === 'profiling') return null;
      if (e.state !== 'queued') continue;
      if (!best || e.requests > best.requests || (e.requests === best.requests && e.firstSeenAt < best.firstSeenAt)) best = e;
    }
    return best?.key ?? null;
  }

  start(key: string): void {
    const e = this.entries.get(key);
    if (e?.state === 'queued') {
      e.state = 'profiling';
      e.reason = 'background profile running';
    }
  }

  settle(key: string, profile: ModelProfile, source: 'measured' | 'cache', tookMs: number): void {
    const e = this.entries.get(key);
    if (!e) return;
    Object.assign(e, { state: source, profile, tookMs, reason: profile.chosen.reason });
  }

  fail(key: string, reason: string): void {
    const e = this.entries.get(key);
    if (e) Object.assign(e, { state: 'failed', reason });
  }

  /**
   * Batching for requests of batch key `key`: each setting the deployment made, else the profiled
   * choice of its shape (or of the bucket it falls in); undefined while that has no profile (the
   * replica's defaults apply).
   */
  batchingFor(key: string, deployment: BatchingOptions): { maxBatchSize: number; maxQueueDelayMs: number; padTo?: number } | undefined {
    const chosen = this.entries.get(this.aliases.get(key) ?? key)?.profile?.chosen;
    if (!chosen) return undefined;
    const maxBatchSize = deployment.maxBatchSize ?? chosen.maxBatchSize;
    const pad = (deployment.padBatches ?? profilePadTo(chosen, this.onGpu) !== undefined) && maxBatchSize > 1;
    return {
      maxBatchSize,
      maxQueueDelayMs: deployment.maxQueueDelayMs ?? chosen.maxQueueDelayMs,
      ...(pad ? { padTo: maxBatchSize } : {}),
    };
  }

  /** What the replica should be charged: the largest footprint any profiled shape needs (0: none profiled). */
  footprint(): number {
    let most = 0;
    for (const e of this.entries.values()) most = Math.max(most, e.profile?.memory.replicaBytes ?? 0);
    return most;
  }

  /** Items/s of the most requested profiled shape at its chosen batch size (0: none profiled). */
  itemsPerSec(): number {
    let best: ShapeEntry | undefined;
    for (const e of this.entries.values()) if (e.profile && (!best || e.requests > best.requests)) best = e;
    const p = best?.profile;
    return p?.rows.find((r) => r.batch === p.chosen.maxBatchSize)?.itemsPerSec ?? 0;
  }

  /** Every tracked shape, for heartbeats and `status`. */
  summaries(): ShapeProfileSummary[] {
    return [...this.entries.values()].map((e) => {
      const chosen = e.profile?.chosen;
      const padTo = chosen ? profilePadTo(chosen, this.onGpu) : undefined;
      // Padded without a measured change of batch size (the GPU's fallback): say why.
      const unmeasured = chosen !== undefined && padTo !== undefined && chosen.padTo === undefined;
      const reason = unmeasured
        ? `${e.reason}; what a change of batch size costs was not measured (${e.profile!.stoppedBecause}): on a GPU smaller batches run padded to ${padTo}`
        : e.reason;
      return {
        shape: shapeKeyText(e.key),
        state: e.state,
        requests: e.requests,
        ...(chosen ? { maxBatchSize: chosen.maxBatchSize, maxQueueDelayMs: chosen.maxQueueDelayMs } : {}),
        ...(padTo !== undefined ? { padTo } : {}),
        replicaBytes: e.profile?.memory.replicaBytes ?? 0,
        tookMs: e.tookMs,
        reason: reason.slice(0, 1024),
      };
    });
  }
}
