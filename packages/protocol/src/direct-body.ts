// Direct bodies: a request or reply over max_payload that is not staged at all. Its bytes go
// between the caller and one replica over core NATS, in chunks, on the replica's body channel
// (`subjects.inferBody`), and every chunk is a request of the caller's: the replica only answers
// (a worker has no right to publish anywhere else, see permissions.ts). The header
// DIRECT_BODY_HEADER says what a message on that channel is:
//
// - `put <id> <offset>`: the caller sends a request's bytes from `offset`; the replica copies them
//   into the body it expects under `<id>` (announced by the request's `{ v, blob: { name: <id>,
//   size, direct: <replica> } }`) and answers with an empty body.
// - `get <id> <offset> <length>`: the caller reads a reply's bytes (announced by the reply's
//   reference); the replica answers with them.
// - `error`, on an answer only: the body is `{ v, ok: false, error }`.
//
// The caller keeps DIRECT_WINDOW chunks unanswered, which is the flow control. A transfer with no
// chunk for DIRECT_STALL_MS is dropped by the replica (UNAVAILABLE to whoever waits on it).
import { BadRequestError } from './errors.js';

/** Header of the messages on a replica's body channel (and of error answers there). */
export const DIRECT_BODY_HEADER = 'Flotilla-Body';
/** Unanswered chunks a caller keeps in flight (the blob store's put window). */
export const DIRECT_WINDOW = 8;
/** A transfer with no chunk for this long is dropped, ms (the blob store's read stall). */
export const DIRECT_STALL_MS = 10_000;
/**
 * A `get` unanswered this long is sent again, ms, until DIRECT_STALL_MS: a read at an offset is
 * idempotent, and its request or its answer may have gone down with the replica's connection while
 * the caller's stayed up (nothing tells the caller; the replica holds the reply meanwhile).
 */
export const DIRECT_GET_RETRY_MS = 2_500;
/**
 * Most request bodies one replica expects at once: a legitimate one is over max_payload, so its
 * fetch budget (the body limit, 256 MiB) holds about this many anyway; a flood of tiny
 * announcements is refused OVERLOADED past it instead of holding a timer and an entry each.
 */
export const DIRECT_MAX_EXPECTED = 256;
/** Room left in a chunk's message for its headers, bytes. */
const DIRECT_HEADROOM_BYTES = 16 * 1024;

/** Bytes per chunk on a connection whose server takes `maxPayload`-byte messages. */
export function directChunkBytes(maxPayload: number): number {
  return Math.max(4 * 1024, maxPayload - DIRECT_HEADROOM_BYTES);
}

/** What a message on a body channel is (its DIRECT_BODY_HEADER, parsed). */
export type DirectOp =
  { op: 'put'; id: string; offset: number } | { op: 'get'; id: string; offset: number; length: number } | { op: 'error' };

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const INT_RE = /^(0|[1-9][0-9]{0,15})$/;

export function formatPut(id: string, offset: number): string {
  return `put ${id} ${offset}`;
}

export function formatGet(id: string, offset: number, length: number): string {
  return `get ${id} ${offset} ${length}`;
}

export const DIRECT_ERROR = 'error';

function int(s: string | undefined, what: string): number {
  if (s === undefined || !INT_RE.test(s) || !Number.isSafeInteger(Number(s)))
    throw new BadRequestError(`${DIRECT_BODY_HEADER}: bad ${what}`);
  return Number(s);
}

/** Parses a DIRECT_BODY_HEADER value; anything else is BAD_REQUEST. */
export function parseDirectOp(value: string | undefined): DirectOp {
  if (value === DIRECT_ERROR) return { op: 'error' };
  const f = (value ?? '').slice(0, 256).split(' ');
  if ((f[0] === 'put' && f.length === 3) || (f[0] === 'get' && f.length === 4)) {
    if (!ID_RE.test(f[1]!)) throw new BadRequestError(`${DIRECT_BODY_HEADER}: bad transfer id`);
    const offset = int(f[2], 'offset');
    return f[0] === 'put' ? { op: 'put', id: f[1]!, offset } : { op: 'get', id: f[1]!, offset, length: int(f[3], 'length') };
  }
  throw new BadRequestError(`${DIRECT_BODY_HEADER} must be 'put <id> <offset>' or 'get <id> <offset> <length>'`);
}
