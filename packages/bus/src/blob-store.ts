// Staging of bodies larger than the server's max_payload through a JetStream object store
// (memory storage, objects expire after a TTL so a crashed party leaves no garbage for long).
// The sender puts the encoded body under a fresh name and sends `{ v, blob: { name, size } }`;
// the receiver fetches and deletes it. Or the sender streams it: it sends `{ v, blob: { name,
// size, nuid } }` as it starts writing, and the receiver reads the chunks while they are written
// and checks them against the meta written last (a put and a take overlap instead of following
// each other). Chunks move through blob-chunks.ts (pipelined, hashed natively, read into one
// buffer): the object store's own put/get moved 18-33 MB/s here.
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { ObjectStore } from '@nats-io/obj';
import { objectStores } from './object-stores.js';
import { nuid } from '@nats-io/nats-core';
import { BadRequestError, PayloadTooLargeError, UnavailableError, objStream, type Body } from '@flotilla/protocol';
import {
  chunkSubject,
  isNuid,
  metaSubject,
  putChunked,
  readChunked,
  readStreamed,
  type ObjectMeta,
  type StreamFloorOptions,
} from './blob-chunks.js';
import { maxPayload } from './staging.js';

/** Staged bodies older than this are removed by the server (ns). Default 10 minutes. */
export const DEFAULT_BLOB_TTL_MS = 10 * 60 * 1000;

/** Object store chunk size: as large as the server allows (fewer messages per MiB). */
export function objectChunkSize(nc: NatsConnection): number {
  return Math.max(64 * 1024, maxPayload(nc) - 16 * 1024);
}

export interface BlobStoreOptions {
  /** A fetch that receives no chunk for this long fails UNAVAILABLE (ms). Default DEFAULT_READ_STALL_MS (10 s). */
  readStallMs?: number;
  /** How long a put waits for each chunk's acknowledgement, and any JetStream API call (ms). Default 5 s. */
  timeoutMs?: number;
  /** Unacknowledged chunks a put keeps in flight. Default DEFAULT_PUT_WINDOW (8). */
  putWindow?: number;
  /** The rate a streamed body must keep while it is read (defaults: protocol's STAGED_STREAM_*). */
  streamFloor?: StreamFloorOptions;
}

