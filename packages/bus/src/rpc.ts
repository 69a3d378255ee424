// Request/reply with Flotilla's codec and error mapping, for the control plane.
import type { NatsConnection } from '@nats-io/nats-core';
import { errors as natsErrors } from '@nats-io/nats-core';
import type { BlobStore } from './blob-store.js';
import { isConnectionLost } from './connection-lost.js';
import { requesterFor } from './requester.js';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  DeadlineExceededError,
  ForbiddenError,
  PROTOCOL_VERSION,
  UnavailableError,
  decode,
  encode,
  fromWire,
  type ControlReply,
} from '@flotilla/protocol';
import { parseRetryPolicy, retry } from './retry.js';
import { unstage } from './staging.js';

/** Longest single attempt of a control call before it is sent again, ms. */
export const CALL_ATTEMPT_MS = 2000;
/** How long "no responders" is retried (a restarting head, a broker failover), ms. */
export const NO_RESPONDERS_GRACE_MS = 1500;
/** A control call's back-off: a constant 100 ms (an attempt that timed out has waited already). */
export const CALL_RETRY_POLICY = parseRetryPolicy({
  initialIntervalMs: 100,
  backoffCoefficient: 1,
  maximumIntervalMs: 100,
  jitter: 0,
});

export interface CallOptions<T> {
  /**
   * Where a reply too large for one message was staged (the cluster's blob bucket): a reply
   * `{ v, blob: { name, size } }` is fetched from it, removed and decoded. Without it such a reply
   * is an UNAVAILABLE error saying so.
   */
  blobs?: BlobStore;
  /** Largest staged reply fetched, bytes. Default DEFAULT_MAX_MESSAGE_BYTES (256 MiB). */
  maxBytes?: number;
  /** Validates the reply's `result` (a schema's parse from `protocol`); throws a coded error. */
  parse?: (result: unknown) => T;
  /**
   * Longest single attempt, ms. Default CALL_ATTEMPT_MS; large read-only replies (`status` of a
   * big cluster takes ~2 s to build and stage at 10,000 workers) should wait longer rather than
   * have the head build and stage the reply again.
   */
  attemptMs?: number;
}

/** The reply's result (or its typed error), after fetching it from the blob bucket when it was staged. */
async function replyResult<T>(data: Uint8Array, subject: string, opts: CallOptions<T>): Promise<T> {
  const reply = await unstage(opts.blobs, decode<Record<string, unknown>>(data), {
    maxBytes: opts.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    what: `the reply on ${subject}`,
  });
  const r = reply as unknown as ControlReply<T>;
  if (!r.ok) throw fromWire(r.error);
  return opts.parse ? opts.parse(r.result) : r.result;
}

/**
 * Sends `{ v, ...body }` and returns the reply's `result`, or throws the reply's typed error.
 * Control operations are idempotent, so a lost request is sent again: attempts of at most 2 s
 * until the timeout, one in flight when the connection is lost at once (the connection's
 * Requester: what is sent while it is down waits until it is back), and "no responders" retried
 * for 1.5 s, 100 ms apart (CALL_RETRY_POLICY). Only the transport's failures are retried:
 * an error reply, or a staged reply that cannot be fetched, is the answer.
 */
export async function call<T>(
  nc: NatsConnection,
  subject: string,
  body: object,
  timeoutMs = 10_000,
  opts: CallOptions<T> = {},
): Promise<T> {
  const data = encode({ v: PROTOCOL_VERSION, ...body });
  const start = Date.now();
  const transport = new WeakSet<object>(); // errors of the request itself, as mapped
  const requester = requesterFor(nc);
  const attempt = async ({ remainingMs }: { remainingMs: number }): Promise<T> => {
    let reply: Uint8Array;
    try {
      const timeout = Math.max(1, Math.min(opts.attemptMs ?? CALL_ATTEMPT_MS, remainingMs));
      reply = (await requester.request(subject, data, { timeout })).data;
    } catch (err) {
      const mapped = mapNatsError(err, subject, timeoutMs);
      transport.add(mapped);
      throw mapped;
    }
    return replyResult(reply, subject, opts);
  };
  try {
    return await retry(attempt, {
      policy: CALL_RETRY_POLICY,
      deadline: start + timeoutMs,
      isRetryable: (err) =>
        transport.has(err as object) &&
        (err instanceof DeadlineExceededError ||
          isConnectionLost(err) ||
          (err instanceof UnavailableError && Date.now() - start < NO_RESPONDERS_GRACE_MS)),
    });
  } catch (err) {
    if (err instanceof DeadlineExceededError)
      throw new DeadlineExceededError(`no reply on ${subject} within ${timeoutMs} ms`, { cause: err });
    throw err;
  }
}

/** NATS answered "no responders": nobody is subscribed to the subject. */
export function isNoResponders(err: unknown): boolean {
  return err instanceof natsErrors.NoRespondersError || (err as Error)?.cause instanceof natsErrors.NoRespondersError;
}

/** A request got no reply within its timeout. */
export function isTimeout(err: unknown): boolean {
  return err instanceof natsErrors.TimeoutError || (err as Error)?.cause instanceof natsErrors.TimeoutError;
}

export function mapNatsError(err: unknown, subject: string, timeoutMs: number): Error {
  const denied = err instanceof natsErrors.PermissionViolationError ? err : (err as Error)?.cause;
  if (denied instanceof natsErrors.PermissionViolationError) {
    return new ForbiddenError(
      `the NATS server does not allow this connection to ${denied.operation} on ${denied.subject}: its credentials lack the role`,
      {
        cause: err,
        data: { subject: denied.subject, operation: denied.operation },
      },
    );
  }
  if (isNoResponders(err)) {
    return new UnavailableError(`no one is answering on ${subject}`, { cause: err, data: { subject } });
  }
  if (isTimeout(err)) {
    return new DeadlineExceededError(`no reply on ${subject} within ${timeoutMs} ms`, { cause: err, data: { subject } });
  }
  if (isConnectionLost(err)) {
    return new UnavailableError(`the connection to NATS was lost while the request on ${subject} was in flight`, {
      cause: err,
      data: { subject },
    });
  }
  if (err instanceof natsErrors.ClosedConnectionError) {
    return new UnavailableError('NATS connection is closed', { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** Replies `{ v, ok: true, result }`. */
export function okReply(result: unknown): Uint8Array {
  return encode({ v: PROTOCOL_VERSION, ok: true, result });
}

/** Replies `{ v, ok: false, error }`. */
export function errorReply(error: { toWire(): unknown }): Uint8Array {
  return encode({ v: PROTOCOL_VERSION, ok: false, error: error.toWire() });
}
