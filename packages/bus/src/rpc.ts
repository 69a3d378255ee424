// Request/reply with Flotilla's codec and error mapping, for the control plane.
import type { NatsConnection } from '@nats-io/nats-core';
import { errors as natsErrors } from '@nats-io/nats-core';
import {
  DeadlineExceededError,
  PROTOCOL_VERSION,
  UnavailableError,
  decode,
  encode,
  fromWire,
  type ControlReply,
} from '@flotilla/protocol';

/** Sends `{ v, ...body }` and returns the reply's `result`, or throws the reply's typed error. */
export async function call<T>(nc: NatsConnection, subject: string, body: object, timeoutMs = 10_000): Promise<T> {
  let msg;
  try {
    msg = await nc.request(subject, encode({ v: PROTOCOL_VERSION, ...body }), { timeout: timeoutMs });
  } catch (err) {
    throw mapNatsError(err, subject, timeoutMs);
  }
  const reply = decode<ControlReply<T>>(msg.data);
  if (!reply.ok) throw fromWire(reply.error);
  return reply.result;
}

export function mapNatsError(err: unknown, subject: string, timeoutMs: number): Error {
  if (err instanceof natsErrors.NoRespondersError || (err as Error)?.cause instanceof natsErrors.NoRespondersError) {
    return new UnavailableError(`no one is answering on ${subject}`, { cause: err, data: { subject } });
  }
  if (err instanceof natsErrors.TimeoutError || (err as Error)?.cause instanceof natsErrors.TimeoutError) {
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
