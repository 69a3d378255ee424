// Pins the patch on @nats-io/nats-core's parser (patches/@nats-io__nats-core@3.4.0.patch): a
// message whose payload goes on past one socket read is gathered in one buffer of its own size,
// each byte copied once. Unpatched, the buffer grew by doubling from the first read's part: a
// 1 MiB payload arriving in 64 KiB reads was copied and zeroed about twice over and held in a
// buffer of up to twice its size (bench: 1.6–1.7 ms against 0.8–0.9 ms of parser CPU per MiB).
// That buffer is not zeroed first (Buffer.allocUnsafeSlow): the parser writes all of it. An
// application may hand out those buffers itself (setPayloadAllocator: the worker's payload pool).
import { Parser, setPayloadAllocator } from '@nats-io/nats-core/internal';

/** What a socket would bring: MSG (or HMSG) frames, cut into reads of `readBytes`. */
function reads(frames: Uint8Array[], readBytes: number): Uint8Array[] {
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of frames) {
    all.set(f, at);
    at += f.length;
  }
  const out: Uint8Array[] = [];
  // Each read is its own buffer, as Node's are.
  for (let o = 0; o < all.length; o += readBytes) out.push(all.slice(o, o + readBytes));
  return out;
}

function msgFrame(subject: string, payload: Uint8Array, headers?: string): Uint8Array {
  const te = new TextEncoder();
  const hdr = headers === undefined ? new Uint8Array(0) : te.encode(headers);
  const line =
    headers === undefined
      ? `MSG ${subject} 1 _INBOX.reply ${payload.length}\r\n`
      : `HMSG ${subject} 1 _INBOX.reply ${hdr.length} ${hdr.length + payload.length}\r\n`;
  const head = te.encode(line);
  const frame = new Uint8Array(head.length + hdr.length + payload.length + 2);
  frame.set(head, 0);
  frame.set(hdr, head.length);
  frame.set(payload, head.length + hdr.length);
  frame.set(te.encode('\r\n'), head.length + hdr.length + payload.length);
  return frame;
}

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function parseAll(chunks: Uint8Array[]): Uint8Array[] {
  const got: Uint8Array[] = [];
  const parser = new Parser({
    push: (e: { data?: Uint8Array }) => {
      if (e.data) got.push(e.data);
    },
  } as never);
  for (const c of chunks) parser.parse(c);
  return got;
}

describe('the NATS client parser (patched)', () => {
  it.each([
    ['a 1 MiB payload in 64 KiB reads', [1 << 20], 65_536, 1],
    ['49 KB payloads, some straddling 64 KiB reads', [49_212, 49_212, 49_212, 49_212], 65_536, 3],
    ['payloads cut into 1-byte reads', [300, 5], 1, 2],
    ['payloads that fit one read', [100, 200], 65_536, 0],
  ])('%s arrive intact, each in a buffer of its own size when it spans reads', (_label, sizes, readBytes, spanning) => {
    const payloads = sizes.map((n, i) => pattern(n, i));
    const frames = payloads.map((p, i) => msgFrame(`s.${i}`, p));
    const got = parseAll(reads(frames, readBytes));
    expect(got.map((d) => d.length)).toEqual(sizes);
    let start = 0;
    let spanned = 0;
    got.forEach((d, i) => {
      expect(Buffer.compare(Buffer.from(d), Buffer.from(payloads[i]!))).toBe(0);
      // Where the payload sits in the stream; the parser sees its end at the byte after it.
      const end = start + frames[i]!.length - 2;
      const from = end - sizes[i]!;
      if (Math.floor(from / readBytes) !== Math.floor(end / readBytes)) {
        spanned++;
        expect(d.byteOffset).toBe(0);
        expect(d.buffer.byteLength).toBe(sizes[i]);
      } else expect(d.buffer.byteLength).toBeLessThanOrEqual(readBytes); // a view on the read itself
      start += frames[i]!.length;
    });
    expect(spanned).toBe(spanning);
  });

  it('gathers a spanning payload in memory it does not zero first (every byte is written before it is dispatched)', () => {
    // Zeroing each 49 KB request took 1.5 % of a replica's core (perf, conv-classifier at 128 callers, 2026-12-01).
    const unzeroed = jest.spyOn(Buffer, 'allocUnsafeSlow');
    try {
      const sizes = [49_212, 49_212, 100];
      const payloads = sizes.map((n, i) => pattern(n, i));
      const got = parseAll(
        reads(
          payloads.map((p, i) => msgFrame(`s.${i}`, p)),
          65_536,
        ),
      );
      got.forEach((d, i) => expect(Buffer.compare(Buffer.from(d), Buffer.from(payloads[i]!))).toBe(0));
      // The second 49 KB payload starts in the first read and ends in the second; the others fit one read.
      expect(unzeroed.mock.calls).toEqual([[49_212]]);
    } finally {
      unzeroed.mockRestore();
    }
  });

  it('gathers a spanning payload where the application allocator says, larger and holding old bytes or not', () => {
    // A reused buffer: larger than the payload and full of an earlier message's bytes.
    const reused = new ArrayBuffer(53_248);
    new Uint8Array(reused).fill(0xee);
    const asked: number[] = [];
    setPayloadAllocator((size) => (asked.push(size), reused));
    try {
      const payloads = [pattern(49_212, 1), pattern(49_212, 2), pattern(100, 3)];
      const got = parseAll(
        reads(
          payloads.map((p, i) => msgFrame(`s.${i}`, p)),
          65_536,
        ),
      );
      got.forEach((d, i) => expect(Buffer.compare(Buffer.from(d), Buffer.from(payloads[i]!))).toBe(0));
      // Only the second spans reads: it is the allocator's buffer, exactly its own length of it.
      expect(asked).toEqual([49_212]);
      expect(got[1]!.buffer).toBe(reused);
      expect([got[1]!.byteOffset, got[1]!.byteLength]).toEqual([0, 49_212]);
      expect(got[0]!.buffer).not.toBe(reused);
    } finally {
      setPayloadAllocator(undefined);
    }
    // Unset again: a fresh buffer of the payload's size.
    const [again] = parseAll(reads([msgFrame('s.x', pattern(70_000, 4))], 65_536));
    expect(again!.buffer.byteLength).toBe(70_000);
  });

  it('a message with headers that spans reads keeps its headers and payload', () => {
    const payload = pattern(200_000, 7);
    const hdrs = 'NATS/1.0\r\ntraceparent: 00-0123456789abcdef0123456789abcdef-0123456789abcdef-01\r\n\r\n';
    const [got] = parseAll(reads([msgFrame('s.h', payload, hdrs)], 65_536));
    const hdrBytes = new TextEncoder().encode(hdrs).length;
    expect(got!.length).toBe(hdrBytes + payload.length);
    expect(new TextDecoder().decode(got!.subarray(0, hdrBytes))).toBe(hdrs);
    expect(Buffer.compare(Buffer.from(got!.subarray(hdrBytes)), Buffer.from(payload))).toBe(0);
    expect(got!.buffer.byteLength).toBe(hdrBytes + payload.length);
  });
});
