// Bodies larger than one NATS message go through the blob bucket (blob-store.ts): the sender puts
// the body there and sends `{ v, blob: { name, size } }`; the receiver checks that reference by its
// one schema (`parseBlobRef`), fetches the body (bounded), removes it and decodes it. One rule for
// every party: a body with a `blob` key is a staged body's reference and nothing else.
import type { NatsConnection } from '@nats-io/nats-core';
import {
  BadRequestError,
  DEFAULT_NATS_MAX_PAYLOAD_BYTES,
  PROTOCOL_VERSION,
  UnavailableError,
  decode,
  encode,
  joinBody,
  mustStage,
  parseBlobRef,
  type BlobName,
  type BlobRef,
  type Body,
} from '@flotilla/protocol';

/** The server's max_payload (bytes), or NATS' default of 1 MiB before the first INFO. */
export function maxPayload(nc: NatsConnection): number {
  return nc.info?.max_payload ?? DEFAULT_NATS_MAX_PAYLOAD_BYTES;
}

/** Where staged bodies go and come from (a BlobStore). */
export interface BlobBucket {
  put(data: Body): Promise<BlobName>;
  take(ref: BlobName, maxBytes: number): Promise<Uint8Array>;
}

/**
 * `data` itself (joined, when in parts) when it fits one message on this connection, else a
 * `{ v, blob }` reference to it after putting it in `blobs` (throws what the bucket throws: UNAVAILABLE).
 */
export async function stageIfLarge(nc: NatsConnection, blobs: Pick<BlobBucket, 'put'>, data: Body): Promise<Uint8Array> {
  if (!mustStage(data.byteLength, maxPayload(nc))) return joinBody(data);
  return encode({ v: PROTOCOL_VERSION, blob: await blobs.put(data) } satisfies BlobRef);
}

/** The reference when `raw` is a staged body's (it has a `blob` key), checked by its schema; else undefined. */
export function stagedRef(raw: Record<string, unknown>): BlobName | undefined {
  return raw.blob === undefined ? undefined : parseBlobRef(raw);
}

/**
 * The staged body `ref` names: fetched (refused above `maxBytes` before fetching), removed and
 * decoded. A staged body that is itself a reference is refused (BAD_REQUEST): no chains.
 */
export async function takeStaged(blobs: Pick<BlobBucket, 'take'>, ref: BlobName, maxBytes: number): Promise<Record<string, unknown>> {
  return decodeStaged(await blobs.take(ref, maxBytes));
}

/** A staged (or direct) body's bytes decoded; one that is itself a reference is refused (BAD_REQUEST): no chains. */
export function decodeStaged(bytes: Uint8Array): Record<string, unknown> {
  const raw = decode<Record<string, unknown>>(bytes);
  if (raw === null || typeof raw !== 'object') throw new BadRequestError('a staged body must be a map');
  if (raw.blob !== undefined) throw new BadRequestError('a staged body may not itself be a blob reference');
  return raw;
}

export interface UnstageOptions {
  /** Largest staged body fetched, bytes. */
  maxBytes: number;
  /** What the body is, for the error when there is no bucket to fetch from ("the reply on <subject>"). */
  what?: string;
}

/**
 * `raw` itself, or — when it is a staged body's reference — the body it names (see takeStaged).
 * Without `blobs` a reference is an UNAVAILABLE error saying so.
 */
export async function unstage(
  blobs: Pick<BlobBucket, 'take'> | undefined,
  raw: Record<string, unknown>,
  opts: UnstageOptions,
): Promise<Record<string, unknown>> {
  const ref = stagedRef(raw);
  if (!ref) return raw;
  if (!blobs) {
    throw new UnavailableError(
      `${opts.what ?? 'a body'} was staged (${ref.size} bytes) and this caller has no blob store to fetch it from`,
    );
  }
  return takeStaged(blobs, ref, opts.maxBytes);
}
