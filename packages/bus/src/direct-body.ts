// Direct bodies over core NATS (protocol/src/direct-body.ts has the wire): the caller's side
// (`pushBody` sends a request's bytes to a replica, `pullBody` reads a reply's bytes from it) and
// the replica's (`DirectBodies`: the bodies it expects and the replies it holds, answering the
// chunks on its body channel). Nothing is stored in nats-server and nothing is hashed: the bytes go
// once over the caller's and the replica's connections, in order, with DIRECT_WINDOW chunks
// unanswered. A transfer ends when its last byte is answered, fails with a code when a chunk is not
// answered within the stall time (a lost connection, a replica gone), and is dropped by the
// replica when no chunk comes for as long.
import { headers, nuid, type Msg, type NatsConnection } from '@nats-io/nats-core';
import {
  BadRequestError,
  DIRECT_BODY_HEADER,
  DIRECT_ERROR,
  DIRECT_MAX_EXPECTED,
  DIRECT_GET_RETRY_MS,
  DIRECT_STALL_MS,
  DIRECT_WINDOW,
  FlotillaError,
  InternalError,
  PROTOCOL_VERSION,
  STAGED_STREAM_GRACE_MS,
  STAGED_STREAM_MIN_BYTES_PER_S,
  OverloadedError,
  UnavailableError,
  belowStreamFloor,
  bodyChunks,
  bodySlice,
  decode,
  encode,
  formatGet,
  formatPut,
  fromWire,
  parseDirectOp,
  toFlotillaError,
  type Body,
  type WireError,
} from '@flotilla/protocol';
import { isConnectionLost } from './connection-lost.js';
import { requesterFor } from './requester.js';
import { isNoResponders, isTimeout } from './rpc.js';
import { retry } from './retry.js';

export interface DirectSendOptions {
  /** Bytes per chunk (protocol directChunkBytes of the connection's max_payload). */
  chunkBytes: number;
  /** Unanswered chunks at a time. Default DIRECT_WINDOW. */
  window?: number;
  /** How long each chunk may go unanswered, ms. Default DIRECT_STALL_MS. */
  timeoutMs?: number;
  /** pullBody: a `get` unanswered this long is sent again within `timeoutMs`, ms. Default DIRECT_GET_RETRY_MS. */
  getRetryMs?: number;
}

/** The answer to a chunk as an error, when it is one (the replica's coded error, or INTERNAL for an unreadable one). */
function answerError(msg: Msg): FlotillaError | undefined {
  if (msg.headers?.get(DIRECT_BODY_HEADER) !== DIRECT_ERROR) return undefined;
  try {
    const raw = decode<{ error?: WireError }>(msg.data);
    if (raw && typeof raw.error?.code === 'string' && typeof raw.error.message === 'string') return fromWire(raw.error);
  } catch {
    // fall through
  }
  return new InternalError('the replica answered a chunk with an unreadable error');
}

/** A chunk's request that failed in transport, as a coded error. */
function transportError(err: unknown, subject: string, timeoutMs: number): FlotillaError {
  if (isNoResponders(err)) return new UnavailableError(`nobody answers on ${subject}: the replica is gone`, { cause: err });
  if (isTimeout(err)) return new UnavailableError(`a chunk on ${subject} was not answered within ${timeoutMs} ms`, { cause: err });
  if (isConnectionLost(err))
    return new UnavailableError(`the connection to NATS was lost with a chunk on ${subject} in flight`, { cause: err });
  return new UnavailableError(`a chunk on ${subject} failed: ${toFlotillaError(err).message}`, { cause: err });
}

/**
 * Runs `send(i)` for chunk i = 0..count-1 with at most `window` unsettled. The first failure is
 * thrown at once: no new sends, and the ones in flight settle on their own (a replica gone leaves
 * them to their timeouts, which nobody should wait for).
 */
async function windowed(count: number, window: number, send: (i: number) => Promise<void>): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let failed: { err: unknown } | undefined;
  let wake: (() => void) | undefined;
  const settled = (p: Promise<void>) => {
    inFlight.delete(p);
    wake?.();
  };
  for (let i = 0; i < count; i++) {
    const p: Promise<void> = send(i).then(
      () => settled(p),
      (err: unknown) => {
        failed ??= { err };
        settled(p);
      },
    );
    inFlight.add(p);
    while (inFlight.size >= window && !failed) await new Promise<void>((r) => (wake = r));
    if (failed) throw failed.err;
  }
  while (inFlight.size > 0 && !failed) await new Promise<void>((r) => (wake = r));
  if (failed) throw failed.err;
}

/**
 * Sends `body` as the direct request body `id` to the body channel `subject`: `put` chunks, at most
 * `window` unanswered. Resolves when every chunk is answered; rejects with the replica's coded
 * error, or UNAVAILABLE when a chunk goes unanswered (replica gone, connection lost).
 */
