// Staging of bodies larger than the server's max_payload through a JetStream object store
// (memory storage, objects expire after a TTL so a crashed party leaves no garbage for long).
// The sender puts the encoded body under a fresh name and sends `{ v, blob: { name, size } }`;
// the receiver fetches and deletes it.
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstream } from '@nats-io/jetstream';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { nuid } from '@nats-io/nats-core';
import { BadRequestError, PayloadTooLargeError, UnavailableError } from '@flotilla/protocol';
import { maxPayload } from './staging.js';

/** Staged bodies older than this are removed by the server (ns). Default 10 minutes. */
export const DEFAULT_BLOB_TTL_MS = 10 * 60 * 1000;

/** Object store chunk size: as large as the server allows (fewer messages per MiB). */
export function objectChunkSize(nc: NatsConnection): number {
  return Math.max(64 * 1024, maxPayload(nc) - 16 * 1024);
}

export class BlobStore {
  private store?: Promise<ObjectStore>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    private readonly ttlMs = DEFAULT_BLOB_TTL_MS,
    /** JetStream replicas of the bucket (3 on a 3-node NATS, so losing a node loses no staged body). */
    private readonly replicas = 1,
  ) {}

  private open(): Promise<ObjectStore> {
    this.store ??= new Objm(jetstream(this.nc))
      .create(this.bucket, { storage: 'memory' as never, ttl: this.ttlMs * 1_000_000, replicas: this.replicas })
      .catch((err: unknown) => {
        this.store = undefined;
        throw new UnavailableError(`blob bucket ${this.bucket} unavailable (JetStream enabled?): ${(err as Error).message}`, {
          cause: err,
        });
      });
    return this.store;
  }

  async put(data: Uint8Array): Promise<{ name: string; size: number }> {
    const os = await this.open();
    const name = nuid.next();
    try {
      await os.putBlob({ name, options: { max_chunk_size: objectChunkSize(this.nc) } }, data);
    } catch (err) {
      throw new UnavailableError(`staging ${data.byteLength} bytes in ${this.bucket} failed: ${(err as Error).message}`, { cause: err });
    }
    return { name, size: data.byteLength };
  }

  /** Fetches and removes a staged body; refuses names of bodies above `maxBytes` before fetching. */
  async take(ref: { name: string; size: number }, maxBytes: number): Promise<Uint8Array> {
    if (typeof ref.size === 'number' && ref.size > maxBytes) {
      throw new PayloadTooLargeError(`staged body of ${ref.size} bytes exceeds the limit of ${maxBytes}`, {
        data: { limitBytes: maxBytes, sizeBytes: ref.size },
      });
    }
    const os = await this.open();
    try {
      return await this.fetch(os, ref, maxBytes);
    } catch (err) {
      if (err instanceof PayloadTooLargeError || err instanceof UnavailableError || err instanceof BadRequestError) throw err;
      throw new UnavailableError(`fetching staged body ${ref.name} from ${this.bucket} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private async fetch(os: ObjectStore, ref: { name: string; size: number }, maxBytes: number): Promise<Uint8Array> {
    const info = await os.info(ref.name);
    if (!info) throw new UnavailableError(`staged body ${ref.name} not found (expired or already taken)`);
    if (info.size > maxBytes) {
      await os.delete(ref.name).catch(() => undefined);
      throw new PayloadTooLargeError(`staged body of ${info.size} bytes exceeds the limit of ${maxBytes}`, {
        data: { limitBytes: maxBytes, sizeBytes: info.size },
      });
    }
    // The reference's size is what was checked against limits and budgets: it must be the truth.
    if (info.size !== ref.size) {
      await os.delete(ref.name).catch(() => undefined);
      throw new BadRequestError(`staged body ${ref.name} has ${info.size} bytes, its reference says ${ref.size}`);
    }
    const data = await os.getBlob(ref.name);
    void os.delete(ref.name).catch(() => undefined);
    if (!data) throw new UnavailableError(`staged body ${ref.name} not found (expired or already taken)`);
    return data;
  }
}
