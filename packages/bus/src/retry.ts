// The one retry loop of Flotilla: back-off, retryable-by-code and deadlines in one place (after
// Temporal's client/src/grpc-retry.ts). Callers say what they retry (a predicate), with which
// policy and until when; nobody sleeps past a deadline and nobody retries on top of a retry.
import { setTimeout as sleepMs } from 'node:timers/promises';
import { BadRequestError, DeadlineExceededError } from '@flotilla/protocol';

/** First back-off, ms. Default 50. */
export const DEFAULT_INITIAL_INTERVAL_MS = 50;
/** Each back-off is this many times the one before. Default 2. */
export const DEFAULT_BACKOFF_COEFFICIENT = 2;
/** Longest back-off, ms. Default 500. */
export const DEFAULT_MAXIMUM_INTERVAL_MS = 500;
/**
 * Spread of each back-off, a fraction: 0.2 draws it from 80 % to 120 % of its nominal value (never
 * above the maximum), so callers that failed together do not all come back together. Default 0.2.
 */
export const DEFAULT_JITTER = 0.2;
/** Attempts in all, the first included; Infinity: until the deadline. Default Infinity. */
export const DEFAULT_MAXIMUM_ATTEMPTS = Infinity;

export interface RetryPolicy {
  /** First back-off, ms. Default DEFAULT_INITIAL_INTERVAL_MS (50). */
  readonly initialIntervalMs: number;
  /** Multiplier from one back-off to the next (1: constant). Default DEFAULT_BACKOFF_COEFFICIENT (2). */
  readonly backoffCoefficient: number;
  /** Cap of one back-off, ms. Default DEFAULT_MAXIMUM_INTERVAL_MS (500). */
  readonly maximumIntervalMs: number;
  /** Spread of a back-off, fraction in [0, 1). Default DEFAULT_JITTER (0.2). */
  readonly jitter: number;
  /** Attempts in all, the first included (an integer ≥ 1, or Infinity). Default DEFAULT_MAXIMUM_ATTEMPTS (Infinity). */
  readonly maximumAttempts: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  initialIntervalMs: DEFAULT_INITIAL_INTERVAL_MS,
  backoffCoefficient: DEFAULT_BACKOFF_COEFFICIENT,
  maximumIntervalMs: DEFAULT_MAXIMUM_INTERVAL_MS,
  jitter: DEFAULT_JITTER,
  maximumAttempts: DEFAULT_MAXIMUM_ATTEMPTS,
});

/**
 * Writes to a JetStream KV or object store, retried through a leader election (a few seconds on
 * a clustered NATS): every error, 100 ms doubling to 1 s, no jitter, within the caller's deadline
 * (the head's STORE_WRITE_DEADLINE_MS, 8 s); used by head/src/deployment-store.ts `write()`, and by
 * worker/src/artifact-cache.ts to open the model store through an election (its STORE_OPEN_DEADLINE_MS).
 */
export const STORE_WRITE_RETRY_POLICY: RetryPolicy = Object.freeze({
  initialIntervalMs: 100,
  backoffCoefficient: 2,
  maximumIntervalMs: 1000,
  jitter: 0,
  maximumAttempts: Infinity,
});

/** Policies parseRetryPolicy returned (frozen, checked): `retry` takes them as they are. */
const checked = new WeakSet<RetryPolicy>([DEFAULT_RETRY_POLICY, STORE_WRITE_RETRY_POLICY]);

/** A complete policy from a partial one (defaults added), checked; never mutates its input. */
export function parseRetryPolicy(raw: Partial<RetryPolicy> = {}): RetryPolicy {
  if (checked.has(raw as RetryPolicy)) return raw as RetryPolicy;
  const p: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...raw };
  const bad = (what: string, must: string, got: unknown) =>
    new BadRequestError(`retry policy: ${what} must be ${must}, got ${String(got)}`);
  if (!(Number.isFinite(p.initialIntervalMs) && p.initialIntervalMs >= 0)) {
    throw bad('initialIntervalMs', 'a non-negative number of ms', p.initialIntervalMs);
  }
  if (!(Number.isFinite(p.backoffCoefficient) && p.backoffCoefficient >= 1)) {
    throw bad('backoffCoefficient', 'a number ≥ 1', p.backoffCoefficient);
  }
  if (!(Number.isFinite(p.maximumIntervalMs) && p.maximumIntervalMs >= p.initialIntervalMs)) {
    throw bad('maximumIntervalMs', `a number of ms ≥ initialIntervalMs (${p.initialIntervalMs})`, p.maximumIntervalMs);
  }
  if (!(p.jitter >= 0 && p.jitter < 1)) throw bad('jitter', 'a fraction in [0, 1)', p.jitter);
  if (!(p.maximumAttempts === Infinity || (Number.isInteger(p.maximumAttempts) && p.maximumAttempts >= 1))) {
    throw bad('maximumAttempts', 'an integer ≥ 1 or Infinity', p.maximumAttempts);
  }
  checked.add(Object.freeze(p));
  return p;
}

