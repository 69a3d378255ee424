// Triton's binary tensor data extension, the framing only (pure, no I/O): a body is a JSON object
// of `Inference-Header-Content-Length` bytes, then each binary tensor's bytes back to back, in the
// order of the tensors in the JSON (little-endian, row-major, BOOL one byte each). Spec:
// triton-inference-server/server docs/protocol/extension_binary_data.md.
import { BadRequestError } from '@flotilla/protocol';

/** Request and response header giving the length of the JSON part of a body, bytes. */
export const INFERENCE_HEADER = 'inference-header-content-length';

/** The body split into its JSON text and the binary section after it. */
export interface FramedBody {
  json: string;
  binary: Buffer;
}

/** The header's value as a length within a body of `bodyBytes`; undefined when absent. */
export function parseHeaderLength(value: string | string[] | undefined, bodyBytes: number): number | undefined {
  if (value === undefined) return undefined;
  const raw = Array.isArray(value) ? value[0] : value;
  const n = Number(raw);
  if (raw === undefined || !/^\d+$/.test(raw.trim()) || n > bodyBytes) {
    throw new BadRequestError(
      `${INFERENCE_HEADER} must be an integer in [0, ${bodyBytes}] (the body's length), got ${JSON.stringify(raw)}`,
    );
  }
  return n;
}

/** Splits a body: all JSON when `headerLength` is undefined. */
export function splitBody(body: Buffer, headerLength: number | undefined): FramedBody {
  if (headerLength === undefined) return { json: body.toString('utf8'), binary: body.subarray(body.length) };
  return { json: body.subarray(0, headerLength).toString('utf8'), binary: body.subarray(headerLength) };
}

/**
 * Cuts the binary section into one chunk per size, in order (the sizes come from the inputs'
 * `binary_data_size`, in the order the inputs are listed). The sizes must add up to the section
 * exactly: bytes left over, or too few, are BAD_REQUEST.
 */
export function sliceBinary(binary: Uint8Array, sizes: ReadonlyArray<{ name: string; bytes: number }>): Uint8Array[] {
  let offset = 0;
  const chunks = sizes.map(({ name, bytes }) => {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new BadRequestError(`input '${name}': parameters.binary_data_size must be a non-negative integer, got ${bytes}`);
    }
    if (offset + bytes > binary.byteLength) {
      throw new BadRequestError(
        `input '${name}': binary_data_size ${bytes} at offset ${offset} runs past the ${binary.byteLength} bytes after the JSON header`,
      );
    }
    const chunk = binary.subarray(offset, offset + bytes);
    offset += bytes;
    return chunk;
  });
  if (offset !== binary.byteLength) {
    throw new BadRequestError(
      `${binary.byteLength - offset} bytes after the JSON header belong to no input (binary_data_size adds up to ${offset} of ${binary.byteLength})`,
    );
  }
  return chunks;
}

/**
 * A response body: the JSON header, then the chunks. `headerLength` is undefined when there are
 * no chunks (a plain JSON body, no `Inference-Header-Content-Length`).
 */
export function frameBody(header: unknown, chunks: readonly Uint8Array[]): { body: Buffer; headerLength?: number } {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  if (chunks.length === 0) return { body: json };
  return { body: Buffer.concat([json, ...chunks]), headerLength: json.length };
}
