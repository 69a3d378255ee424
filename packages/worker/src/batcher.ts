// The dynamic-batching policy, pure: a FIFO queue of requests and the decision of when to run
// which of them together. No timers and no I/O: the replica asks `next(now)` whenever it is idle
// or a timer it set from `waitMs` fires. Requests only share a batch when their `key` (dtype and
// non-batch dims of every input) is equal, and a key may have its own max size and delay (a
// dynamic-shape model's per-shape profile).
//
// The queue delay is a most, not a must: a batch waits for company only while company keeps
// coming. The batcher counts, per key, how often an arrival was followed by another of its key
// within the delay and before the replica answered it (a running share over recent arrivals: a request that comes
// after the answer may be that caller's next one); below MIN_COMPANY_SHARE a batch that is not
// full runs at once. One caller at a time never waits for a company that cannot come; a burst of
// callers answered together, or a steady open stream, still does. Measured on convnet at one
// caller (pnpm bench): the profile's 3.3 ms delay was 3.3 ms of its 4.9 ms added latency.

export interface BatcherOptions {
  /** Most items in one batch (a request may carry several items along the batch axis). */
  maxBatchSize: number;
  /** How long the oldest queued request may wait for company before its batch runs, ms. */
  maxQueueDelayMs: number;
  /** Requests queued beyond which `push` refuses (OVERLOADED). */
  maxQueueLength: number;
  /** Smaller batches run padded to this many rows (the replica pads; the batcher only says so). */
  padTo?: number;
}

export interface Queued<T> {
  /** Requests with different keys never share a batch. */
  key: string;
  /** Items along the batch axis (≥ 1). */
  items: number;
  enqueuedAt: number;
  /** Absolute time after which the request must not run. */
  deadline: number;
  payload: T;
}

/** What a batch of one key may hold and wait for. */
export interface BatchLimits {
  maxBatchSize: number;
  maxQueueDelayMs: number;
  padTo?: number;
}
/** A key's own batch limits (undefined: the batcher's options apply). */
export type KeyLimits = (key: string) => BatchLimits | undefined;

export type Decision<T> =
  /** Requests whose deadline passed while queued: answer DEADLINE_EXCEEDED, never run. */
  { expired: Queued<T>[] } & (
    | {
        kind: 'run';
        batch: Queued<T>[];
        items: number;
        /** Rows to run: `items`, or the key's padTo when the batch is smaller. */
        rows: number;
        /** `full`; `delay`: the oldest waited it out (or less than a timer's resolution was left); `alone`: no company is coming. */
        reason: 'full' | 'delay' | 'alone';
      }
    | { kind: 'wait'; waitMs: number }
    | { kind: 'idle' }
  );

/** Shortest wait for company the batcher asks for, ms (the resolution of Node's timers). */
export const MIN_WAIT_MS = 1;
/**
 * Below this share of arrivals with company (another arrival within the delay and before the
 * answer), a batch that is not full runs without waiting. A quarter, not a half: two callers
 * answered together arrive as a pair, so only every other arrival has one after it within the
 * delay (a share near 0.5), and waiting for the second of the pair nearly halves their cost
 * (convnet: batch 2 in 7.1 ms, against 6.5 ms each alone).
 */
export const MIN_COMPANY_SHARE = 0.25;
/** Weight of the newest arrival in the running share (about the last 16 arrivals count). */
export const COMPANY_SHARE_WEIGHT = 1 / 16;

/** Keys whose company the batcher follows at once; a new one past this forgets the oldest (hostile traffic may send any number of shapes). */
export const MAX_COMPANY_KEYS = 64;

/** What the batcher knows of one key's company. */
interface Company<T> {
  /** Share of its recent arrivals with company (see MIN_COMPANY_SHARE); starts at 1 (waits as configured). */
  share: number;
  /** Its last arrival while that one's company is still open (undefined: none that counts). */
  last?: Queued<T>;
  /** That arrival's delay: another within it is company. */
  withinMs: number;
}

export class Batcher<T> {
  private queue: Queued<T>[] = [];
  /** Per key: only requests of the same key can share a batch, so only they are company. */
  private readonly company = new Map<string, Company<T>>();

  constructor(
    readonly options: BatcherOptions,
    private readonly limitsFor?: KeyLimits,
  ) {}

  get length(): number {
    return this.queue.length;
  }

  /** Share of a key's recent arrivals that had company (1 before any evidence). */
  companyShare(key: string): number {
    return this.company.get(key)?.share ?? 1;
  }

