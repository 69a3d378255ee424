// The object store's wire format (NATS ADR-20), written and read at loopback speed: chunks go out
// as zero-copy views of the body with a bounded window of unacknowledged publishes, hashed by
// node:crypto (the nats.js object store awaits each chunk's ack and hashes in JavaScript: 18 MB/s),
// and come back through one ordered push consumer straight into a buffer of the announced size.
// Any NATS client's object store reads what this writes, and this reads what they write.
import { createHash } from 'node:crypto';
import { headers, type MsgHdrs, type NatsConnection, type Status } from '@nats-io/nats-core';
import type { ConsumerMessages, JetStreamClient, JsMsg, PubAck } from '@nats-io/jetstream';
import { Base64UrlPaddedCodec } from '@nats-io/obj';
import {
  BadRequestError,
  STAGED_MIN_AVG_CHUNK_BYTES,
  STAGED_STREAM_GRACE_MS,
  STAGED_STREAM_MIN_BYTES_PER_S,
  UnavailableError,
  belowStreamFloor,
  bodyChunks,
  objStream,
  type Body,
} from '@flotilla/protocol';

/** Unacknowledged chunk publishes at a time (each a view of the body, so no extra memory). Default 8. */
export const DEFAULT_PUT_WINDOW = 8;
/** A read that receives nothing for this long fails UNAVAILABLE (ms). Default 10 s. */
export const DEFAULT_READ_STALL_MS = 10_000;
/** A put that gets no chunk acknowledgement for this long fails (ms). Default 5 s. */
export const DEFAULT_ACK_TIMEOUT_MS = 5_000;
/** Times a read re-creates its consumer after a reconnect before failing UNAVAILABLE. Default 3. */
export const DEFAULT_READ_RESUMES = 3;
/** How often a streamed read checks its rate against its floor (ms). */
const FLOOR_CHECK_MS = 250;

const DIGEST_PREFIX = 'SHA-256=';
const NUID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** The stored description of one object (the JSON on `$O.<bucket>.M.<name>`), as far as we read it. */
export interface ObjectMeta {
  name: string;
  nuid: string;
  size: number;
  chunks: number;
  digest: string;
  deleted?: boolean;
}

export interface ChunkedPutOptions {
  /** Bytes per chunk message (at most the server's max_payload). */
  chunkBytes: number;
  /** Unacknowledged chunks at a time. Default DEFAULT_PUT_WINDOW. */
  window?: number;
  /** Per-publish ack timeout (ms). */
  timeoutMs?: number;
  /** Called once the first chunk (the meta, for an empty body) is stored: the bucket takes this body. */
  onFirstAck?: () => void;
}

export const chunkSubject = (bucket: string, nuid: string): string => `$O.${bucket}.C.${nuid}`;
export const metaSubject = (bucket: string, name: string): string => `$O.${bucket}.M.${Base64UrlPaddedCodec.encode(name)}`;

/**
 * Writes `data` as object `name` of `bucket` (chunks under a fresh `nuid`, then the meta message
 * with a subject rollup, as every object store client does). A body in parts goes out as views of
 * them (a chunk that spans two parts is copied). On failure the caller purges
 * `chunkSubject(bucket, nuid)`; the error is what JetStream threw.
 */
export async function putChunked(
  js: JetStreamClient,
  bucket: string,
  name: string,
  nuid: string,
  data: Body,
  opts: ChunkedPutOptions,
): Promise<ObjectMeta> {
  const { chunkBytes } = opts;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
  const window = Math.max(1, opts.window ?? DEFAULT_PUT_WINDOW);
  const subject = chunkSubject(bucket, nuid);
  const sha = createHash('sha256');
  const inFlight: Promise<PubAck>[] = [];
  let fail!: (err: Error) => void;
  const stalled = new Promise<never>((_, reject) => (fail = reject));
  stalled.catch(() => undefined);
  const dog = new Watchdog(timeoutMs, () => fail(new UnavailableError(`no acknowledgement for ${timeoutMs} ms`)));
  // The watchdog judges progress; the publishes' own timeout is only a backstop that frees them.
  let first = opts.onFirstAck;
  const publish = (subj: string, payload: Uint8Array | string, o: { headers?: MsgHdrs } = {}) =>
    js.publish(subj, payload, { ...o, timeout: timeoutMs * 4 }).then((ack) => {
      dog.touch();
      first?.();
      first = undefined;
      return ack;
    });
  let chunks = 0;
  try {
    for (const chunk of bodyChunks(data, chunkBytes)) {
      sha.update(chunk);
      inFlight.push(publish(subject, chunk));
      chunks++;
      if (inFlight.length >= window) await Promise.race([inFlight.shift()!, stalled]);
    }
    await Promise.race([Promise.all(inFlight), stalled]);
    const meta = {
      bucket,
      nuid,
      size: data.byteLength,
      chunks,
      name,
      description: '',
      options: { max_chunk_size: chunkBytes },
      mtime: new Date().toISOString(),
      digest: `${DIGEST_PREFIX}${Base64UrlPaddedCodec.encode(new Uint8Array(sha.digest()))}`,
      deleted: false,
    };
    const h = headers();
    h.set('Nats-Rollup', 'sub');
    await Promise.race([publish(metaSubject(bucket, name), JSON.stringify(meta), { headers: h }), stalled]);
    return meta;
  } catch (err) {
    // The rest settle (or time out) on their own; none may surface as an unhandled rejection.
    for (const p of inFlight) p.catch(() => undefined);
    throw err;
  } finally {
    dog.stop();
  }
}

