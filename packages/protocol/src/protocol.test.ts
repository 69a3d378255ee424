import { Packr } from 'msgpackr';
import {
  DTYPES,
  ErrorCode,
  FlotillaError,
  InputMismatchError,
  PROTOCOL_VERSION,
  UnknownModelError,
  belowStreamFloor,
  checkWireTensor,
  decode,
  encode,
  fromJsonTensor,
  fromTypedArray,
  fromWire,
  InferReplyWriter,
  joinBody,
  MAX_ID_CHARS,
  mustStage,
  parseDeploySpec,
  REPLY_META_BYTES,
  replyBytesAtMost,
  subjects,
  toFlotillaError,
  toJsonTensor,
  toTypedArray,
  type DType,
  type TypedArray,
} from './index.js';

function sample(dtype: DType): TypedArray {
  const A = DTYPES[dtype].array;
  if (A === BigInt64Array) return new BigInt64Array([-(2n ** 40n), 0n, 7n]);
  if (A === BigUint64Array) return new BigUint64Array([2n ** 40n, 0n, 7n]);
  return new (A as Float32ArrayConstructor)([1, 0, dtype === 'bool' ? 1 : 3]) as TypedArray;
}

describe('codec', () => {
  it.each(Object.keys(DTYPES) as DType[])('round-trips a %s tensor as raw bytes', (dtype) => {
    const values = sample(dtype);
    const msg = { v: PROTOCOL_VERSION, inputs: { t: fromTypedArray(dtype, [3], values) } };
    const back = decode<typeof msg>(encode(msg));
    const t = checkWireTensor('t', back.inputs.t);
    expect(t.dims).toEqual([3]);
    expect(Array.from(toTypedArray(t) as ArrayLike<unknown>)).toEqual(Array.from(values as ArrayLike<unknown>));
  });

  it('puts tensor data on the wire as msgpack bin that a plain decoder reads as bytes', () => {
    const bytes = encode({ v: PROTOCOL_VERSION, x: fromTypedArray('float32', [2], new Float32Array([1.5, -2])) });
    const plain = new Packr({ useRecords: false }).unpack(bytes) as { x: { data: Uint8Array } };
    expect(plain.x.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(new Float32Array(new Uint8Array(plain.x.data).buffer))).toEqual([1.5, -2]);
    // A bin8 header (0xc4) followed by the 8 data bytes.
    expect(Buffer.from(bytes).includes(Buffer.from([0xc4, 8]))).toBe(true);
  });

  it('copies unaligned data before viewing it as a wider type', () => {
    const buf = new Uint8Array(9);
    buf.set(new Uint8Array(new Float32Array([1, 2]).buffer), 1);
    const t = { dtype: 'float32' as const, dims: [2], data: buf.subarray(1) };
    expect(Array.from(toTypedArray(t) as Float32Array)).toEqual([1, 2]);
  });

  it('rejects corrupt bytes with DECODE_ERROR and other versions with VERSION_MISMATCH', () => {
    expect(() => decode(new Uint8Array([0xc1]))).toThrow(expect.objectContaining({ code: ErrorCode.DECODE_ERROR }));
    expect(() => decode(encode([1, 2]))).toThrow(expect.objectContaining({ code: ErrorCode.DECODE_ERROR }));
    expect(() => decode(encode({ v: 2 }))).toThrow(expect.objectContaining({ code: ErrorCode.VERSION_MISMATCH }));
    expect(() => decode(encode({ x: 1 }))).toThrow(expect.objectContaining({ code: ErrorCode.VERSION_MISMATCH }));
  });

  it.each([
    ['bad dtype', { dtype: 'complex', dims: [1], data: new Uint8Array(8) }],
    ['negative dim', { dtype: 'float32', dims: [-1], data: new Uint8Array(4) }],
    ['data not bytes', { dtype: 'float32', dims: [1], data: [1] }],
    ['length mismatch', { dtype: 'float32', dims: [2], data: new Uint8Array(4) }],
    ['not a map', 5],
  ])('checkWireTensor refuses %s with BAD_REQUEST', (_n, t) => {
    expect(() => checkWireTensor('x', t)).toThrow(expect.objectContaining({ code: ErrorCode.BAD_REQUEST }));
  });

  it('converts the JSON tensor form both ways, int64 and bool included', () => {
    const t = fromJsonTensor('a', { dtype: 'int64', dims: [2], data: [1, '9007199254740993'] });
    expect(toJsonTensor(t).data).toEqual([1, '9007199254740993']);
    expect(toJsonTensor(fromJsonTensor('b', { dtype: 'bool', dims: [2], data: [true, false] })).data).toEqual([true, false]);
    expect(() => fromJsonTensor('c', { dtype: 'float32', dims: [3], data: [1] })).toThrow(
      expect.objectContaining({ code: ErrorCode.BAD_REQUEST }),
    );
  });
});

