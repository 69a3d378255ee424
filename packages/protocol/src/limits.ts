// Size limits shared by callers and replicas.

/** Largest request or reply body Flotilla accepts, staged or not (bytes). Default 256 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/**
 * Bytes kept free below the server's max_payload when deciding to stage a body through the
 * blob bucket (room for headers and the reply subject).
 */
export const STAGING_MARGIN_BYTES = 8 * 1024;

/** Whether a body of `size` bytes must go through the blob bucket on a server with `maxPayload`. */
export function mustStage(size: number, maxPayload: number): boolean {
  return size > maxPayload - STAGING_MARGIN_BYTES;
}
