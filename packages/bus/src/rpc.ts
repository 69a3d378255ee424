// Request/reply with Flotilla's codec and error mapping, for the control plane.
import type { NatsConnection } from '@nats-io/nats-core';
import { errors as natsErrors } from '@nats-io/nats-core';
import type { BlobStore } from './blob-store.js';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  DeadlineExceededError,
  ForbiddenError,
  PROTOCOL_VERSION,
  UnavailableError,
  decode,
  encode,
  fromWire,
  parseBlobRef,
  type BlobName,
  type ControlReply,
} from '@flotilla/protocol';

/** Longest single attempt of a control call before it is sent again, ms. */
export const CALL_ATTEMPT_MS = 2000;
/** How long "no responders" is retried (a restarting head, a broker failover), ms. */
export const NO_RESPONDERS_GRACE_MS = 1500;

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

/** A staged reply's reference (`{ v, blob }`, no `ok`), checked by its schema before anything is fetched. */
function stagedRef(reply: Record<string, unknown>): BlobName | undefined {
  return 'blob' in reply && !('ok' in reply) ? parseBlobRef(reply) : undefined;
}

/** The reply's result (or its typed error), after fetching it from the blob bucket when it was staged. */
async function replyResult<T>(data: Uint8Array, subject: string, opts: CallOptions<T>): Promise<T> {
  let reply = decode<Record<string, unknown>>(data);
  const ref = stagedRef(reply);
  if (ref) {
    if (!opts.blobs) throw new UnavailableError(`the reply on ${subject} was staged (${ref.size} bytes) and this caller has no blob store to fetch it from`);
    reply = decode<Record<string, unknown>>(await opts.blobs.take(ref, opts.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES));
  }
  const r = reply as unknown as ControlReply<T>;
  if (!r.ok) throw fromWire(r.error);
  return opts.parse ? opts.parse(r.result) : r.result;
}

/**
 * Sends `{ v, ...body }` and returns the reply's `result`, or throws the reply's typed error.
 * Control operations are idempotent, so a lost request (the client drops what it publishes while
 * reconnecting) is sent again: attempts of at most 2 s until the timeout, and "no responders"
 * retried for 1.5 s. A staged reply is fetched from `opts.blobs` (not retried: the attempt that
 * got it is answered).
 */
export async function call<T>(nc: NatsConnection, subject: string, body: object, timeoutMs = 10_000, opts: CallOptions<T> = {}): Promise<T> {
  const data = encode({ v: PROTOCOL_VERSION, ...body });
  const start = Date.now();
  const deadline = start + timeoutMs;
  for (;;) {
    const remaining = deadline - Date.now();
    try {
      const msg = await nc.request(subject, data, { timeout: Math.max(1, Math.min(opts.attemptMs ?? CALL_ATTEMPT_MS, remaining)) });
      return await replyResult(msg.data, subject, opts);
    } catch (err) {
      const mapped = err instanceof DeadlineExceededError || err instanceof UnavailableError ? err : mapNatsError(err, subject, timeoutMs);
      const retry =
        (mapped instanceof DeadlineExceededError && !(err instanceof DeadlineExceededError)) ||
        (mapped instanceof UnavailableError && !(err instanceof UnavailableError) && Date.now() - start < NO_RESPONDERS_GRACE_MS);
      if (!retry || deadline - Date.now() <= 0) {
        throw mapped instanceof DeadlineExceededError ? new DeadlineExceededError(`no reply on ${subject} within ${timeoutMs} ms`, { cause: err }) : mapped;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
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
    return new ForbiddenError(`the NATS server does not allow this connection to ${denied.operation} on ${denied.subject}: its credentials lack the role`, {
      cause: err,
      data: { subject: denied.subject, operation: denied.operation },
    });
  }
  if (isNoResponders(err)) {
    return new UnavailableError(`no one is answering on ${subject}`, { cause: err, data: { subject } });
  }
  if (isTimeout(err)) {
    return new DeadlineExceededError(`no reply on ${subject} within ${timeoutMs} ms`, { cause: err, data: { subject } });
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