export async function pushBody(nc: NatsConnection, subject: string, id: string, body: Body, opts: DirectSendOptions): Promise<void> {
  const timeout = opts.timeoutMs ?? DIRECT_STALL_MS;
  const chunks = bodyChunks(body, opts.chunkBytes);
  const count = Math.ceil(body.byteLength / opts.chunkBytes);
  // The SDK's requester: nats.js's own request costs a throw-away error per answered chunk (requester.ts).
  const requester = requesterFor(nc);
  let offset = 0;
  await windowed(count, opts.window ?? DIRECT_WINDOW, async () => {
    const chunk = chunks.next().value as Uint8Array;
    const h = headers();
    h.set(DIRECT_BODY_HEADER, formatPut(id, offset));
    offset += chunk.byteLength;
    // The chunk is copied into the connection's buffer here: the body may be a view of the caller's arrays.
    const answer = requester.request(subject, chunk, { timeout, headers: h });
    let msg: Msg;
    try {
      msg = await answer;
    } catch (err) {
      throw transportError(err, subject, timeout);
    }
    const e = answerError(msg);
    if (e) throw e;
  });
}

/**
 * Reads the direct reply body `id` of `size` bytes from the body channel `subject` into a fresh
 * buffer: `get` chunks, at most `window` unanswered. The caller checks `size` against its limit
 * first. Rejects with the replica's coded error, UNAVAILABLE when a chunk goes unanswered, or
 * BAD_REQUEST when an answer is not the length asked for.
 */
export async function pullBody(
  nc: NatsConnection,
  subject: string,
  id: string,
  size: number,
  opts: DirectSendOptions,
): Promise<Uint8Array> {
  const timeout = opts.timeoutMs ?? DIRECT_STALL_MS;
  // Fresh and 8-byte aligned: the decoder views aligned tensors in it instead of copying them.
  const out = new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
  const count = Math.ceil(size / opts.chunkBytes);
  const requester = requesterFor(nc);
  const retryMs = Math.max(1, opts.getRetryMs ?? DIRECT_GET_RETRY_MS);
  await windowed(count, opts.window ?? DIRECT_WINDOW, async (i) => {
    const offset = i * opts.chunkBytes;
    const length = Math.min(opts.chunkBytes, size - offset);
    const h = headers();
    h.set(DIRECT_BODY_HEADER, formatGet(id, offset, length));
    // Asked again at once while unanswered (idempotent), within the chunk timeout: a get lost with
    // the replica's connection costs one retry interval, not the whole chunk timeout.
    const msg = await retry(
      ({ remainingMs }) => requester.request(subject, EMPTY, { timeout: Math.max(1, Math.min(retryMs, remainingMs)), headers: h }),
      { deadline: Date.now() + timeout, isRetryable: (err) => (isTimeout(err) ? 'immediately' : false) },
    ).catch((err: unknown) => {
      throw transportError(err, subject, timeout);
    });
    const e = answerError(msg);
    if (e) throw e;
    if (msg.data.byteLength !== length) {
      throw new BadRequestError(`the replica answered ${msg.data.byteLength} bytes for a chunk of ${length} at ${offset}`);
    }
    out.set(msg.data, offset);
  });
  return out;
}

const EMPTY = new Uint8Array(0);

/** A fresh transfer id. */
export const directId = (): string => nuid.next();

interface Inbound {
  readonly buf: Uint8Array;
  got: number;
  readonly startedAt: number;
  readonly timer: NodeJS.Timeout;
  readonly resolve: (body: Uint8Array) => void;
  readonly reject: (err: Error) => void;
}

interface Outbound {
  readonly body: Body;
  timer: NodeJS.Timeout;
  readonly done: () => void;
  /** Offsets read so far, and their bytes: the reply is released once every byte was read once. */
  readonly read: Set<number>;
  readBytes: number;
}

export interface DirectBodiesOptions {
  /** Most reply bytes held for callers to read at once; `offer` refuses past it (the reply is staged instead). */
  maxHeldBytes: number;
  /** Largest chunk a `get` may ask for, bytes (directChunkBytes of the connection's max_payload). */
  chunkBytes: () => number;
  /** A transfer with no chunk for this long is dropped, ms. Default DIRECT_STALL_MS. */
  stallMs?: number;
  /** Most bodies expected at once; `expect` refuses past it (OVERLOADED). Default DIRECT_MAX_EXPECTED. */
  maxExpected?: number;
  /**
   * Slowest an expected body may arrive, as a streamed staged one (protocol STAGED_STREAM_*): a
   * sender that announces a body and trickles or stops must not hold the replica's fetch budget
   * until the stall time. `minBytesPerSec` 0 turns it off.
   */
  floor?: { minBytesPerSec: number; graceMs: number };
}

