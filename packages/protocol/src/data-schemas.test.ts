import { Packr } from 'msgpackr';
import { MAX_MESSAGE_DEPTH } from './codec.js';
import {
  ErrorCode,
  MAX_ID_CHARS,
  PROTOCOL_VERSION,
  decode,
  encode,
  parseBlobRef,
  parseInferRequest,
  parseLoadCommand,
  parseUnloadCommand,
  parseDeploySpec,
  requestIdOf,
} from './index.js';

const tensor = () => ({ dtype: 'float32', dims: [1, 2], data: new Uint8Array(8) });
const req = (extra: Record<string, unknown> = {}) => ({ v: PROTOCOL_VERSION, inputs: { x: tensor() }, ...extra });
const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
};

describe('codec: plain msgpack both ways', () => {
  it('leaves undefined map values out and writes undefined array items as nil (no extension type 0)', () => {
    const bytes = encode({ v: 1, id: undefined, a: [1, undefined] });
    expect(Buffer.from(bytes).toString('hex')).toBe('82a17601a1619201c0');
    expect(bytes.includes(0xd4)).toBe(false); // fixext1: msgpackr's `undefined`
  });

  const exotic = new Packr({ useRecords: false, moreTypes: true, structuredClone: true });
  const cyclic: Record<string, unknown> = { v: 1 };
  cyclic.self = cyclic;
  it.each([
    ['a typed array', exotic.pack({ v: 1, x: new Float32Array(2) })],
    ['a date', exotic.pack({ v: 1, x: new Date(0) })],
    ['a set', exotic.pack({ v: 1, x: new Set([1]) })],
    ['undefined', exotic.pack({ v: 1, x: undefined })],
    ['a cyclic structured clone', exotic.pack(cyclic)],
    ['nesting past the limit', encode({ v: 1, x: JSON.parse('['.repeat(40) + ']'.repeat(40)) })],
  ])('refuses %s with DECODE_ERROR', (_what, bytes) => {
    expect(code(() => decode(bytes))).toBe(ErrorCode.DECODE_ERROR);
  });

  it.each([
    ['a typed array inside maps', exotic.pack({ v: 1, inputs: { x: { data: new Float32Array(2) } } }), '$.inputs.x.data'],
    ['a date inside an array', exotic.pack({ v: 1, a: [1, 'b', new Date(0)] }), '$.a[2]'],
    ['a long key, cut at 64 characters', exotic.pack({ v: 1, ['k'.repeat(100)]: new Set([1]) }), `$.${'k'.repeat(64)}…`],
    [
      'nesting past the limit',
      encode({ v: 1, x: JSON.parse('['.repeat(40) + ']'.repeat(40)) }),
      `$.x${'[0]'.repeat(MAX_MESSAGE_DEPTH - 1)} (nested deeper than ${MAX_MESSAGE_DEPTH})`,
    ],
  ])('names where %s is', (_what, bytes, path) => {
    try {
      decode(bytes);
      throw new Error('decoded');
    } catch (e) {
      expect((e as { data?: { path?: string } }).data?.path).toBe(path);
      expect((e as Error).message).toContain(`at ${path}`);
    }
  });

  it('accepts plain data with bin fields at any allowed depth', () => {
    const msg = decode<{ x: { data: Uint8Array } }>(
      encode({ v: 1, x: { data: new Uint8Array([1, 2]) }, deep: JSON.parse('['.repeat(20) + ']'.repeat(20)) }),
    );
    expect(Array.from(msg.x.data)).toEqual([1, 2]);
  });

  it('bounds what a version mismatch echoes', () => {
    try {
      decode(encode({ v: 'x'.repeat(100_000) }));
    } catch (e) {
      expect((e as Error).message.length).toBeLessThan(200);
      expect((e as { code: string }).code).toBe(ErrorCode.VERSION_MISMATCH);
    }
  });
});

describe('inference request schema', () => {
  it('accepts a request with string or integer id, output names and a deadline', () => {
    expect(parseInferRequest(req({ id: 'a', outputs: ['y'], timeoutMs: 50 }))).toMatchObject({ id: 'a', outputs: ['y'], timeoutMs: 50 });
    expect(parseInferRequest(req({ id: 7 })).id).toBe(7);
    expect(parseInferRequest(req({ id: 'i'.repeat(MAX_ID_CHARS) })).id).toHaveLength(MAX_ID_CHARS);
  });

  it.each([
    ['an unknown key', req({ extra: 1 }), '$.extra'],
    ['an unknown tensor key', { v: 1, inputs: { x: { ...tensor(), extra: 1 } } }, '$.inputs.x.extra'],
    ['no inputs', { v: 1 }, '$.inputs'],
    ['inputs as a list', { v: 1, inputs: [tensor()] }, '$.inputs'],
    ['an id too long', req({ id: 'i'.repeat(MAX_ID_CHARS + 1) }), '$.id'],
    ['a fractional id', req({ id: 1.5 }), '$.id'],
    ['a map id', req({ id: { a: 1 } }), '$.id'],
    ['outputs not names', req({ outputs: [1] }), '$.outputs'],
    ['a long output name', req({ outputs: ['o'.repeat(300)] }), '$.outputs'],
    ['a negative deadline', req({ timeoutMs: -1 }), '$.timeoutMs'],
    ['a deadline over an hour', req({ timeoutMs: 3_600_001 }), '$.timeoutMs'],
    ['too many tensors', { v: 1, inputs: Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`t${i}`, tensor()])) }, '$.inputs'],
  ])('refuses %s with BAD_REQUEST naming the path', (_what, raw, path) => {
    try {
      parseInferRequest(raw as Record<string, unknown>);
      throw new Error('accepted');
    } catch (e) {
      expect((e as { code: string }).code).toBe(ErrorCode.BAD_REQUEST);
      expect((e as Error).message).toContain(path);
    }
  });

  it('keeps only a valid id for echoing', () => {
    expect(requestIdOf({ id: 'ok' })).toBe('ok');
    expect(requestIdOf({ id: 'x'.repeat(100_000) })).toBeUndefined();
    expect(requestIdOf({ id: { nested: 1 } })).toBeUndefined();
  });
});

