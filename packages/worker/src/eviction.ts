// Eviction policies, pure: when a model to load does not fit a device's free budget, which loaded
// models to unload first. A policy only orders candidates; `planEviction` picks the shortest prefix
// of that order that makes room. No timers and no I/O: the worker passes its own clock readings.
import { BadRequestError } from '@flotilla/protocol';

/** A loaded model (one replica's charge on a device) that could be unloaded to make room. */
export interface EvictionCandidate {
  /** The replica holding the memory; unique per device, and the final tie-breaker. */
  owner: string;
  /** The model the replica serves. */
  model: string;
  /** Memory freed by unloading it, bytes. */
  bytes: number;
  /** When it was loaded (any monotonic clock, e.g. ms). */
  loadedAt: number;
  /** When it last served a request; equal to `loadedAt` if it never did. */
  lastUsedAt: number;
  /** Requests (or batches) served since it was loaded. */
  uses: number;
  /** Never evicted (e.g. a deployment asked to stay resident). */
  pinned: boolean;
  /**
   * Expected requests per second if it stays loaded: a decayed count (`usageRate`), read at the
   * moment of planning. Used by `cost`; absent → 0 (the policy then falls back to recency).
   */
  rate?: number;
  /**
   * Expected time to load it again, ms: measured when it was loaded (session create + warm-up),
   * else estimated from its bytes (`estimateReloadMs`). Used by `cost`.
   */
  reloadMs?: number;
}

export interface EvictionPolicy {
  /** Name, as given in the worker's `eviction` option (`fifo`, `lru`, `lfu`, `cost`). */
  readonly name: string;
  /**
   * Orders candidates: first = evict first. Pinned never included. Returns a new array and leaves
   * the input (and its elements) untouched; the order is deterministic for equal inputs.
   */
  order(candidates: readonly EvictionCandidate[]): EvictionCandidate[];
}

export interface EvictionPlan {
  /** Candidates to unload, in eviction order (the same objects as given); empty when none needed or none can help. */
  evict: EvictionCandidate[];
  /** Whether the needed bytes fit once `evict` is unloaded. */
  fits: boolean;
}

/** Negative: `a` is evicted before `b`; 0: tied (broken later by owner). */
export type EvictionCompare = (a: EvictionCandidate, b: EvictionCandidate) => number;

const byNumber =
  (key: 'loadedAt' | 'lastUsedAt' | 'uses'): EvictionCompare =>
  (a, b) =>
    a[key] - b[key];

/** Code-unit comparison, independent of the locale (unlike localeCompare). */
const byOwner: EvictionCompare = (a, b) => (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0);

const chain =
  (...compares: EvictionCompare[]): EvictionCompare =>
  (a, b) => {
    for (const c of compares) {
      const d = c(a, b);
      if (d !== 0) return d;
    }
    return 0;
  };

/** A policy that drops pinned candidates and sorts the rest by `compare`, ties by owner. */
export function sortingPolicy(name: string, compare: EvictionCompare): EvictionPolicy {
  const full = chain(compare, byOwner);
  return {
    name,
    order: (candidates) => candidates.filter((c) => !c.pinned).sort(full),
  };
}

/** First in, first out: the model loaded longest ago goes first. */
export const fifoPolicy: EvictionPolicy = sortingPolicy('fifo', byNumber('loadedAt'));

/** Least recently used: the model idle longest goes first; ties → loaded longest ago. */
export const lruPolicy: EvictionPolicy = sortingPolicy('lru', chain(byNumber('lastUsedAt'), byNumber('loadedAt')));

/** Least frequently used: fewest uses first; ties → least recently used, then loaded longest ago. */
export const lfuPolicy: EvictionPolicy = sortingPolicy('lfu', chain(byNumber('uses'), byNumber('lastUsedAt'), byNumber('loadedAt')));

// ---------- cost: expected reload cost per byte freed (GreedyDual-Size-Frequency family) ----------

/** Half-life of a replica's decayed request count, ms: old popularity fades within a minute or two. */
export const DEFAULT_RATE_HALF_LIFE_MS = 30_000;
/**
 * The shortest window a rate is measured over, ms: a replica loaded 100 ms ago for one request is
 * at 0.2 requests/s, not 10 (a scan over cold models must not look hot).
 */
export const MIN_RATE_WINDOW_MS = 5_000;
/** Reload estimate when none was measured: fixed overhead plus per MiB (session create, README `bench:memory`). */
export const RELOAD_FIXED_MS = 7;
export const RELOAD_MS_PER_MIB = 2.5;

