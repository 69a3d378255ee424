// msgpack encoding of every Flotilla message. Plain msgpack only, both ways: outbound messages
// carry no msgpackr extensions (no `undefined`, records or typed arrays: undefined map values are
// left out, undefined array items become nil), and inbound messages holding any extension type
// (typed arrays, dates, structured clones, `undefined`) are DECODE_ERROR, so any language's
// msgpack library reads and writes the same bytes and no decoded value is exotic (or cyclic).
import { Packr } from 'msgpackr';
import { DecodeError, VersionMismatchError } from './errors.js';
import { PROTOCOL_VERSION } from './version.js';

const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  int64AsType: 'number',
  encodeUndefinedAsNil: true,
  // Not in msgpackr's typings (2.1.3), read by its encoder: map values to leave out.
  ...({ skipValues: [undefined] } as object),
});

/** Deepest nesting of maps and arrays a message may have (tensors need 3; control messages ~8). */
export const MAX_MESSAGE_DEPTH = 32;

export function encode(msg: unknown): Uint8Array {
  return packr.pack(msg);
}

/**
 * The first place where a decoded value is not plain msgpack data: its keys from the innermost
 * outwards (pushed as the recursion unwinds, so a plain value, every message but a hostile one, is
 * checked without building a path per key), and whether it was the nesting depth; undefined when plain.
 */
function firstNonPlain(value: unknown, depth: number): { keys: (string | number)[]; deep: boolean } | undefined {
  if (value === null) return undefined;
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return undefined;
    case 'object':
      break;
    default:
      return { keys: [], deep: false };
  }
  if (depth >= MAX_MESSAGE_DEPTH) return { keys: [], deep: true };
  if (value instanceof Uint8Array)
    return value.constructor === Uint8Array || Buffer.isBuffer(value) ? undefined : { keys: [], deep: false };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = firstNonPlain(value[i], depth + 1);
      if (bad) return (bad.keys.push(i), bad);
    }
    return undefined;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return { keys: [], deep: false };
  for (const key in value) {
    const bad = firstNonPlain((value as Record<string, unknown>)[key], depth + 1);
    if (bad) return (bad.keys.push(key), bad);
  }
  return undefined;
}

/**
 * Where a decoded value is not plain msgpack data (map, array, string, number, boolean, nil, bin),
 * or nests deeper than MAX_MESSAGE_DEPTH: the path of the first problem; undefined when it is plain.
 */
export function nonPlainPath(value: unknown, depth = 0, path = '$'): string | undefined {
  const bad = firstNonPlain(value, depth);
  if (!bad) return undefined;
  let at = path;
  for (let i = bad.keys.length - 1; i >= 0; i--) {
    const k = bad.keys[i]!;
    at += typeof k === 'number' ? `[${k}]` : `.${k.length > 64 ? k.slice(0, 64) + '…' : k}`;
  }
  return bad.deep ? `${at} (nested deeper than ${MAX_MESSAGE_DEPTH})` : at;
}

/**
 * Decodes one message and checks its protocol version; corrupt bytes, msgpackr extension types and
 * excessive nesting become DECODE_ERROR, another version VERSION_MISMATCH.
 */
export function decode<T = Record<string, unknown>>(bytes: Uint8Array): T {
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (err) {
    throw new DecodeError(`message is not valid msgpack: ${String((err as Error).message).slice(0, 200)}`, { cause: err });
  }
  if (value === null || typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new DecodeError('message must be a msgpack map');
  }
  const bad = nonPlainPath(value);
  if (bad) throw new DecodeError(`message is not plain msgpack at ${bad}: extension types are not accepted`, { data: { path: bad } });
  const v = (value as { v?: unknown }).v;
  if (v !== PROTOCOL_VERSION) {
    const got = typeof v === 'number' || typeof v === 'string' ? String(v).slice(0, 32) : null;
    throw new VersionMismatchError(`protocol version ${got ?? typeof v} is not supported; this node speaks v${PROTOCOL_VERSION}`, {
      data: { supported: [PROTOCOL_VERSION], got },
    });
  }
  return value as T;
}