/** How often expected bodies are checked against their floor, ms. */
const FLOOR_CHECK_MS = 250;

/**
 * A replica's direct bodies: the request bodies it expects (`expect`, filled by `put` chunks) and
 * the replies it holds for their callers (`offer`, read by `get` chunks). `handle` answers every
 * message on the body channel and never throws. Bounded: the replica limits what it expects (its
 * fetching budget), `maxHeldBytes` what it holds, and a transfer with no chunk for the stall time
 * is dropped.
 */
export class DirectBodies {
  private readonly inbound = new Map<string, Inbound>();
  private readonly outbound = new Map<string, Outbound>();
  private held = 0;
  private readonly stallMs: number;
  /** How long a held reply waits for its next `get` (the stall time, shorter once expedited). */
  private heldStallMs: number;
  private readonly floor: { minBytesPerSec: number; graceMs: number };
  private floorTimer?: NodeJS.Timeout;

  constructor(private readonly opts: DirectBodiesOptions) {
    this.stallMs = opts.stallMs ?? DIRECT_STALL_MS;
    this.heldStallMs = this.stallMs;
    this.floor = opts.floor ?? { minBytesPerSec: STAGED_STREAM_MIN_BYTES_PER_S, graceMs: STAGED_STREAM_GRACE_MS };
  }

  /** Reply bytes held for callers now. */
  get heldBytes(): number {
    return this.held;
  }

  /** Transfers under way (expected or held). */
  get size(): number {
    return this.inbound.size + this.outbound.size;
  }