/**
 * Calls `onStall` once nothing called `touch()` for `ms`, judged only after the I/O that arrived
 * meanwhile was read: an event loop blocked for a while (a long synchronous task in the same
 * process) is no stall of the server, and its acknowledgements are already in the socket.
 */
export class Watchdog {
  private last = performance.now();
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly ms: number,
    private readonly onStall: () => void,
  ) {
    this.arm(ms);
  }

  touch(): void {
    this.last = performance.now();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => setImmediate(() => this.check()), ms);
    this.timer.unref?.();
  }

  private check(): void {
    if (this.stopped) return;
    const idle = performance.now() - this.last;
    if (idle >= this.ms) {
      this.stopped = true;
      this.onStall();
    } else this.arm(this.ms - idle);
  }
}

/** The 32-byte digest an object's meta announces; BAD_REQUEST when it is not a SHA-256 one. */
export function parseDigest(meta: Pick<ObjectMeta, 'name' | 'digest'>): Buffer {
  const d = typeof meta.digest === 'string' && meta.digest.startsWith(DIGEST_PREFIX) ? meta.digest.slice(DIGEST_PREFIX.length) : '';
  const bytes = /^[A-Za-z0-9_=-]{43,44}$/.test(d) ? Buffer.from(d, 'base64url') : undefined;
  if (bytes?.byteLength !== 32) throw new BadRequestError(`staged body ${meta.name} has no SHA-256 digest`);
  return bytes;
}

/** BAD_REQUEST when the meta's chunk count is implausible for its size (a flood of tiny chunks). */
export function checkChunkCount(meta: Pick<ObjectMeta, 'name' | 'size' | 'chunks'>): void {
  const most = Math.ceil(meta.size / STAGED_MIN_AVG_CHUNK_BYTES) + 1;
  if (!Number.isSafeInteger(meta.chunks) || meta.chunks < 0 || meta.chunks > most || (meta.size > 0 && meta.chunks === 0)) {
    throw new BadRequestError(`staged body ${meta.name} claims ${String(meta.chunks)} chunks for ${meta.size} bytes`);
  }
}

export interface ChunkedReadOptions {
  /** Fail UNAVAILABLE when no chunk arrives for this long (ms). Default DEFAULT_READ_STALL_MS. */
  stallMs?: number;
  /** Consumers re-created after reconnects, at most. Default DEFAULT_READ_RESUMES. */
  resumes?: number;
}

/** The rate a streamed body must keep (see belowStreamFloor in protocol); the defaults are protocol's. */
export interface StreamFloorOptions {
  /** Bytes per second, averaged from the read's start. Default STAGED_STREAM_MIN_BYTES_PER_S; 0 turns the floor off. */
  minBytesPerSec?: number;
  /** Judged only after this long (ms). Default STAGED_STREAM_GRACE_MS. */
  graceMs?: number;
}

/**
 * Reads object `meta` (whose size the caller has checked against its limit) into one buffer of
 * exactly `meta.size` bytes. More bytes or chunks than announced, fewer, or another digest:
 * BAD_REQUEST; a stream or connection that fails or stalls: UNAVAILABLE. The consumer is the one
 * the object store uses (ordered push, flow control), so the same permissions cover it. Chunks
 * the server pushed while the connection was down are lost to it, so after a reconnect the read
 * resumes on a new consumer from the stream sequence after the last chunk it has.
 */
export async function readChunked(
  nc: NatsConnection,
  js: JetStreamClient,
  bucket: string,
  meta: ObjectMeta,
  opts: ChunkedReadOptions = {},
): Promise<Uint8Array> {
  // The nuid becomes a subject token: a wildcard or a dot would read other objects' chunks.
  if (!isNuid(meta.nuid)) throw new BadRequestError(`staged body ${meta.name} has a malformed nuid`);
  const expected = parseDigest(meta);
  checkChunkCount(meta);
  const read = await readChunks(nc, js, bucket, meta, opts);
  checkCounts(meta, read.chunks, read.out.byteLength);
  return checkDigest(meta, read.digest, expected, read.out);
}