describe('blob reference schema', () => {
  it('accepts a name and a size, the size 0 included', () => {
    expect(parseBlobRef({ v: 1, blob: { name: 'AbC_1-2', size: 0 } })).toEqual({ name: 'AbC_1-2', size: 0 });
  });
  it('a streamed reference also names its chunks (nuid)', () => {
    expect(parseBlobRef({ v: 1, blob: { name: 'a', size: 9, nuid: 'Chunks_1' } })).toEqual({ name: 'a', size: 9, nuid: 'Chunks_1' });
  });
  it.each([
    [{ v: 1, blob: { name: '../x', size: 1 } }],
    [{ v: 1, blob: { name: '', size: 1 } }],
    [{ v: 1, blob: { name: 'x'.repeat(65), size: 1 } }],
    [{ v: 1, blob: { name: 'x', size: -1 } }],
    [{ v: 1, blob: { name: 'x', size: 'big' } }],
    [{ v: 1, blob: { name: 'x', size: 1.5 } }],
    [{ v: 1, blob: { name: 'x', size: 2 ** 60 } }],
    [{ v: 1, blob: { name: 'x', size: 1, extra: 1 } }],
    [{ v: 1, blob: { name: 'x', size: 1, nuid: '>' } }],
    [{ v: 1, blob: { name: 'x', size: 1, nuid: 'a.b' } }],
    [{ v: 1, blob: { name: 'x', size: 1, nuid: 7 } }],
    [{ v: 1, blob: { name: 'x', size: 1 }, inputs: {} }],
    [{ v: 1, blob: 'x' }],
  ])('refuses %j with BAD_REQUEST (never UNAVAILABLE: nothing is fetched)', (raw) => {
    expect(code(() => parseBlobRef(raw as Record<string, unknown>))).toBe(ErrorCode.BAD_REQUEST);
  });
});

describe('load and unload command schemas', () => {
  const spec = parseDeploySpec({ name: 'm', digest: 'a'.repeat(64), sizeBytes: 10 });
  const load = (extra: Record<string, unknown> = {}) => ({ v: 1, replicaId: 'm-abc', device: 'cpu', spec, ...extra });

  it('accepts a well-formed load (spec defaults filled) and unload', () => {
    expect(parseLoadCommand(load({ bytes: 5 })).spec.replicas).toBe(1);
    expect(parseLoadCommand(load({ device: 'gpu:0' })).device).toBe('gpu:0');
    expect(parseUnloadCommand({ v: 1, replicaId: 'm-abc' }).replicaId).toBe('m-abc');
  });

  it.each([
    ['a path-like replica id', load({ replicaId: '../../etc' }), '$.replicaId'],
    ['an unknown device', load({ device: 'tpu:0' }), '$.device'],
    ['a negative charge', load({ bytes: -1 }), '$.bytes'],
    ['an unknown spec key', load({ spec: { ...spec, junk: 'x'.repeat(1000) } }), '$.spec'],
    ['an unknown key', load({ extra: 1 }), '$'],
    ['another version', load({ v: 2 }), '$.v'],
  ])('refuses %s with BAD_REQUEST naming the path, briefly', (_what, raw, path) => {
    try {
      parseLoadCommand(raw);
      throw new Error('accepted');
    } catch (e) {
      expect((e as { code: string }).code).toBe(ErrorCode.BAD_REQUEST);
      expect((e as Error).message).toContain(path);
      expect((e as Error).message.length).toBeLessThan(400);
    }
  });

  it('refuses an unload with anything but a replica id', () => {
    expect(code(() => parseUnloadCommand({ v: 1, replicaId: 'x', spec: {} }))).toBe(ErrorCode.BAD_REQUEST);
    expect(code(() => parseUnloadCommand({ v: 1 }))).toBe(ErrorCode.BAD_REQUEST);
  });
});

describe('wire errors are bounded', () => {
  it('cuts long messages and drops oversized data', async () => {
    const { BadRequestError, MAX_ERROR_MESSAGE_CHARS } = await import('./index.js');
    const w = new BadRequestError('m'.repeat(1_000_000), { data: { echo: 'd'.repeat(1_000_000) } }).toWire();
    expect(w.message.length).toBeLessThan(MAX_ERROR_MESSAGE_CHARS + 64);
    expect(w.data).toBeUndefined();
    expect(new BadRequestError('short', { data: { a: 1 } }).toWire()).toEqual({ code: 'BAD_REQUEST', message: 'short', data: { a: 1 } });
  });

  it('rebuilds errors with hostile codes without touching prototypes', async () => {
    const { fromWire, FlotillaError } = await import('./index.js');
    for (const c of ['__proto__', 'constructor', 'toString']) {
      const e = fromWire({ code: c, message: 'x' });
      expect(e).toBeInstanceOf(FlotillaError);
      expect(e.code).toBe(c);
    }
    expect(fromWire({ code: 42 as never, message: { a: 1 } as never }).code).toBe('INTERNAL');
  });
});
