// Large bodies for real: an 8 MiB request and reply through a replica and 64 MiB through the
// blob store, byte-exact (64 MiB through a replica: serving.test.ts); a reconnect or a lost server
// in the middle of a transfer (it completes, or fails UNAVAILABLE); forged objects in the blob bucket (too long, too short, another digest, a wildcard nuid, a flood
// of chunks), each refused with a stable code while the store and the replica keep serving.
import { connect } from '@nats-io/transport-node';
import { headers, nuid, type NatsConnection } from '@nats-io/nats-core';
import { BlobStore, closeBus, connectBus } from '@flotilla/bus';
import type { FlotillaClient } from '@flotilla/client';
import { LocalCluster, NatsServer } from '@flotilla/local';
import {
  ErrorCode,
  PROTOCOL_VERSION,
  STREAMED_BLOBS,
  STREAMED_BLOBS_HEADER,
  decode,
  encode,
  fromTypedArray,
  joinBody,
  subjects,
  toTypedArray,
  type FlotillaError,
  type InferReply,
} from '@flotilla/protocol';
import { sampleModelPath } from '@flotilla/sample-models';
import { createHash, randomFillSync } from 'node:crypto';

const MiB = 1024 * 1024;
let cluster: LocalCluster;
let client: FlotillaClient;

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as FlotillaError).code ?? `uncoded: ${(e as Error).message}`;
  }
  return 'ok';
}

/** Random bytes (a misplaced or repeated chunk cannot go unnoticed). Native: loops over big typed arrays are slow under Jest. */
function pattern(bytes: number): Uint8Array {
  return randomFillSync(new Uint8Array(bytes));
}

/** `n` elements repeating `unit`, by doubling copies (native). */
function tile(unit: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  out.set(unit.subarray(0, Math.min(unit.length, n)));
  for (let len = unit.length; len < n; len *= 2) out.copyWithin(len, 0, Math.min(len, n - len));
  return out;
}

