// The hand-written reply encoder against the generic one: every size class of every msgpack type
// it writes decodes to the same value as `encode` of the same reply object.
import { createHash } from 'node:crypto';
import { decode, encode } from './codec.js';
import { REF_MIN_BYTES, isBodyParts, joinBody, type Body } from './body.js';
import { ALIGN_MIN_BYTES, InferReplyWriter, encodeInferRequest, encodeInferRequestParts, packStr, widenedKey } from './reply-writer.js';
import type { WireTensors } from './tensor.js';
import { PROTOCOL_VERSION } from './version.js';

/** `x` with every byte array replaced by its SHA-1 (Jest compares large typed arrays element by element: minutes). */
function hashed(x: unknown): unknown {
  if (x instanceof Uint8Array) return `bytes ${x.byteLength} ${createHash('sha1').update(x).digest('hex')}`;
  if (Array.isArray(x)) return x.map(hashed);
  if (x !== null && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, hashed(v)]));
  return x;
}
const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);

function generic(
  fixed: { worker: string; replica: string; device: string },
  id: string | number | undefined,
  outputs: WireTensors,
  meta: { batch: number; queueMs: number; runMs: number; queueDepth: number },
) {
  return decode(encode({ v: PROTOCOL_VERSION, ok: true, id, outputs, meta: { ...fixed, ...meta } }));
}

const fixed = { worker: 'w-1', replica: 'r'.repeat(40), device: 'cpu' };
const meta = { batch: 8, queueMs: 0.125, runMs: 1.5, queueDepth: 3 };
const tensor = (dims: number[], n: number) => ({ dtype: 'float32' as const, dims, data: bytes(n) });

describe('InferReplyWriter', () => {
  const cases: Array<[string, string | number | undefined, WireTensors, typeof meta, typeof fixed]> = [
    ['no id, one small output', undefined, { y: tensor([1, 10], 40) }, meta, fixed],
    ['a string id', 'req-1', { y: tensor([1, 10], 40) }, meta, fixed],
    ['a 40-char id (str8)', 'x'.repeat(40), { y: tensor([1], 4) }, meta, fixed],
    ['a 300-char id (str16)', 'é'.repeat(150), { y: tensor([1], 4) }, meta, fixed],
    ['a 70,000-byte id (str32)', 'a'.repeat(70_000), { y: tensor([1], 4) }, meta, fixed],
    ['a numeric id', 123456789, { y: tensor([1], 4) }, meta, fixed],
    ['a negative id', -5, { y: tensor([1], 4) }, meta, fixed],
    ['a float id', 1.5, { y: tensor([1], 4) }, meta, fixed],
    ['a bin16 output', 7, { y: tensor([1, 100], 400) }, meta, fixed],
    ['a bin32 output', 7, { y: tensor([1, 70_000], 280_000) }, meta, fixed],
    ['an empty output', 7, { y: tensor([0, 10], 0) }, meta, fixed],
    ['unicode output names', 7, { 'logits·ü': tensor([2], 8), ['ü'.repeat(40)]: tensor([1], 4) }, meta, fixed],
    [
      '20 outputs (map16)',
      undefined,
      Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`o${i}`, tensor([1, i], 4 * i)])),
      meta,
      fixed,
    ],
    [
      '17 dims (array16)',
      undefined,
      {
        y: tensor(
          Array.from({ length: 17 }, () => 1),
          4,
        ),
      },
      meta,
      fixed,
    ],
    [
      'every integer size class in dims',
      undefined,
      { y: { dtype: 'int64', dims: [0, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1], data: bytes(8) } },
      meta,
      fixed,
    ],
    [
      'meta numbers of every kind',
      -200,
      { y: tensor([1], 4) },
      { batch: 300, queueMs: 70_000.25, runMs: 0, queueDepth: 100_000 },
      { worker: '', replica: 'ü'.repeat(200), device: 'gpu:0' },
    ],
    ['negative size classes', -33, { y: tensor([1], 4) }, { batch: 1, queueMs: -0.5, runMs: -129, queueDepth: -40_000 }, fixed],
    ['large negatives', -(2 ** 31) - 1, { y: tensor([1], 4) }, { batch: 1, queueMs: NaN, runMs: Infinity, queueDepth: -(2 ** 40) }, fixed],
  ];

  it.each(cases)('%s decodes like the generic encoding', (_name, id, outputs, m, f) => {
    const w = new InferReplyWriter(f);
    const got = decode(w.encode(id, outputs, m));
    expect(got).toEqual(generic(f, id, outputs, m));
    // Twice in a row: nothing cached leaks from one reply into the next.
    expect(decode(w.encode(id, outputs, m))).toEqual(got);
  });

  it('copies the tensor bytes (a later change to the source does not alter the reply)', () => {
    const data = bytes(16);
    const out = new InferReplyWriter(fixed).encode(1, { y: { dtype: 'uint8', dims: [16], data } }, meta);
    data.fill(0);
    expect([...(decode<{ outputs: WireTensors }>(out).outputs.y!.data as Uint8Array)]).toEqual([...bytes(16)]);
  });

  it.each([
    ['', [0xa0]],
    ['ab', [0xa2, 0x61, 0x62]],
  ])('packStr(%j)', (s, expected) => expect([...packStr(s)]).toEqual(expected));
});