export class BlobStore {
  private store?: Promise<ObjectStore>;
  private jsm?: Promise<JetStreamManager>;
  private readonly js: JetStreamClient;
  private readonly opts: Readonly<BlobStoreOptions>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    private readonly ttlMs = DEFAULT_BLOB_TTL_MS,
    /** JetStream replicas of the bucket (3 on a 3-node NATS, so losing a node loses no staged body). */
    private readonly replicas = 1,
    opts: BlobStoreOptions = {},
  ) {
    this.opts = { ...opts };
    this.js = jetstream(this.nc, this.opts.timeoutMs === undefined ? {} : { timeout: this.opts.timeoutMs });
  }

  private open(): Promise<ObjectStore> {
    this.store ??= objectStores(this.js)
      .then((stores) => stores.create(this.bucket, { storage: 'memory' as never, ttl: this.ttlMs * 1_000_000, replicas: this.replicas }))
      .catch((err: unknown) => {
        this.store = undefined;
        throw new UnavailableError(`blob bucket ${this.bucket} unavailable (JetStream enabled?): ${(err as Error).message}`, {
          cause: err,
        });
      });
    return this.store;
  }

  /** Stages `data` (one buffer or parts, body.ts) and returns its reference once it is all stored. */
  async put(data: Body): Promise<{ name: string; size: number }> {
    const name = nuid.next();
    await this.write(name, nuid.next(), data);
    return { name, size: data.byteLength };
  }

  /**
   * Starts staging `data` and returns its streamed reference once the bucket has stored the first
   * chunk (a bucket that refuses the body — full, gone — fails here, UNAVAILABLE, before any
   * reference goes out): send it while `done` settles (UNAVAILABLE when the rest fails; a receiver
   * then stops hearing chunks and fails UNAVAILABLE after its stall timeout). Only for receivers
   * that read streamed references.
   */
  async stream(data: Body): Promise<{ ref: { name: string; size: number; nuid: string }; done: Promise<void> }> {
    const ref = { name: nuid.next(), size: data.byteLength, nuid: nuid.next() };
    let started!: () => void;
    const first = new Promise<void>((resolve) => (started = resolve));
    const done = this.write(ref.name, ref.nuid, data, started);
    done.catch(() => undefined); // the caller may stop listening once its receiver answered
    await Promise.race([first, done]);
    return { ref, done };
  }

  private async write(name: string, id: string, data: Body, onFirstAck?: () => void): Promise<void> {
    await this.open();
    try {
      await putChunked(this.js, this.bucket, name, id, data, {
        chunkBytes: objectChunkSize(this.nc),
        window: this.opts.putWindow,
        timeoutMs: this.opts.timeoutMs,
        ...(onFirstAck ? { onFirstAck } : {}),
      });
    } catch (err) {
      // Chunks already stored would otherwise wait for the TTL.
      this.remove(name, id);
      throw new UnavailableError(`staging ${data.byteLength} bytes in ${this.bucket} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Fetches and removes a staged body; refuses names of bodies above `maxBytes` before fetching.
   * A streamed reference (with `nuid`) is read while its sender writes it.
   */
  async take(ref: { name: string; size: number; nuid?: string }, maxBytes: number): Promise<Uint8Array> {
    if (typeof ref.size === 'number' && ref.size > maxBytes) {
      throw new PayloadTooLargeError(`staged body of ${ref.size} bytes exceeds the limit of ${maxBytes}`, {
        data: { limitBytes: maxBytes, sizeBytes: ref.size },
      });
    }
    const os = await this.open();
    try {
      return ref.nuid === undefined ? await this.fetch(os, ref, maxBytes) : await this.fetchStreamed(os, { ...ref, nuid: ref.nuid });
    } catch (err) {
      if (err instanceof PayloadTooLargeError || err instanceof UnavailableError || err instanceof BadRequestError) throw err;
      throw new UnavailableError(`fetching staged body ${ref.name} from ${this.bucket} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private async fetch(os: ObjectStore, ref: { name: string; size: number }, maxBytes: number): Promise<Uint8Array> {
    const info = await os.info(ref.name);
    if (!info || info.deleted) throw new UnavailableError(`staged body ${ref.name} not found (expired or already taken)`);
    // Whatever happens next, the object is read at most once: it goes once this fetch is over.
    try {
      if (info.size > maxBytes) {
        throw new PayloadTooLargeError(`staged body of ${info.size} bytes exceeds the limit of ${maxBytes}`, {
          data: { limitBytes: maxBytes, sizeBytes: info.size },
        });
      }
      // The reference's size is what was checked against limits and budgets: it must be the truth.
      if (info.size !== ref.size) {
        throw new BadRequestError(`staged body ${ref.name} has ${info.size} bytes, its reference says ${ref.size}`);
      }
      if (info.options?.link) throw new BadRequestError(`staged body ${ref.name} is a link`);
      return await readChunked(this.nc, this.js, this.bucket, info as unknown as ObjectMeta, { stallMs: this.opts.readStallMs });
    } finally {
      this.remove(ref.name, info.nuid);
    }
  }

  private async fetchStreamed(os: ObjectStore, ref: { name: string; size: number; nuid: string }): Promise<Uint8Array> {
    // Whatever happens, the object is read at most once: its meta and the chunks it was announced with go.
    try {
      const stallMs = this.opts.readStallMs;
      return await readStreamed(
        this.nc,
        this.js,
        this.bucket,
        ref,
        async () => (await os.info(ref.name)) as unknown as ObjectMeta | null,
        () => this.chunksStored(ref.nuid),
        { stallMs, ...this.opts.streamFloor },
      );
    } finally {
      this.remove(ref.name, ref.nuid);
    }
  }

  /** How many chunks of `nuid` the bucket holds (one small stream-info request, no chunk fetched). */
  private async chunksStored(id: string): Promise<number> {
    const subject = chunkSubject(this.bucket, id);
    const info = await (await this.manager()).streams.info(objStream(this.bucket), { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  }

  private manager(): Promise<JetStreamManager> {
    this.jsm ??= jetstreamManager(this.nc, this.opts.timeoutMs === undefined ? {} : { timeout: this.opts.timeoutMs }).catch(
      (err: unknown) => {
        this.jsm = undefined;
        throw err;
      },
    );
    return this.jsm;
  }

  /**
   * Purges an object's meta and chunks in the background. Not the object store's `delete`: that
   * purges the chunk subject named by the stored meta, and a forged meta's nuid could be `>`.
   */
  private remove(name: string, id: unknown): void {
    const stream = objStream(this.bucket);
    void this.manager()
      .then((jsm) =>
        Promise.all([
          jsm.streams.purge(stream, { filter: metaSubject(this.bucket, name) }),
          isNuid(id) ? jsm.streams.purge(stream, { filter: chunkSubject(this.bucket, id) }) : undefined,
        ]),
      )
      .catch(() => undefined);
  }
}