describe('errors', () => {
  it('survive the wire as the same class with code, data and retryable', () => {
    const e = new InputMismatchError('bad', { data: { input: 'x' } });
    const back = fromWire(decode<{ error: never }>(encode({ v: PROTOCOL_VERSION, error: e.toWire() })).error);
    expect(back).toBeInstanceOf(InputMismatchError);
    expect(back).toMatchObject({ code: 'INPUT_MISMATCH', message: 'bad', data: { input: 'x' }, retryable: false });
    expect(fromWire({ code: 'OVERLOADED', message: 'x' }).retryable).toBe(true);
    expect(fromWire({ code: 'SOMETHING_NEW', message: 'x' })).toMatchObject({ code: 'SOMETHING_NEW' });
    expect(fromWire({ code: 'UNKNOWN_MODEL', message: 'x' })).toBeInstanceOf(UnknownModelError);
  });

  it('wraps uncoded errors as INTERNAL and passes coded ones through', () => {
    expect(toFlotillaError(new Error('boom'))).toMatchObject({ code: 'INTERNAL', message: 'boom' });
    const e = new FlotillaError('X', 'y');
    expect(toFlotillaError(e)).toBe(e);
  });
});

describe('subjects, specs and limits', () => {
  it('prefixes every subject and bucket with the cluster name', () => {
    const s = subjects('blue');
    expect(s.infer('mlp')).toBe('flotilla.blue.infer.mlp');
    expect(s.control('deploy')).toBe('flotilla.blue.ctl.deploy');
    expect(s.heartbeat('w1')).toBe('flotilla.blue.hb.w1');
    expect(s.worker('w1', 'load')).toBe('flotilla.blue.worker.w1.load');
    expect(s.modelBucket).toBe('flotilla_blue_models');
    expect(() => subjects('a.b')).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => subjects('../x')).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it('validates deploy specs and fills defaults without touching the input', () => {
    const raw = { name: 'm', digest: 'a'.repeat(64), sizeBytes: 10 };
    const spec = parseDeploySpec(raw);
    expect(spec).toMatchObject({ device: 'any', replicas: 1, allowFallback: true, pin: false, batching: {} });
    expect(raw).toEqual({ name: 'm', digest: 'a'.repeat(64), sizeBytes: 10 });
    expect(() => parseDeploySpec({ ...raw, name: 'a.b' })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => parseDeploySpec({ ...raw, device: 'tpu' })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => parseDeploySpec({ ...raw, extra: 1 })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => parseDeploySpec({ ...raw, minReplicas: 3, maxReplicas: 2 })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it.each<[string, unknown, boolean]>([
    ['ascending bounds per dim', { seq: [16, 32, 64] }, true],
    ['two dims', { H: [32, 64], W: [128] }, true],
    ['not ascending', { seq: [32, 16] }, false],
    ['a repeated bound', { seq: [16, 16] }, false],
    ['a zero bound', { seq: [0, 16] }, false],
    ['a fraction', { seq: [1.5] }, false],
    ['no bounds', { seq: [] }, false],
    ['no dims', {}, false],
    ['too many bounds', { seq: Array.from({ length: 65 }, (_, i) => i + 1) }, false],
  ])('profile.buckets: %s', (_what, buckets, ok) => {
    const raw = { name: 'm', digest: 'a'.repeat(64), sizeBytes: 10, profile: { buckets } };
    if (ok) expect(parseDeploySpec(raw).profile.buckets).toEqual(buckets);
    else expect(() => parseDeploySpec(raw)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it.each<[string, Parameters<typeof replyBytesAtMost>[0], number, number]>([
    ['fixed outputs, batch axis', { batchAxis: true, outputs: [{ name: 'y', dtype: 'float32', shape: ['N', 10] }] }, 3, 120],
    [
      'two outputs, no batch axis',
      {
        batchAxis: false,
        outputs: [
          { name: 'a', dtype: 'int64', shape: [2, 2] },
          { name: 'b', dtype: 'uint8', shape: [] },
        ],
      },
      1,
      33,
    ],
    [
      'a dynamic dim past the batch axis',
      { batchAxis: true, outputs: [{ name: 'y', dtype: 'float32', shape: [null, 'seq'] }] },
      1,
      Infinity,
    ],
    [
      'a dynamic first dim without a batch axis',
      { batchAxis: false, outputs: [{ name: 'y', dtype: 'float32', shape: ['N'] }] },
      1,
      Infinity,
    ],
    ['no outputs', { batchAxis: true, outputs: [] }, 1, 0],
  ])('replyBytesAtMost: %s', (_what, sig, items, outputBytes) => {
    const meta = sig.outputs.length * (256 + 64 + 16 * 9) + REPLY_META_BYTES;
    expect(replyBytesAtMost(sig, items)).toBe(outputBytes + meta);
  });

  it('replyBytesAtMost bounds a real reply with the longest names, id and dims the protocol allows', () => {
    const long = (c: string) => c.repeat(256);
    const dims = [4, ...Array.from({ length: 15 }, () => 1)];
    const sig = {
      batchAxis: true,
      outputs: ['a', 'b'].map((c) => ({ name: long(c), dtype: 'float32' as const, shape: ['N', ...dims.slice(1)] })),
    };
    const writer = new InferReplyWriter({ worker: long('w'), replica: long('r'), device: long('d') });
    const outputs = Object.fromEntries(sig.outputs.map((o) => [o.name, fromTypedArray('float32', dims, new Float32Array(4))]));
    const body = joinBody(
      writer.encodeParts('i'.repeat(MAX_ID_CHARS), outputs, { batch: 128, queueMs: 12345.678, runMs: 9876.543, queueDepth: 1e6 }),
    );
    expect(body.byteLength).toBeLessThanOrEqual(replyBytesAtMost(sig, 4));
    expect(body.byteLength).toBeGreaterThan(replyBytesAtMost(sig, 4) / 2); // the bound is not slack for no reason
  });

  it('stages bodies that would not fit under max_payload', () => {
    expect(mustStage(1000, 1024 * 1024)).toBe(false);
    expect(mustStage(1024 * 1024, 1024 * 1024)).toBe(true);
  });

  const MiB = 1024 * 1024;
  it.each<[string, number, number, boolean]>([
    ['nothing yet, within the grace', 0, 1999, false],
    ['nothing at the grace itself', 0, 2000, false],
    ['nothing just after the grace', 0, 2001, true],
    ['one byte, 3 s in (1 MiB due)', 1, 3000, true],
    ['one 1 MiB chunk, 3 s in (exactly what is due)', MiB, 3000, false],
    ['one 1 MiB chunk, 3.1 s in', MiB, 3100, true],
    ['64 MiB in 5 s (13 MiB/s)', 64 * MiB, 5000, false],
    ['10 MiB after a minute', 10 * MiB, 60_000, true],
  ])('a streamed body with %s: below its floor = %s', (_what, bytes, elapsedMs, below) => {
    expect(belowStreamFloor(bytes, elapsedMs, MiB, 2000)).toBe(below);
  });
});
