// Size limits shared by callers and replicas.
import type { ModelSignature } from './control-schemas.js';
import { DTYPES } from './tensor.js';

/** Largest request or reply body Flotilla accepts, staged or not (bytes). Default 256 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/**
 * NATS' own max_payload (bytes): what a connection assumes before the server's INFO says otherwise.
 * The server's figure is read through `maxPayload(nc)` in `@flotilla/bus`, never from `nc.info` directly.
 */
export const DEFAULT_NATS_MAX_PAYLOAD_BYTES = 1024 * 1024;

/**
 * Bytes kept free below the server's max_payload when deciding to stage a body through the
 * blob bucket (room for headers and the reply subject).
 */
export const STAGING_MARGIN_BYTES = 8 * 1024;

/** Whether a body of `size` bytes must go through the blob bucket on a server with `maxPayload`. */
export function mustStage(size: number, maxPayload: number): boolean {
  return size > maxPayload - STAGING_MARGIN_BYTES;
}

/**
 * Room a successful reply takes besides its outputs' bytes, at most: its meta (worker, replica
 * and device names, each ≤ 256 characters, and a few numbers) and msgpack's framing.
 */
export const REPLY_META_BYTES = 2048;
/** Room one output takes in a reply besides its bytes, at most: its name (≤ 256 characters), dtype, ≤ 16 dims. */
const REPLY_OUTPUT_META_BYTES = 256 + 64 + 16 * 9;

/**
 * The largest successful reply a model with this signature can give to a request of `items` rows
 * (bytes), or Infinity where an output's size is not known ahead (a dynamic dim other than the
 * batch axis, which takes `items`). A caller whose every reply fits one message needs to tell the
 * replica nothing about reading large ones (the SDK then sends a request with no headers). Pure.
 */
export function replyBytesAtMost(signature: Pick<ModelSignature, 'outputs' | 'batchAxis'>, items: number): number {
  let total = REPLY_META_BYTES;
  for (const o of signature.outputs) {
    let n = DTYPES[o.dtype].bytes;
    for (let axis = 0; axis < o.shape.length; axis++) {
      const d = o.shape[axis];
      if (typeof d === 'number') n *= d;
      else if (axis === 0 && signature.batchAxis && Number.isSafeInteger(items) && items >= 0) n *= items;
      else return Infinity;
    }
    total += n + REPLY_OUTPUT_META_BYTES;
  }
  return total;
}

/**
 * Memory one replica is charged before it has a profile: the deployment's `memoryBytes` when
 * given, else the ONNX file size × 1.5 + 16 MiB (weights, plus arena and activations). Head
 * placement and worker accounting use the same figure so they agree on what fits.
 */
export function estimateReplicaBytes(spec: { sizeBytes: number; memoryBytes?: number }): number {
  return spec.memoryBytes ?? Math.ceil(spec.sizeBytes * 1.5) + 16 * 1024 * 1024;
}

/** Longest the head holds an `ensure` reply waiting for a ready replica (`waitMs` is capped to it), ms. */
export const MAX_ENSURE_WAIT_MS = 30_000;
/** Time a caller leaves for the head's `ensure` reply to arrive after `waitMs`, ms. */
export const ENSURE_REPLY_MARGIN_MS = 500;

/**
 * Smallest average chunk a staged body's object may have (bytes): a receiver refuses an object
 * announcing more chunks than `size / this + 1` before fetching it (a flood of tiny messages).
 * Object store clients chunk at 128 KiB by default; Flotilla at max_payload − 16 KiB.
 */
export const STAGED_MIN_AVG_CHUNK_BYTES = 1024;

/**
 * Slowest a streamed staged body may arrive (bytes per second, averaged from the start of its
 * read, judged once STAGED_STREAM_GRACE_MS have passed): a receiver reads a streamed body into
 * memory it has set aside for the announced size, so a sender that writes one chunk and stops, or
 * trickles, must not hold that for the whole stall timeout. Its read fails UNAVAILABLE instead.
 * 1 MiB/s is two orders of magnitude below what one loopback or LAN connection moves.
 */
export const STAGED_STREAM_MIN_BYTES_PER_S = 1024 * 1024;
/** How long a streamed body's read runs before its rate is judged against STAGED_STREAM_MIN_BYTES_PER_S (ms). */
export const STAGED_STREAM_GRACE_MS = 2_000;

/**
 * Whether a streamed read that has received `bytes` after `elapsedMs` is slower than its floor:
 * after the grace, it must have `minBytesPerSec × (elapsedMs − graceMs)` bytes. Pure.
 */
export function belowStreamFloor(bytes: number, elapsedMs: number, minBytesPerSec: number, graceMs: number): boolean {
  return elapsedMs > graceMs && bytes < (minBytesPerSec * (elapsedMs - graceMs)) / 1000;
}