beforeAll(async () => {
  cluster = await LocalCluster.start({ workers: 1 });
  client = cluster.client();
  await client.deploy(sampleModelPath('affine'), 'affine', { device: 'cpu', profile: { enabled: false } });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('large bodies through a replica', () => {
  it('an 8 MiB request and its reply arrive byte-exact (64 MiB: serving.test.ts, and through the blob store below)', async () => {
    const n = (8 * MiB) / 4;
    // Small integers: y = 2x + 1 is exact in float32, so the reply is checked bit for bit.
    const unit = Float32Array.from({ length: 4099 }, (_, i) => i);
    const x = tile(unit, n);
    const expected = tile(
      unit.map((v) => 2 * v + 1),
      n,
    );
    const t0 = performance.now();
    const y = await client.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1024, n / 1024], data: x } }, { timeoutMs: 30_000 });
    const ms = performance.now() - t0;
    const d = y.y!.data as Float32Array;
    expect(y.y!.dims).toEqual([1, 1, 1024, n / 1024]);
    expect(Buffer.from(d.buffer, d.byteOffset, d.byteLength).equals(Buffer.from(expected.buffer))).toBe(true);
    console.log(`[large-bodies] 8 MiB request + reply through a replica: ${ms.toFixed(0)} ms`);
  }, 30_000);

  it('a reply over max_payload is streamed to a caller that says it reads streamed replies, stored for one that does not', async () => {
    const nc = await connectBus({ servers: cluster.url });
    try {
      const blobs = new BlobStore(nc, subjects(cluster.cluster).blobBucket);
      const x = Float32Array.from({ length: (2 * MiB) / 4 }, (_, i) => i % 1000);
      const body = encode({ v: PROTOCOL_VERSION, inputs: { x: fromTypedArray('float32', [1, 1, 1024, x.length / 1024], x) } });
      const replyRef = async (streamed: boolean) => {
        const h = headers();
        if (streamed) h.set(STREAMED_BLOBS_HEADER, STREAMED_BLOBS);
        const req = encode({ v: PROTOCOL_VERSION, blob: await blobs.put(body) });
        const msg = await nc.request(`flotilla.${cluster.cluster}.infer.affine`, req, { timeout: 10_000, headers: h });
        return decode<{ blob: { name: string; size: number; nuid?: string } }>(msg.data).blob;
      };
      for (const streamed of [false, true]) {
        const ref = await replyRef(streamed);
        expect(ref.nuid !== undefined).toBe(streamed);
        const reply = decode<InferReply & { ok: true }>(await blobs.take(ref, 4 * MiB));
        const y = toTypedArray(reply.outputs.y!) as Float32Array;
        expect([y[0], y[1], y[999], y[1000]]).toEqual([1, 3, 1999, 1]);
      }
    } finally {
      await closeBus(nc);
    }
  });

  it('a staged request whose object was forged gets a coded reply, and the replica keeps serving', async () => {
    const nc = await connect({ servers: cluster.url });
    try {
      const bucket = subjects(cluster.cluster).blobBucket;
      const body = encode({ v: PROTOCOL_VERSION, inputs: { x: { dtype: 'float32', dims: [1, 1, 1, 4], data: new Uint8Array(16) } } });
      const name = await forge(nc, bucket, body, { digestOf: new Uint8Array(body.byteLength) });
      const reply = decode<{ ok: boolean; error: { code: string } }>(
        (
          await nc.request(
            'flotilla.' + cluster.cluster + '.infer.affine',
            encode({ v: PROTOCOL_VERSION, blob: { name, size: body.byteLength } }),
            { timeout: 10_000 },
          )
        ).data,
      );
      expect(reply.error.code).toBe(ErrorCode.BAD_REQUEST);
      const ok = await client.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1, 2], data: new Float32Array([1, 2]) } });
      expect(Array.from(ok.y!.data as Float32Array)).toEqual([3, 5]);
    } finally {
      await nc.close();
    }
  });

  it('a streamed request whose sender stops after one chunk is answered UNAVAILABLE at the rate floor, and the replica serves', async () => {
    const nc = await connect({ servers: cluster.url });
    try {
      const bucket = subjects(cluster.cluster).blobBucket;
      await new BlobStore(nc, bucket).put(new Uint8Array(1)); // the bucket exists (this test may run alone)
      const id = nuid.next();
      const name = await forge(nc, bucket, pattern(64 * 1024), { nuid: id, noMeta: true });
      const t0 = performance.now();
      const reply = decode<{ ok: boolean; error: { code: string; message: string } }>(
        (
          await nc.request(
            `flotilla.${cluster.cluster}.infer.affine`,
            encode({ v: PROTOCOL_VERSION, blob: { name, size: 32 * MiB, nuid: id } }),
            { timeout: 15_000 },
          )
        ).data,
      );
      // Its 32 MiB of fetch budget was held 2 s (the floor's grace), not 10 (the stall).
      expect(reply.error).toMatchObject({ code: ErrorCode.UNAVAILABLE, message: expect.stringContaining('slower than the floor') });
      expect(performance.now() - t0).toBeLessThan(5000);
      const ok = await client.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1, 2], data: new Float32Array([1, 2]) } });
      expect(Array.from(ok.y!.data as Float32Array)).toEqual([3, 5]);
    } finally {
      await nc.close();
    }
  });
});

interface ForgeOptions {
  /** Bytes the chunks hold (default: the body). */
  chunks?: Uint8Array[];
  /** What the meta says. */
  size?: number;
  chunkCount?: number;
  digest?: string;
  /** Digest of these bytes instead of the body's. */
  digestOf?: Uint8Array;
  nuid?: string;
  /** The meta names these chunks instead of those written. */
  metaNuid?: string;
  /** No meta at all (a sender that stopped after its chunks). */
  noMeta?: boolean;
  deleted?: boolean;
  link?: boolean;
}