  /** Adds a request; false when the queue is full (caller answers OVERLOADED). Every arrival counts towards its key's company share. */
  push(entry: Queued<T>): boolean {
    let c = this.company.get(entry.key);
    if (!c) {
      if (this.company.size >= MAX_COMPANY_KEYS) this.company.delete(this.company.keys().next().value!);
      this.company.set(entry.key, (c = { share: 1, withinMs: 0 }));
    }
    if (c.last) count(c, entry.enqueuedAt - c.last.enqueuedAt <= c.withinMs);
    // A key that never waits (a delay under a timer's resolution) says nothing about company.
    c.withinMs = (this.limitsFor?.(entry.key) ?? this.options).maxQueueDelayMs;
    c.last = c.withinMs >= MIN_WAIT_MS ? entry : undefined;
    if (this.queue.length >= this.options.maxQueueLength) return false;
    this.queue.push(entry);
    return true;
  }

  /**
   * The replica answered these requests (one key). When its key's last arrival was among them, no
   * company came while it was in the replica's hands, and whatever arrives next may be its own
   * caller's next request (one caller at a time, with replies quicker than the delay): no company.
   */
  answered(batch: readonly Queued<T>[]): void {
    const c = batch[0] && this.company.get(batch[0].key);
    if (c?.last && batch.includes(c.last)) {
      count(c, false);
      c.last = undefined;
    }
  }

  /**
   * What to do now. The batch is the oldest request plus later requests with the same key, in
   * arrival order, while the total stays within maxBatchSize (a lone request larger than the max
   * runs alone). It runs when full, when the oldest has waited maxQueueDelayMs, or at once when
   * company has stopped coming (the share under MIN_COMPANY_SHARE). Both limits are the oldest
   * request's key's own when `limitsFor` has them.
   */
  next(now: number): Decision<T> {
    const expired: Queued<T>[] = [];
    if (this.queue.some((q) => q.deadline <= now)) {
      const live: Queued<T>[] = [];
      for (const q of this.queue) (q.deadline <= now ? expired : live).push(q);
      this.queue = live;
    }
    const head = this.queue[0];
    if (!head) return { kind: 'idle', expired };

    const { maxBatchSize, maxQueueDelayMs, padTo } = this.limitsFor?.(head.key) ?? this.options;
    const picked: number[] = [0];
    let items = head.items;
    let full = items >= maxBatchSize;
    for (let i = 1; i < this.queue.length && !full; i++) {
      const q = this.queue[i]!;
      if (q.key !== head.key) continue;
      if (items + q.items > maxBatchSize) {
        full = true; // the next compatible request would overflow: this batch is as full as it gets
        break;
      }
      picked.push(i);
      items += q.items;
      full = items >= maxBatchSize;
    }

    const waited = now - head.enqueuedAt;
    // Node's timers cannot wait less than a millisecond (setTimeout(fn, 0.1) fires after ≥ 1 ms):
    // a wait shorter than that would cost a caller at low load a whole millisecond, so it runs now.
    const left = maxQueueDelayMs - waited;
    const alone = !full && left >= MIN_WAIT_MS && this.companyShare(head.key) < MIN_COMPANY_SHARE;
    if (!full && !alone && left >= MIN_WAIT_MS) {
      // Never wait past the head's own deadline.
      const waitMs = Math.max(0, Math.min(left, head.deadline - now));
      return { kind: 'wait', waitMs, expired };
    }
    const batch = picked.map((i) => this.queue[i]!);
    const taken = new Set(picked);
    this.queue = this.queue.filter((_, i) => !taken.has(i));
    return { kind: 'run', batch, items, rows: paddedRows(items, padTo), reason: full ? 'full' : alone ? 'alone' : 'delay', expired };
  }
}

function count<T>(c: Company<T>, company: boolean): void {
  c.share += ((company ? 1 : 0) - c.share) * COMPANY_SHARE_WEIGHT;
}

/** Rows a batch of `items` runs with: padded up to `padTo` when it is smaller (a lone larger request runs as it is). */
export function paddedRows(items: number, padTo: number | undefined): number {
  return padTo !== undefined && items < padTo ? padTo : items;
}

/**
 * A replica's batch size where no profile chose one (a dynamic-shape model's shape not profiled
 * yet, profiling off or skipped): the deployment's if it set one; else on a GPU one request at a
 * time unless the deployment asked for padded batches (a fixed size anyway): onnxruntime's CUDA
 * convolutions rebuild their cuDNN plan whenever a run's batch size differs from the last one
 * (57 ms on an H200 against 0.2 ms per run), and batches of whatever queued change size nearly
 * every run (measured there: 163 items/s at 16 callers against 631 for one caller). One at a time
 * never loses to batch 1; a profile then decides, padding where a change of size costs more.
 * Elsewhere `cpuDefault` (batches of whatever queued while the last ran).
 */
export function defaultMaxBatchSize(
  onGpu: boolean,
  deployment: { maxBatchSize?: number; padBatches?: boolean },
  cpuDefault: number,
): number {
  if (deployment.maxBatchSize !== undefined) return deployment.maxBatchSize;
  return onGpu && !deployment.padBatches ? 1 : cpuDefault;
}
