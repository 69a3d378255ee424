// The one rule for staged bodies, on an in-memory bucket (the real one: serving.test.ts,
// total-handlers.test.ts, head-hostile.test.ts): a body with a `blob` key is a reference checked
// by parseBlobRef before anything is fetched; no bucket, no chains, no oversize.
import { ErrorCode, PROTOCOL_VERSION, encode, type BlobName } from '@flotilla/protocol';
import { stagedRef, takeStaged, unstage, type BlobBucket } from './staging.js';

function memoryBucket(): BlobBucket & { taken: string[] } {
  const bodies = new Map<string, Uint8Array>();
  let n = 0;
  const taken: string[] = [];
  return {
    taken,
    put: async (data) => {
      const name = `b${++n}`;
      bodies.set(name, data);
      return { name, size: data.byteLength };
    },
    take: async (ref: BlobName, maxBytes: number) => {
      taken.push(ref.name);
      if (ref.size > maxBytes) throw Object.assign(new Error('too large'), { code: ErrorCode.PAYLOAD_TOO_LARGE });
      const b = bodies.get(ref.name);
      bodies.delete(ref.name);
      if (!b) throw Object.assign(new Error('gone'), { code: ErrorCode.UNAVAILABLE });
      return b;
    },
  };
}

describe('staging', () => {
  it.each<[string, Record<string, unknown>, BlobName | undefined]>([
    ['a plain body', { v: PROTOCOL_VERSION, ok: true, result: 1 }, undefined],
    ['a reference', { v: PROTOCOL_VERSION, blob: { name: 'abc_1', size: 10 } }, { name: 'abc_1', size: 10 }],
  ])('stagedRef of %s', (_name, raw, expected) => {
    expect(stagedRef(raw)).toEqual(expected);
  });

  it.each<[string, Record<string, unknown>]>([
    ['a reference beside other keys', { v: PROTOCOL_VERSION, ok: true, blob: { name: 'a', size: 1 } }],
    ['a bad name', { v: PROTOCOL_VERSION, blob: { name: '../etc', size: 1 } }],
    ['a negative size', { v: PROTOCOL_VERSION, blob: { name: 'a', size: -1 } }],
    ['a null blob', { v: PROTOCOL_VERSION, blob: null }],
  ])('refuses %s with BAD_REQUEST before fetching', async (_name, raw) => {
    const bucket = memoryBucket();
    await expect(unstage(bucket, raw, { maxBytes: 1 << 20 })).rejects.toMatchObject({ code: ErrorCode.BAD_REQUEST });
    expect(bucket.taken).toEqual([]);
  });

  it('unstage returns a plain body as is, and a staged one fetched and decoded', async () => {
    const bucket = memoryBucket();
    const plain = { v: PROTOCOL_VERSION, ok: true, result: 'small' };
    expect(await unstage(bucket, plain, { maxBytes: 100 })).toBe(plain);
    const ref = await bucket.put(encode({ v: PROTOCOL_VERSION, ok: true, result: 'large' }));
    expect(await unstage(bucket, { v: PROTOCOL_VERSION, blob: ref }, { maxBytes: 100 })).toEqual({
      v: PROTOCOL_VERSION,
      ok: true,
      result: 'large',
    });
  });

  it('without a bucket a reference is UNAVAILABLE, saying what was staged', async () => {
    await expect(
      unstage(undefined, { v: PROTOCOL_VERSION, blob: { name: 'x', size: 5 } }, { maxBytes: 100, what: 'the reply on a.b' }),
    ).rejects.toMatchObject({
      code: ErrorCode.UNAVAILABLE,
      message: expect.stringContaining('the reply on a.b was staged (5 bytes)'),
    });
  });

  it('a staged body that is itself a reference is refused (no chains)', async () => {
    const bucket = memoryBucket();
    const inner = await bucket.put(encode({ v: PROTOCOL_VERSION, ok: true }));
    const outer = await bucket.put(encode({ v: PROTOCOL_VERSION, blob: inner }));
    await expect(takeStaged(bucket, outer, 100)).rejects.toMatchObject({ code: ErrorCode.BAD_REQUEST });
    expect(bucket.taken).toEqual([outer.name]);
  });
});
