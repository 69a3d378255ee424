// The SDK's request/reply (bus/requester.ts) against a real nats-server: replies reach the right
// caller among many in flight, nobody subscribed is "no responders", silence is a timeout, a late
// reply is dropped, a closed connection fails what is pending, and the errors are nats.js's own
// types so isNoResponders / isTimeout / mapNatsError read them as before.
import { connect } from '@nats-io/transport-node';
import { Requester, closeBus, connectBus, isNoResponders, isTimeout, mapNatsError, type NatsConnection } from '@flotilla/bus';
import { ErrorCode, type FlotillaError } from '@flotilla/protocol';
import { NatsServer } from '@flotilla/local';

describe('Requester', () => {
  let nats: NatsServer;
  let server: NatsConnection;
  let nc: NatsConnection;

  beforeAll(async () => {
    nats = await NatsServer.start();
    server = await connect({ servers: nats.url });
    // Echoes the body back, after the delay (ms) its first byte names.
    server.subscribe('echo', {
      callback: (_err, msg) => {
        setTimeout(() => msg.respond(msg.data, msg.headers ? { headers: msg.headers } : undefined), msg.data[0] ?? 0);
      },
    });
    server.subscribe('silent', { callback: () => undefined });
    await server.flush();
    nc = await connectBus({ servers: nats.url, name: 'requester-test' });
  });

  afterAll(async () => {
    await closeBus(nc);
    await server.close();
    await nats.stop();
  });

  it('matches 500 concurrent replies to their requests, out of order', async () => {
    const r = new Requester(nc);
    const bodies = Array.from({ length: 500 }, (_, i) => new Uint8Array([i % 7, i & 0xff, i >> 8]));
    const replies = await Promise.all(bodies.map((b) => r.request('echo', b, { timeout: 5000 })));
    replies.forEach((m, i) => expect([...m.data]).toEqual([...bodies[i]!]));
    expect(r.size).toBe(0);
  });

  it('answers no responders at once, as nats.js does', async () => {
    const r = new Requester(nc);
    const t0 = performance.now();
    const err = await r.request('nobody.here', new Uint8Array([1]), { timeout: 5000 }).catch((e: unknown) => e);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(isNoResponders(err)).toBe(true);
    expect((mapNatsError(err, 'nobody.here', 5000) as FlotillaError).code).toBe(ErrorCode.UNAVAILABLE);
    expect(r.size).toBe(0);
  });

  it('times out on silence and drops the late reply', async () => {
    const r = new Requester(nc);
    const silent = await r.request('silent', new Uint8Array([0]), { timeout: 100 }).catch((e: unknown) => e);
    expect(isTimeout(silent)).toBe(true);
    expect((mapNatsError(silent, 'silent', 100) as FlotillaError).code).toBe(ErrorCode.DEADLINE_EXCEEDED);
    // The echo answers after 150 ms, past the 50 ms timeout: rejected once, the late reply ignored.
    const late = await r.request('echo', new Uint8Array([150]), { timeout: 50 }).catch((e: unknown) => e);
    expect(isTimeout(late)).toBe(true);
    await new Promise((res) => setTimeout(res, 200));
    expect(r.size).toBe(0);
    // Still working afterwards.
    expect([...(await r.request('echo', new Uint8Array([0, 9]), { timeout: 1000 })).data]).toEqual([0, 9]);
  });

  it('carries headers both ways', async () => {
    const { headers } = await import('@nats-io/nats-core');
    const h = headers();
    h.set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    const m = await new Requester(nc).request('echo', new Uint8Array([0]), { timeout: 1000, headers: h });
    expect(m.headers?.get('traceparent')).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });

  it('fails what is pending when the connection closes, and refuses new requests', async () => {
    const own = await connectBus({ servers: nats.url, name: 'requester-close' });
    const r = new Requester(own);
    const pending = r.request('silent', new Uint8Array([0]), { timeout: 10_000 }).catch((e: unknown) => e);
    await own.flush();
    await own.close();
    const err = await pending;
    expect((mapNatsError(err, 'silent', 10_000) as FlotillaError).code).toBe(ErrorCode.UNAVAILABLE);
    expect(r.size).toBe(0);
    const after = await r.request('echo', new Uint8Array([0]), { timeout: 1000 }).catch((e: unknown) => e);
    expect((mapNatsError(after, 'echo', 1000) as FlotillaError).code).toBe(ErrorCode.UNAVAILABLE);
  });
});