/**
 * A replica's exponentially decayed request count: `count` requests as of `at` (each older request
 * weighs 2^(-age / half-life)), `uses` the replica's own counter then, `since` its load time. A
 * replica starts with no history, even for a model loaded before: a newcomer must earn its place
 * (as under LFU, which counts since load), so a burst of one-off loads cannot push out the models
 * in steady use. (Carrying the count over reloads lowered the hit ratio in a trace simulation of
 * `pnpm bench:models`: 0.68 against 0.72.)
 */
export interface UsageRate {
  count: number;
  uses: number;
  at: number;
  since: number;
}

/**
 * Folds the replica's request counter (`uses`, monotonic since `loadedAt`) observed at `now` into
 * the decayed count: requests since the last observation count as arriving now. The worker calls
 * it on each heartbeat and before planning an eviction. Returns a new state.
 */
export function observeUses(
  prev: UsageRate | undefined,
  uses: number,
  now: number,
  loadedAt: number,
  halfLifeMs = DEFAULT_RATE_HALF_LIFE_MS,
): UsageRate {
  if (!prev || prev.since !== loadedAt || uses < prev.uses) return { count: uses, uses, at: now, since: loadedAt };
  const decay = now > prev.at ? 2 ** (-(now - prev.at) / halfLifeMs) : 1;
  return { count: prev.count * decay + (uses - prev.uses), uses, at: Math.max(now, prev.at), since: loadedAt };
}

/**
 * Requests per second the decayed count stands for at `now`: the count over the decayed window it
 * covers (half-life / ln 2 once the replica is old; less while it is young, but at least MIN_RATE_WINDOW_MS).
 */
export function usageRate(s: UsageRate, now: number, halfLifeMs = DEFAULT_RATE_HALF_LIFE_MS): number {
  const count = now > s.at ? s.count * 2 ** (-(now - s.at) / halfLifeMs) : s.count;
  const age = Math.max(0, now - s.since);
  const window = Math.max(MIN_RATE_WINDOW_MS, (halfLifeMs / Math.LN2) * (1 - 2 ** (-age / halfLifeMs)));
  return (count * 1000) / window;
}

/** Reload time of a replica of `bytes` when none was measured, ms. */
export function estimateReloadMs(bytes: number): number {
  return RELOAD_FIXED_MS + (bytes / (1 << 20)) * RELOAD_MS_PER_MIB;
}

/**
 * What losing the candidate costs per byte freed: expected reload time × expected request rate /
 * bytes (ms of reloading per second, per byte). The cheapest goes first.
 */
export function evictionCost(c: EvictionCandidate): number {
  const reloadMs = c.reloadMs ?? estimateReloadMs(c.bytes);
  return (reloadMs * (c.rate ?? 0)) / Math.max(1, c.bytes);
}

/**
 * Cost-aware: the replica whose coming back would cost least per byte freed goes first — rarely
 * requested (decayed counts, so yesterday's favourite fades), cheap to reload, large. Ties (e.g.
 * no rates known) → least recently used, then loaded longest ago.
 */
export const costPolicy: EvictionPolicy = sortingPolicy(
  'cost',
  chain((a, b) => evictionCost(a) - evictionCost(b), byNumber('lastUsedAt'), byNumber('loadedAt')),
);

/** The policies a worker's `eviction` option names, by name. */
export const EVICTION_POLICIES: ReadonlyMap<string, EvictionPolicy> = new Map(
  [fifoPolicy, lruPolicy, lfuPolicy, costPolicy].map((p) => [p.name, p]),
);

/** The policy named `name`; an unknown name is a BadRequestError listing the known ones. */
export function resolveEvictionPolicy(name: string): EvictionPolicy {
  const policy = EVICTION_POLICIES.get(name);
  if (!policy) {
    const known = [...EVICTION_POLICIES.keys()].join(', ');
    throw new BadRequestError(`unknown eviction policy "${name}" (known: ${known})`);
  }
  return policy;
}

/**
 * What to unload so that `neededBytes` fit: the shortest prefix of `policy.order(candidates)`
 * (pinned skipped, even if a policy returned them) after which `freeBytes + freed >= neededBytes`.
 * Already fits → `{ evict: [], fits: true }`; cannot fit even with every unpinned candidate gone →
 * `{ evict: [], fits: false }`, so nothing is unloaded in vain. Inputs are never mutated.
 */
export function planEviction(
  policy: EvictionPolicy,
  candidates: readonly EvictionCandidate[],
  neededBytes: number,
  freeBytes: number,
): EvictionPlan {
  if (freeBytes >= neededBytes) return { evict: [], fits: true };
  const evict: EvictionCandidate[] = [];
  const seen = new Set<EvictionCandidate>();
  let available = freeBytes;
  for (const c of policy.order(candidates)) {
    if (c.pinned || seen.has(c)) continue;
    seen.add(c);
    evict.push(c);
    available += c.bytes;
    if (available >= neededBytes) return { evict, fits: true };
  }
  return { evict: [], fits: false };
}
