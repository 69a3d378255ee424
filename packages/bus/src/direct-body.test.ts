// The replica's side of direct bodies (DirectBodies) on plain messages: what it holds and for how
// long, the floor under an expected body's rate, and its answers. Over a real nats-server, with
// the SDK's side: packages/devkit/src/direct-bodies.test.ts.
import { headers, type Msg } from '@nats-io/nats-core';
import { DIRECT_BODY_HEADER, ErrorCode, decode, type FlotillaError } from '@flotilla/protocol';
import { DirectBodies } from './direct-body.js';

/** A message on the body channel with `header`; its answers are recorded. */
function message(header: string, data = new Uint8Array(0)) {
  const answers: Array<{ data: Uint8Array; error?: string }> = [];
  const h = headers();
  h.set(DIRECT_BODY_HEADER, header);
  const msg = {
    headers: h,
    data,
    reply: '_INBOX.x',
    respond: (d: Uint8Array, o?: { headers?: ReturnType<typeof headers> }) => {
      const error = o?.headers?.get(DIRECT_BODY_HEADER) === 'error' ? decode<{ error: { code: string } }>(d).error.code : undefined;
      answers.push({ data: d, ...(error ? { error } : {}) });
      return true;
    },
  } as unknown as Msg;
  return { msg, answers };
}

const codeOf = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: FlotillaError) => e.code,
  );

describe('DirectBodies', () => {
  it('an expected body arriving slower than the floor fails UNAVAILABLE long before the stall time', async () => {
    const d = new DirectBodies({
      maxHeldBytes: 1e9,
      chunkBytes: () => 1000,
      stallMs: 20_000,
      floor: { minBytesPerSec: 1e6, graceMs: 100 },
    });
    const started = Date.now();
    const body = d.expect('slow', 10_000_000);
    d.handle(message('put slow 0', new Uint8Array(1000)).msg);
    expect(await codeOf(body)).toBe(ErrorCode.UNAVAILABLE);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(d.size).toBe(0);
  });

  it('a body that keeps up with the floor completes', async () => {
    const d = new DirectBodies({ maxHeldBytes: 1e9, chunkBytes: () => 1000, floor: { minBytesPerSec: 1e6, graceMs: 100 } });
    const body = d.expect('fine', 3000);
    for (let off = 0; off < 3000; off += 1000) d.handle(message(`put fine ${off}`, new Uint8Array(1000).fill(off / 1000)).msg);
    const got = await body;
    expect([got[0], got[1000], got[2999]]).toEqual([0, 1, 2]);
    expect(d.size).toBe(0);
  });

  it('holds replies up to maxHeldBytes, refuses past it, and frees what a caller read to its end', () => {
    const d = new DirectBodies({ maxHeldBytes: 5000, chunkBytes: () => 4000 });
    const a = d.offer(new Uint8Array(3000))!;
    expect(d.offer(new Uint8Array(3000))).toBeUndefined(); // 6,000 > 5,000: staged instead
    expect(d.heldBytes).toBe(3000);
    const first = message(`get ${a.id} 0 2000`);
    d.handle(first.msg);
    expect(first.answers[0]!.data.byteLength).toBe(2000);
    const last = message(`get ${a.id} 2000 1000`);
    d.handle(last.msg);
    expect(last.answers[0]!.data.byteLength).toBe(1000);
    expect(d.heldBytes).toBe(0);
    expect(d.offer(new Uint8Array(3000))).toBeDefined();
    d.close();
  });

  it('a reply read out of order stays held until every byte was read once; a chunk asked again is answered again', () => {
    const d = new DirectBodies({ maxHeldBytes: 5000, chunkBytes: () => 1000 });
    const a = d.offer(Uint8Array.from({ length: 3000 }, (_, i) => i % 256))!;
    for (const off of [2000, 0]) d.handle(message(`get ${a.id} ${off} 1000`).msg);
    expect(d.heldBytes).toBe(3000); // the last chunk was read, the middle one not yet
    const again = message(`get ${a.id} 0 1000`); // its answer lost: asked again
    d.handle(again.msg);
    expect(again.answers[0]!.data[999]).toBe(999 % 256);
    expect(d.heldBytes).toBe(3000);
    d.handle(message(`get ${a.id} 1000 1000`).msg);
    expect(d.heldBytes).toBe(0);
    const late = message(`get ${a.id} 1000 1000`);
    d.handle(late.msg);
    expect(late.answers[0]!.error).toBe(ErrorCode.UNAVAILABLE);
    d.close();
  });

  it('a held reply never read is released after the stall time; `done` settles then', async () => {
    const d = new DirectBodies({ maxHeldBytes: 5000, chunkBytes: () => 4000, stallMs: 50 });
    const a = d.offer(new Uint8Array(3000))!;
    await a.done;
    expect(d.heldBytes).toBe(0);
    const late = message(`get ${a.id} 0 10`);
    d.handle(late.msg);
    expect(late.answers[0]!.error).toBe(ErrorCode.UNAVAILABLE);
  });

  it('expedite: a held reply nobody reads is released after the shorter wait; one being read lasts', async () => {
    const d = new DirectBodies({ maxHeldBytes: 5000, chunkBytes: () => 1000, stallMs: 60_000 });
    const idle = d.offer(new Uint8Array(2000))!;
    const read = d.offer(new Uint8Array(2000))!;
    const started = Date.now();
    d.expedite(100);
    // The reader asks every 60 ms: its reply stays held past 100 ms.
    d.handle(message(`get ${read.id} 0 500`).msg);
    await new Promise((r) => setTimeout(r, 60));
    d.handle(message(`get ${read.id} 500 500`).msg);
    await idle.done;
    expect(Date.now() - started).toBeLessThan(1000);
    const last = message(`get ${read.id} 1000 1000`);
    d.handle(last.msg);
    expect(last.answers[0]!.data.byteLength).toBe(1000);
    await read.done;
    expect(d.heldBytes).toBe(0);
  });

  it('close fails what it expects and releases what it holds', async () => {
    const d = new DirectBodies({ maxHeldBytes: 5000, chunkBytes: () => 4000 });
    const body = d.expect('x', 100);
    const held = d.offer(new Uint8Array(100))!;
    d.close();
    expect(await codeOf(body)).toBe(ErrorCode.UNAVAILABLE);
    await held.done;
    expect(d.size).toBe(0);
  });

  it('past maxExpected bodies at once, another is OVERLOADED; one completing makes room', async () => {
    const d = new DirectBodies({ maxHeldBytes: 5000, chunkBytes: () => 4000, maxExpected: 2 });
    const a = d.expect('a', 1);
    void d.expect('b', 1).catch(() => undefined);
    expect(await codeOf(d.expect('c', 1))).toBe(ErrorCode.OVERLOADED);
    d.handle(message('put a 0', new Uint8Array(1)).msg);
    await a;
    const c = d.expect('c', 1);
    d.handle(message('put c 0', new Uint8Array(1)).msg);
    expect((await c).byteLength).toBe(1);
    d.close();
  });

  it('an id already expected is refused; a message without a reply subject is dropped quietly', async () => {
    const d = new DirectBodies({ maxHeldBytes: 5000, chunkBytes: () => 4000 });
    const first = d.expect('dup', 10);
    expect(await codeOf(d.expect('dup', 10))).toBe(ErrorCode.BAD_REQUEST);
    const { msg, answers } = message('put dup 0', new Uint8Array(10));
    (msg as { reply?: string }).reply = undefined;
    d.handle(msg);
    expect(answers).toEqual([]);
    expect((await first).byteLength).toBe(10);
  });
});