/**
 * Reads a body whose sender is still writing it (`{ name, size, nuid }` from a streamed
 * reference, BlobStore.stream): once `chunksStored` says its first chunk is there (UNAVAILABLE at
 * once otherwise), its chunks as they are stored, then its meta once the sender has
 * written it (within `metaWaitMs`), which must name the same chunks and size, count the chunks
 * read and hash to what was read. Otherwise as readChunked: BAD_REQUEST for a body that is not
 * what it says, UNAVAILABLE when it stops coming (a sender that failed sends no more chunks) or
 * comes slower than its floor (`minBytesPerSec` after `graceMs`: a sender that wrote one chunk and
 * stopped, or trickles, does not hold the memory set aside for its announced size until the stall).
 */
export async function readStreamed(
  nc: NatsConnection,
  js: JetStreamClient,
  bucket: string,
  ref: { name: string; size: number; nuid: string },
  lookUpMeta: () => Promise<ObjectMeta | null>,
  chunksStored: () => Promise<number>,
  opts: ChunkedReadOptions & StreamFloorOptions & { metaWaitMs?: number } = {},
): Promise<Uint8Array> {
  if (!isNuid(ref.nuid)) throw new BadRequestError(`staged body ${ref.name} has a malformed nuid`);
  // A sender sends a streamed reference only once its first chunk is stored: a reference to no
  // chunk at all (replayed after its take, expired, or forged) fails now, not after a stall that
  // would hold the receiver's fetch budget for the body's announced size.
  if (ref.size > 0 && (await chunksStored()) === 0) {
    throw new UnavailableError(
      `staged body ${ref.name} has no chunk stored (expired, already taken, or never written: a streamed reference goes out after its first chunk)`,
    );
  }
  const floor = {
    minBytesPerSec: opts.minBytesPerSec ?? STAGED_STREAM_MIN_BYTES_PER_S,
    graceMs: opts.graceMs ?? STAGED_STREAM_GRACE_MS,
  };
  const read = await readChunks(nc, js, bucket, ref, { ...opts, floor });
  const meta = await waitForMeta(ref.name, lookUpMeta, opts.metaWaitMs ?? opts.stallMs ?? DEFAULT_READ_STALL_MS);
  if (meta.deleted) throw new UnavailableError(`staged body ${ref.name} was withdrawn by its sender`);
  if (meta.nuid !== ref.nuid || meta.size !== ref.size) {
    throw new BadRequestError(
      `staged body ${ref.name}: its meta (${meta.size} bytes) is not the one its reference announced (${ref.size})`,
    );
  }
  const expected = parseDigest(meta);
  checkChunkCount(meta);
  checkCounts(meta, read.chunks, read.out.byteLength);
  return checkDigest(meta, read.digest, expected, read.out);
}

/** The meta `lookUp` finds, polled with a growing pause (1 to 20 ms) for at most `waitMs`; UNAVAILABLE after. */
async function waitForMeta(name: string, lookUp: () => Promise<ObjectMeta | null>, waitMs: number): Promise<ObjectMeta> {
  const until = performance.now() + waitMs;
  for (let pause = 1; ; pause = Math.min(20, pause * 2)) {
    const meta = await lookUp();
    if (meta) return meta;
    if (performance.now() >= until) throw new UnavailableError(`staged body ${name}: its sender wrote no meta within ${waitMs} ms`);
    await new Promise((r) => setTimeout(r, pause));
  }
}

function checkCounts(meta: Pick<ObjectMeta, 'name' | 'size' | 'chunks'>, chunks: number, bytes: number): void {
  if (bytes !== meta.size || chunks !== meta.chunks) {
    throw new BadRequestError(
      `staged body ${meta.name} has ${bytes} bytes in ${chunks} chunks, its meta says ${meta.size} in ${meta.chunks}`,
    );
  }
}

/**
 * The chunks of `nuid` into one buffer of `size` bytes: until the stream has no more (`chunks`
 * known: a stored object) or `size` bytes have arrived (a streamed one, still being written).
 */
