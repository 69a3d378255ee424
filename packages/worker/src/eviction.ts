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
}

export interface EvictionPolicy {
  /** Name, as given in the worker's `eviction` option (`fifo`, `lru`, `lfu`). */
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

/** The policies a worker's `eviction` option names, by name. */
export const EVICTION_POLICIES: ReadonlyMap<string, EvictionPolicy> = new Map([fifoPolicy, lruPolicy, lfuPolicy].map((p) => [p.name, p]));

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
