// Direct bodies for real (bus/direct-body.ts): requests and replies over max_payload moved between
// the SDK and the replica it routed to over core NATS, with nothing stored in the blob bucket;
// the bucket still serves callers that do not read direct replies. Hostile and broken transfers
// on a replica's body channel (no header, unknown transfers, chunks out of order or past the
// announced size, a sender that stops, a reply never read, a reconnect in the middle): each gets
// a stable code, nothing is held past the stall time, and the replica keeps serving.
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { closeBus, connectBus } from '@flotilla/bus';
import type { FlotillaClient } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import {
  DIRECT_BLOBS,
  DIRECT_BODY_HEADER,
  ErrorCode,
  PROTOCOL_VERSION,
  STREAMED_BLOBS_HEADER,
  decode,
  encode,
  fromTypedArray,
  objStream,
  subjects,
  type FlotillaError,
} from '@flotilla/protocol';
import { sampleModelPath } from '@flotilla/sample-models';

const MiB = 1024 * 1024;
const STALL_MS = 600;
let cluster: LocalCluster;
let client: FlotillaClient;
let nc: NatsConnection;
let replica: string;
let s: ReturnType<typeof subjects>;

/** y = 2x + 1 on small integers is exact in float32: replies are checked bit for bit. */
function input(n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => i % 4099);
}

function exact(y: Float32Array, x: Float32Array): boolean {
  if (y.length !== x.length) return false;
  for (let i = 0; i < x.length; i++) if (y[i] !== 2 * x[i]! + 1) return false;
  return true;
}

/** Messages the blob bucket's stream has ever stored (0 while nothing made it create the stream). */
async function bucketSeq(): Promise<number> {
  const msg = await nc.request(`$JS.API.STREAM.INFO.${objStream(s.blobBucket)}`, undefined, { timeout: 5000 });
  const info = JSON.parse(new TextDecoder().decode(msg.data)) as { state?: { last_seq: number }; error?: { err_code: number } };
  if (info.error?.err_code === 10059) return 0; // stream not found
  if (!info.state) throw new Error(`STREAM.INFO: ${JSON.stringify(info)}`);
  return info.state.last_seq;
}

/** What the body channel answers `data` with `header` (the code of an error answer, else 'ok:<bytes>'). */
async function onChannel(header: string | undefined, data: Uint8Array = new Uint8Array(0), to = replica): Promise<string> {
  const h = headers();
  if (header !== undefined) h.set(DIRECT_BODY_HEADER, header);
  const msg = await nc.request(s.inferBody('affine', to), data, { timeout: 5000, headers: h });
  if (msg.headers?.get(DIRECT_BODY_HEADER) === 'error') return decode<{ error: { code: string } }>(msg.data).error.code;
  return `ok:${msg.data.byteLength}`;
}

/** A raw inference request to the replica (body as given), its reply decoded. */
async function raw(body: object, h = headers(), timeout = 10_000): Promise<Record<string, unknown>> {
  return decode<Record<string, unknown>>((await nc.request(s.inferReplica('affine', replica), encode(body), { timeout, headers: h })).data);
}

function request(n: number): Uint8Array {
  return encode({ v: PROTOCOL_VERSION, inputs: { x: fromTypedArray('float32', [1, 1, 1, n], input(n)) } });
}

/**
 * Returns once `c` sends large requests direct. The SDK learns the replicas from the head after its
 * first request (asynchronously), and sends a large request direct only to a replica it knows.
 */
async function untilDirect(c: FlotillaClient): Promise<void> {
  for (let i = 0; ; i++) {
    const before = await bucketSeq();
    await c.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1, MiB / 2], data: input(MiB / 2) } });
    if ((await bucketSeq()) === before) return;
    if (i === 50) throw new Error('the SDK never sent a large request direct');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function serves(): Promise<boolean> {
  const y = await client.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1, 4], data: Float32Array.of(0, 1, 2, 3) } });
  return Array.from(y.y!.data as Float32Array).join() === '1,3,5,7';
}