/**
 * The `n`-th back-off (1-based), ms: initialIntervalMs × backoffCoefficient^(n-1), capped at
 * maximumIntervalMs, then spread by ± jitter with `rand()` in [0, 1) (0.5: no spread) and capped
 * again. Pure.
 */
export function nextDelay(n: number, policy: RetryPolicy, rand: () => number = Math.random): number {
  const nominal = Math.min(policy.maximumIntervalMs, policy.initialIntervalMs * policy.backoffCoefficient ** Math.max(0, n - 1));
  const spread = policy.jitter === 0 ? 0 : nominal * policy.jitter * (2 * rand() - 1);
  return Math.round(Math.min(policy.maximumIntervalMs, Math.max(0, nominal + spread)));
}

/** Whether an error's code says another attempt may succeed (`FlotillaError.retryable`: OVERLOADED, UNAVAILABLE, NO_CAPACITY). */
export function isRetryableError(err: unknown): boolean {
  return (err as { retryable?: unknown } | null)?.retryable === true;
}

/**
 * A predicate's answer: false (throw it), true (back off, then another attempt) or 'immediately'
 * (another attempt at once: the failed one already waited, e.g. its own timeout; the back-off
 * does not grow).
 */
export type RetryVerdict = boolean | 'immediately';

export interface AttemptContext {
  /** This attempt's number, 1-based. */
  attempt: number;
  /** Epoch ms of the deadline (Infinity: none). */
  deadline: number;
  /** Time left before the deadline, ms: an attempt's own timeout should not exceed it. */
  remainingMs: number;
}

export interface RetryEvent {
  /** The attempt that failed, 1-based. */
  attempt: number;
  error: unknown;
  /** Back-off before the next attempt, ms (0: at once). */
  delayMs: number;
}

export interface RetryOptions {
  /** Back-off and attempts. Default DEFAULT_RETRY_POLICY; a partial policy is completed by parseRetryPolicy. */
  policy?: Partial<RetryPolicy>;
  /** Epoch ms: no attempt starts and no back-off ends after it. Default none. */
  deadline?: number;
  /** Whether a failure is worth another attempt. Default isRetryableError (by code). */
  isRetryable?: (err: unknown, attempt: number) => RetryVerdict;
  /** Called before each further attempt (counting retries, logging). */
  onRetry?: (e: RetryEvent) => void;
  /**
   * The error thrown when attempts or time run out on a retryable failure. Default the last error
   * itself (a DEADLINE_EXCEEDED when the deadline passed before any attempt).
   */
  onExhausted?: (err: unknown, e: { attempts: number; reason: 'attempts' | 'deadline' }) => unknown;
  /** Clock, sleep and randomness (tests). */
  now?: () => number;
  sleep?: (ms: number) => Promise<unknown>;
  rand?: () => number;
}

/**
 * Runs `fn` until it succeeds, throws what `isRetryable` refuses, or runs out of attempts
 * (`policy.maximumAttempts`) or time (`deadline`). Never sleeps past the deadline: a back-off that
 * would end at or after it ends the retries instead; each attempt is told the time that is left.
 */
export async function retry<T>(fn: (ctx: AttemptContext) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const policy = opts.policy === undefined ? DEFAULT_RETRY_POLICY : parseRetryPolicy(opts.policy);
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? sleepMs;
  const deadline = opts.deadline ?? Infinity;
  const isRetryable = opts.isRetryable ?? isRetryableError;
  const exhausted = (err: unknown, attempts: number, reason: 'attempts' | 'deadline') =>
    opts.onExhausted
      ? opts.onExhausted(err, { attempts, reason })
      : (err ?? new DeadlineExceededError('the deadline passed before the first attempt'));
  let backoffs = 0;
  let last: unknown;
  for (let attempt = 1; ; attempt++) {
    const remainingMs = deadline - now();
    if (remainingMs <= 0) throw exhausted(last, attempt - 1, 'deadline');
    try {
      return await fn({ attempt, deadline, remainingMs });
    } catch (err) {
      const verdict = isRetryable(err, attempt);
      if (!verdict) throw err;
      last = err;
      if (attempt >= policy.maximumAttempts) throw exhausted(err, attempt, 'attempts');
      const delayMs = verdict === 'immediately' ? 0 : nextDelay(++backoffs, policy, opts.rand);
      if (delayMs > 0 && deadline - now() <= delayMs) throw exhausted(err, attempt, 'deadline');
      opts.onRetry?.({ attempt, error: err, delayMs });
      if (delayMs > 0) await sleep(delayMs);
    }
  }
}