  /**
   * The request body `id` of `size` bytes once its chunks have come in order. Rejects BAD_REQUEST
   * for an id already expected, OVERLOADED past maxExpected at once, UNAVAILABLE when no chunk
   * comes for the stall time, when it arrives slower than the floor, or on close.
   */
  expect(id: string, size: number): Promise<Uint8Array> {
    if (this.inbound.has(id)) return Promise.reject(new BadRequestError(`a direct body '${id}' is already expected here`));
    const most = this.opts.maxExpected ?? DIRECT_MAX_EXPECTED;
    if (this.inbound.size >= most) {
      return Promise.reject(new OverloadedError(`${this.inbound.size} direct bodies are already expected here (at most ${most})`));
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.end(id, t, new UnavailableError(`direct body '${id}': no chunk for ${this.stallMs} ms (${t.got} of ${size} bytes came)`));
      }, this.stallMs).unref(); // (the connection keeps a process alive, not a transfer's timer)
      const buf = new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
      const t: Inbound = { buf, got: 0, startedAt: performance.now(), timer, resolve, reject };
      this.inbound.set(id, t);
      if (size === 0) return this.end(id, t, buf);
      if (!this.floorTimer && this.floor.minBytesPerSec > 0) this.floorTimer = setInterval(this.checkFloors, FLOOR_CHECK_MS).unref();
    });
  }

  /** Drops the expected bodies that arrive slower than the floor (UNAVAILABLE to their requests). */
  private readonly checkFloors = (): void => {
    const now = performance.now();
    const { minBytesPerSec, graceMs } = this.floor;
    for (const [id, t] of this.inbound) {
      const elapsed = now - t.startedAt;
      if (!belowStreamFloor(t.got, elapsed, minBytesPerSec, graceMs)) continue;
      this.end(
        id,
        t,
        new UnavailableError(
          `direct body '${id}': ${t.got} of ${t.buf.byteLength} bytes arrived in ${Math.round(elapsed)} ms, slower than the floor of ${minBytesPerSec} bytes/s after ${graceMs} ms`,
        ),
      );
    }
    if (this.inbound.size === 0) {
      clearInterval(this.floorTimer);
      this.floorTimer = undefined;
    }
  };

  /**
   * Holds `body` for its caller to read; undefined when that would hold more than maxHeldBytes.
   * `done` resolves when the last chunk has been answered, or the caller stopped reading (stall, close).
   */
  offer(body: Body): { id: string; size: number; done: Promise<void> } | undefined {
    if (this.held + body.byteLength > this.opts.maxHeldBytes) return undefined;
    const id = directId();
    this.held += body.byteLength;
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.release(id), this.heldStallMs).unref();
      this.outbound.set(id, { body, timer, done: resolve, read: new Set(), readBytes: 0 });
    });
    return { id, size: body.byteLength, done };
  }

  /**
   * From now on a held reply with no `get` for `ms` is released (a drain: a caller that is still
   * there reads every few ms, one that gave up must not hold an eviction for the whole stall time).
   */
  expedite(ms: number): void {
    if (ms >= this.heldStallMs) return;
    this.heldStallMs = ms;
    for (const [id, t] of this.outbound) {
      clearTimeout(t.timer);
      t.timer = setTimeout(() => this.release(id), ms).unref();
    }
  }

  /** Answers a message on the body channel: a `put` or `get` chunk, or a coded error. Never throws. */
  handle(msg: Msg): void {
    try {
      const op = parseDirectOp(msg.headers?.get(DIRECT_BODY_HEADER));
      if (op.op === 'put') return this.put(msg, op.id, op.offset);
      if (op.op === 'get') return this.get(msg, op.id, op.offset, op.length);
      throw new BadRequestError(`'${DIRECT_ERROR}' is an answer, not a request`);
    } catch (err) {
      this.fail(msg, err);
    }
  }

  /**
   * The replica's connection was lost: chunks in its socket are gone, so every expected body fails
   * UNAVAILABLE at once (its request answers so when the connection is back; the caller, whose own
   * chunks went unanswered, sends it again) rather than at the stall time. Held replies stay: their
   * callers read them again on the new connection.
   */
  connectionLost(): void {
    for (const [id, t] of this.inbound) {
      this.end(id, t, new UnavailableError(`direct body '${id}': the replica's connection to NATS was lost after ${t.got} bytes`));
    }
  }

  /** Drops every transfer: expected bodies fail UNAVAILABLE, held replies are released. */
  close(): void {
    for (const [id, t] of this.inbound) this.end(id, t, new UnavailableError(`direct body '${id}': the replica closed`));
    clearInterval(this.floorTimer);
    this.floorTimer = undefined;
    for (const id of [...this.outbound.keys()]) this.release(id);
  }

  private put(msg: Msg, id: string, offset: number): void {
    const t = this.inbound.get(id);
    if (!t) throw new UnavailableError(`no direct body '${id}' is expected here (unknown, complete or dropped)`);
    if (offset !== t.got) {
      // Ahead: chunks were lost in transit (a reconnect drops what was in the socket), so the
      // transfer fails as a lost connection does; behind: a chunk sent twice, which no transport does.
      const e =
        offset > t.got
          ? new UnavailableError(`direct body '${id}': a chunk at ${offset}, expected ${t.got} (chunks lost in transit)`)
          : new BadRequestError(`direct body '${id}': a chunk at ${offset} again, expected ${t.got}`);
      this.end(id, t, e);
      throw e;
    }
    if (t.got + msg.data.byteLength > t.buf.byteLength) {
      const e = new BadRequestError(`direct body '${id}': chunks past its announced ${t.buf.byteLength} bytes`);
      this.end(id, t, e);
      throw e;
    }
    t.buf.set(msg.data, t.got);
    t.got += msg.data.byteLength;
    t.timer.refresh();
    this.answer(msg, new Uint8Array(0));
    if (t.got === t.buf.byteLength) this.end(id, t, t.buf);
  }

  /** Ends an expected body: forgotten, its timer stopped, its request given the bytes or the error. */
  private end(id: string, t: Inbound, outcome: Uint8Array | Error): void {
    this.inbound.delete(id);
    clearTimeout(t.timer);
    if (outcome instanceof Error) t.reject(outcome);
    else t.resolve(outcome);
  }

  private get(msg: Msg, id: string, offset: number, length: number): void {
    const t = this.outbound.get(id);
    if (!t) throw new UnavailableError(`no direct reply '${id}' is held here (unknown, read or dropped)`);
    const max = this.opts.chunkBytes();
    if (length > max) throw new BadRequestError(`a chunk of ${length} bytes asked for; at most ${max}`);
    if (offset + length > t.body.byteLength || (length === 0 && t.body.byteLength > 0)) {
      throw new BadRequestError(`chunk ${offset}+${length} is outside the reply's ${t.body.byteLength} bytes`);
    }
    const chunk = bodySlice(t.body, offset, length);
    t.timer.refresh();
    this.answer(msg, chunk);
    // Every byte read once: released. (A get asked again, its answer lost, reads the same bytes;
    // chunks are read at the caller's fixed size, so offsets do not overlap.)
    if (!t.read.has(offset)) {
      t.read.add(offset);
      t.readBytes += length;
    }
    if (t.readBytes >= t.body.byteLength) this.release(id);
  }

  private release(id: string): void {
    const t = this.outbound.get(id);
    if (!t) return;
    this.outbound.delete(id);
    clearTimeout(t.timer);
    this.held -= t.body.byteLength;
    t.done();
  }

  private answer(msg: Msg, data: Uint8Array, h?: ReturnType<typeof headers>): void {
    if (!msg.reply) return;
    try {
      if (h) msg.respond(data, { headers: h });
      else msg.respond(data);
    } catch {
      // A closed connection: the caller's chunk times out.
    }
  }

  private fail(msg: Msg, err: unknown): void {
    const h = headers();
    h.set(DIRECT_BODY_HEADER, DIRECT_ERROR);
    this.answer(msg, encode({ v: PROTOCOL_VERSION, ok: false, error: toFlotillaError(err).toWire() }), h);
  }
}