beforeAll(async () => {
  cluster = await LocalCluster.start({ workers: 1, worker: { directStallMs: STALL_MS } });
  client = cluster.client();
  s = subjects(cluster.cluster);
  const status = await client.deploy(sampleModelPath('affine'), 'affine', { device: 'cpu', profile: { enabled: false } });
  replica = status.replicas[0]!.id;
  nc = await connectBus({ servers: cluster.url });
  await serves();
  await untilDirect(client);
}, 60_000);

afterAll(async () => {
  if (nc) await closeBus(nc);
  await cluster?.stop();
});

describe('direct bodies between the SDK and a replica', () => {
  it.each([
    ['8 MiB', 2 * MiB],
    ['24 MiB and a few bytes (the last chunk short)', 6 * MiB + 3],
  ])(
    'a request and reply of %s go direct, byte-exact, and nothing is stored in the blob bucket',
    async (_, n) => {
      const before = await bucketSeq();
      const x = input(n);
      const y = await client.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1, n], data: x } }, { timeoutMs: 30_000 });
      expect(exact(y.y!.data as Float32Array, x)).toBe(true);
      expect(await bucketSeq()).toBe(before);
    },
    30_000,
  );

  it('a client with directBodies: false goes through the blob bucket, exact', async () => {
    const other = cluster.client({ directBodies: false });
    await other.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1, 4], data: new Float32Array(4) } });
    const before = await bucketSeq();
    const n = 2 * MiB;
    const x = input(n);
    const y = await other.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1, n], data: x } }, { timeoutMs: 30_000 });
    expect(exact(y.y!.data as Float32Array, x)).toBe(true);
    expect(await bucketSeq()).toBeGreaterThan(before);
  }, 30_000);

  it.each<[string, number | undefined, string[]]>([
    ['with retries: 0, it completes exact or fails UNAVAILABLE', 0, ['exact', ErrorCode.UNAVAILABLE]],
    ['with the default retries, it completes exact (a failed transfer is sent again)', undefined, ['exact']],
  ])(
    'a reconnect in the middle of a 64 MiB round trip: %s, and the next one works',
    async (_, retries, outcomes) => {
      const own = await connectBus({ servers: cluster.url });
      const c = cluster.client({ connection: own });
      try {
        await untilDirect(c);
        const n = 16 * MiB;
        const x = input(n);
        const started = performance.now();
        const call = c.infer(
          'affine',
          { x: { dtype: 'float32', dims: [1, 1, 1, n], data: x } },
          { timeoutMs: 30_000, ...(retries === undefined ? {} : { retries }) },
        );
        setTimeout(() => void own.reconnect(), 60);
        let outcome: string;
        try {
          outcome = exact((await call).y!.data as Float32Array, x) ? 'exact' : 'corrupt';
        } catch (e) {
          outcome = (e as FlotillaError).code ?? `uncoded: ${(e as Error).message}`;
        }
        console.log(
          `[direct-bodies] reconnect during a 64 MiB round trip, retries ${retries ?? 'default'}: ${outcome} after ${(performance.now() - started).toFixed(0)} ms`,
        );
        expect(outcomes).toContain(outcome);
        expect(performance.now() - started).toBeLessThan(8_000); // nothing waited for the 10 s chunk timeout
        // Still direct: the replica is not forgotten because this client's connection was lost.
        const before = await bucketSeq();
        const y = await c.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1, MiB], data: input(MiB) } }, { timeoutMs: 20_000 });
        expect(exact(y.y!.data as Float32Array, input(MiB))).toBe(true);
        expect(await bucketSeq()).toBe(before);
      } finally {
        await closeBus(own);
      }
    },
    60_000,
  );
});

describe('a direct transfer whose replica goes away', () => {
  it('the push fails UNAVAILABLE, the SDK forgets that replica and sends the request again elsewhere, exact', async () => {
    const c = cluster.client();
    await serves();
    // A replica the router believes in that takes the reference, answers one chunk, and is gone.
    const fake = 'affine-gone';
    const own = nc.subscribe(s.inferReplica('affine', fake), { callback: () => {} });
    let chunks = 0;
    const body = nc.subscribe(s.inferBody('affine', fake), {
      callback: (_e, m) => {
        chunks++;
        m.respond(new Uint8Array(0));
        body.unsubscribe();
      },
    });
    await nc.flush();
    try {
      (c as unknown as { router: { update(m: string, ids: string[], now: number): void } }).router.update('affine', [fake], Date.now());
      const n = 2 * MiB;
      const y = await c.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1, n], data: input(n) } }, { timeoutMs: 20_000 });
      expect(chunks).toBe(1);
      expect(exact(y.y!.data as Float32Array, input(n))).toBe(true);
    } finally {
      own.unsubscribe();
      await c.close();
    }
  }, 30_000);
});