describe('InferReplyWriter: large tensors start 8-byte aligned', () => {
  it.each(Array.from({ length: 16 }, (_, i) => i))('id of %i chars, two large outputs and a small one', (n) => {
    const w = new InferReplyWriter(fixed);
    const outputs: WireTensors = {
      a: tensor([1, ALIGN_MIN_BYTES / 4], ALIGN_MIN_BYTES),
      small: tensor([1, 3], 12),
      [`b${'x'.repeat(n % 5)}`]: { dtype: 'int64', dims: [2, 4096 + n], data: bytes(16 * (4096 + n)) },
    };
    const buf = w.encode('i'.repeat(n), outputs, meta);
    const got = decode<{ outputs: Record<string, { data: Uint8Array }> }>(buf);
    expect(hashed(got)).toEqual(hashed(generic(fixed, 'i'.repeat(n), outputs, meta)));
    for (const [name, t] of Object.entries(got.outputs)) {
      // The decoded bytes are a view into the encoded reply: where they sit in it.
      expect(t.data.buffer).toBe(buf.buffer);
      const at = t.data.byteOffset - buf.byteOffset;
      if (t.data.byteLength >= ALIGN_MIN_BYTES) expect([name, at % 8]).toEqual([name, 0]);
    }
  });

  it('widenedKey: the same string in str8, str16 and str32 form', () => {
    for (const extra of [0, 1, 2, 4] as const) {
      const k = widenedKey('data', extra);
      expect(k.byteLength).toBe(5 + extra);
      // { v: 1, [k]: true }
      expect(decode(Uint8Array.of(0x82, ...packStr('v'), PROTOCOL_VERSION, ...k, 0xc3))).toEqual({ v: PROTOCOL_VERSION, data: true });
    }
  });
});

describe('encodeInferRequest', () => {
  const big = (n: number) => ({ dtype: 'float32' as const, dims: [1, n / 4], data: bytes(n) });
  it.each<[string, { inputs: WireTensors; timeoutMs?: number; outputs?: string[] }]>([
    ['one small input', { inputs: { x: tensor([1, 4], 16) } }],
    ['with a deadline and output names', { inputs: { x: tensor([1, 4], 16) }, timeoutMs: 30_000, outputs: ['y', 'ü'.repeat(40)] }],
    ['a fractional deadline', { inputs: { x: tensor([1, 4], 16) }, timeoutMs: 2.5 }],
    [
      'two large inputs and a small one',
      { inputs: { a: big(ALIGN_MIN_BYTES), m: tensor([1, 3], 12), input_ids: big(ALIGN_MIN_BYTES + 12) } },
    ],
    ['20 inputs (map16)', { inputs: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`i${i}`, tensor([1, i], 4 * i)])) }],
  ])('%s decodes like the generic encoding, large inputs 8-byte aligned', (_what, req) => {
    for (let pad = 0; pad < 8; pad++) {
      // Output names of every length shift what precedes the inputs' data.
      const r = req.outputs
        ? { ...req, outputs: [...req.outputs, 'o'.repeat(pad)] }
        : { ...req, inputs: { ...req.inputs, ['k'.repeat(pad + 1)]: tensor([1], 4) } };
      const buf = encodeInferRequest(r);
      const got = decode<{ inputs: Record<string, { data: Uint8Array }> }>(buf);
      expect(hashed(got)).toEqual(hashed(decode(encode({ v: PROTOCOL_VERSION, ...r }))));
      for (const [name, t] of Object.entries(got.inputs)) {
        if (t.data.byteLength >= ALIGN_MIN_BYTES) expect([name, (t.data.byteOffset - buf.byteOffset) % 8]).toEqual([name, 0]);
      }
    }
  });
});

describe('the parts encoders (large tensors referenced, not copied)', () => {
  const big = (n: number) => ({ dtype: 'float32' as const, dims: [1, n / 4], data: bytes(n) });
  /** Each referenced tensor's data is its own part (the very bytes the caller gave), and the joined body equals the one-buffer encoding. */
  function check(body: Body, oneBuffer: Uint8Array, tensors: WireTensors): void {
    expect(Buffer.from(joinBody(body)).equals(Buffer.from(oneBuffer))).toBe(true);
    const large = Object.values(tensors).filter((t) => t.data.byteLength >= REF_MIN_BYTES);
    if (large.length === 0) return expect(isBodyParts(body)).toBe(false);
    if (!isBodyParts(body)) throw new Error('a body with a large tensor is not in parts');
    for (const t of large) expect(body.parts).toContain(t.data);
    expect(body.parts.reduce((n, p) => n + p.byteLength, 0)).toBe(body.byteLength);
  }

  it.each<[string, WireTensors]>([
    ['one small input', { x: tensor([1, 4], 16) }],
    ['one input just under REF_MIN_BYTES (aligned, copied)', { x: big(REF_MIN_BYTES - 4) }],
    ['one input of REF_MIN_BYTES', { x: big(REF_MIN_BYTES) }],
    ['two large inputs and a small one between', { a: big(REF_MIN_BYTES + 12), m: tensor([1, 3], 12), b: big(2 * REF_MIN_BYTES) }],
  ])('request: %s', (_what, inputs) => {
    for (let pad = 0; pad < 8; pad++) {
      const req = { inputs: { ...inputs, ['k'.repeat(pad + 1)]: tensor([1], 4) }, timeoutMs: 1500, outputs: ['y'] };
      check(encodeInferRequestParts(req), encodeInferRequest(req), req.inputs);
    }
  });

  it.each<[string, WireTensors]>([
    ['one small output', { y: tensor([1, 4], 16) }],
    ['one output of REF_MIN_BYTES', { y: big(REF_MIN_BYTES) }],
    ['a large output after a small one, then another', { s: tensor([1, 3], 12), y: big(REF_MIN_BYTES + 4), z: big(REF_MIN_BYTES + 8) }],
  ])('reply: %s', (_what, outputs) => {
    const w = new InferReplyWriter(fixed);
    for (let n = 0; n < 8; n++) check(w.encodeParts('i'.repeat(n), outputs, meta), w.encode('i'.repeat(n), outputs, meta), outputs);
  });
});