/** Whether object `name`'s meta is in the bucket's stream (JetStream's direct message API, no object store client). */
async function metaStored(nc: NatsConnection, bucket: string, name: string): Promise<boolean> {
  const subject = `$O.${bucket}.M.${Buffer.from(name).toString('base64url')}${'='.repeat((3 - (name.length % 3)) % 3)}`;
  const r = await nc.request(`$JS.API.STREAM.MSG.GET.OBJ_${bucket}`, JSON.stringify({ last_by_subj: subject }), { timeout: 5000 });
  return (JSON.parse(new TextDecoder().decode(r.data)) as { message?: unknown }).message !== undefined;
}

/** Writes an object the way any object store client would (ADR-20), lying where told to; returns its name. */
async function forge(nc: NatsConnection, bucket: string, body: Uint8Array, o: ForgeOptions = {}): Promise<string> {
  const name = nuid.next();
  const id = o.nuid ?? nuid.next();
  const chunks = o.chunks ?? [body];
  // A nuid with a dot or a wildcard is no subject to publish chunks on: the chunks go to a plain one.
  const chunkId = /^[A-Za-z0-9_-]+$/.test(id) ? id : nuid.next();
  for (const c of chunks) await nc.request(`$O.${bucket}.C.${chunkId}`, c, { timeout: 5000 });
  const digest =
    o.digest ??
    `SHA-256=${createHash('sha256')
      .update(o.digestOf ?? body)
      .digest('base64url')}=`;
  const meta = {
    name,
    bucket,
    nuid: o.metaNuid ?? id,
    size: o.size ?? body.byteLength,
    chunks: o.chunkCount ?? chunks.length,
    digest,
    mtime: new Date().toISOString(),
    deleted: o.deleted ?? false,
    options: o.link ? { link: { bucket, name: 'elsewhere' } } : { max_chunk_size: 1 << 20 },
  };
  if (o.noMeta) return name;
  const h = headers();
  h.set('Nats-Rollup', 'sub');
  await nc.request(
    `$O.${bucket}.M.${Buffer.from(name).toString('base64url')}${'='.repeat((3 - (name.length % 3)) % 3)}`,
    JSON.stringify(meta),
    {
      headers: h,
      timeout: 5000,
    },
  );
  return name;
}