async function readChunks(
  nc: NatsConnection,
  js: JetStreamClient,
  bucket: string,
  target: { name: string; size: number; nuid: string; chunks?: number },
  opts: ChunkedReadOptions & { floor?: Required<StreamFloorOptions> },
): Promise<{ out: Uint8Array; chunks: number; digest: Buffer }> {
  const { name, size } = target;
  const streamed = target.chunks === undefined;
  // Not zero-filled: every byte is written before it is returned (the size is checked by the caller).
  const out = new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
  const sha = createHash('sha256');
  if (size === 0) return { out, chunks: 0, digest: sha.digest() };

  let off = 0;
  let chunks = 0;
  let lastSeq = 0;
  let settled = false;
  let settle!: (err?: Error) => void;
  const done = new Promise<void>(
    (resolve, reject) =>
      (settle = (err) => {
        settled = true;
        if (err) reject(err);
        else resolve();
      }),
  );
  const unavailable = (why: string, cause?: unknown) => new UnavailableError(`staged body ${name}: ${why}`, { cause });
  const stallMs = opts.stallMs ?? DEFAULT_READ_STALL_MS;
  const stall = new Watchdog(stallMs, () => settle(unavailable(`no chunk for ${stallMs} ms`)));
  // The floor is judged, like the stall, after the I/O that arrived meanwhile was read.
  const startedAt = performance.now();
  const floor = opts.floor?.minBytesPerSec ? opts.floor : undefined;
  const floorTimer = floor
    ? setInterval(
        () =>
          setImmediate(() => {
            const elapsed = performance.now() - startedAt;
            if (settled || !belowStreamFloor(off, elapsed, floor.minBytesPerSec, floor.graceMs)) return;
            settle(
              unavailable(
                `${off} of ${size} bytes arrived in ${Math.round(elapsed)} ms, slower than the floor of ${floor.minBytesPerSec} bytes/s after ${floor.graceMs} ms`,
              ),
            );
          }),
        FLOOR_CHECK_MS,
      ).unref()
    : undefined;
  let messages: ConsumerMessages | undefined;
  // Every consumer this read started (a reconnect can overlap the first one's creation): all stop at the end.
  const started: ConsumerMessages[] = [];

  const onChunk = (jm: JsMsg): void => {
    if (settled || jm.seq <= lastSeq) return;
    const chunk = jm.data;
    chunks++;
    if (off + chunk.byteLength > out.byteLength || (target.chunks !== undefined && chunks > target.chunks)) {
      settle(
        new BadRequestError(
          `staged body ${name} has more than its announced ${size} bytes${streamed ? '' : ` in ${target.chunks} chunks`}`,
        ),
      );
      return;
    }
    out.set(chunk, off);
    off += chunk.byteLength;
    lastSeq = jm.seq;
    sha.update(chunk);
    stall.touch();
    if (streamed ? off === size : jm.info.pending === 0) settle();
  };
  const subscribe = async (): Promise<void> => {
    const consumer = await js.consumers.getPushConsumer(objStream(bucket), {
      filter_subjects: chunkSubject(bucket, target.nuid),
      ...(lastSeq > 0 ? { opt_start_seq: lastSeq + 1 } : {}),
    });
    const m = await consumer.consume({ callback: onChunk });
    started.push(m);
    if (settled) {
      m.stop();
      return;
    }
    messages = m;
    void m.closed().then(
      (err) => {
        if (m === messages) settle(unavailable(err ? err.message : 'the consumer stopped', err));
      },
      (err: unknown) => settle(unavailable((err as Error).message, err)),
    );
  };

  let resumes = opts.resumes ?? DEFAULT_READ_RESUMES;
  // nats.js returns a QueuedIterator: stop() unregisters it (the type says only AsyncIterable).
  const status = nc.status() as AsyncIterable<Status> & { stop(): void };
  void (async () => {
    for await (const s of status) {
      if (s.type !== 'reconnect' || settled) continue;
      if (resumes-- <= 0) return settle(unavailable('too many reconnects'));
      const old = messages;
      messages = undefined;
      old?.stop();
      await subscribe().catch((err: unknown) => settle(unavailable(`resuming after a reconnect: ${(err as Error).message}`, err)));
    }
  })();
  try {
    // A consumer that cannot be created (the server went away) fails at the stall timeout, not the API's.
    await Promise.race([subscribe().catch((err: unknown) => settle(unavailable((err as Error).message, err))), done]);
    await done;
  } finally {
    settled = true;
    stall.stop();
    clearInterval(floorTimer);
    status.stop();
    for (const m of started) m.stop();
  }
  return { out, chunks, digest: sha.digest() };
}

/** Whether `id` can stand as one subject token of an object's chunks (no wildcard, no dot). */
export function isNuid(id: unknown): id is string {
  return typeof id === 'string' && NUID_RE.test(id);
}

function checkDigest(meta: Pick<ObjectMeta, 'name'>, got: Buffer, expected: Buffer, out: Uint8Array): Uint8Array {
  if (!got.equals(expected)) throw new BadRequestError(`staged body ${meta.name} does not match its SHA-256 digest`);
  return out;
}
