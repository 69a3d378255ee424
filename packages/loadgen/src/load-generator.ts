// A closed-loop load generator (like Triton's perf_analyzer): `concurrency` callers each send the
// same request, and the next one as soon as theirs is answered, for `durationMs`; then every
// request still in flight is awaited (none is abandoned) and the figures are summarised.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { BadRequestError, assertValidName, checkWireTensor, type WireTensors } from '@flotilla/protocol';
import type { FlotillaClient, InferOptions } from '@flotilla/client';
import { LoadStats, type LoadSummary } from './load-stats.js';

export interface LoadOptions {
  /** Requests kept in flight at all times. */
  concurrency: number;
  /** How long new requests are started, ms. */
  durationMs: number;
  /** Stops starting new requests once it returns true (asked before each), within `durationMs`. */
  until?: () => boolean;
  /** Deadline of each request, all its attempts included, ms (default the client's, 30 000). */
  timeoutMs?: number;
  /**
   * Extra attempts of a request after a retryable failure (an OVERLOADED, UNAVAILABLE or
   * NO_CAPACITY reply, or no reply within the attempt timeout), within `timeoutMs`: the client's
   * own retries (`InferOptions.retries`), the only ones. Default 2.
   */
  retries?: number;
  /** Called every `progressIntervalMs` with the figures so far. */
  onProgress?: (s: LoadSummary) => void;
  /** Default 1000. */
  progressIntervalMs?: number;
  /** Where the outcomes go (default a fresh LoadStats): a subclass may keep only some of them. */
  stats?: LoadStats;
}

/** Throws BAD_REQUEST for options no run can use. */
export function checkLoadOptions(o: LoadOptions): void {
  const bad = (what: string, v: unknown) => new BadRequestError(`${what} must be ${v}`);
  if (!Number.isInteger(o.concurrency) || o.concurrency < 1) throw bad('concurrency', `a positive integer, got ${o.concurrency}`);
  if (!Number.isFinite(o.durationMs) || o.durationMs < 0) throw bad('durationMs', `a non-negative number, got ${o.durationMs}`);
  if (o.timeoutMs !== undefined && !(Number.isFinite(o.timeoutMs) && o.timeoutMs > 0))
    throw bad('timeoutMs', `a positive number, got ${o.timeoutMs}`);
  if (o.retries !== undefined && !(Number.isInteger(o.retries) && o.retries >= 0))
    throw bad('retries', `a non-negative integer, got ${o.retries}`);
}

/** Items in one request: the batch dimension (dims[0]) of the first input; 1 for a scalar or no input. */
export function itemsPerRequest(inputs: WireTensors): number {
  const first = Object.values(inputs)[0];
  return first?.dims[0] ?? 1;
}

/** The error's code, INTERNAL when it has none. */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : 'INTERNAL';
}

/**
 * Sends `inputs` to `model` through `client.inferWire` with `concurrency` requests in flight for
 * `durationMs`, and returns what happened. Request errors are counted by code (uncoded ones as
 * INTERNAL), never thrown. Retrying is the client's (one layer): each request gets `retries` and
 * `timeoutMs` as its InferOptions, and its retries are counted. Latency is per request as the
 * caller sees it (retries included). Throws only for bad options or inputs, or when the client
 * cannot connect at all.
 */
export async function runLoad(client: FlotillaClient, model: string, inputs: WireTensors, opts: LoadOptions): Promise<LoadSummary> {
  checkLoadOptions(opts);
  assertValidName('model', model);
  for (const [name, t] of Object.entries(inputs)) checkWireTensor(name, t);
  const items = itemsPerRequest(inputs);
  await client.connection(); // an unreachable NATS fails the run once, not every request

  const stats = opts.stats ?? new LoadStats();
  const inferOpts: InferOptions = {
    retries: opts.retries ?? 2,
    onRetry: () => stats.recordRetry(),
    ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
  };
  const start = performance.now();
  const progress = opts.onProgress
    ? setInterval(() => opts.onProgress!(stats.summary(performance.now() - start)), opts.progressIntervalMs ?? 1000)
    : undefined;
  progress?.unref();
  try {
    return await closedLoop({ concurrency: opts.concurrency, durationMs: opts.durationMs, until: opts.until, stats }, async () => {
      await client.inferWire(model, inputs, inferOpts);
      return items;
    });
  } finally {
    if (progress) clearInterval(progress);
  }
}

/**
 * The closed loop itself, for any kind of call (the SDK here; bare NATS, Moleculer, HTTP in the
 * benchmarks): `concurrency` callers, each starting its next call as soon as its last one ended,
 * for `durationMs` (or until `until()` says stop). `call` resolves with the items it served; a failure is counted by `codeOf`
 * (default errorCode) and never thrown.
 */
export async function closedLoop(
  o: { concurrency: number; durationMs: number; until?: () => boolean; stats?: LoadStats; codeOf?: (err: unknown) => string },
  call: () => Promise<number>,
): Promise<LoadSummary> {
  const stats = o.stats ?? new LoadStats();
  const codeOf = o.codeOf ?? errorCode;
  const start = performance.now();
  const end = start + o.durationMs;
  const caller = async (): Promise<void> => {
    while (performance.now() < end && !o.until?.()) {
      stats.markSent();
      const t0 = performance.now();
      try {
        const items = await call();
        stats.recordOk(performance.now() - t0, items);
      } catch (err) {
        stats.recordError(codeOf(err));
        // A failure that needed no I/O must not turn this loop into one that starves the event loop.
        await yieldToLoop();
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, caller));
  return stats.summary(performance.now() - start);
}
