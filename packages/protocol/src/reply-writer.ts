// The successful InferReply, written straight into one buffer: the replica's hot path. The same
// msgpack a generic `encode` of the reply gives (any msgpack reader decodes both to equal values),
// without walking an object per request: the keys and the replica's constant meta fields (worker,
// replica, device) are encoded once, the tensor bytes are copied once, the numbers written in
// place. A generic encode was a tenth of a replica's CPU on a small model (bench:overhead).
// A tensor of ALIGN_MIN_BYTES or more starts 8-byte aligned from the reply's first byte (its keys
// take wider string forms, as msgpack allows): a receiver reading the reply into a fresh buffer (a
// staged reply) views it as a typed array instead of copying it.
import type { InferMeta } from './messages.js';
import type { RequestId } from './data-schemas.js';
import type { WireTensors } from './tensor.js';
import { PROTOCOL_VERSION } from './version.js';
import { REF_MIN_BYTES, type Body } from './body.js';

const enc = new TextEncoder();

/** msgpack of one string (fixstr, str8, str16 or str32). */
export function packStr(s: string): Uint8Array {
  const utf8 = enc.encode(s);
  const n = utf8.byteLength;
  const head =
    n < 32
      ? [0xa0 | n]
      : n < 0x100
        ? [0xd9, n]
        : n < 0x10000
          ? [0xda, n >> 8, n & 0xff]
          : [0xdb, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  const out = new Uint8Array(head.length + n);
  out.set(head);
  out.set(utf8, head.length);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/**
 * Writes msgpack values into a buffer sized beforehand. With `refMin`, tensor data of that size or
 * more is referenced instead (the body becomes parts: what was written, the data, what follows).
 */
class Cursor {
  at = 0;
  /** Bytes referenced so far (not in `buf`): the body's position is `at + skipped`. */
  skipped = 0;
  /** Set at the first referenced tensor: a reply without one (every small one) allocates nothing more. */
  private parts?: Uint8Array[];
  private partStart = 0;
  private readonly view: DataView;
  constructor(
    readonly buf: Buffer,
    readonly refMin = Infinity,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** Tensor data: copied in as bin, or (at `refMin` or more) its bin header written and the data referenced. */
  data(b: Uint8Array): void {
    if (b.byteLength < this.refMin) return this.bin(b);
    this.header(b.byteLength, 0, 0, 0xc4, 0xc5, 0xc6);
    (this.parts ??= []).push(this.buf.subarray(this.partStart, this.at), b);
    this.partStart = this.at;
    this.skipped += b.byteLength;
  }

  /** The body written: one buffer, or parts when data was referenced. */
  finish(): Body {
    if (!this.parts) return this.buf.subarray(0, this.at);
    const parts = [...this.parts, this.buf.subarray(this.partStart, this.at)].filter((p) => p.byteLength > 0);
    return { parts, byteLength: this.at + this.skipped };
  }

  bytes(b: Uint8Array): void {
    this.buf.set(b, this.at);
    this.at += b.byteLength;
  }

  byte(x: number): void {
    this.buf[this.at++] = x;
  }

  /** A string (utf-8 written in place). */
  str(s: string): void {
    const n = Buffer.byteLength(s);
    this.header(n, 0xa0, 32, 0xd9, 0xda, 0xdb);
    this.at += this.buf.write(s, this.at, 'utf8');
  }

  /** A map, array or str header: fix form below `fixLimit`, else 8 (if any), 16 or 32 bits. */
  header(n: number, fix: number, fixLimit: number, c8: number, c16: number, c32: number): void {
    if (n < fixLimit) this.byte(fix | n);
    else if (c8 >= 0 && n < 0x100) {
      this.byte(c8);
      this.byte(n);
    } else if (n < 0x10000) {
      this.byte(c16);
      this.view.setUint16(this.at, n);
      this.at += 2;
    } else {
      this.byte(c32);
      this.view.setUint32(this.at, n);
      this.at += 4;
    }
  }

  /** A number: the smallest integer form for safe integers, else float64. */
  num(x: number): void {
    const v = this.view;
    if (!Number.isSafeInteger(x)) {
      this.byte(0xcb);
      v.setFloat64(this.at, x);
      this.at += 8;
      return;
    }
    if (x >= 0 ? x < 0x80 : x >= -32) return this.byte(x & 0xff); // positive or negative fixint
    if (x >= 0) {
      if (x < 0x100) {
        this.byte(0xcc);
        return this.byte(x);
      }
      if (x < 0x10000) {
        this.byte(0xcd);
        v.setUint16(this.at, x);
        this.at += 2;
      } else if (x < 0x100000000) {
        this.byte(0xce);
        v.setUint32(this.at, x);
        this.at += 4;
      } else {
        this.byte(0xcf);
        v.setBigUint64(this.at, BigInt(x));
        this.at += 8;
      }
      return;
    }
    if (x >= -0x80) {
      this.byte(0xd0);
      v.setInt8(this.at, x);
      this.at += 1;
    } else if (x >= -0x8000) {
      this.byte(0xd1);
      v.setInt16(this.at, x);
      this.at += 2;
    } else if (x >= -0x80000000) {
      this.byte(0xd2);
      v.setInt32(this.at, x);
      this.at += 4;
    } else {
      this.byte(0xd3);
      v.setBigInt64(this.at, BigInt(x));
      this.at += 8;
    }
  }

  bin(b: Uint8Array): void {
    this.header(b.byteLength, 0, 0, 0xc4, 0xc5, 0xc6);
    this.bytes(b);
  }
}

/** Most bytes a number takes (float64 / 64-bit int and its type byte). */
const NUM_MAX = 9;

/** Tensors from this size on start 8-byte aligned in the reply (smaller ones: a copy costs nothing). */
export const ALIGN_MIN_BYTES = 64 * 1024;

/** A key in a wider string form: `extra` bytes more than its fixstr (0, 1: str8, 2: str16, 4: str32). */
export function widenedKey(key: string, extra: 0 | 1 | 2 | 4): Uint8Array {
  const utf8 = enc.encode(key);
  const n = utf8.byteLength;
  if (extra === 0 || n >= 32) return packStr(key);
  const head = extra === 1 ? [0xd9, n] : extra === 2 ? [0xda, 0, n] : [0xdb, 0, 0, 0, n];
  const out = new Uint8Array(head.length + n);
  out.set(head);
  out.set(utf8, head.length);
  return out;
}

/** A key at each width it can take (by extra bytes over its fixstr). */
function widths(key: string): Record<0 | 1 | 2 | 4, Uint8Array> {
  return { 0: widenedKey(key, 0), 1: widenedKey(key, 1), 2: widenedKey(key, 2), 4: widenedKey(key, 4) };
}

/** How to spread `pad` (0-7) bytes over three keys, each 0, 1, 2 or 4 bytes wider. */
const PAD_SPLITS: ReadonlyArray<readonly [0 | 1 | 2 | 4, 0 | 1 | 2 | 4, 0 | 1 | 2 | 4]> = [
  [0, 0, 0],
  [1, 0, 0],
  [2, 0, 0],
  [2, 1, 0],
  [4, 0, 0],
  [4, 1, 0],
  [4, 2, 0],
  [4, 2, 1],
];

const K = {
  v: packStr('v'),
  ok: packStr('ok'),
  id: packStr('id'),
  outputs: packStr('outputs'),
  meta: packStr('meta'),
  inputs: packStr('inputs'),
  timeoutMs: packStr('timeoutMs'),
  dtype: packStr('dtype'),
  dims: packStr('dims'),
  data: packStr('data'),
  /** The three tensor keys at each width (by extra bytes). */
  widened: { dtype: widths('dtype'), dims: widths('dims'), data: widths('data') },
  batch: packStr('batch'),
  queueMs: packStr('queueMs'),
  runMs: packStr('runMs'),
  queueDepth: packStr('queueDepth'),
};

/**
 * Encodes one replica's successful replies. `encode(meta)` equals, as decoded values, the generic
 * encoding of `{ v, ok: true, id?, outputs, meta: { worker, replica, device, batch, queueMs, runMs, queueDepth } }`.
 */
export class InferReplyWriter {
  /** `v: PROTOCOL_VERSION, ok: true` */
  private readonly versionOk: Uint8Array;
  /** `meta` key, a 7-entry map header and the constant worker/replica/device entries. */
  private readonly metaHead: Uint8Array;
  private readonly names = new Map<string, Uint8Array>();

  constructor(fixed: Pick<InferMeta, 'worker' | 'replica' | 'device'>) {
    this.versionOk = concat([K.v, Uint8Array.of(PROTOCOL_VERSION), K.ok, Uint8Array.of(0xc3)]);
    this.metaHead = concat([
      K.meta,
      Uint8Array.of(0x87),
      packStr('worker'),
      packStr(fixed.worker),
      packStr('replica'),
      packStr(fixed.replica),
      packStr('device'),
      packStr(fixed.device),
    ]);
  }

  /** An output name's msgpack (cached: a model has few). */
  private name(n: string): Uint8Array {
    let b = this.names.get(n);
    if (!b) {
      b = packStr(n);
      if (this.names.size < 1024) this.names.set(n, b);
    }
    return b;
  }

  encode(id: RequestId | undefined, outputs: WireTensors, meta: Pick<InferMeta, 'batch' | 'queueMs' | 'runMs' | 'queueDepth'>): Uint8Array {
    return this.write(id, outputs, meta, Infinity) as Uint8Array;
  }

  /** As `encode`, with outputs of REF_MIN_BYTES or more referenced, not copied (body.ts). */
  encodeParts(id: RequestId | undefined, outputs: WireTensors, meta: Pick<InferMeta, 'batch' | 'queueMs' | 'runMs' | 'queueDepth'>): Body {
    return this.write(id, outputs, meta, REF_MIN_BYTES);
  }

  private write(
    id: RequestId | undefined,
    outputs: WireTensors,
    meta: Pick<InferMeta, 'batch' | 'queueMs' | 'runMs' | 'queueDepth'>,
    refMin: number,
  ): Body {
    let size = 1 + this.versionOk.byteLength + K.outputs.byteLength + this.metaHead.byteLength + 4 * (NUM_MAX + 11);
    if (id !== undefined) size += K.id.byteLength + (typeof id === 'string' ? 5 + Buffer.byteLength(id) : NUM_MAX);
    size += tensorsBytes(outputs, (k) => this.name(k), refMin);
    const c = new Cursor(Buffer.allocUnsafe(size), refMin);
    c.byte(0x80 | (id === undefined ? 4 : 5));
    c.bytes(this.versionOk);
    if (id !== undefined) {
      c.bytes(K.id);
      if (typeof id === 'string') c.str(id);
      else c.num(id);
    }
    c.bytes(K.outputs);
    writeTensors(c, outputs, (k) => this.name(k));
    c.bytes(this.metaHead);
    c.bytes(K.batch);
    c.num(meta.batch);
    c.bytes(K.queueMs);
    c.num(meta.queueMs);
    c.bytes(K.runMs);
    c.num(meta.runMs);
    c.bytes(K.queueDepth);
    c.num(meta.queueDepth);
    return c.finish();
  }
}

/** Most bytes `writeTensors` takes for `tensors` in its buffer (data of `refMin` or more is referenced, not written). */
function tensorsBytes(tensors: WireTensors, name: (k: string) => Uint8Array, refMin = Infinity): number {
  let size = 5;
  for (const k in tensors) {
    const t = tensors[k]!;
    size += name(k).byteLength + 1 + K.dtype.byteLength + 6 + t.dtype.length;
    size +=
      K.dims.byteLength + 5 + t.dims.length * NUM_MAX + K.data.byteLength + 5 + (t.data.byteLength >= refMin ? 0 : t.data.byteLength) + 7;
  }
  return size;
}

/** A map of tensors `{ name: { dtype, dims, data } }`; data of ALIGN_MIN_BYTES or more starts 8-byte aligned. */
function writeTensors(c: Cursor, tensors: WireTensors, name: (k: string) => Uint8Array): void {
  const keys = Object.keys(tensors);
  c.header(keys.length, 0x80, 16, -1, 0xde, 0xdf);
  for (const k of keys) {
    const t = tensors[k]!;
    c.bytes(name(k));
    c.byte(0x83);
    if (t.data.byteLength < ALIGN_MIN_BYTES) {
      c.bytes(K.dtype);
      c.str(t.dtype);
      c.bytes(K.dims);
      c.header(t.dims.length, 0x90, 16, -1, 0xdc, 0xdd);
      for (const d of t.dims) c.num(d);
      c.bytes(K.data);
      c.bin(t.data);
      continue;
    }
    // Where the data would start with the narrowest keys: wider keys make up the rest to 8 bytes.
    const start = c.at;
    c.bytes(K.dtype);
    c.str(t.dtype);
    c.bytes(K.dims);
    c.header(t.dims.length, 0x90, 16, -1, 0xdc, 0xdd);
    for (const d of t.dims) c.num(d);
    const narrow = c.at - start + K.data.byteLength + 5; // bin32 header: the data is ≥ 64 KiB
    const [a, b, d] = PAD_SPLITS[(8 - ((c.skipped + start + narrow) % 8)) % 8]!;
    c.at = start;
    c.bytes(K.widened.dtype[a]);
    c.str(t.dtype);
    c.bytes(K.widened.dims[b]);
    c.header(t.dims.length, 0x90, 16, -1, 0xdc, 0xdd);
    for (const x of t.dims) c.num(x);
    c.bytes(K.widened.data[d]);
    c.data(t.data);
  }
}

/**
 * An inference request `{ v, inputs, timeoutMs?, outputs? }` as the generic `encode` gives it (as
 * decoded values), each input of ALIGN_MIN_BYTES or more starting 8-byte aligned from the first
 * byte: a replica reading a staged request into a fresh buffer runs it without copying it.
 */
export function encodeInferRequest(req: { inputs: WireTensors; timeoutMs?: number; outputs?: string[] }): Uint8Array {
  return writeInferRequest(req, Infinity) as Uint8Array;
}

/** As `encodeInferRequest`, with inputs of REF_MIN_BYTES or more referenced, not copied (body.ts). */
export function encodeInferRequestParts(req: { inputs: WireTensors; timeoutMs?: number; outputs?: string[] }): Body {
  return writeInferRequest(req, REF_MIN_BYTES);
}

function writeInferRequest(req: { inputs: WireTensors; timeoutMs?: number; outputs?: string[] }, refMin: number): Body {
  const name = (k: string) => packStr(k);
  let size = 1 + 2 + 1 + K.inputs.byteLength + tensorsBytes(req.inputs, name, refMin);
  if (req.timeoutMs !== undefined) size += K.timeoutMs.byteLength + NUM_MAX;
  if (req.outputs) size += K.outputs.byteLength + 5 + req.outputs.reduce((n, o) => n + 5 + Buffer.byteLength(o), 0);
  const c = new Cursor(Buffer.allocUnsafe(size), refMin);
  c.byte(0x80 | (2 + (req.timeoutMs !== undefined ? 1 : 0) + (req.outputs ? 1 : 0)));
  c.bytes(K.v);
  c.num(PROTOCOL_VERSION);
  c.bytes(K.inputs);
  writeTensors(c, req.inputs, name);
  if (req.timeoutMs !== undefined) {
    c.bytes(K.timeoutMs);
    c.num(req.timeoutMs);
  }
  if (req.outputs) {
    c.bytes(K.outputs);
    c.header(req.outputs.length, 0x90, 16, -1, 0xdc, 0xdd);
    for (const o of req.outputs) c.str(o);
  }
  return c.finish();
}