describe('a replica’s body channel against hostile and broken transfers', () => {
  it.each<[string, string | undefined, string]>([
    ['no header', undefined, ErrorCode.BAD_REQUEST],
    ['a header that is no operation', 'delete everything', ErrorCode.BAD_REQUEST],
    ['an answer’s header sent as a request', 'error', ErrorCode.BAD_REQUEST],
    ['a transfer id with a wildcard', 'put > 0', ErrorCode.BAD_REQUEST],
    ['an offset that is no integer', 'put abc 1e3', ErrorCode.BAD_REQUEST],
    ['an offset past 2^53', 'put abc 99999999999999999', ErrorCode.BAD_REQUEST],
    ['a put to a transfer nobody announced', 'put nosuchtransfer 0', ErrorCode.UNAVAILABLE],
    ['a get of a reply nobody holds', 'get nosuchtransfer 0 10', ErrorCode.UNAVAILABLE],
    ['a header of 100 KB', `put ${'a'.repeat(100_000)} 0`, ErrorCode.BAD_REQUEST],
  ])('%s: answered with a code, and the replica serves', async (_, header, expected) => {
    expect(await onChannel(header, new Uint8Array(16))).toBe(expected);
    expect(await serves()).toBe(true);
  });

  it('a reference naming another replica is BAD_REQUEST', async () => {
    const reply = await raw({ v: PROTOCOL_VERSION, blob: { name: 'abc', size: 2 * MiB, direct: 'someone-else' } });
    expect((reply.error as { code: string }).code).toBe(ErrorCode.BAD_REQUEST);
  });

  it('a reference over the replica’s message limit is PAYLOAD_TOO_LARGE before any byte is taken', async () => {
    const reply = await raw({ v: PROTOCOL_VERSION, blob: { name: 'big', size: 2 ** 40, direct: replica } });
    expect((reply.error as { code: string }).code).toBe(ErrorCode.PAYLOAD_TOO_LARGE);
    expect(await onChannel('put big 0')).toBe(ErrorCode.UNAVAILABLE);
  });

  it('a sender that announces a body and sends part of it is answered UNAVAILABLE after the stall time; its late chunk too', async () => {
    const body = request(MiB / 2);
    const started = performance.now();
    const reply = raw({ v: PROTOCOL_VERSION, blob: { name: 'stops', size: body.byteLength, direct: replica } });
    expect(await onChannel('put stops 0', body.subarray(0, 1000))).toBe('ok:0');
    expect(((await reply).error as { code: string }).code).toBe(ErrorCode.UNAVAILABLE);
    expect(performance.now() - started).toBeGreaterThanOrEqual(STALL_MS * 0.9);
    expect(await onChannel('put stops 1000', body.subarray(1000, 2000))).toBe(ErrorCode.UNAVAILABLE);
    expect(await serves()).toBe(true);
  });

  it.each<[string, (body: Uint8Array) => Array<[string, Uint8Array, string]>, string]>([
    // What a reconnect does to chunks in the socket: the transfer fails as a lost connection does (retried).
    [
      'a chunk past a gap (chunks lost in transit)',
      (b) => [['put disorder 1000', b.subarray(1000, 2000), ErrorCode.UNAVAILABLE]],
      ErrorCode.UNAVAILABLE,
    ],
    [
      'a chunk sent twice',
      (b) => [
        ['put disorder 0', b.subarray(0, 1000), 'ok:0'],
        ['put disorder 0', b.subarray(0, 1000), ErrorCode.BAD_REQUEST],
      ],
      ErrorCode.BAD_REQUEST,
    ],
    [
      'chunks past the announced size',
      (b) => [['put disorder 0', new Uint8Array(b.byteLength + 1), ErrorCode.BAD_REQUEST]],
      ErrorCode.BAD_REQUEST,
    ],
  ])('%s: the chunk and the request are answered with a code', async (_, chunks, expected) => {
    const body = request(1000);
    const reply = raw({ v: PROTOCOL_VERSION, blob: { name: 'disorder', size: body.byteLength, direct: replica } });
    for (const [h, data, answer] of chunks(body)) expect(await onChannel(h, data)).toBe(answer);
    expect(((await reply).error as { code: string }).code).toBe(expected);
    expect(await serves()).toBe(true);
  });

  it('a flood of announced bodies that never come: past 256 at once OVERLOADED, the rest UNAVAILABLE after the stall time; the replica serves', async () => {
    const codes = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        raw({ v: PROTOCOL_VERSION, blob: { name: `flood${i}`, size: 10, direct: replica } }).then(
          (r) => (r.error as { code: string }).code,
        ),
      ),
    );
    const count = (c: string) => codes.filter((x) => x === c).length;
    expect([count(ErrorCode.OVERLOADED), count(ErrorCode.UNAVAILABLE)]).toEqual([44, 256]);
    expect(await serves()).toBe(true);
  });

  it('a direct body that is itself a reference is BAD_REQUEST (no chains)', async () => {
    const inner = encode({ v: PROTOCOL_VERSION, blob: { name: 'x', size: 10 } });
    const reply = raw({ v: PROTOCOL_VERSION, blob: { name: 'chain', size: inner.byteLength, direct: replica } });
    expect(await onChannel('put chain 0', inner)).toBe('ok:0');
    expect(((await reply).error as { code: string }).code).toBe(ErrorCode.BAD_REQUEST);
  });

  it('a reply held for a caller who never reads it is dropped after the stall time; one read in odd chunks is exact', async () => {
    const h = headers();
    h.set(STREAMED_BLOBS_HEADER, DIRECT_BLOBS);
    const n = MiB / 2; // a 2 MiB request and reply
    let k = 0;
    // The request sent direct by hand, as a client in another language would: the reference, then its chunks.
    const ref = async () => {
      const body = request(n);
      const id = `held${++k}`;
      const reply = raw({ v: PROTOCOL_VERSION, blob: { name: id, size: body.byteLength, direct: replica } }, h);
      for (let off = 0; off < body.byteLength; off += 500_000) {
        expect(await onChannel(`put ${id} ${off}`, body.subarray(off, off + 500_000))).toBe('ok:0');
      }
      return (await reply).blob as { name: string; size: number; direct: string };
    };
    const dropped = await ref();
    expect(dropped.direct).toBe(replica);
    await new Promise((r) => setTimeout(r, STALL_MS * 1.5));
    expect(await onChannel(`get ${dropped.name} 0 1000`)).toBe(ErrorCode.UNAVAILABLE);

    const read = await ref();
    // Past the body, and a chunk larger than a message may hold: BAD_REQUEST, and the reply is still held.
    expect(await onChannel(`get ${read.name} ${read.size - 10} 20`)).toBe(ErrorCode.BAD_REQUEST);
    expect(await onChannel(`get ${read.name} 0 ${64 * MiB}`)).toBe(ErrorCode.BAD_REQUEST);
    const parts: Buffer[] = [];
    for (let off = 0; off < read.size; off += 333_333) {
      const len = Math.min(333_333, read.size - off);
      const msg = await nc.request(s.inferBody('affine', replica), undefined, {
        timeout: 5000,
        headers: (() => {
          const g = headers();
          g.set(DIRECT_BODY_HEADER, `get ${read.name} ${off} ${len}`);
          return g;
        })(),
      });
      expect(msg.data.byteLength).toBe(len);
      parts.push(Buffer.from(msg.data));
    }
    const reply = decode<{ ok: boolean; outputs: { y: { data: Uint8Array } } }>(Buffer.concat(parts));
    expect(reply.ok).toBe(true);
    const y = new Float32Array(new Uint8Array(reply.outputs.y.data).buffer);
    expect(exact(y, input(n))).toBe(true);
    // Read to its end: released.
    expect(await onChannel(`get ${read.name} 0 10`)).toBe(ErrorCode.UNAVAILABLE);
  }, 20_000);
});