describe('the blob store on its own server', () => {
  let server: NatsServer;
  let a: NatsConnection;
  let b: NatsConnection;
  const bucket = 'flotilla_lb_blobs';
  let sender: BlobStore;
  let receiver: BlobStore;

  beforeAll(async () => {
    server = await NatsServer.start();
    a = await connectBus({ servers: server.url });
    b = await connectBus({ servers: server.url });
    sender = new BlobStore(a, bucket, undefined, undefined, { timeoutMs: 1000 });
    receiver = new BlobStore(b, bucket, undefined, undefined, { readStallMs: 500, timeoutMs: 1000 });
    await receiver.take(await sender.put(new Uint8Array(1)), 10);
  });

  afterAll(async () => {
    await closeBus(a);
    await closeBus(b);
    await server?.stop();
  });

  it('an empty body, one byte over a chunk, bodies in many chunks and 64 MiB come back exact', async () => {
    for (const size of [0, 1, 1032193, 3 * MiB + 7, 64 * MiB]) {
      const data = pattern(size);
      const back = await receiver.take(await sender.put(data), 64 * MiB);
      expect(Buffer.compare(Buffer.from(back), Buffer.from(data))).toBe(0);
    }
  });

  it('a body in parts (a header, a large tensor referenced, a trailer) is stored and streamed as its joined bytes', async () => {
    const tensor = pattern(3 * MiB + 5);
    const body = { parts: [pattern(13), tensor, pattern(7)], byteLength: 13 + tensor.byteLength + 7 };
    const joined = Buffer.from(joinBody(body));
    const stored = await receiver.take(await sender.put(body), 4 * MiB);
    expect(Buffer.from(stored).equals(joined)).toBe(true);
    const { ref, done } = await sender.stream(body);
    const streamed = await receiver.take(ref, 4 * MiB);
    await done;
    expect(Buffer.from(streamed).equals(joined)).toBe(true);
  });

  it.each(['put', 'take', 'streamed take'])(
    'a reconnect in the middle of a 64 MiB %s: it completes exact or fails UNAVAILABLE',
    async (op) => {
      const data = pattern(64 * MiB);
      const conn = op === 'put' ? a : b;
      const ref = op === 'take' ? await sender.put(data) : undefined;
      const started = performance.now();
      const transfer =
        op === 'put'
          ? sender.put(data).then((r) => receiver.take(r, 64 * MiB))
          : op === 'take'
            ? receiver.take(ref!, 64 * MiB)
            : sender.stream(data).then((s) => receiver.take(s.ref, 64 * MiB));
      setTimeout(() => void conn.reconnect(), 80);
      let outcome: string;
      try {
        const back = await transfer;
        outcome = Buffer.compare(Buffer.from(back), Buffer.from(data)) === 0 ? 'exact' : 'corrupt';
      } catch (e) {
        outcome = (e as FlotillaError).code ?? `uncoded: ${(e as Error).message}`;
      }
      console.log(`[large-bodies] reconnect during a ${op}: ${outcome} after ${(performance.now() - started).toFixed(0)} ms`);
      expect(['exact', ErrorCode.UNAVAILABLE]).toContain(outcome);
      // And the next transfer on the same connections works.
      const small = pattern(2 * MiB);
      expect(Buffer.compare(Buffer.from(await receiver.take(await sender.put(small), 4 * MiB)), Buffer.from(small))).toBe(0);
    },
    20_000,
  );

  it.each<[string, ForgeOptions & { body?: number }, string]>([
    ['chunks longer than the meta says', { chunks: [pattern(1000), pattern(1000)], size: 1000, chunkCount: 1 }, ErrorCode.BAD_REQUEST],
    ['more chunks than the meta says', { chunks: [pattern(500), pattern(500)], size: 1000, chunkCount: 1 }, ErrorCode.BAD_REQUEST],
    ['chunks shorter than the meta says', { chunks: [pattern(600)], size: 1000, chunkCount: 1 }, ErrorCode.BAD_REQUEST],
    ['another digest', { digestOf: pattern(1000) }, ErrorCode.BAD_REQUEST],
    ['no digest', { digest: '' }, ErrorCode.BAD_REQUEST],
    ['an MD5 digest', { digest: 'MD5=abc' }, ErrorCode.BAD_REQUEST],
    ['a wildcard nuid', { nuid: '>' }, ErrorCode.BAD_REQUEST],
    ['a nuid with a dot', { nuid: 'a.b' }, ErrorCode.BAD_REQUEST],
    ['a flood of chunks', { chunkCount: 1_000_000 }, ErrorCode.BAD_REQUEST],
    ['a link', { link: true }, ErrorCode.BAD_REQUEST],
    ['a deleted object', { deleted: true }, ErrorCode.UNAVAILABLE],
    ['chunks that never come', { chunks: [], chunkCount: 1 }, ErrorCode.UNAVAILABLE],
  ])('a forged object with %s is refused: %s', async (_what, o, expected) => {
    const body = pattern(1000);
    const name = await forge(a, bucket, body, o);
    const size = o.size ?? body.byteLength;
    expect(await code(receiver.take({ name, size }, MiB))).toBe(expected);
    // The store still serves.
    const ok = pattern(1500);
    expect(Buffer.from(await receiver.take(await sender.put(ok), MiB)).equals(Buffer.from(ok))).toBe(true);
  });

  it('a streamed body is read while it is written, exact at every size', async () => {
    for (const size of [1, 1032193, 3 * MiB + 7, 64 * MiB]) {
      const data = pattern(size);
      const { ref, done } = await sender.stream(data);
      // The reference comes once the first chunk is stored: 64 MiB is still being written, no meta yet
      // (a take of a stored body would find no object).
      if (size === 64 * MiB) expect(await metaStored(b, bucket, ref.name)).toBe(false);
      const back = await receiver.take(ref, 64 * MiB);
      await done;
      expect(Buffer.compare(Buffer.from(back), Buffer.from(data))).toBe(0);
    }
  });

  it.each<[string, ForgeOptions, (nuid: string, size: number) => { nuid: string; size: number }, string]>([
    ['a meta naming other chunks', { metaNuid: nuid.next() }, (n, s) => ({ nuid: n, size: s }), ErrorCode.BAD_REQUEST],
    ['a reference smaller than its chunks', {}, (n, s) => ({ nuid: n, size: s - 10 }), ErrorCode.BAD_REQUEST],
    ['a reference larger than its chunks (more never come)', {}, (n, s) => ({ nuid: n, size: s + 10 }), ErrorCode.UNAVAILABLE],
    ['another digest', { digestOf: pattern(1000) }, (n, s) => ({ nuid: n, size: s }), ErrorCode.BAD_REQUEST],
    [
      'more chunks than its meta counts',
      { chunks: [pattern(500), pattern(500)], chunkCount: 1 },
      (n, s) => ({ nuid: n, size: s }),
      ErrorCode.BAD_REQUEST,
    ],
    ['a meta withdrawn by its sender', { deleted: true }, (n, s) => ({ nuid: n, size: s }), ErrorCode.UNAVAILABLE],
    ['no meta ever (its sender stopped)', { noMeta: true }, (n, s) => ({ nuid: n, size: s }), ErrorCode.UNAVAILABLE],
    ['chunks that never come', { chunks: [] }, (n, s) => ({ nuid: n, size: s }), ErrorCode.UNAVAILABLE],
    ['a wildcard nuid', {}, (_n, s) => ({ nuid: '>', size: s }), ErrorCode.BAD_REQUEST],
  ])('a streamed reference with %s is refused: %s', async (_what, o, refOf, expected) => {
    const body = pattern(1000);
    const id = nuid.next();
    const name = await forge(a, bucket, body, { ...o, nuid: id });
    expect(await code(receiver.take({ name, ...refOf(id, body.byteLength) }, MiB))).toBe(expected);
    // The store still serves, streamed too.
    const ok = pattern(1500);
    const { ref } = await sender.stream(ok);
    expect(Buffer.from(await receiver.take(ref, MiB)).equals(Buffer.from(ok))).toBe(true);
  });

  it('a streamed reference to no stored chunk fails at once, not after the stall: forged, or replayed after its take', async () => {
    // The default stall (10 s): a receiver waiting for chunks would hold its fetch budget that long.
    const patient = new BlobStore(b, bucket, undefined, undefined, { timeoutMs: 1000 });
    const t0 = performance.now();
    const forged = patient.take({ name: `forged-${nuid.next()}`, size: 64 * MiB, nuid: nuid.next() }, 64 * MiB);
    await expect(forged).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE, message: expect.stringContaining('no chunk stored') });
    const { ref, done } = await sender.stream(pattern(3 * MiB));
    expect((await patient.take(ref, 64 * MiB)).byteLength).toBe(3 * MiB);
    await done;
    await new Promise((r) => setTimeout(r, 200)); // the take's purge is in the background
    await expect(patient.take(ref, 64 * MiB)).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it('a streamed sender that writes one chunk and stops, or trickles, is cut off at the rate floor, not at the 10 s stall', async () => {
    // The default stall (10 s) and the default floor (1 MiB/s after 2 s): what a worker's blob store uses.
    const patient = new BlobStore(b, bucket, undefined, undefined, { timeoutMs: 1000 });
    const id = nuid.next();
    const name = await forge(a, bucket, pattern(64 * 1024), { nuid: id, noMeta: true });
    let t0 = performance.now();
    await expect(patient.take({ name, size: 8 * MiB, nuid: id }, 8 * MiB)).rejects.toMatchObject({
      code: ErrorCode.UNAVAILABLE,
      message: expect.stringContaining(`65536 of ${8 * MiB} bytes arrived`),
    });
    const oneChunkMs = performance.now() - t0;
    expect(oneChunkMs).toBeGreaterThanOrEqual(2000);
    expect(oneChunkMs).toBeLessThan(4000);

    // 64 KiB every 100 ms (640 KiB/s), with a grace of 500 ms: below 1 MiB/s from about 1.3 s on.
    const eager = new BlobStore(b, bucket, undefined, undefined, { timeoutMs: 1000, streamFloor: { graceMs: 500 } });
    const tid = nuid.next();
    const tname = await forge(a, bucket, pattern(64 * 1024), { nuid: tid, noMeta: true });
    const trickle = setInterval(() => a.publish(`$O.${bucket}.C.${tid}`, pattern(64 * 1024)), 100);
    try {
      t0 = performance.now();
      await expect(eager.take({ name: tname, size: 8 * MiB, nuid: tid }, 8 * MiB)).rejects.toMatchObject({
        code: ErrorCode.UNAVAILABLE,
        message: expect.stringContaining('slower than the floor of 1048576 bytes/s after 500 ms'),
      });
      expect(performance.now() - t0).toBeLessThan(3000);
    } finally {
      clearInterval(trickle);
    }
    // A body that keeps the floor is read as before, and the store still serves.
    const ok = pattern(3 * MiB);
    const { ref, done } = await sender.stream(ok);
    expect(Buffer.from(await eager.take(ref, 8 * MiB)).equals(Buffer.from(ok))).toBe(true);
    await done;
  });

  it('a bucket that refuses the body fails the stream before any reference goes out (UNAVAILABLE), and a stored put too', async () => {
    const full = 'flotilla_lbfull_blobs';
    // A bucket of 64 KiB: its first 1 MiB chunk is refused ("maximum bytes exceeded").
    await a.request(
      `$JS.API.STREAM.CREATE.OBJ_${full}`,
      JSON.stringify({
        name: `OBJ_${full}`,
        subjects: [`$O.${full}.C.>`, `$O.${full}.M.>`],
        storage: 'memory',
        max_bytes: 64 * 1024,
        allow_rollup_hdrs: true,
        discard: 'new',
      }),
      { timeout: 5000 },
    );
    const small = new BlobStore(a, full, undefined, undefined, { timeoutMs: 1000 });
    const started = performance.now();
    expect(await code(small.stream(pattern(4 * MiB)))).toBe(ErrorCode.UNAVAILABLE);
    expect(await code(small.put(pattern(4 * MiB)))).toBe(ErrorCode.UNAVAILABLE);
    expect(performance.now() - started).toBeLessThan(2000); // the refusals, not a timeout
  });

  it('a name that does not exist is UNAVAILABLE; a size beside the truth is BAD_REQUEST', async () => {
    expect(await code(receiver.take({ name: 'nosuchobject', size: 10 }, MiB))).toBe(ErrorCode.UNAVAILABLE);
    const ref = await sender.put(pattern(1000));
    expect(await code(receiver.take({ name: ref.name, size: 999 }, MiB))).toBe(ErrorCode.BAD_REQUEST);
  });

  it('a server lost in the middle of a take fails UNAVAILABLE within the stall timeout', async () => {
    const own = await NatsServer.start();
    const s = await connectBus({ servers: own.url });
    const r = await connectBus({ servers: own.url });
    try {
      const data = pattern(64 * MiB);
      const ref = await new BlobStore(s, bucket).put(data);
      const started = performance.now();
      const take = new BlobStore(r, bucket, undefined, undefined, { readStallMs: 500, timeoutMs: 1000 }).take(ref, 64 * MiB);
      setTimeout(() => own.kill(), 10);
      const outcome = await take.then(
        (back) => (Buffer.compare(Buffer.from(back), Buffer.from(data)) === 0 ? 'exact' : 'corrupt'),
        (e: FlotillaError) => e.code,
      );
      console.log(`[large-bodies] server killed during a take: ${outcome} after ${(performance.now() - started).toFixed(0)} ms`);
      expect(['exact', ErrorCode.UNAVAILABLE]).toContain(outcome);
    } finally {
      await closeBus(s, 1000);
      await closeBus(r, 1000);
      await own.stop();
    }
  }, 20_000);
});
