// A lost NATS connection (bus/connection-lost.ts) loses what was in its socket, both ways: the
// requests in flight and the chunks of a direct body fail at once with a code (UNAVAILABLE), on the
// caller's side and on the replica's, instead of waiting for a reply or a chunk that may be gone
// (the chunk timeout is 10 s, an attempt's a third of the request's timeout). A request sent after
// the loss goes out on the new connection and is answered.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { DirectBodies, call, closeBus, connectBus, connectionLink, isConnectionLost, okReply, pullBody, requesterFor } from '@flotilla/bus';
import { LocalCluster, NatsServer, freePort } from '@flotilla/local';
import {
  DIRECT_BODY_HEADER,
  ErrorCode,
  PROTOCOL_VERSION,
  decode,
  encode,
  fromTypedArray,
  subjects,
  type FlotillaError,
} from '@flotilla/protocol';
import { sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

const MiB = 1024 * 1024;
let cluster: LocalCluster;
let nc: NatsConnection;
let replica: string;
let s: ReturnType<typeof subjects>;

/** `fn`'s rejection and how long it took, ms. */
async function rejection(fn: () => Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const started = performance.now();
  try {
    await fn();
  } catch (err) {
    return { err, ms: performance.now() - started };
  }
  throw new Error('it did not fail');
}

/**
 * Runs `fn` with a nats-server of its own (a port and a store dir that survive a restart): `kill`
 * takes it away, `restart` brings it back on the same port; stopped and removed afterwards.
 */
async function withOwnServer(fn: (srv: { url: string; kill: () => void; restart: () => Promise<void> }) => Promise<void>): Promise<void> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-lost-'));
  let server = await NatsServer.start({ port, dir });
  try {
    await fn({
      url: server.url,
      kill: () => server.kill(),
      restart: async () => void (server = await NatsServer.start({ port, dir })),
    });
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const x4 = { x: { dtype: 'float32' as const, dims: [1, 1, 1, 4], data: Float32Array.of(0, 1, 2, 3) } };

beforeAll(async () => {
  // The default stall time (10 s) on the replica: what fails here fails because the connection went.
  cluster = await LocalCluster.start({ workers: 1 });
  const status = await cluster.client().deploy(sampleModelPath('affine'), 'affine', { device: 'cpu', profile: { enabled: false } });
  replica = status.replicas[0]!.id;
  s = subjects(cluster.cluster);
  nc = await connectBus({ servers: cluster.url });
}, 60_000);

afterAll(async () => {
  if (nc) await closeBus(nc);
  await cluster?.stop();
});

describe('a request in flight when its connection is lost', () => {
  it('fails at once with ConnectionLostError, not at its timeout; one sent after is answered', async () => {
    const own = await connectBus({ servers: cluster.url });
    try {
      const silent = own.subscribe('lost.silent', { callback: () => {} }); // takes requests, never answers
      const echo = nc.subscribe('lost.echo', { callback: (_e, m) => m.respond(m.data) });
      await Promise.all([own.flush(), nc.flush()]);
      const requester = requesterFor(own);
      const { err, ms } = await rejection(() => {
        const pending = requester.request('lost.silent', new Uint8Array(1), { timeout: 30_000 });
        setTimeout(() => void own.reconnect(), 100);
        return pending;
      });
      expect(isConnectionLost(err)).toBe(true);
      expect((err as Error).message).toContain('lost.silent');
      expect(ms).toBeLessThan(5_000);
      expect(requester.size).toBe(0);
      const answer = await requester.request('lost.echo', Uint8Array.of(7), { timeout: 10_000 });
      expect(Array.from(answer.data)).toEqual([7]);
      silent.unsubscribe();
      echo.unsubscribe();
    } finally {
      await closeBus(own);
    }
  }, 30_000);
});

describe('a send while the connection is down (the server is gone)', () => {
  it('waits until the connection is back and arrives; one published alone is dropped by nats.js', async () => {
    await withOwnServer(async (server) => {
      const a = await connectBus({ servers: server.url });
      try {
        const link = connectionLink(a);
        const got: string[] = [];
        a.subscribe('held.>', { callback: (_e, m) => got.push(m.subject) }); // sent again on reconnect, before what waited
        await a.flush();
        server.kill();
        await until(() => !link.up, { timeoutMs: 10_000, what: 'the link to see the loss' });
        link.whenUp(() => a.publish('held.waited', Uint8Array.of(1)));
        a.publish('held.plain', Uint8Array.of(2)); // into nats.js's outbound buffer, which every dial empties
        await new Promise((r) => setTimeout(r, 1200)); // dials fail meanwhile (every 500 ms)
        await server.restart();
        await until(() => link.up, { timeoutMs: 15_000, what: 'the reconnect' });
        await a.flush();
        await until(() => got.length > 0, { timeoutMs: 5_000, what: 'the message that waited' });
        expect(got).toEqual(['held.waited']);
      } finally {
        await closeBus(a).catch(() => undefined);
      }
    });
  }, 40_000);
});

describe('a control call made while the server is gone', () => {
  it('goes out when the connection is back and is answered then, not after its attempt timed out', async () => {
    await withOwnServer(async (server) => {
      const a = await connectBus({ servers: server.url });
      const b = await connectBus({ servers: server.url });
      try {
        b.subscribe('ctl.lost', { callback: (_e, m) => m.respond(okReply({ pong: true })) });
        await b.flush();
        expect(await call(a, 'ctl.lost', {}, 5_000)).toEqual({ pong: true });
        server.kill();
        await until(() => !connectionLink(a).up, { timeoutMs: 10_000, what: 'the loss' });
        const started = performance.now();
        // One attempt may take 8 s: a request that vanished in the gap would wait for all of it.
        const answered = call(a, 'ctl.lost', {}, 20_000, { attemptMs: 8_000 });
        await new Promise((r) => setTimeout(r, 800));
        await server.restart();
        expect(await answered).toEqual({ pong: true });
        expect(performance.now() - started).toBeLessThan(5_000);
      } finally {
        await Promise.all([closeBus(a), closeBus(b)].map((p) => p.catch(() => undefined)));
      }
    });
  }, 40_000);
});

describe('the SDK when its connection is lost with a request in flight', () => {
  /** A client whose router believes in `fake`, a replica that takes requests and answers as `answer` says. */
  async function withFake(answer: (m: { data: Uint8Array; respond(d: Uint8Array): boolean }) => void) {
    const own = await connectBus({ servers: cluster.url });
    const c = cluster.client({ connection: own });
    await c.infer('affine', x4); // learns the model's replicas (and its connection is up)
    const fake = 'affine-silent';
    const subs = [
      nc.subscribe(s.inferReplica('affine', fake), { callback: (_e, m) => answer(m) }),
      nc.subscribe(s.inferBody('affine', fake), { callback: () => {} }), // never answers a chunk
    ];
    await nc.flush();
    (c as unknown as { router: { update(m: string, ids: string[], now: number): void } }).router.update('affine', [fake], Date.now());
    return {
      c,
      own,
      done: async () => {
        for (const sub of subs) sub.unsubscribe();
        await c.close();
        await closeBus(own);
      },
    };
  }

  it.each<[string, (m: { respond(d: Uint8Array): boolean }) => void, number]>([
    ['an inference request (retries: 0) fails UNAVAILABLE at once, not after its attempt timeout (10 s)', () => {}, 200],
    [
      'reading a direct reply whose chunks go unanswered (retries: 0) fails UNAVAILABLE at once, not at the 10 s chunk timeout',
      // The replica answers with a direct reply it never serves: the SDK's `get` chunks wait.
      (m) => m.respond(encode({ v: PROTOCOL_VERSION, blob: { name: 'heldforever', size: 4 * MiB, direct: 'affine-silent' } })),
      300,
    ],
  ])(
    '%s',
    async (_, answer, reconnectAfterMs) => {
      const f = await withFake(answer);
      try {
        const { err, ms } = await rejection(() => {
          const call = f.c.infer('affine', x4, { timeoutMs: 30_000, retries: 0 });
          setTimeout(() => void f.own.reconnect(), reconnectAfterMs);
          return call;
        });
        expect((err as FlotillaError).code).toBe(ErrorCode.UNAVAILABLE);
        expect((err as Error).message).toContain('connection to NATS was lost');
        expect(ms).toBeLessThan(5_000);
      } finally {
        await f.done();
      }
    },
    30_000,
  );
});

describe('a replica whose connection is lost while a direct body comes in', () => {
  it('answers the body’s request UNAVAILABLE at once (not at the 10 s stall or the floor), and serves the next', async () => {
    const n = 2 * MiB;
    const body = encode({ v: PROTOCOL_VERSION, inputs: { x: fromTypedArray('float32', [1, 1, 1, n], new Float32Array(n)) } });
    const started = performance.now();
    const reply = nc.request(
      s.inferReplica('affine', replica),
      encode({ v: PROTOCOL_VERSION, blob: { name: 'cut', size: body.byteLength, direct: replica } }),
      {
        timeout: 20_000,
      },
    );
    const h = headers();
    h.set(DIRECT_BODY_HEADER, 'put cut 0');
    const first = await nc.request(s.inferBody('affine', replica), body.subarray(0, 1000), { timeout: 5_000, headers: h });
    expect(first.headers?.get(DIRECT_BODY_HEADER) ?? '').not.toBe('error'); // taken
    await cluster.workers[0]!.nc.reconnect();
    const answer = decode<{ ok: boolean; error?: { code: string; message: string } }>((await reply).data);
    expect(answer.error?.code).toBe(ErrorCode.UNAVAILABLE);
    expect(answer.error?.message).toContain('connection to NATS was lost');
    expect(performance.now() - started).toBeLessThan(1_800); // the floor drops a trickle after 2 s, the stall at 10
    const c = cluster.client();
    const y = await c.infer('affine', x4);
    expect(Array.from(y.y!.data as Float32Array)).toEqual([1, 3, 5, 7]);
  }, 30_000);
});

describe("a direct reply's get lost on the replica's side (its connection dropped, the caller's did not)", () => {
  it('is asked again after the retry interval and the transfer completes, not after the 10 s chunk timeout', async () => {
    const chunk = 64 * 1024;
    const d = new DirectBodies({ maxHeldBytes: 64 * MiB, chunkBytes: () => chunk });
    const body = Uint8Array.from({ length: 300 * 1024 }, (_, i) => i % 251);
    const offered = d.offer(body)!;
    const subject = `lost-get.${process.pid}.${Date.now()}`;
    let dropped = 0;
    // The replica's end: the first get of the second chunk never reaches it (lost with its socket).
    const sub = nc.subscribe(subject, {
      callback: (_e, m) => {
        if (dropped === 0 && m.headers?.get(DIRECT_BODY_HEADER)?.startsWith(`get ${offered.id} ${chunk} `)) {
          dropped++;
          return;
        }
        d.handle(m);
      },
    });
    await nc.flush();
    try {
      const started = performance.now();
      const got = await pullBody(nc, subject, offered.id, body.byteLength, { chunkBytes: chunk, getRetryMs: 300, timeoutMs: 10_000 });
      const ms = performance.now() - started;
      expect(dropped).toBe(1);
      expect(Buffer.compare(Buffer.from(got), Buffer.from(body))).toBe(0);
      expect(ms).toBeGreaterThanOrEqual(290);
      expect(ms).toBeLessThan(3_000);
      // The other chunks, the last among them, were read first: the reply stayed held for the one asked again.
      expect(d.heldBytes).toBe(0);
    } finally {
      sub.unsubscribe();
      d.close();
    }
  }, 30_000);
});
