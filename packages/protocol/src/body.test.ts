// Bodies in parts: chunking them gives the joined bytes, views where a chunk lies within one part.
import { bodyChunks, isBodyParts, joinBody, type BodyParts } from './body.js';

const bytes = (n: number, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const parts = (...ps: Uint8Array[]): BodyParts => ({ parts: ps, byteLength: ps.reduce((n, p) => n + p.byteLength, 0) });
const concat = (chunks: Uint8Array[]) => Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)));

describe('bodyChunks', () => {
  it.each<[string, BodyParts, number]>([
    ['one part, chunks dividing it', parts(bytes(64)), 16],
    ['one part, a short last chunk', parts(bytes(70)), 16],
    ['header, large tensor, trailer', parts(bytes(5, 1), bytes(100, 2), bytes(9, 3)), 16],
    ['a chunk spanning three parts', parts(bytes(3, 1), bytes(4, 2), bytes(20, 3)), 10],
    ['empty parts between', parts(bytes(7, 1), new Uint8Array(0), bytes(12, 2), new Uint8Array(0)), 8],
    ['chunk larger than the body', parts(bytes(5, 1), bytes(6, 2)), 1024],
  ])('%s: the chunks are the joined bytes, in order and sized', (_what, body, chunk) => {
    const chunks = [...bodyChunks(body, chunk)];
    expect(concat(chunks).equals(Buffer.from(joinBody(body)))).toBe(true);
    expect(chunks.slice(0, -1).every((c) => c.byteLength === chunk)).toBe(true);
    expect(chunks.length).toBe(Math.ceil(body.byteLength / chunk));
  });

  it('a chunk within one part is a view of it, not a copy', () => {
    const tensor = bytes(4096, 9);
    const body = parts(bytes(8, 1), tensor, bytes(8, 2));
    const chunks = [...bodyChunks(body, 1024)];
    // 8 header bytes + 1016 of the tensor, then views of the tensor.
    expect(chunks[0]!.buffer).not.toBe(tensor.buffer);
    for (const c of chunks.slice(1, 4)) expect(c.buffer).toBe(tensor.buffer);
    expect(concat(chunks).equals(Buffer.from(joinBody(body)))).toBe(true);
  });

  it('a plain buffer is chunked as views of itself; an empty body has no chunk', () => {
    const b = bytes(100);
    const chunks = [...bodyChunks(b, 30)];
    expect(chunks.map((c) => c.byteLength)).toEqual([30, 30, 30, 10]);
    expect(chunks.every((c) => c.buffer === b.buffer)).toBe(true);
    expect([...bodyChunks(new Uint8Array(0), 30)]).toEqual([]);
  });

  it('refuses a non-positive chunk size and parts shorter than the byteLength they claim', () => {
    expect(() => [...bodyChunks(bytes(10), 0)]).toThrow(RangeError);
    expect(() => [...bodyChunks({ parts: [bytes(10)], byteLength: 25 }, 8)]).toThrow(/fewer bytes/);
  });
});

describe('joinBody', () => {
  it('returns a buffer as it is, one part as it is, and copies several into one', () => {
    const b = bytes(10);
    expect(joinBody(b)).toBe(b);
    expect(joinBody(parts(b))).toBe(b);
    const joined = joinBody(parts(bytes(3, 1), bytes(4, 2)));
    expect([...joined]).toEqual([...bytes(3, 1), ...bytes(4, 2)]);
    expect(isBodyParts(b)).toBe(false);
    expect(isBodyParts(parts(b))).toBe(true);
  });
});
