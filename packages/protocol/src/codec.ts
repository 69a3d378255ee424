// msgpack encoding of every Flotilla message. Plain msgpack only (no msgpackr records or typed-array
// extensions) so that any language's msgpack library reads and writes the same bytes.
import { Packr } from 'msgpackr';
import { DecodeError, VersionMismatchError } from './errors.js';
import { PROTOCOL_VERSION } from './version.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' });

export function encode(msg: unknown): Uint8Array {
  return packr.pack(msg);
}

/** Decodes one message and checks its protocol version; corrupt bytes become DECODE_ERROR. */
export function decode<T = Record<string, unknown>>(bytes: Uint8Array): T {
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (err) {
    throw new DecodeError(`message is not valid msgpack: ${(err as Error).message}`, { cause: err });
  }
  if (value === null || typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new DecodeError('message must be a msgpack map');
  }
  const v = (value as { v?: unknown }).v;
  if (v !== PROTOCOL_VERSION) {
    throw new VersionMismatchError(`protocol version ${JSON.stringify(v)} is not supported; this node speaks v${PROTOCOL_VERSION}`, {
      data: { supported: [PROTOCOL_VERSION], got: v ?? null },
    });
  }
  return value as T;
}
