// Every subscription Flotilla opens goes through `serve` (request/reply) or `listen` (one-way):
// nothing thrown while decoding, validating, handling or responding escapes into the NATS client
// (an exception there stops its reader: the process keeps running but receives nothing). Every
// reply is bounded by the server's max_payload: a larger one is staged in the blob bucket when a
// stager is given, else it becomes a PAYLOAD_TOO_LARGE error reply.
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/nats-core';
import {
  PROTOCOL_VERSION,
  PayloadTooLargeError,
  DEFAULT_MAX_MESSAGE_BYTES,
  decode,
  encode,
  joinBody,
  mustStage,
  toFlotillaError,
  type Body,
} from '@flotilla/protocol';
import type { Logger } from './logger.js';
import { maxPayload } from './staging.js';

/** Stages a body too large for one message and returns its reference (a BlobStore's `put`, or its `stream`'s ref). */
export type Stager = (data: Body) => Promise<{ name: string; size: number; nuid?: string; direct?: string }>;

/**
 * A reply body that fits one message: `data` itself (joined, when in parts), a `{ v, blob }` reference to it staged with
 * `stage` when over max_payload, or a PAYLOAD_TOO_LARGE error reply (`errorBody` shapes it, for
 * replies that carry an id) when it cannot be staged. Never throws.
 */
export async function fitReply(
  nc: NatsConnection,
  data: Body,
  stage?: Stager,
  errorBody: (error: ReturnType<PayloadTooLargeError['toWire']>) => object = (error) => ({ v: PROTOCOL_VERSION, ok: false, error }),
  maxBytes = DEFAULT_MAX_MESSAGE_BYTES,
): Promise<Uint8Array> {
  const max = maxPayload(nc);
  if (!mustStage(data.byteLength, max)) return joinBody(data);
  if (data.byteLength > maxBytes) {
    const tooLarge = new PayloadTooLargeError(`reply of ${data.byteLength} bytes exceeds the limit of ${maxBytes}`, {
      data: { sizeBytes: data.byteLength, limitBytes: maxBytes },
    });
    return encode(errorBody(tooLarge.toWire()));
  }
  let error = new PayloadTooLargeError(`reply of ${data.byteLength} bytes exceeds the server's max_payload of ${max} bytes`, {
    data: { sizeBytes: data.byteLength, limitBytes: max },
  });
  if (stage) {
    try {
      return encode({ v: PROTOCOL_VERSION, blob: await stage(data) });
    } catch (err) {
      error = new PayloadTooLargeError(`reply of ${data.byteLength} bytes could not be staged: ${toFlotillaError(err).message}`, {
        data: { sizeBytes: data.byteLength, limitBytes: max },
      });
    }
  }
  return encode(errorBody(error.toWire()));
}

/** Responds without throwing (closed connection, no reply subject, a body over max_payload). */
export function respondSafely(msg: Msg, data: Uint8Array, headers?: MsgHdrs): boolean {
  if (!msg.reply) return false;
  try {
    return headers ? msg.respond(data, { headers }) : msg.respond(data);
  } catch {
    return false;
  }
}

/** Logs the first few problems of a kind, then one in every 1,000 (a storm must not flood the log). */
export class ThrottledLog {
  private count = 0;
  constructor(
    private readonly logger: Logger,
    private readonly what: string,
  ) {}

  warn(obj: Record<string, unknown>): void {
    this.count++;
    if (this.count <= 10 || this.count % 1000 === 0) this.logger.warn({ ...obj, seen: this.count }, this.what);
  }
}

export interface ServeOptions<T> {
  /** Queue group (one member answers). */
  queue?: string;
  /** Validates the decoded message (a schema's parse from `protocol`); throws a coded error. */
  parse: (raw: Record<string, unknown>, msg: Msg) => T;
  logger: Logger;
  /** Log message for rejected or failed requests. */
  what: string;
  /** Stages replies over max_payload (control replies such as `status` on a large cluster). */
  stage?: Stager;
}

/**
 * Request/reply with a total handler: decode → parse → handle → `{ v, ok, result | error }`,
 * bounded, responded. A request without a reply subject is handled and its result dropped.
 */
export function serve<T>(nc: NatsConnection, subject: string, opts: ServeOptions<T>, handle: (req: T, msg: Msg) => unknown): Subscription {
  const log = new ThrottledLog(opts.logger, opts.what);
  return nc.subscribe(subject, {
    queue: opts.queue,
    callback: (err, msg) => {
      if (err) return log.warn({ err: err.message, subject });
      let result: Promise<unknown>;
      try {
        result = Promise.resolve(handle(opts.parse(decode(msg.data), msg), msg));
      } catch (e) {
        result = Promise.reject(e);
      }
      result
        .then(
          (r) => encode({ v: PROTOCOL_VERSION, ok: true, result: r }),
          (e: unknown) => {
            const fe = toFlotillaError(e);
            if (fe.code === 'INTERNAL') log.warn({ err: fe.message, subject: msg.subject });
            return encode({ v: PROTOCOL_VERSION, ok: false, error: fe.toWire() });
          },
        )
        .then((data) => (msg.reply ? fitReply(nc, data, opts.stage) : data))
        .then((data) => respondSafely(msg, data))
        .catch((e: unknown) => log.warn({ err: String((e as Error)?.message ?? e), subject: msg.subject }));
    },
  });
}

export interface ListenOptions<T> {
  queue?: string;
  parse: (raw: Record<string, unknown>, msg: Msg) => T;
  logger: Logger;
  /** Log message for messages that are dropped as invalid. */
  what: string;
}

/** One-way messages (heartbeats, events) with a total handler: an invalid one is logged and dropped. */
export function listen<T>(nc: NatsConnection, subject: string, opts: ListenOptions<T>, handle: (m: T, msg: Msg) => void): Subscription {
  const log = new ThrottledLog(opts.logger, opts.what);
  return nc.subscribe(subject, {
    queue: opts.queue,
    callback: (err, msg) => {
      if (err) return log.warn({ err: err.message, subject });
      try {
        handle(opts.parse(decode(msg.data), msg), msg);
      } catch (e) {
        log.warn({ err: toFlotillaError(e).message.slice(0, 300), subject: msg.subject });
      }
    },
  });
}
