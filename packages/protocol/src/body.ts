// A message body in one buffer or in parts. The request and reply encoders can reference a large
// tensor's bytes instead of copying them into the body (`encodeInferRequestParts`,
// `InferReplyWriter.encodeParts`): a body that large is staged anyway, and the blob store writes its
// chunks as views of the parts, so the tensor goes from the caller's array (or onnxruntime's
// output) to the wire without a copy into a fresh buffer of its size first. The bytes are the ones
// the one-buffer encoding gives; a body that fits one message is joined (one copy, as before).
// The parts are read while they are staged: they must not change until the send settles.

/** A body as consecutive byte ranges: its bytes are the parts' in order. */
export interface BodyParts {
  readonly parts: readonly Uint8Array[];
  readonly byteLength: number;
}

/** A message body: one buffer, or parts (see the module comment). */
export type Body = Uint8Array | BodyParts;

/** Tensors of this size or more are referenced, not copied, by the parts encoders (1 MiB, NATS' default max_payload). */
export const REF_MIN_BYTES = 1024 * 1024;

/** Whether `body` is in parts. */
export function isBodyParts(body: Body): body is BodyParts {
  return !(body instanceof Uint8Array);
}

/** `body` in one buffer: itself, or its parts copied into a fresh one (a single part is returned as it is). */
export function joinBody(body: Body): Uint8Array {
  if (!isBodyParts(body)) return body;
  if (body.parts.length === 1) return body.parts[0]!;
  const out = new Uint8Array(body.byteLength);
  let at = 0;
  for (const p of body.parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/**
 * `body` in consecutive chunks of `chunkBytes` (the last one shorter; none for an empty body): a
 * chunk within one part is a view of it, one that spans parts is a copy of its pieces (bodySlice).
 */
export function* bodyChunks(body: Body, chunkBytes: number): Generator<Uint8Array> {
  if (!(chunkBytes > 0)) throw new RangeError(`chunk size must be positive, got ${chunkBytes}`);
  for (let off = 0; off < body.byteLength; off += chunkBytes) yield bodySlice(body, off, chunkBytes);
}

/**
 * `length` bytes of `body` from `offset` (clipped to its end): a view when they lie within one
 * part, else a copy of their pieces. Throws RangeError for a negative or non-integer range, and
 * for parts that hold fewer bytes than the body's byteLength says.
 */
export function bodySlice(body: Body, offset: number, length: number): Uint8Array {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new RangeError(`bad range ${offset}+${length}`);
  }
  const end = Math.min(body.byteLength, offset + length);
  if (!isBodyParts(body)) return body.subarray(Math.min(offset, end), end);
  const n = Math.max(0, end - offset);
  if (n === 0) return new Uint8Array(0);
  let start = 0; // where part i starts in the body
  let i = 0;
  while (i < body.parts.length && start + body.parts[i]!.byteLength <= offset) start += body.parts[i++]!.byteLength;
  const first = body.parts[i];
  if (first && offset - start + n <= first.byteLength) return first.subarray(offset - start, offset - start + n);
  const out = new Uint8Array(n);
  let got = 0;
  for (let at = offset - start; got < n && i < body.parts.length; i++, at = 0) {
    const piece = body.parts[i]!.subarray(at, at + (n - got));
    out.set(piece, got);
    got += piece.byteLength;
  }
  if (got < n) throw new RangeError('the body has fewer bytes in its parts than its byteLength says');
  return out;
}
